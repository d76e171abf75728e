//! `nook history [-H] [--no-trunc] [-q] [--format F] IMAGE`

use serde_json::{json, Value};

use super::format::{self, Format};
use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Format output: table, json, or a Go template like '{{.CreatedBy}}'
    #[arg(long)]
    format: Option<String>,
    /// The image (name, name:tag, or id)
    image: String,
}

/// Docker cuts the CREATED BY column at 45 characters.
const CREATED_BY_WIDTH: usize = 45;

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let image = store.resolve(&args.image)?;
    let history = image.config.history().clone().unwrap_or_default();
    let layers = image.manifest.layers();
    // Each non-empty history entry owns the next layer, base layer first.
    let mut next_layer = 0;
    let mut rows: Vec<Value> = Vec::new();
    for h in &history {
        let empty = h.empty_layer().unwrap_or(false);
        let size = if empty {
            0
        } else {
            let s = layers.get(next_layer).map_or(0, |l| l.size());
            next_layer += 1;
            s
        };
        let created = h.created().as_deref();
        let mut created_by = h.created_by().clone().unwrap_or_default();
        if !args.no_trunc && created_by.chars().count() > CREATED_BY_WIDTH {
            created_by = created_by
                .chars()
                .take(CREATED_BY_WIDTH - 1)
                .collect::<String>()
                + "…";
        }
        rows.push(json!({
            "ID": "<missing>",
            "CreatedAt": if args.human { format::created_at(created) } else { created.unwrap_or_default().to_string() },
            "CreatedSince": format::since(created),
            "CreatedBy": created_by,
            "Size": if args.human { format::human_size(size) } else { size.to_string() },
            "Comment": h.comment().clone().unwrap_or_default(),
        }));
    }
    rows.reverse();
    let id = if args.no_trunc {
        image.config_digest.to_string()
    } else {
        image.config_digest.short().to_string()
    };
    match rows.first_mut() {
        Some(top) => top["ID"] = Value::String(id.clone()),
        None => rows.push(json!({
            "ID": id, "CreatedAt": "", "CreatedSince": "N/A", "CreatedBy": "",
            "Size": format::human_size(image.size()), "Comment": "",
        })),
    }
    if args.quiet {
        let out: String = rows
            .iter()
            .map(|r| format!("{}\n", r["ID"].as_str().unwrap_or_default()))
            .collect();
        return emit(&out);
    }
    match Format::parse(args.format.as_deref()) {
        Format::Json => emit(&format::json_lines(&rows)),
        Format::Template(t) => emit(&format::template_lines(&t, &rows)?),
        Format::Table => {
            let created_col = if args.human {
                "CreatedSince"
            } else {
                "CreatedAt"
            };
            let table_rows: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    ["ID", created_col, "CreatedBy", "Size", "Comment"]
                        .iter()
                        .map(|k| r[*k].as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .collect();
            emit(&format::table(
                &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
                &table_rows,
            ))
        }
    }
}
