//! `nook logs [-f] [--tail N] [-t] CONTAINER`: the container's json-lines log (its rotated
//! files first), each stream to its own descriptor.

use std::io::Write as _;
use std::time::Duration;

use nook::container::log::{LogReader, Record, Stream};

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs ("all" for every line)
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    container: String,
}

fn print(records: &[Record], timestamps: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for r in records {
        let w: &mut dyn std::io::Write = match r.stream {
            Stream::Stdout => &mut out,
            Stream::Stderr => &mut err,
        };
        let written = if timestamps {
            write!(w, "{} {}", r.time, r.log)
        } else {
            w.write_all(r.log.as_bytes())
        };
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
    }
    out.flush()?;
    Ok(())
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let tail: Option<usize> = match args.tail.as_str() {
        "all" => None,
        n => Some(n.parse().map_err(|_| {
            anyhow::anyhow!("invalid --tail {n:?}: expected a number of lines or \"all\"")
        })?),
    };
    let engine = ctx.engine();
    let container = engine.containers.find(&args.container)?;
    let path = engine.containers.log_path(container.id());
    let (records, mut reader) = LogReader::read_all(&path)?;
    let skip = tail.map_or(0, |n| records.len().saturating_sub(n));
    print(&records[skip..], args.timestamps)?;
    if !args.follow {
        return Ok(());
    }
    loop {
        // Read once more after the container stopped, for its last lines.
        let running = match engine.containers.load(container.id()) {
            Ok(c) => c.status().is_running(),
            Err(_) => false,
        };
        let more = reader.poll()?;
        print(&more, args.timestamps)?;
        if !running {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
