//! `nook update [OPTIONS] CONTAINER...`: docker's update of the resource limits. A running
//! namespace-column container's cgroup is written at once; a stopped container takes the new
//! limits at its next start; a running VM keeps the size it booted with (refused, saying so).

use anyhow::Context as _;

use nook::isolation::limits::{self, Limits};

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Memory limit (e.g. 512m, 1g)
    #[arg(short, long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// Memory plus swap limit (-1: unlimited swap)
    #[arg(long, allow_hyphen_values = true, value_name = "SIZE")]
    memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long, allow_hyphen_values = true)]
    cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long, value_name = "SHARES")]
    cpu_shares: Option<u64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long, value_name = "CPUS")]
    cpuset_cpus: Option<String>,
    /// Tune container pids limit (0 or -1 for unlimited)
    #[arg(long, allow_hyphen_values = true, value_name = "N")]
    pids_limit: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

impl Args {
    fn change(&self) -> anyhow::Result<Limits> {
        if let Some(c) = self.cpus {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            anyhow::ensure!(
                c.is_finite() && c >= 0.01 && c <= n as f64,
                "invalid --cpus {c}: Range of CPUs is from 0.01 to {n}.00, as there are only \
                 {n} CPUs available"
            );
        }
        let change = Limits {
            memory: self
                .memory
                .as_deref()
                .map(|m| limits::parse_size("--memory", m))
                .transpose()?,
            memory_swap: self
                .memory_swap
                .as_deref()
                .map(limits::parse_swap)
                .transpose()?,
            nano_cpus: self.cpus.map(|c| (c * 1e9).round() as u64),
            cpu_shares: self.cpu_shares,
            cpuset_cpus: self
                .cpuset_cpus
                .as_deref()
                .map(limits::parse_cpuset)
                .transpose()?,
            pids_limit: self
                .pids_limit
                .as_deref()
                .map(limits::parse_pids)
                .transpose()?,
            ..Limits::default()
        };
        anyhow::ensure!(
            !change.is_default(),
            "you must provide one or more flags when using this command"
        );
        Ok(change)
    }
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let change = args.change()?;
    let engine = ctx.engine();
    for name in &args.containers {
        let container = engine.containers.find(name)?;
        engine
            .update(&container, &change)
            .with_context(|| format!("cannot update container {name}"))?;
        emit(&format!("{name}\n"))?;
    }
    Ok(())
}
