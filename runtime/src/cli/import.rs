//! `nook import [--change INSTR]... [--message MSG] FILE|- [REPOSITORY[:TAG]]`

use std::fs::File;
use std::io::Read;

use anyhow::Context as _;
use nook::image::config::{apply_change, empty_config};
use nook::image::import::{import, ImportOptions};
use nook::image::Reference;

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    /// Set the commit message for the imported image
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// The rootfs tarball (plain, gzip or zstd), or - for STDIN
    file: String,
    /// The name to give the image
    reference: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let mut config = empty_config();
    for change in &args.changes {
        apply_change(&mut config, change)?;
    }
    let tags = match &args.reference {
        Some(r) => vec![parse_tag(r)?],
        None => Vec::new(),
    };
    let input: Box<dyn Read> = if args.file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(&args.file).with_context(|| format!("cannot open {}", args.file))?)
    };
    let store = ctx.store()?;
    let options = ImportOptions {
        config,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        comment: args
            .message
            .unwrap_or_else(|| format!("Imported from {}", args.file)),
        created_by: None,
        tags,
    };
    let image = import(&store, input, &args.file, options)?;
    emit(&format!("{}\n", image.config_digest))
}

/// A reference to tag with: a name with an optional tag, not a digest.
pub fn parse_tag(s: &str) -> anyhow::Result<Reference> {
    let r = Reference::parse(s)?;
    if r.digest().is_some() {
        anyhow::bail!("refusing to create a tag with a digest reference: {s}");
    }
    Ok(r)
}
