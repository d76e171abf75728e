//! `nook load [-i FILE] [-q]`: docker save archives and OCI archives, from a file or STDIN.

use std::fs::File;
use std::io::Read;

use anyhow::Context as _;
use nook::image::archive::load::load;

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    input: Option<String>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let (input, name): (Box<dyn Read>, String) = match &args.input {
        Some(path) if path != "-" => (
            Box::new(File::open(path).with_context(|| format!("cannot open {path}"))?),
            path.clone(),
        ),
        _ => (Box::new(std::io::stdin().lock()), "(stdin)".to_string()),
    };
    let store = ctx.store()?;
    let loaded = load(&store, input, &name)?;
    if args.quiet {
        return Ok(());
    }
    let mut out = String::new();
    for l in &loaded {
        if l.tags.is_empty() {
            out.push_str(&format!("Loaded image ID: {}\n", l.image.config_digest));
        }
        for t in &l.tags {
            out.push_str(&format!("Loaded image: {}\n", t.familiar()));
        }
    }
    emit(&out)
}
