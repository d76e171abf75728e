//! `nook push [-q] [--tls-verify=BOOL] NAME[:TAG]`: a local image to its registry, with
//! docker's output (`TAG: digest: sha256:... size: N` last).

use anyhow::Context as _;

use nook::image::reference::Reference;
use nook::paths::ProcessEnv;
use nook::registry::client::Client;
use nook::registry::credentials::AuthFiles;
use nook::registry::progress::{Mode, Progress};
use nook::registry::PushOptions;

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Require HTTPS and verify certificates (default: true, except for localhost registries)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    tls_verify: Option<bool>,
    /// The image to push: NAME[:TAG]
    name: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let reference = Reference::parse(&args.name)?;
    anyhow::ensure!(
        reference.digest().is_none(),
        "cannot push {}: push a tag, not a digest",
        args.name
    );
    let store = ctx.store()?;
    let progress = Progress::new(Mode::auto(args.quiet), Box::new(std::io::stdout()));
    let options = PushOptions {
        tls_verify: args.tls_verify,
        auth: AuthFiles::from_env(&ProcessEnv),
    };
    let pushed = nook::registry::push(&store, &Client::from_env(), &reference, &options, &progress)
        .with_context(|| format!("cannot push {}", reference.familiar()))?;
    if args.quiet {
        return emit(&format!("{reference}\n"));
    }
    emit(&format!(
        "{}: digest: {} size: {}\n",
        pushed.tag, pushed.digest, pushed.size
    ))
}
