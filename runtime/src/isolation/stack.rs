//! The user-mode network stack of a container, the same program in both columns: pasta
//! attached to a namespace's network, passt serving a VM's virtio-net device over a unix
//! socket. It runs in the foreground as a child of the container's monitor, which ends it with
//! the container; it dies with the monitor too (parent-death signal), and a leftover one named
//! by the container's pid file is ended before the next start.

use std::fs::File;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::host_tools::Tool;

/// Why a container's network stack could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("cannot give the container a network: {0}")]
    Failed(String),
    #[error("cannot {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> StackError {
    move |source| StackError::Io { what, source }
}

/// Where the stack of the container whose directory is `container_dir` writes its pid (its log
/// goes beside it): this user's runtime directory. The stack drops its capabilities, so as root
/// it could not write into a store root another user owns.
pub fn pid_file(container_dir: &Path) -> Result<PathBuf, StackError> {
    use std::os::unix::fs::PermissionsExt;
    let id = crate::isolation::container_id(container_dir);
    let dir = crate::paths::runtime_dir(&crate::paths::ProcessEnv).join("net");
    std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    Ok(dir.join(format!("{}.pid", crate::util::short_id(&id))))
}

/// How long the stack may take to get ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A stack starting for one container: ended (and reaped) when dropped before it is ready, as
/// when the container's start fails meanwhile.
pub struct Launch {
    child: Running,
    pid_file: PathBuf,
    log_path: PathBuf,
    program: PathBuf,
}

/// Starts `tool` with `args`, writing its pid to `pid_file` once ready and its messages to the
/// log beside it (a pipe nobody reads while the container runs could fill and stall it).
/// `fds` are descriptors of this process to hand over as descriptors 3, 4, ... in order.
pub fn launch(
    tool: &Tool,
    args: &[String],
    pid_file: &Path,
    fds: &[RawFd],
) -> Result<Launch, StackError> {
    let program = tool
        .require()
        .map_err(|e| StackError::Failed(e.to_string()))?;
    end_leftover(pid_file);
    let log_path = pid_file.with_extension("log");
    let log = File::create(&log_path).map_err(io(format!("create {}", log_path.display())))?;
    let mut command = Command::new(&program);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // As root, passt and pasta switch to `nobody` before they write their pid file and
        // socket, which then cannot reach the caller's directories: they stay root, as asked.
        command.args(["--runas", "0"]);
    }
    command
        .args(args)
        .arg("--foreground")
        .arg("--pid")
        .arg(pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let fds = fds.to_vec();
    // SAFETY: fcntl, dup2 and prctl are async-signal-safe; the descriptors stay open in this
    // process until spawn returns. Each is moved above 10 first, so that placing one at 3, 4,
    // ... never closes another.
    unsafe {
        command.pre_exec(move || {
            let mut high = [0; 8];
            for (slot, fd) in high.iter_mut().zip(&fds) {
                *slot = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10);
                if *slot < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().take(fds.len()).enumerate() {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(io(format!("start {}", program.display())))?;
    Ok(Launch {
        child: Running(Some(child)),
        pid_file: pid_file.to_path_buf(),
        log_path,
        program,
    })
}

impl Launch {
    /// The started program's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.0.as_ref().map(Child::id)
    }
}

/// A running stack: ended (and reaped) when dropped, with its container.
pub struct Running(Option<Child>);

impl Running {
    /// Ends the stack without waiting for its exit, which takes pasta tens of milliseconds
    /// (the kernel tears its tap device down, and the container's network namespace with it, as
    /// it closes its descriptors): a thread reaps it, or init does once this process is gone.
    /// Only for a stack that publishes no port: a published port is free only once the stack
    /// has exited, and a stopped container's ports must be (dropping it waits).
    pub fn end_in_background(mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            std::thread::spawn(move || child.wait());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until the stack is ready (it writes its pid file once it is) and returns it.
pub fn wait_ready(launch: Launch) -> Result<Running, StackError> {
    wait_ready_or(launch, &mut || false)
}

/// [`wait_ready`], or returns it earlier once `enough` says so (the container saw its
/// interface configured: pasta's remaining start-up, its socket pools, goes on meanwhile).
pub fn wait_ready_or(
    launch: Launch,
    enough: &mut dyn FnMut() -> bool,
) -> Result<Running, StackError> {
    let Launch {
        mut child,
        pid_file,
        log_path,
        program,
    } = launch;
    let start = Instant::now();
    loop {
        if std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n')) || enough() {
            return Ok(child);
        }
        let exited = child.0.as_mut().map(|c| c.try_wait());
        if let Some(Ok(Some(status))) = exited {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            // Its attempts to log to syslog are not the reason.
            let message = log
                .lines()
                .filter(|l| !(l.starts_with("Failed to send") && l.contains("syslog")))
                .collect::<Vec<_>>()
                .join("; ");
            let hint = if message.contains("/dev/net/tun") {
                " (it needs /dev/net/tun readable and writable by this user: mode 0666, as \
                 distributions ship it)"
            } else if message.contains("External interface not usable") {
                " (this host has no network with a default route for it to use: \
                 --network none runs the container without one)"
            } else {
                ""
            };
            return Err(StackError::Failed(format!(
                "{} failed ({status}): {message}{hint}",
                program.display()
            )));
        }
        if start.elapsed() > READY_TIMEOUT {
            drop(child);
            return Err(StackError::Failed(format!(
                "{} was not ready within {READY_TIMEOUT:?}",
                program.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Ends a stack left behind by a monitor that was killed, named by its pid file.
pub fn end_leftover(pid_file: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
    else {
        return;
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.starts_with("pasta") || comm.starts_with("passt") {
        // SAFETY: kill takes a pid and a signal number.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = std::fs::remove_file(pid_file);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_dropped_before_it_is_ready_ends_its_stack() {
        let child = Command::new("sleep").arg("600").spawn().unwrap();
        let pid = child.id();
        let launch = Launch {
            child: Running(Some(child)),
            pid_file: PathBuf::from("/nonexistent/stack.pid"),
            log_path: PathBuf::from("/nonexistent/stack.log"),
            program: PathBuf::from("sleep"),
        };
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(launch);
        // Killed and reaped: not even a zombie is left.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
