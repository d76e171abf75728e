//! `state`, `kill`, `delete`, `list` and `ps`: what is read or done to a recorded container.

use std::time::{Duration, Instant};

use super::error::OciError;
use super::hooks::{self, Point};
use super::state::{Container, Status};
use super::Context;
use crate::isolation::namespace::{procs, send_signal};

/// `state`: the spec's state document, indented as runc prints it.
pub fn state(ctx: &Context, id: &str) -> Result<(), OciError> {
    let c = ctx.root.load(id)?;
    let doc = c.state_json(c.status());
    println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
    Ok(())
}

/// Signal numbers by name, with or without `SIG`, or as numbers.
pub fn parse_signal(s: &str) -> Result<i32, OciError> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(OciError::Signal(s.to_string()));
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" | "CLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return Err(OciError::Signal(s.to_string())),
    };
    Ok(n)
}

/// The host pids of the container's processes: those of its pid namespace, or its first
/// process alone when it shares the host's, or while it is only created (until its `execve`
/// its /proc files are closed to us, and it is the only one).
fn processes(pid: i32) -> Result<Vec<i32>, OciError> {
    let link = |p: String| std::fs::read_link(p).ok();
    let theirs = link(format!("/proc/{pid}/ns/pid"));
    if theirs.is_none() || theirs == link("/proc/self/ns/pid".into()) {
        return Ok(vec![pid]);
    }
    Ok(procs::processes(pid)?)
}

/// `kill`.
pub fn kill(ctx: &Context, id: &str, signal: Option<&str>, all: bool) -> Result<(), OciError> {
    let c = ctx.root.load(id)?;
    let sig = parse_signal(signal.unwrap_or("TERM"))?;
    let Some(pid) = c.pid() else {
        return Err(OciError::NotRunning);
    };
    if all {
        for p in processes(pid)? {
            send_signal(p, sig)?;
        }
    } else {
        send_signal(pid, sig)?;
    }
    Ok(())
}

/// `delete`: a stopped container's state goes, after its poststop hooks; with `force` (or
/// while it is only created) its processes are killed first.
pub fn delete(ctx: &Context, id: &str, force: bool) -> Result<(), OciError> {
    let c = match ctx.root.load(id) {
        Ok(c) => c,
        Err(OciError::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    match c.status() {
        Status::Stopped => {}
        Status::Running if !force => {
            return Err(OciError::NotStopped {
                id: id.to_string(),
                status: "running",
            })
        }
        _ => {
            let pid = c.record.pid;
            for p in processes(pid).unwrap_or_else(|_| vec![pid]) {
                send_signal(p, libc::SIGKILL)?;
            }
            let began = Instant::now();
            while c.status() != Status::Stopped {
                if began.elapsed() > Duration::from_secs(10) {
                    return Err(OciError::Spec(format!(
                        "container {id} did not end within 10 s of SIGKILL"
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    if let Ok(config) = c.config() {
        let doc = c.state_json(Status::Stopped).to_string();
        if let Err(e) = hooks::run(config.hooks().as_ref(), Point::Poststop, &doc) {
            ctx.log.warn(&crate::errors::chain(&e));
        }
    }
    if let Some(path) = &c.record.cgroup {
        crate::isolation::limits::cgroup::Cgroup::at(path).remove();
    }
    std::fs::remove_dir_all(&c.dir)
        .map_err(|e| OciError::io(format!("remove {}", c.dir.display()), e))
}

/// `list`.
pub fn list(ctx: &Context, format: &str, quiet: bool) -> Result<(), OciError> {
    let containers: Vec<Container> = ctx
        .root
        .ids()
        .iter()
        .filter_map(|id| ctx.root.load(id).ok())
        .collect();
    if quiet {
        for c in &containers {
            println!("{}", c.record.id);
        }
        return Ok(());
    }
    match format {
        "json" => {
            let docs: Vec<serde_json::Value> = containers
                .iter()
                .map(|c| c.state_json(c.status()))
                .collect();
            println!("{}", serde_json::Value::from(docs));
        }
        "table" => {
            let mut rows = vec![[
                "ID".to_string(),
                "PID".into(),
                "STATUS".into(),
                "BUNDLE".into(),
                "CREATED".into(),
                "OWNER".into(),
            ]];
            for c in &containers {
                let status = c.status();
                let pid = if status == Status::Stopped {
                    0
                } else {
                    c.record.pid
                };
                rows.push([
                    c.record.id.clone(),
                    pid.to_string(),
                    status.name().into(),
                    c.record.bundle.display().to_string(),
                    c.record.created.clone(),
                    c.record.owner.clone(),
                ]);
            }
            print!("{}", table(&rows));
        }
        other => {
            return Err(OciError::Spec(format!(
                "invalid format {other:?}: table or json"
            )))
        }
    }
    Ok(())
}

fn table(rows: &[[String; 6]]) -> String {
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// `ps`: the host pids of the container's processes (`--format json`), or ps(1)'s table
/// limited to them.
pub fn ps(ctx: &Context, id: &str, format: &str, ps_args: &[String]) -> Result<(), OciError> {
    let c = ctx.root.load(id)?;
    let Some(pid) = c.pid() else {
        return Err(OciError::NotRunning);
    };
    let pids = processes(pid)?;
    match format {
        "json" => println!("{}", serde_json::Value::from(pids)),
        "table" => {
            let args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".into()]
            } else {
                ps_args.to_vec()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .map_err(|e| OciError::io("run ps", e))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let column = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or_else(|| OciError::Spec("ps printed no PID column".into()))?;
            println!("{header}");
            for line in lines {
                let listed = line
                    .split_whitespace()
                    .nth(column)
                    .and_then(|p| p.parse::<i32>().ok())
                    .is_some_and(|p| pids.contains(&p));
                if listed {
                    println!("{line}");
                }
            }
        }
        other => {
            return Err(OciError::Spec(format!(
                "invalid format {other:?}: table or json"
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("9").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("SIGKILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("sigusr1").unwrap(), libc::SIGUSR1);
        for bad in ["0", "65", "NOPE", ""] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }
}
