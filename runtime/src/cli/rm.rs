//! `nook rm [-f] CONTAINER...`: delete containers and their writable layers.

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = ctx.engine();
    let mut failed = Vec::new();
    for name in &args.containers {
        match engine
            .containers
            .find(name)
            .and_then(|c| engine.remove(&c, args.force))
        {
            Ok(()) => emit(&format!("{name}\n"))?,
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
        "failed to remove containers: {}",
        failed.join(", ")
    );
    Ok(())
}
