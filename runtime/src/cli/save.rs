//! `nook save [-o FILE] IMAGE...`: an OCI archive (with a docker manifest.json) of the images.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Context as _;
use nook::image::archive::save::{save, SaveItem};
use nook::image::Reference;
use nook::util::atomic::TempFile;

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<String>,
    /// Images to save (name, name:tag, or id)
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let mut items: Vec<SaveItem> = Vec::new();
    for name in &args.images {
        let image = store.resolve(name)?;
        // A name saves that tag; an id saves the image with all of its tags.
        let tags = match Reference::parse(name) {
            Ok(r) if image.tags.contains(&r) => vec![r],
            _ => image.tags.clone(),
        };
        match items
            .iter_mut()
            .find(|i| i.image.manifest_digest == image.manifest_digest)
        {
            Some(item) => {
                for t in tags {
                    if !item.tags.contains(&t) {
                        item.tags.push(t);
                    }
                }
            }
            None => items.push(SaveItem { image, tags }),
        }
    }
    match args.output.as_deref() {
        Some(path) if path != "-" => {
            // Written beside the target and renamed, so a failure leaves no partial archive.
            let path = Path::new(path);
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let mut tmp = TempFile::new_in(dir, ".nook-save-")
                .with_context(|| format!("cannot write {}", path.display()))?;
            save(&store, &items, std::io::BufWriter::new(tmp.file_mut()))?;
            tmp.persist(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        _ => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                anyhow::bail!(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect"
                );
            }
            let mut lock = stdout.lock();
            save(&store, &items, &mut lock)?;
            lock.flush().context("cannot write to stdout")?;
        }
    }
    Ok(())
}
