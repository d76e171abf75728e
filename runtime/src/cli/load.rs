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
    // Which image each tag named before, to report tags the archive moves (as docker does).
    let before: Vec<(String, String)> = store
        .images()?
        .iter()
        .flat_map(|i| {
            i.tags
                .iter()
                .map(|t| (t.familiar(), i.config_digest.to_string()))
        })
        .collect();
    let loaded = load(&store, input, &name)?;
    if args.quiet {
        return Ok(());
    }
    let mut out = String::new();
    for l in &loaded {
        for t in &l.tags {
            let tag = t.familiar();
            let id = l.image.config_digest.to_string();
            if let Some((_, old)) = before.iter().find(|(b, old)| b == &tag && old != &id) {
                out.push_str(&format!(
                    "The image {tag} already exists, renaming the old one with ID {old} to empty string\n"
                ));
            }
        }
    }
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
