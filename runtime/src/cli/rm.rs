//! `nook rm [-f] [-v] CONTAINER...`: delete containers and their writable layers (and with
//! `-v` the anonymous volumes only they used).

use super::{emit, for_each_container, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = ctx.engine();
    for_each_container(
        &engine,
        &args.containers,
        "remove",
        |c| engine.remove(c, args.force, args.volumes),
        |name, ()| emit(&format!("{name}\n")),
    )
}
