//! `nook commit [-m MSG] [-a AUTHOR] [-c CHANGE] CONTAINER [REPOSITORY[:TAG]]`: a new image made
//! of the container's image plus its writable layer.

use anyhow::Context as _;

use nook::container::snapshot::{self, CommitOptions};
use nook::image::Reference;

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    change: Vec<String>,
    container: String,
    /// The new image's name
    reference: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let tags = match &args.reference {
        Some(r) => {
            vec![Reference::parse(r).with_context(|| format!("invalid reference format: {r}"))?]
        }
        None => Vec::new(),
    };
    let engine = ctx.engine();
    let container = engine.containers.find(&args.container)?;
    let image = snapshot::commit(
        &engine,
        &container,
        &CommitOptions {
            tags,
            comment: args.message,
            author: args.author,
            changes: args.change,
        },
    )?;
    emit(&format!("{}\n", image.config_digest))
}
