//! `nook rmi [-f] IMAGE...`: untag, and delete images left without tags (and their blobs).

use nook::image::Reference;

use super::format::human_size;
use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Remove the image even when removing it by id would drop tags of several repositories
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
        if report.bytes > 0 {
            out.push_str(&format!("Reclaimed: {}\n", human_size(report.bytes)));
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
