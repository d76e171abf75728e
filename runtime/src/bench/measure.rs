//! Spawning one program and reading what it cost: wall time on the monotonic clock, CPU time
//! and peak RSS from `wait4`'s rusage (which covers the program and every descendant it reaped,
//! e.g. nook's VMM or runc's container), and host memory in use while programs run.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use crate::isolation::vm::phases::monotonic_ns;

/// What one finished program cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finished {
    /// Monotonic time just before the spawn and just after the reap.
    pub start_ns: u64,
    pub end_ns: u64,
    /// User + system CPU time of the program and its reaped descendants.
    pub cpu_ns: u64,
    /// The largest resident set of the program or of one of its reaped descendants.
    pub max_rss_kib: u64,
    /// Exit code, or 128 + signal.
    pub code: i32,
}

impl Finished {
    pub fn wall_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// A spawned program not yet reaped.
pub struct Running {
    pub pid: libc::pid_t,
    pub start_ns: u64,
    /// Where its stderr goes, for the reason of a failure.
    pub stderr: PathBuf,
}

/// Spawns `cmd` with stdin and stdout on /dev/null and stderr into the file `stderr`.
pub fn spawn(cmd: &mut Command, stderr: &Path) -> io::Result<Running> {
    let err = File::create(stderr)?;
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
    let start_ns = monotonic_ns();
    let child = cmd.spawn()?;
    // The child is reaped by `wait` below, with wait4, so that its rusage comes along;
    // dropping the std handle neither waits nor kills.
    Ok(Running {
        pid: child.id() as libc::pid_t,
        start_ns,
        stderr: stderr.to_path_buf(),
    })
}

impl Running {
    /// Reaps the program.
    pub fn wait(self) -> io::Result<Finished> {
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it for the child it reaps.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: wait4 writes the status and rusage into valid pointers.
            let r = unsafe { libc::wait4(self.pid, &mut status, 0, &mut usage) };
            if r == self.pid {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        let end_ns = monotonic_ns();
        let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
        Ok(Finished {
            start_ns: self.start_ns,
            end_ns,
            cpu_ns: tv(usage.ru_utime) + tv(usage.ru_stime),
            max_rss_kib: usage.ru_maxrss as u64,
            code,
        })
    }

    /// Why it failed, from the last lines of its stderr.
    pub fn failure(stderr: &Path, what: &str, code: i32) -> String {
        let text = std::fs::read_to_string(stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
        if tail.is_empty() {
            format!("{what} exited with status {code} and printed nothing")
        } else {
            format!("{what} exited with status {code}: {tail}")
        }
    }
}

/// Runs `cmd` to its end; a non-zero status is an error whose message is the reason.
pub fn run_ok(cmd: &mut Command, stderr: &Path, what: &str) -> Result<Finished, String> {
    let running = spawn(cmd, stderr).map_err(|e| format!("cannot start {what}: {e}"))?;
    let stderr = running.stderr.clone();
    let done = running
        .wait()
        .map_err(|e| format!("cannot wait for {what}: {e}"))?;
    if done.code != 0 {
        return Err(Running::failure(&stderr, what, done.code));
    }
    Ok(done)
}

/// Host memory in use (MemTotal - MemAvailable), KiB.
pub fn host_memory_used_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some(field("MemTotal:")?.saturating_sub(field("MemAvailable:")?))
}

/// Samples host memory in use every 10 ms from its start until `stop`; the peak above the
/// level at start is what the programs started meanwhile used.
pub struct MemorySampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
    baseline: u64,
}

impl MemorySampler {
    pub fn start() -> MemorySampler {
        let baseline = host_memory_used_kib().unwrap_or(0);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(host_memory_used_kib().unwrap_or(0));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        MemorySampler {
            stop,
            thread,
            baseline,
        }
    }

    /// The peak above the baseline, KiB.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let peak = self.thread.join().unwrap_or(0);
        peak.saturating_sub(self.baseline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_costs_its_wall_time_and_little_cpu() {
        let dir = tempfile::tempdir().unwrap();
        let done = run_ok(
            Command::new("sh").args(["-c", "sleep 0.1"]),
            &dir.path().join("err"),
            "sh",
        )
        .unwrap();
        assert!(done.wall_ns() >= 100_000_000, "{done:?}");
        assert!(done.cpu_ns < done.wall_ns(), "{done:?}");
        assert!(done.max_rss_kib > 0, "{done:?}");
    }

    #[test]
    fn a_failure_carries_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let e = run_ok(
            Command::new("sh").args(["-c", "echo first >&2; echo 'it broke' >&2; exit 3"]),
            &dir.path().join("err"),
            "the thing",
        )
        .unwrap_err();
        assert_eq!(e, "the thing exited with status 3: first / it broke");
    }
}
