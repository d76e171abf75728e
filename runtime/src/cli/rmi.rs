//! `nook rmi [-f] IMAGE...`: untag, and delete images left without tags (and their blobs).

use nook::container::gc;
use nook::image::rootfs_cache::prune_rootfs;
use nook::image::Reference;

use super::format::human_size;
use super::{emit, in_use, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Remove the image's tags even when it has tags in several repositories or containers use
    /// it (an image a container uses stays, untagged)
    #[arg(short, long)]
    force: bool,
    /// Images to remove (name, name:tag, or id)
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let mut out = String::new();
    let mut errors = Vec::new();
    let mut deleted_any = false;
    for name in &args.images {
        let result = (|| -> anyhow::Result<()> {
            let image = store.resolve(name)?;
            // Removing by a tag name only drops that tag, unless it is the image's last.
            let by_tag = Reference::parse(name)
                .ok()
                .filter(|r| r.digest().is_none() && image.tags.contains(r));
            if let Some(tag) = &by_tag {
                if image.tags.len() > 1 {
                    store.untag(tag)?;
                    out.push_str(&format!("Untagged: {}\n", tag.familiar()));
                    return Ok(());
                }
            }
            let repositories: std::collections::BTreeSet<String> =
                image.tags.iter().map(|t| t.name()).collect();
            if by_tag.is_none() && repositories.len() > 1 && !args.force {
                anyhow::bail!(
                    "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    image.config_digest.short()
                );
            }
            let users = in_use::users(ctx, &image)?;
            if let Some(user) = users.iter().find(|u| u.running) {
                anyhow::bail!(
                    "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
                    image.config_digest.short(),
                    user.container
                );
            }
            if let Some(user) = users.first() {
                if !args.force {
                    match &by_tag {
                        Some(tag) => anyhow::bail!(
                            "conflict: unable to remove repository reference {:?} (must force) - container {} is using its referenced image {}",
                            tag.familiar(),
                            user.container,
                            image.config_digest.short()
                        ),
                        None => anyhow::bail!(
                            "conflict: unable to delete {} (must be forced) - image is being used by stopped container {}",
                            image.config_digest.short(),
                            user.container
                        ),
                    }
                }
                // Forced: the tags go, the image stays for its containers.
                for tag in store.untag_all(&image.manifest_digest)? {
                    out.push_str(&format!("Untagged: {}\n", tag.familiar()));
                }
                return Ok(());
            }
            for tag in store.remove_image(&image.manifest_digest)? {
                out.push_str(&format!("Untagged: {}\n", tag.familiar()));
            }
            out.push_str(&format!("Deleted: {}\n", image.config_digest));
            deleted_any = true;
            Ok(())
        })();
        if let Err(e) = result {
            errors.push(e);
        }
    }
    if deleted_any {
        let report = store.gc()?;
        // The deleted images' EROFS images and unpacked trees go with them.
        let rootfs = prune_rootfs(&store)?;
        let trees = gc::prune_trees(&ctx.engine(), &store)?;
        let bytes = report.bytes + rootfs + trees.bytes;
        if bytes > 0 {
            out.push_str(&format!("Reclaimed: {}\n", human_size(bytes)));
        }
    }
    emit(&out)?;
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => anyhow::bail!(
            "{}",
            errors
                .iter()
                .map(|e| format!("{e:#}"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}
