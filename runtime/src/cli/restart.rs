//! `nook restart [-t SECONDS] CONTAINER...`: stop (if running), then start in the background.

use std::time::Duration;

use nook::container::monitor::Attach;

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
        "restart",
        |c| {
            if let Some(n) = engine.stop(c, timeout)? {
                eprintln!("nook: warning: {n}");
            }
            engine.start(c.id(), Attach::Detached)
        },
        |name, _| emit(&format!("{name}\n")),
    )
}
