//! The namespace column's network: pasta, attached to the container's network namespace while
//! the container sets itself up, configures `eth0` (address, route, MTU) and forwards the
//! published ports. It runs in the foreground as a child of the container's monitor, which
//! ends it with the container; it dies with the monitor too (parent-death signal), and a
//! leftover one named by the container's `pasta.pid` is ended before the next start.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::host_tools::PASTA;
use crate::isolation::network::NetworkSpec;
use crate::isolation::IsolationError;

/// pasta starting for one container.
pub struct Launch {
    child: std::process::Child,
    pid_file: PathBuf,
    log_path: PathBuf,
    program: PathBuf,
}

/// Starts pasta for the container whose init is `pid`, through descriptors of its user and
/// network namespaces opened now (the init turns non-dumpable before its workload, and its
/// /proc files then belong to root).
pub fn launch_pasta(
    spec: &NetworkSpec,
    pid: i32,
    pid_file: &Path,
) -> Result<Launch, IsolationError> {
    let pasta = PASTA.require().map_err(|e| IsolationError::Start {
        code: 125,
        message: format!("cannot give the container a network: {e}"),
    })?;
    let open = |ns: &str| {
        let path = format!("/proc/{pid}/ns/{ns}");
        File::open(&path).map_err(|e| IsolationError::os(format!("open {path}"), e))
    };
    let (user, net) = (open("user")?, open("net")?);
    let (user_fd, net_fd) = (user.as_raw_fd(), net.as_raw_fd());
    let _ = std::fs::remove_file(pid_file);
    // Its messages go to a file beside the pid file: a pipe nobody reads while the container
    // runs could fill and stall it.
    let log_path = pid_file.with_extension("log");
    let log = File::create(&log_path)
        .map_err(|e| IsolationError::os(format!("create {}", log_path.display()), e))?;
    let mut command = Command::new(&pasta);
    command
        .args(spec.stack_args())
        .arg("--config-net")
        .arg("--foreground")
        .arg("--pid")
        .arg(pid_file)
        .args(["--userns", "/proc/self/fd/3", "--netns", "/proc/self/fd/4"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: fcntl and dup2 are async-signal-safe; both descriptors stay open in this
    // process until spawn returns. Moved above 10 first, so that placing one at 3 or 4 never
    // closes the other.
    unsafe {
        command.pre_exec(move || {
            let user = libc::fcntl(user_fd, libc::F_DUPFD_CLOEXEC, 10);
            let net = libc::fcntl(net_fd, libc::F_DUPFD_CLOEXEC, 10);
            if user < 0
                || net < 0
                || libc::dup2(user, 3) < 0
                || libc::dup2(net, 4) < 0
                || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| IsolationError::os(format!("start {}", pasta.display()), e))?;
    Ok(Launch {
        child,
        pid_file: pid_file.to_path_buf(),
        log_path,
        program: pasta,
    })
}

/// How long pasta may take to configure the namespace.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until pasta has configured the namespace: it writes its pid file once it has.
/// Returns the running pasta.
pub fn wait_pasta(launch: Launch) -> Result<std::process::Child, IsolationError> {
    let Launch {
        mut child,
        pid_file,
        log_path,
        program,
    } = launch;
    let start = std::time::Instant::now();
    loop {
        if std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n')) {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let message = std::fs::read_to_string(&log_path).unwrap_or_default();
            // pasta's own attempt to log to syslog is not the reason.
            let message = message
                .lines()
                .filter(|l| !l.starts_with("Failed to send") || !l.contains("syslog"))
                .collect::<Vec<_>>()
                .join("; ");
            let hint = if message.contains("/dev/net/tun") {
                " (pasta needs /dev/net/tun readable and writable by this user: mode 0666, as \
                 distributions ship it)"
            } else {
                ""
            };
            return Err(IsolationError::Start {
                code: 125,
                message: format!(
                    "cannot give the container a network: {} failed ({status}): {message}{hint}",
                    program.display()
                ),
            });
        }
        if start.elapsed() > READY_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(IsolationError::Start {
                code: 125,
                message: format!(
                    "cannot give the container a network: {} did not configure it within {:?}",
                    program.display(),
                    READY_TIMEOUT
                ),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Ends `pasta` (the container ended).
pub fn stop_pasta(mut pasta: std::process::Child) {
    let _ = pasta.kill();
    let _ = pasta.wait();
}

/// Ends a pasta left behind by a monitor that was killed, named by its pid file.
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

/// The child's side of "the network is ready": waits for one byte on `ready`, closing its
/// copy of the writing end `writer` first so that a parent that gives up is seen.
pub fn wait_ready(ready: &OwnedFd, writer: i32) -> Result<(), String> {
    // SAFETY: closing the child's copy of the pipe's writing end, by number; the parent keeps
    // its own.
    unsafe { libc::close(writer) };
    let mut byte = [0u8; 1];
    let mut file = File::from(ready.try_clone().map_err(|e| e.to_string())?);
    match file.read(&mut byte) {
        Ok(1) => Ok(()),
        _ => Err("the container's network could not be set up".into()),
    }
}

/// The parent's side: tells the child the network is ready.
pub fn signal_ready(writer: OwnedFd) -> Result<(), IsolationError> {
    // SAFETY: writing one byte from a valid buffer to our pipe.
    let n = unsafe { libc::write(writer.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    if n != 1 {
        return Err(IsolationError::os(
            "tell the container its network is ready",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}
