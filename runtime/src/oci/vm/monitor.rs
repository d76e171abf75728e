//! The monitor of a VM container: the process `create` forks, whose pid is the container's.
//! It boots the VM (the code of `nook run --isolation=vm`), says so to `create`, waits for
//! `start` on the container's fifo, has the agent start the process, forwards the signals it
//! gets, and exits with the process's status.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::super::log::Log;
use super::signals;
use crate::isolation::vm::{control_path, Backend, Machine};
use crate::isolation::{container_id, Backend as _, Host, LaunchSpec, Stdio};
use crate::paths::ProcessEnv;

/// What the monitor runs.
pub struct Monitor<'a> {
    /// The container's state directory (the VM's files: its config, logs, virtiofsd logs).
    pub dir: &'a Path,
    pub machine: &'a Machine,
    pub launch: &'a LaunchSpec,
    pub stdio: Stdio,
    /// Where `create` waits for one zero byte (the VM is ready) or the reason it is not.
    pub ready: OwnedFd,
    /// The container's `exec.fifo`, which `start` opens.
    pub fifo: &'a Path,
    pub log: &'a Log,
}

/// Blocks until `start` opens the fifo for reading, then writes the byte it waits for.
fn wait_for_start(fifo: &Path) -> std::io::Result<()> {
    let c = CString::new(fifo.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let fd = loop {
        // SAFETY: open of a NUL-terminated path; blocks until a reader opens the fifo.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd >= 0 {
            break fd;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    // SAFETY: a fresh descriptor owned by nobody else.
    let mut f = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    f.write_all(b"0")
}

/// Runs the monitor in the child `create` forked; never returns.
pub fn run(m: Monitor<'_>) -> ! {
    // A session of its own: no terminal of the caller's signals it.
    // SAFETY: setsid has no preconditions.
    unsafe { libc::setsid() };
    // It lives as long as the container, whoever reads the streams it relays: a reader that
    // went away is no reason to end the VM.
    crate::util::sigpipe::ignore();
    let host = Host::new(m.dir);
    let backend = Backend::new(&host, m.dir, m.machine);
    let mut ready = File::from(m.ready);
    let vm = match backend.boot_vm(m.launch) {
        Ok(vm) => vm,
        Err(e) => {
            let _ = ready.write_all(crate::errors::chain(&e).as_bytes());
            std::process::exit(1);
        }
    };
    let _ = ready.write_all(&[0]);
    drop(ready);
    // Until `start`, a signal's default action ends the monitor, and the VM with it (the VMM
    // dies with its parent), as a created runc container's init dies of it.
    if let Err(e) = wait_for_start(m.fifo) {
        m.log.error(&format!("waiting for start: {e}"));
        std::process::exit(1);
    }
    let status = match backend.start_booted(vm, m.launch, m.stdio) {
        Ok(mut workload) => {
            match control_path(&ProcessEnv, &container_id(m.dir)) {
                Ok(path) => {
                    if let Err(e) = signals::forward(path) {
                        m.log.warn(&format!("signals will not be forwarded: {e}"));
                    }
                }
                Err(e) => m.log.warn(&crate::errors::chain(&e)),
            }
            match workload.wait() {
                Ok(exit) => exit.status(),
                Err(e) => {
                    m.log.error(&crate::errors::chain(&e));
                    1
                }
            }
        }
        Err(e) => {
            m.log.error(&crate::errors::chain(&e));
            1
        }
    };
    backend.cleanup();
    std::process::exit(status)
}
