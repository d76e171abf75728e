//! `nook start [-a] [-i] CONTAINER...`

use nook::container::monitor::Attach;

use super::status::ExitStatus;
use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    interactive: bool,
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
    let mut failed = Vec::new();
    for name in &args.containers {
        let result = engine.containers.find(name).and_then(|c| {
            let mode = if attach {
                Attach::Attached
            } else {
                Attach::Detached
            };
            engine.start(c.id(), mode)
        });
        match result {
            Ok(Some(exit)) if exit.status() != 0 => return Err(ExitStatus(exit.status()).into()),
            Ok(Some(_)) => {}
            Ok(None) => emit(&format!("{name}\n"))?,
            Err(e) => {
                eprintln!(
                    "Error response from daemon: {}",
                    nook::container::monitor::error_chain(&e)
                );
                failed.push(name.clone());
            }
        }
    }
    anyhow::ensure!(
        failed.is_empty(),
        "failed to start containers: {}",
        failed.join(", ")
    );
    Ok(())
}
