//! `nook bench`: start-up cost of each isolation column against the peers installed here.

use std::path::PathBuf;

use anyhow::Context as _;

use nook::bench::spec::{Column, Peer};
use nook::bench::{self, BenchSpec};
use nook::image::builtin::{create_default_image, DEFAULT_BUSYBOX};

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Measured runs per column and peer
    #[arg(long, default_value_t = 10)]
    runs: u32,
    /// Unmeasured runs first, per column and peer
    #[arg(long, default_value_t = 1)]
    warmup: u32,
    /// nook's isolation columns to measure (comma-separated: container, vm (warm start),
    /// vm-cold (kernel boot))
    #[arg(long, value_delimiter = ',', default_value = "container,vm,vm-cold")]
    isolation: Vec<String>,
    /// Peers to measure when installed (comma-separated: runc, crun, qemu, firecracker; "" for none)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "runc,crun,qemu,firecracker"
    )]
    peers: Vec<String>,
    /// Also start M containers at once per column: time until all are ready, host memory
    #[arg(long, value_name = "M")]
    parallel: Option<u32>,
    /// Write the results as JSON to FILE
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw the chart as SVG into FILE
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// The image (default: the built-in busybox, created when missing)
    #[arg(default_value = "busybox")]
    image: String,
    /// The command each container runs (default: true)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    if args.image == "busybox" {
        let store = ctx.store()?;
        if store.resolve("busybox").is_err() {
            create_default_image(&store, std::path::Path::new(DEFAULT_BUSYBOX))
                .context("cannot create the built-in busybox image")?;
        }
    }
    let nook = nook::sealed_exe::nook_binary();
    let work = tempfile_dir()?;
    let cmd = if args.command.is_empty() {
        vec!["true".to_string()]
    } else {
        args.command
    };
    let columns: Vec<Column> = parse_list(&args.isolation)?;
    let peers: Vec<Peer> = parse_list(&args.peers)?;
    let spec = BenchSpec::new(
        args.runs,
        args.warmup,
        &columns,
        &peers,
        args.parallel,
        args.image,
        cmd,
        nook,
        work.clone(),
        // The program as `nook`, not as the path it was started from.
        std::iter::once("nook".to_string())
            .chain(std::env::args().skip(1))
            .collect(),
    )?;
    let report = bench::run(&spec, &mut |line| eprintln!("{line}"));
    let _ = std::fs::remove_dir_all(&work);
    let report = report?;
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        bench::svg::write(&report, path)?;
    }
    emit(&report.table())
}

/// Parses a comma-separated list; empty entries (`--peers ""`) are none.
fn parse_list<T: std::str::FromStr>(items: &[String]) -> anyhow::Result<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    items
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<T>().map_err(anyhow::Error::from))
        .collect()
}

/// A private scratch directory under the temp directory.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::temp_dir();
    for n in 0..1000 {
        let dir = base.join(format!("nook-bench-work-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    anyhow::bail!("cannot create a scratch directory under {}", base.display())
}
