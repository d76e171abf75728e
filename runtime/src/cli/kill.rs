//! `nook kill [-s SIGNAL] CONTAINER...`

use super::{emit, for_each_container, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Signal to send to the container (name like KILL or SIGTERM, or number)
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("TERM", libc::SIGTERM),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("WINCH", libc::SIGWINCH),
    ("ALRM", libc::SIGALRM),
    ("PIPE", libc::SIGPIPE),
];

/// A signal by name (`KILL`, `SIGKILL`, `kill`) or number (1-64).
pub fn parse_signal(s: &str) -> anyhow::Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        anyhow::ensure!((1..=64).contains(&n), "invalid signal: {s}");
        return Ok(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| anyhow::anyhow!("invalid signal: {s}"))
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let signal = parse_signal(&args.signal)?;
    let engine = ctx.engine();
    for_each_container(
        &engine,
        &args.containers,
        "kill",
        |c| engine.kill(c, signal),
        |name, notice| {
            if let Some(n) = notice {
                eprintln!("nook: warning: {n}");
            }
            emit(&format!("{name}\n"))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("NOPE").is_err());
    }
}
