//! `nook top CONTAINER [ps OPTIONS]`: the running processes of a container as the host sees
//! them, docker's way: the host's `ps` (with `-ef` unless options are given), keeping the lines
//! whose PID is one of the container's.

use anyhow::Context as _;

use nook::container::state::Status;

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    container: String,
    /// Options for the host's ps (default: -ef); the output must have a PID column
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PS_OPTIONS"
    )]
    ps_options: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = ctx.engine();
    let container = engine.containers.find(&args.container)?;
    let Status::Running { init, .. } = container.status() else {
        anyhow::bail!("container {} is not running", args.container);
    };
    let pids = container.config.isolation.processes(init.pid)?;
    let options = if args.ps_options.is_empty() {
        vec!["-ef".to_string()]
    } else {
        args.ps_options
    };
    let out = std::process::Command::new("ps")
        .args(&options)
        .output()
        .context("cannot run ps (procps) on the host")?;
    anyhow::ensure!(
        out.status.success(),
        "ps {} failed: {}",
        options.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    emit(&keep_pids(&String::from_utf8_lossy(&out.stdout), &pids)?)
}

/// The header of `ps` output and the lines whose PID column is in `pids`.
fn keep_pids(ps: &str, pids: &[i32]) -> anyhow::Result<String> {
    let mut lines = ps.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|f| f == "PID")
        .context("cannot find the PID column in the ps output: give ps options that print it")?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_containers_lines_are_kept() {
        let ps = "UID   PID  PPID C STIME TTY TIME CMD\n\
                  root    1     0 0 10:00 ?   0:01 /sbin/init\n\
                  user  420   419 0 10:01 ?   0:00 sleep 1000\n\
                  user 4200   419 0 10:01 ?   0:00 sh\n";
        let out = keep_pids(ps, &[420]).unwrap();
        assert_eq!(
            out,
            "UID   PID  PPID C STIME TTY TIME CMD\nuser  420   419 0 10:01 ?   0:00 sleep 1000\n"
        );
        let e = keep_pids("USER COMMAND\nroot init\n", &[1]).unwrap_err();
        assert!(e.to_string().contains("PID column"), "{e}");
    }
}
