//! `nook diff CONTAINER`: the writable layer's changes as `A`/`C`/`D` lines, like docker.

use nook::container::snapshot;

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    container: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = ctx.engine();
    let container = engine.containers.find(&args.container)?;
    let changes = snapshot::diff(&engine, &container)?;
    let text: String = changes.iter().map(|c| format!("{c}\n")).collect();
    emit(&text)
}
