//! `nook image default [--busybox PATH]`: create the built-in default image `busybox:latest`
//! from the host's static busybox (idempotent).

use std::path::PathBuf;

use nook::image::builtin::{create_default_image, DEFAULT_BUSYBOX};

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// The static busybox binary to build the image from
    #[arg(long, default_value = DEFAULT_BUSYBOX)]
    busybox: PathBuf,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let (image, created) = create_default_image(&store, &args.busybox)?;
    let verb = if created { "Created" } else { "Up to date" };
    emit(&format!(
        "{verb}: {} {}\n",
        image.display_name(),
        image.config_digest
    ))
}
