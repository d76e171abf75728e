//! `nook inspect [--format F] [--type T] NAME...`: containers (state, config, writable layer)
//! and images (config, manifest, layers, diff ids and sizes) as JSON; a name is looked up
//! among containers first, as docker does.

use anyhow::Context as _;
use serde_json::{json, Value};

use nook::image::digest::chain_id;
use nook::image::Image;

use super::format::{self, Format};
use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Format output: json (default) or a Go template like '{{.Id}}' or '{{json .Config}}'
    #[arg(short, long)]
    format: Option<String>,
    /// Only look up this kind of object
    #[arg(long = "type", value_parser = ["image", "container"])]
    kind: Option<String>,
    /// Containers (name or id) or images (name, name:tag, name@digest, or id) to inspect
    #[arg(required = true)]
    images: Vec<String>,
}

/// Docker's image inspect object, plus the manifest and per-layer details nook knows.
pub fn inspect_json(image: &Image) -> anyhow::Result<Value> {
    let config = &image.config;
    let diff_ids = image.diff_ids()?;
    let layers: Vec<Value> = image
        .manifest
        .layers()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!({
                "Digest": l.digest().to_string(),
                "MediaType": l.media_type().to_string(),
                "Size": l.size(),
                "DiffID": diff_ids.get(i).map(|d| d.to_string()),
            })
        })
        .collect();
    let repo_digests: Vec<String> = {
        let mut names: Vec<String> = image
            .tags
            .iter()
            .map(|t| format!("{}@{}", t.familiar_name(), image.manifest_digest))
            .collect();
        names.dedup();
        names
    };
    let runtime_config = match config.config() {
        Some(c) => serde_json::to_value(c).context("cannot encode the image config")?,
        None => Value::Null,
    };
    let comment = config
        .history()
        .as_ref()
        .and_then(|h| h.last())
        .and_then(|h| h.comment().clone())
        .unwrap_or_default();
    Ok(json!({
        "Id": image.config_digest.to_string(),
        "RepoTags": image.tags.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": comment,
        "Created": config.created(),
        "Author": config.author().clone().unwrap_or_default(),
        "Config": runtime_config,
        "Architecture": config.architecture().to_string(),
        "Variant": config.variant(),
        "Os": config.os().to_string(),
        "Size": image.size(),
        "RootFS": {
            "Type": config.rootfs().typ(),
            "Layers": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        },
        "ChainID": chain_id(&diff_ids).map(|d| d.to_string()),
        "Manifest": {
            "Digest": image.manifest_digest.to_string(),
            "MediaType": image
                .manifest
                .media_type()
                .as_ref()
                .map_or_else(|| "application/vnd.oci.image.manifest.v1+json".to_string(), |m| m.to_string()),
            "Size": image.manifest_size,
        },
        "Layers": layers,
        "Metadata": { "LastTagTime": Value::Null },
    }))
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let engine = ctx.engine();
    let mut values = Vec::new();
    let mut missing: Vec<anyhow::Error> = Vec::new();
    for name in &args.images {
        if args.kind.as_deref() != Some("image") {
            match engine.containers.find(name) {
                Ok(c) => {
                    values.push(super::container_inspect::inspect_json(&engine, &c));
                    continue;
                }
                Err(e) if args.kind.as_deref() == Some("container") => {
                    missing.push(e.into());
                    continue;
                }
                Err(_) => {}
            }
        }
        match store.resolve(name) {
            Ok(image) => values.push(inspect_json(&image)?),
            Err(e) => missing.push(e.into()),
        }
    }
    match Format::parse(args.format.as_deref()) {
        Format::Table | Format::Json => {
            let text = serde_json::to_string_pretty(&Value::Array(values))
                .context("cannot encode the inspect output")?;
            emit(&format!("{text}\n"))?;
        }
        Format::Template(t) => emit(&format::template_lines(&t, &values)?)?,
    }
    // Like docker: print what was found, then fail naming what was not.
    match missing.len() {
        0 => Ok(()),
        1 => Err(missing.remove(0)),
        _ => anyhow::bail!(
            "{}",
            missing
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}
