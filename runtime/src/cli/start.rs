//! `nook start [-a] [-i] CONTAINER...`

use nook::container::monitor::Attach;

use super::status::ExitStatus;
use super::{emit, for_each_container, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    interactive: bool,
    /// Restore from this checkpoint (VM containers)
    #[arg(long, value_name = "NAME")]
    checkpoint: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = ctx.engine();
    let attach = args.attach || args.interactive;
    anyhow::ensure!(
        !attach || args.containers.len() == 1,
        "you cannot start and attach multiple containers at once"
    );
    anyhow::ensure!(
        args.checkpoint.is_none() || args.containers.len() == 1,
        "you cannot restore multiple containers from one checkpoint"
    );
    let mode = if attach {
        Attach::Attached
    } else {
        Attach::Detached
    };
    for_each_container(
        &engine,
        &args.containers,
        "start",
        |c| engine.start_from(c.id(), mode, args.checkpoint.as_deref()),
        |name, exit| match exit {
            Some(exit) if exit.status() != 0 => Err(ExitStatus(exit.status()).into()),
            Some(_) => Ok(()),
            None => emit(&format!("{name}\n")),
        },
    )
}
