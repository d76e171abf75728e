//! `nook stop [-t SECONDS] CONTAINER...`: SIGTERM, then SIGKILL after the timeout.

use std::time::Duration;

use super::{emit, for_each_container, Context};

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
    let timeout = Duration::from_secs(args.time);
    for_each_container(
        &engine,
        &args.containers,
        "stop",
        |c| engine.stop(c, timeout),
        |name, notice| {
            if let Some(n) = notice {
                eprintln!("nook: warning: {n}");
            }
            emit(&format!("{name}\n"))
        },
    )
}
