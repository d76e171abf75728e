//! `nook ps [-a] [-q] [-n N] [-l] [-f KEY=VALUE] [--no-trunc] [--format F]`: list containers,
//! docker's columns.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use nook::container::id::short;
use nook::container::state::Status;
use nook::container::store::Container;

use super::format::{self, Format};
use super::ps_filter::Filters;
use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long)]
    last: Option<usize>,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    latest: bool,
    /// Filter output: id, name, status, exited, ancestor or isolation (KEY=VALUE)
    #[arg(short, long)]
    filter: Vec<String>,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Format output: table, json, or a Go template like '{{.Names}}'
    #[arg(long)]
    format: Option<String>,
}

fn age(t: DateTime<Utc>) -> String {
    format::human_duration(Utc::now().signed_duration_since(t).num_seconds())
}

/// Docker's STATUS column: `Up 3 seconds`, `Exited (0) 2 minutes ago`, `Created`.
pub fn status_text(status: &Status) -> String {
    match status {
        Status::Created => "Created".into(),
        Status::Running { started_at, .. } => format!("Up {}", age(*started_at)),
        Status::Exited {
            code, finished_at, ..
        } => format!("Exited ({code}) {} ago", age(*finished_at)),
    }
}

fn command_text(c: &Container, no_trunc: bool) -> String {
    let cmd = c.config.launch.process.argv.join(" ");
    if no_trunc || cmd.chars().count() <= 20 {
        format!("\"{cmd}\"")
    } else {
        format!("\"{}…\"", cmd.chars().take(19).collect::<String>())
    }
}

fn row_json(c: &Container, status: &Status, no_trunc: bool) -> Value {
    let id = if no_trunc { c.id() } else { short(c.id()) };
    json!({
        "ID": id,
        "Image": c.config.image,
        "Command": command_text(c, no_trunc),
        "CreatedAt": c.config.created.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        "RunningFor": format!("{} ago", age(c.config.created)),
        "Status": status_text(status),
        "State": status.name(),
        "Ports": c.config.launch.network.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "),
        "Names": c.name(),
        "Isolation": c.config.isolation.name(),
    })
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let filters = Filters::parse(&args.filter)?;
    let last = if args.latest { Some(1) } else { args.last };
    let engine = ctx.engine();
    let mut rows = Vec::new();
    // Newest first, as docker lists them. -n, -l and a status filter count every state.
    let every_state = args.all || last.is_some() || filters.selects_state();
    for c in engine.containers.list()?.into_iter().rev() {
        if last.is_some_and(|n| rows.len() >= n) {
            break;
        }
        let status = c.status();
        if (every_state || status.is_running()) && filters.matches(&c, &status) {
            rows.push(row_json(&c, &status, args.no_trunc));
        }
    }
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    if args.quiet {
        let ids: String = rows
            .iter()
            .map(|r| format!("{}\n", text(r, "ID")))
            .collect();
        return emit(&ids);
    }
    match Format::parse(args.format.as_deref()) {
        Format::Table => {
            let cols = [
                "ID",
                "Image",
                "Command",
                "RunningFor",
                "Status",
                "Ports",
                "Names",
            ];
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| cols.iter().map(|k| text(r, k)).collect())
                .collect();
            emit(&format::table(
                &[
                    "CONTAINER ID",
                    "IMAGE",
                    "COMMAND",
                    "CREATED",
                    "STATUS",
                    "PORTS",
                    "NAMES",
                ],
                &table,
            ))
        }
        Format::Json => emit(&format::json_lines(&rows)),
        Format::Template(t) => emit(&format::template_lines(&t, &rows)?),
    }
}
