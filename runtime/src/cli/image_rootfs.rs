//! `nook image rootfs IMAGE`: build (once) and print the path of the image's flattened,
//! read-only EROFS root filesystem, the disk a microVM boots the image from.

use nook::image::rootfs_cache::ensure_rootfs;

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// The image (name, name:tag, or id)
    image: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let image = store.resolve(&args.image)?;
    let rootfs = ensure_rootfs(&store, &image)?;
    emit(&format!("{}\n", rootfs.path.display()))
}
