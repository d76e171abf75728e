//! `nook login [-u USER] [-p PASS | --password-stdin] [--tls-verify=BOOL] [SERVER]`: checks the
//! credentials against the registry, then saves them in nook's auth file (mode 0600).

use std::io::{BufRead, IsTerminal, Read, Write};

use anyhow::Context as _;

use nook::paths::ProcessEnv;
use nook::registry::client::Client;
use nook::registry::credentials::{AuthFiles, Credential};
use nook::registry::endpoint::registry_of_server;
use nook::registry::Endpoint;

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password (visible to other users: prefer --password-stdin)
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
    /// Require HTTPS and verify certificates (default: true, except for localhost registries)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    tls_verify: Option<bool>,
    /// The registry (default: docker.io)
    server: Option<String>,
}

pub fn run(args: Args, _ctx: &Context) -> anyhow::Result<()> {
    anyhow::ensure!(
        !(args.password.is_some() && args.password_stdin),
        "--password and --password-stdin are mutually exclusive"
    );
    let registry = registry_of_server(args.server.as_deref());
    let username = match args.username {
        Some(u) => u,
        None => {
            anyhow::ensure!(
                !args.password_stdin,
                "must provide --username with --password-stdin"
            );
            eprint!("Username: ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the username")?;
            line.trim().to_string()
        }
    };
    anyhow::ensure!(!username.is_empty(), "a username is required");
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the password from stdin")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = args.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else {
        anyhow::ensure!(
            std::io::stdin().is_terminal(),
            "cannot prompt for a password: stdin is not a terminal (use --password-stdin)"
        );
        rpassword::prompt_password("Password: ").context("cannot read the password")?
    };
    anyhow::ensure!(!password.is_empty(), "a password is required");
    let cred = Credential { username, password };
    let endpoint = Endpoint::new(&registry, args.tls_verify);
    nook::registry::verify_login(&Client::from_env(), &endpoint, &cred)
        .with_context(|| format!("login to {registry} failed"))?;
    let files = AuthFiles::from_env(&ProcessEnv);
    files
        .store(&registry, &cred)
        .with_context(|| format!("cannot save the credentials for {registry}"))?;
    eprintln!(
        "WARNING! Your password is stored unencrypted in {}.",
        files.own.display()
    );
    emit("Login Succeeded\n")
}
