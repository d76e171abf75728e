//! `nook volume create|ls|inspect|rm|prune`: docker's volume verbs, over the store's volumes
//! (`nook::volume`) and the container rules that keep a used volume (`container::volumes`).

use std::collections::BTreeMap;
use std::io::BufRead;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{json, Value};

use nook::container::volumes;
use nook::util::lock::LockMode;
use nook::volume::{Volume, VolumeStore};

use super::format::{self, Format};
use super::{emit, Context};

#[derive(Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list", name = "ls")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove", name = "rm")]
    Rm(RmArgs),
    /// Remove unused volumes (anonymous ones; all unused ones with --all)
    Prune(PruneArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Specify volume driver name (only "local")
    #[arg(short, long, default_value = "local")]
    driver: String,
    /// Set metadata for a volume
    #[arg(long, value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// The volume's name (a random one when none is given)
    name: Option<String>,
}

#[derive(clap::Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    quiet: bool,
    /// Format output: table, json, or a Go template like '{{.Name}}'
    #[arg(long)]
    format: Option<String>,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Format output: json, or a Go template like '{{.Mountpoint}}'
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    volumes: Vec<String>,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes, even when a container uses them
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    volumes: Vec<String>,
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn run(command: Command, ctx: &Context) -> anyhow::Result<()> {
    match command {
        Command::Create(a) => create(a, ctx),
        Command::Ls(a) => ls(a, ctx),
        Command::Inspect(a) => inspect(a, ctx),
        Command::Rm(a) => rm(a, ctx),
        Command::Prune(a) => prune(a, ctx),
    }
}

fn create(args: CreateArgs, ctx: &Context) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.driver == "local",
        "create {}: volume driver {:?} is not available: nook has only \"local\"",
        args.name.as_deref().unwrap_or(""),
        args.driver
    );
    let mut labels = BTreeMap::new();
    for l in &args.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let store = VolumeStore::new(&ctx.store_root);
    let _lock = store.lock(LockMode::Exclusive)?;
    let volume = match &args.name {
        Some(name) => store.ensure(name, labels, false)?.0,
        None => {
            store
                .ensure(&nook::volume::random_name()?, labels, false)?
                .0
        }
    };
    emit(&format!("{}\n", volume.name))
}

/// docker's `volume inspect` object.
fn inspect_json(v: &Volume) -> Value {
    json!({
        "CreatedAt": v.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "Driver": "local",
        "Labels": if v.labels.is_empty() { Value::Null } else { json!(v.labels) },
        "Mountpoint": v.mountpoint.to_string_lossy(),
        "Name": v.name,
        "Options": Value::Null,
        "Scope": "local",
    })
}

fn ls(args: LsArgs, ctx: &Context) -> anyhow::Result<()> {
    let list = VolumeStore::new(&ctx.store_root).list()?;
    if args.quiet {
        return emit(
            &list
                .iter()
                .map(|v| format!("{}\n", v.name))
                .collect::<String>(),
        );
    }
    let rows: Vec<Value> = list
        .iter()
        .map(|v| {
            let labels: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            json!({
                "Availability": "N/A",
                "Driver": "local",
                "Group": "N/A",
                "Labels": labels.join(","),
                "Links": "N/A",
                "Mountpoint": v.mountpoint.to_string_lossy(),
                "Name": v.name,
                "Scope": "local",
                "Size": "N/A",
                "Status": "N/A",
            })
        })
        .collect();
    match Format::parse(args.format.as_deref()) {
        Format::Table => {
            let table: Vec<Vec<String>> = list
                .iter()
                .map(|v| vec!["local".to_string(), v.name.clone()])
                .collect();
            emit(&format::table(&["DRIVER", "VOLUME NAME"], &table))
        }
        Format::Json => emit(&format::json_lines(&rows)),
        Format::Template(t) => emit(&format::template_lines(&t, &rows)?),
    }
}

fn inspect(args: InspectArgs, ctx: &Context) -> anyhow::Result<()> {
    let store = VolumeStore::new(&ctx.store_root);
    let mut values = Vec::new();
    let mut missing = Vec::new();
    for name in &args.volumes {
        match store.get(name) {
            Ok(v) => values.push(inspect_json(&v)),
            Err(e) => missing.push(e.to_string()),
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
    anyhow::ensure!(missing.is_empty(), "{}", missing.join("; "));
    Ok(())
}

fn rm(args: RmArgs, ctx: &Context) -> anyhow::Result<()> {
    let store = VolumeStore::new(&ctx.store_root);
    let engine = ctx.engine();
    let mut failed = Vec::new();
    for name in &args.volumes {
        match volumes::remove(&store, &engine.containers, &engine.host, name, args.force) {
            Ok(_) => emit(&format!("{name}\n"))?,
            // docker's -f: a volume already gone is no error.
            Err(nook::container::store::ContainerError::Volume(
                nook::volume::VolumeError::NotFound(_),
            )) if args.force => emit(&format!("{name}\n"))?,
            Err(e) => {
                eprintln!("Error: {}", nook::errors::chain(&e));
                failed.push(name.as_str());
            }
        }
    }
    anyhow::ensure!(
        failed.is_empty(),
        "failed to remove volumes: {}",
        failed.join(", ")
    );
    Ok(())
}

fn prune(args: PruneArgs, ctx: &Context) -> anyhow::Result<()> {
    if !args.force {
        let what = if args.all {
            "all local volumes not used by at least one container"
        } else {
            "all anonymous local volumes not used by at least one container"
        };
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(());
        }
    }
    let store = VolumeStore::new(&ctx.store_root);
    let engine = ctx.engine();
    let (names, bytes) = volumes::prune(&store, &engine.containers, &engine.host, args.all)?;
    let mut out = String::new();
    if !names.is_empty() {
        out.push_str("Deleted Volumes:\n");
        for n in &names {
            out.push_str(&format!("{n}\n"));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        format::human_size(bytes)
    ));
    emit(&out)
}
