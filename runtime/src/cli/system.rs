//! `nook system df [--format F]`: the disk space images, containers and volumes take, as
//! docker prints it (TYPE, TOTAL, ACTIVE, SIZE, RECLAIMABLE).
//!
//! - Images: the blobs of every image (a layer shared by two counted once) and what nook
//!   derives from them (unpacked trees, EROFS disks); active when a container uses the image;
//!   reclaimable, what only unused images hold.
//! - Containers: their writable layers (a directory, or a VM's disk file, by the blocks it
//!   takes); reclaimable, those of containers not running.
//! - Local Volumes: their data; reclaimable, that of volumes no container names.
//! - Build Cache: nook does not build images, so none.
//!
//! Files a container's subordinate ids made unreadable count 0, as for `image prune`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{json, Value};

use nook::image::rootfs_cache::{image_chain_id, rootfs_dir};
use nook::isolation::mounts::MountSpec;
use nook::volume::{disk_usage, VolumeStore};

use super::format::{self, human_size, Format};
use super::{emit, Context};

#[derive(clap::Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Show the disk space images, containers and volumes take
    Df(DfArgs),
}

#[derive(clap::Args)]
pub struct DfArgs {
    /// Format output: table, json, or a Go template like '{{.Type}} {{.Size}}'
    #[arg(long)]
    format: Option<String>,
}

pub fn run(command: Command, ctx: &Context) -> anyhow::Result<()> {
    match command {
        Command::Df(a) => df(a, ctx),
    }
}

/// One line of the report.
#[derive(Debug, Default, PartialEq, Eq)]
struct Usage {
    total: usize,
    active: usize,
    size: u64,
    reclaimable: u64,
}

impl Usage {
    fn reclaimable_text(&self) -> String {
        if self.size == 0 {
            return human_size(self.reclaimable);
        }
        let percent = self.reclaimable * 100 / self.size;
        format!("{} ({percent}%)", human_size(self.reclaimable))
    }
}

/// What images hold: each blob by digest, each derived file by the image chain it comes from,
/// and whether an image in use needs it.
fn images(ctx: &Context, used: &BTreeSet<String>) -> anyhow::Result<Usage> {
    let store = ctx.store()?;
    let images = store.images()?;
    let cache = rootfs_dir(&store);
    // digest -> (size, needed by an image in use)
    let mut blobs: BTreeMap<String, (u64, bool)> = BTreeMap::new();
    let mut chains: BTreeMap<String, bool> = BTreeMap::new();
    let mut usage = Usage {
        total: images.len(),
        ..Usage::default()
    };
    for image in &images {
        let active = used.contains(&image.config_digest.to_string());
        usage.active += usize::from(active);
        let config = image.manifest.config();
        let parts = std::iter::once((config.digest().to_string(), config.size())).chain(
            image
                .manifest
                .layers()
                .iter()
                .map(|l| (l.digest().to_string(), l.size())),
        );
        let parts = parts.chain(Some((
            image.manifest_digest.to_string(),
            image.manifest_size,
        )));
        for (digest, size) in parts {
            let entry = blobs.entry(digest).or_insert((size, false));
            entry.1 |= active;
        }
        if let Ok(chain) = image_chain_id(image) {
            *chains.entry(chain.hex().to_string()).or_insert(false) |= active;
        }
    }
    for (size, active) in blobs.values() {
        usage.size += size;
        if !active {
            usage.reclaimable += size;
        }
    }
    // The EROFS disk and the unpacked trees of an image are named by its chain id.
    for entry in std::fs::read_dir(&cache).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(active) = chains.get(name.split('.').next().unwrap_or_default()) else {
            continue;
        };
        let bytes = disk_usage(&entry.path());
        usage.size += bytes;
        if !active {
            usage.reclaimable += bytes;
        }
    }
    Ok(usage)
}

fn df(args: DfArgs, ctx: &Context) -> anyhow::Result<()> {
    let engine = ctx.engine();
    let containers = engine.containers.list()?;
    let used_images: BTreeSet<String> = containers
        .iter()
        .map(|c| c.config.image_id.clone())
        .collect();
    let images = images(ctx, &used_images)?;

    let mut boxes = Usage {
        total: containers.len(),
        ..Usage::default()
    };
    let mut used_volumes = BTreeSet::new();
    for c in &containers {
        let running = c.status().is_running();
        let (_, upper, _) = c.config.isolation.layer_paths();
        let bytes = disk_usage(upper);
        boxes.active += usize::from(running);
        boxes.size += bytes;
        if !running {
            boxes.reclaimable += bytes;
        }
        for m in &c.config.launch.mounts {
            if let MountSpec::Bind {
                volume: Some(name), ..
            } = m
            {
                used_volumes.insert(name.clone());
            }
        }
    }

    let volume_store = VolumeStore::new(&ctx.store_root);
    let volumes = volume_store.list()?;
    let mut local = Usage {
        total: volumes.len(),
        ..Usage::default()
    };
    for v in &volumes {
        let data: PathBuf = volume_store.data_dir(&v.name);
        let bytes = disk_usage(&data);
        let active = used_volumes.contains(&v.name);
        local.active += usize::from(active);
        local.size += bytes;
        if !active {
            local.reclaimable += bytes;
        }
    }

    let rows = [
        ("Images", images),
        ("Containers", boxes),
        ("Local Volumes", local),
        ("Build Cache", Usage::default()),
    ];
    let values: Vec<Value> = rows
        .iter()
        .map(|(kind, u)| {
            json!({
                "Type": kind,
                "TotalCount": u.total.to_string(),
                "Active": u.active.to_string(),
                "Size": human_size(u.size),
                "Reclaimable": u.reclaimable_text(),
            })
        })
        .collect();
    let text = match Format::parse(args.format.as_deref()) {
        Format::Table => format::table(
            &["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
            &rows
                .iter()
                .map(|(kind, u)| {
                    vec![
                        kind.to_string(),
                        u.total.to_string(),
                        u.active.to_string(),
                        human_size(u.size),
                        u.reclaimable_text(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
        Format::Json => format::json_lines(&values),
        Format::Template(t) => format::template_lines(&t, &values)?,
    };
    emit(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reclaimable_is_docker_shaped() {
        let u = Usage {
            total: 5,
            active: 2,
            size: 16_430_000,
            reclaimable: 11_630_000,
        };
        assert_eq!(u.reclaimable_text(), "11.6MB (70%)");
        assert_eq!(Usage::default().reclaimable_text(), "0B");
    }
}
