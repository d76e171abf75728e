//! `nook image prune [-f]`: remove untagged images, then every blob no image references, the
//! EROFS images and unpacked trees of images no longer in the store (unless a container uses
//! them), and what interrupted commands left (temp files and directories of processes that are
//! gone, unfinished creates); reports the bytes all of that took.

use std::io::BufRead;

use nook::container::gc;
use nook::image::rootfs_cache::prune_rootfs;

use super::format::human_size;
use super::{emit, in_use, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    if !args.force {
        eprint!("WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] ");
        // A terminal answers interactively; a pipe answers with its first line.
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(());
        }
    }
    let store = ctx.store()?;
    // Untagged images that containers still use are kept.
    let mut keep = std::collections::BTreeSet::new();
    for image in store.images()? {
        if image.tags.is_empty() && !in_use::users(ctx, &image)?.is_empty() {
            keep.insert(image.manifest_digest.clone());
        }
    }
    let removed = store.remove_dangling(&keep)?;
    let report = store.gc()?;
    let rootfs_bytes = prune_rootfs(&store)?;
    let engine = ctx.engine();
    let trees = gc::prune_trees(&engine, &store)?;
    let leftovers = gc::prune_leftovers(&engine)?;
    let mut out = String::new();
    if !removed.is_empty() || !report.blobs.is_empty() {
        out.push_str("Deleted Images:\n");
        for d in &removed {
            out.push_str(&format!("untagged: {d}\n"));
        }
        for d in &report.blobs {
            out.push_str(&format!("deleted: {d}\n"));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(report.bytes + rootfs_bytes + trees.bytes + leftovers.bytes)
    ));
    emit(&out)
}
