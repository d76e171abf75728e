//! `nook images [-a] [-q] [--digests] [--no-trunc] [--format F] [REPOSITORY[:TAG]]`

use serde_json::{json, Value};

use nook::image::{Image, Reference};

use super::format::{self, Format};
use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Show all images (nook keeps no intermediate images, so this is the default listing)
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Format output: table, json, or a Go template like '{{.Repository}}:{{.Tag}}'
    #[arg(long)]
    format: Option<String>,
    /// Only images of this repository (and tag)
    reference: Option<String>,
}

/// One row: an image under one of its tags (or `<none>`).
fn rows<'a>(
    images: &'a [Image],
    filter: Option<&Reference>,
) -> Vec<(Option<Reference>, &'a Image)> {
    let mut rows = Vec::new();
    for image in images {
        if image.tags.is_empty() {
            if filter.is_none() {
                rows.push((None, image));
            }
            continue;
        }
        for tag in &image.tags {
            let keep = match filter {
                None => true,
                Some(f) => f.name() == tag.name() && f.tag().is_none_or(|t| Some(t) == tag.tag()),
            };
            if keep {
                rows.push((Some(tag.clone()), image));
            }
        }
    }
    rows
}

fn row_json(tag: Option<&Reference>, image: &Image, no_trunc: bool) -> Value {
    let created = image.config.created().as_deref();
    let id = if no_trunc {
        image.config_digest.to_string()
    } else {
        image.config_digest.short().to_string()
    };
    let size = format::human_size(image.size());
    json!({
        "Containers": "N/A",
        "CreatedAt": format::created_at(created),
        "CreatedSince": format::since(created),
        "Digest": image.manifest_digest.to_string(),
        "ID": id,
        "Repository": tag.map_or("<none>".to_string(), Reference::familiar_name),
        "SharedSize": "N/A",
        "Size": size,
        "Tag": tag.and_then(Reference::tag).unwrap_or("<none>"),
        "UniqueSize": "N/A",
        "VirtualSize": size,
    })
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let _ = args.all;
    let filter = args
        .reference
        .as_deref()
        .map(Reference::parse_name_only)
        .transpose()?;
    let store = ctx.store()?;
    let mut images = store.images()?;
    // Newest first, like docker.
    images.sort_by(|a, b| b.config.created().cmp(a.config.created()));
    let rows = rows(&images, filter.as_ref());
    if args.quiet {
        let mut seen = Vec::new();
        let mut out = String::new();
        for (_, image) in &rows {
            if !seen.contains(&&image.config_digest) {
                seen.push(&image.config_digest);
                let id = if args.no_trunc {
                    image.config_digest.to_string()
                } else {
                    image.config_digest.short().to_string()
                };
                out.push_str(&id);
                out.push('\n');
            }
        }
        return emit(&out);
    }
    let values: Vec<Value> = rows
        .iter()
        .map(|(tag, image)| row_json(tag.as_ref(), image, args.no_trunc))
        .collect();
    match Format::parse(args.format.as_deref()) {
        Format::Json => emit(&format::json_lines(&values)),
        Format::Template(t) => emit(&format::template_lines(&t, &values)?),
        Format::Table => {
            let mut headers = vec!["REPOSITORY", "TAG"];
            if args.digests {
                headers.push("DIGEST");
            }
            headers.extend(["IMAGE ID", "CREATED", "SIZE"]);
            let table_rows: Vec<Vec<String>> = values
                .iter()
                .map(|v| {
                    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                    let mut row = vec![s("Repository"), s("Tag")];
                    if args.digests {
                        row.push(s("Digest"));
                    }
                    row.extend([s("ID"), s("CreatedSince"), s("Size")]);
                    row
                })
                .collect();
            emit(&format::table(&headers, &table_rows))
        }
    }
}
