//! `nook stop [-t SECONDS] CONTAINER...`: SIGTERM, then SIGKILL after the timeout.

use std::time::Duration;

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds to wait before killing the container
    #[arg(short, long, default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = ctx.engine();
    let mut failed = Vec::new();
    for name in &args.containers {
        let result = engine
            .containers
            .find(name)
            .and_then(|c| engine.stop(&c, Duration::from_secs(args.time)));
        match result {
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
        "failed to stop containers: {}",
        failed.join(", ")
    );
    Ok(())
}
