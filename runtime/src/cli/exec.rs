//! `nook exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] CONTAINER COMMAND [ARG...]`: run a second
//! process in a running container; exits with its status. The process gets pipes, or a new pty
//! with `-t`, that this command relays (never the caller's own descriptors).

use anyhow::Context as _;

use nook::container::attach::{self, Relay, Wiring};
use nook::container::engine::merge_env;
use nook::isolation::ProcessSpec;
use nook::util::fd::pipe;

use super::status::ExitStatus;
use super::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    container: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Signals that end `nook exec` once its relay has restored the caller's terminal.
const ENDING: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = ctx.engine();
    let container = engine.containers.find(&args.container)?;
    let base = &container.config.launch.process;
    let process = ProcessSpec {
        argv: args.command.clone(),
        env: merge_env(&base.env, &args.env),
        cwd: args.workdir.clone().unwrap_or_else(|| base.cwd.clone()),
        user: args.user.clone().unwrap_or_else(|| base.user.clone()),
        terminal: args.tty,
        // `--group-add`'s gids, as docker's exec keeps them.
        groups: base.groups.clone(),
        ..ProcessSpec::default()
    };
    let (wiring, stdio) = Wiring::new(args.tty, args.interactive).with_context(|| {
        format!(
            "cannot set up the stdio of a process in container {}",
            args.container
        )
    })?;
    let (done_read, done_write) = pipe().context("cannot create a pipe")?;
    let mut workload = engine.exec(&container, &process, stdio)?;
    // Only now, with the process forked: the relay is a thread, and the signal handlers must
    // not be inherited by the process that waits for the command inside the container.
    let mut signals = ENDING.to_vec();
    signals.push(libc::SIGWINCH);
    attach::catch(&signals).context("cannot catch signals")?;
    let relay = std::thread::Builder::new()
        .name("exec-relay".into())
        .spawn(move || {
            let opts = Relay {
                echo: true,
                log: None,
                done: Some(done_read),
            };
            if let Some(sig) = wiring.relay(opts, |_| false) {
                attach::die_of(sig);
            }
        })
        .context("cannot start the relay thread")?;
    let exit = workload.wait();
    drop(done_write);
    let _ = relay.join();
    match exit?.status() {
        0 => Ok(()),
        code => Err(ExitStatus(code).into()),
    }
}
