//! `nook update [OPTIONS] CONTAINER...`: docker's update of the resource limits. A running
//! namespace-column container's cgroup is written at once; a stopped container takes the new
//! limits at its next start; a running VM keeps the size it booted with (refused, saying so).

use anyhow::Context as _;

use nook::isolation::limits::Limits;

use super::limit_flags::LimitFlags;
use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    resources: LimitFlags,
    #[arg(required = true)]
    containers: Vec<String>,
}

impl Args {
    fn change(&self) -> anyhow::Result<Limits> {
        // docker's range of the host's CPUs, whatever the column (as update always had).
        let change = self.resources.limits(false)?;
        anyhow::ensure!(
            !change.is_default(),
            "you must provide one or more flags when using this command"
        );
        Ok(change)
    }
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let change = args.change()?;
    let engine = ctx.engine();
    for name in &args.containers {
        let container = engine.containers.find(name)?;
        engine
            .update(&container, &change)
            .with_context(|| format!("cannot update container {name}"))?;
        emit(&format!("{name}\n"))?;
    }
    Ok(())
}
