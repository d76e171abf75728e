//! `nook wait CONTAINER...`: block until each stops, print its exit code.

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = ctx.engine();
    for name in &args.containers {
        let container = engine.containers.find(name)?;
        let code = engine.wait(&container)?;
        emit(&format!("{code}\n"))?;
    }
    Ok(())
}
