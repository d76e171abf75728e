//! `nook stats [--no-stream] [--format F] [-a] [CONTAINER...]`: what running containers
//! consume, docker's columns (CPU %, MEM USAGE / LIMIT, MEM %, NET I/O, BLOCK I/O, PIDS), read
//! from each container's cgroup, or from /proc when it has none. A VM container's columns are
//! the guest's own counters, read by its agent; the VMM's as the host sees them (its cgroup, or
//! its process) are the `HostCPUPerc` and `HostMemUsage` fields of `--format`. CPU % is
//! measured over one second between two readings.

use std::time::Duration;

use serde_json::{json, Value};

use nook::container::state::Status;
use nook::container::store::Container;
use nook::isolation::limits::stats::{cpu_percent, host_cpu_percent, Sample};

use super::format::{self, Format};
use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    format: Option<String>,
    containers: Vec<String>,
}

/// Between the two readings CPU % is measured over (docker's interval).
const INTERVAL: Duration = Duration::from_secs(1);

/// A reading of a running container (None for one that is not running).
fn sample(c: &Container) -> Option<Sample> {
    let Status::Running { init, cgroup, .. } = c.status() else {
        return None;
    };
    c.config
        .isolation
        .sample(c.id(), init.pid, cgroup.as_deref())
        .ok()
}

/// docker's binary sizes for memory (`units.BytesSize`): 4 significant digits.
fn binary(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{}{}", trim(&format!("{v:.4}"), 4), units[i])
}

/// docker's decimal sizes for I/O (`units.HumanSizeWithPrecision(v, 3)`).
fn decimal(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", trim(&format!("{v:.3}"), 3), units[i])
}

/// `%.Ng`: `digits` significant digits, no trailing zeros.
fn trim(fixed: &str, digits: usize) -> String {
    let int_len = fixed.split('.').next().map_or(0, str::len);
    let decimals = digits.saturating_sub(int_len);
    let v: f64 = fixed.parse().unwrap_or(0.0);
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn row(c: &Container, before: Option<Sample>, after: Option<Sample>, no_trunc: bool) -> Value {
    let host = match (&before, &after) {
        (Some(b), Some(a)) => host_cpu_percent(b, a).zip(a.host),
        _ => None,
    };
    let id = if no_trunc {
        c.id().to_string()
    } else {
        c.id().chars().take(12).collect()
    };
    let dash = || "--".to_string();
    let (cpu, mem, mem_pct, net, block, pids) = match (before, after) {
        (Some(b), Some(a)) => (
            format!("{:.2}%", cpu_percent(&b, &a)),
            format!("{} / {}", binary(a.memory), binary(a.memory_limit)),
            format!(
                "{:.2}%",
                a.memory as f64 / a.memory_limit.max(1) as f64 * 100.0
            ),
            format!("{} / {}", decimal(a.net_rx), decimal(a.net_tx)),
            format!("{} / {}", decimal(a.block_read), decimal(a.block_write)),
            a.pids.to_string(),
        ),
        _ => (
            "0.00%".into(),
            "0B / 0B".into(),
            "0.00%".into(),
            "0B / 0B".into(),
            "0B / 0B".into(),
            "0".into(),
        ),
    };
    let mut row = json!({
        "BlockIO": block,
        "CPUPerc": cpu,
        "Container": id,
        "ID": id,
        "MemPerc": mem_pct,
        "MemUsage": mem,
        "Name": if c.name().is_empty() { dash() } else { c.name().to_string() },
        "NetIO": net,
        "PIDs": pids,
    });
    if let Some((cpu, usage)) = host {
        row["HostCPUPerc"] = format!("{cpu:.2}%").into();
        row["HostMemUsage"] = binary(usage.memory).into();
    }
    row
}

fn render(rows: &[Value], format: &Format) -> anyhow::Result<String> {
    let text = |r: &Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
    Ok(match format {
        Format::Table => format::table(
            &[
                "CONTAINER ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "NET I/O",
                "BLOCK I/O",
                "PIDS",
            ],
            &rows
                .iter()
                .map(|r| {
                    [
                        "ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs",
                    ]
                    .iter()
                    .map(|k| text(r, k))
                    .collect()
                })
                .collect::<Vec<_>>(),
        ),
        Format::Json => format::json_lines(rows),
        Format::Template(t) => format::template_lines(t, rows)?,
    })
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = ctx.engine();
    let format = Format::parse(args.format.as_deref());
    loop {
        let containers: Vec<Container> = if args.containers.is_empty() {
            engine
                .containers
                .list()?
                .into_iter()
                .filter(|c| args.all || c.status().is_running())
                .collect()
        } else {
            args.containers
                .iter()
                .map(|n| engine.containers.find(n))
                .collect::<Result<_, _>>()?
        };
        let before: Vec<_> = containers.iter().map(sample).collect();
        std::thread::sleep(INTERVAL);
        let rows: Vec<Value> = containers
            .iter()
            .zip(before)
            .map(|(c, b)| row(c, b, sample(c), args.no_trunc))
            .collect();
        let out = render(&rows, &format)?;
        if args.no_stream {
            return emit(&out);
        }
        // docker's redraw: clear the screen, home the cursor.
        emit(&format!("\x1b[2J\x1b[H{out}"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(binary(0), "0B");
        assert_eq!(binary(1536), "1.5KiB");
        assert_eq!(binary(256 << 20), "256MiB");
        assert_eq!(binary(1_500_000_000), "1.397GiB");
        assert_eq!(decimal(0), "0B");
        assert_eq!(decimal(1234), "1.23kB");
        assert_eq!(decimal(999), "999B");
        assert_eq!(decimal(12_345_678), "12.3MB");
    }
}
