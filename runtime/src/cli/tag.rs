//! `nook tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]`

use super::import::parse_tag;
use super::Context;

#[derive(clap::Args)]
pub struct Args {
    /// The image to tag (name, name:tag, or id)
    source: String,
    /// The new name
    target: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let target = parse_tag(&args.target)?;
    let store = ctx.store()?;
    let image = store.resolve(&args.source)?;
    store.set_tags(&image.manifest_digest, image.manifest_size, &[target])?;
    Ok(())
}
