//! `nook export [-o FILE] CONTAINER`: the container's filesystem as a tar archive.

use std::fs::File;
use std::io::IsTerminal as _;
use std::os::fd::AsFd as _;

use anyhow::Context as _;

use nook::container::snapshot;

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<std::path::PathBuf>,
    container: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = ctx.engine();
    let container = engine.containers.find(&args.container)?;
    let out = match &args.output {
        Some(path) => {
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?
        }
        None => {
            anyhow::ensure!(
                !std::io::stdout().is_terminal(),
                "cowardly refusing to save to a terminal. Use the -o flag or redirect"
            );
            let fd = std::io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .context("cannot use stdout")?;
            File::from(fd)
        }
    };
    snapshot::export(&engine, &container, out)?;
    Ok(())
}
