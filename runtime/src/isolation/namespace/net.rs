//! The namespace column's network: pasta (see [`crate::isolation::stack`]), attached to the
//! container's network namespace while the container sets itself up, configures `eth0`
//! (address, route, MTU) and forwards the published ports; the workload runs once it is ready.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::host_tools::PASTA;
use crate::isolation::network::NetworkSpec;
use crate::isolation::stack;
use crate::isolation::IsolationError;

/// Starts pasta for the container whose init is `pid`, through descriptors of its user and
/// network namespaces opened now (the init turns non-dumpable before its workload, and its
/// /proc files then belong to root).
pub fn launch_pasta(
    spec: &NetworkSpec,
    pid: i32,
    pid_file: &Path,
) -> Result<stack::Launch, IsolationError> {
    let open = |ns: &str| {
        let path = format!("/proc/{pid}/ns/{ns}");
        File::open(&path).map_err(|e| IsolationError::os(format!("open {path}"), e))
    };
    let (user, net) = (open("user")?, open("net")?);
    let mut args = spec.stack_args();
    args.extend(
        [
            // Nothing of the host's is forwarded into the container (pasta's default binds, in
            // the container, every port the host listens on: its loopback services).
            "--tcp-ns",
            "none",
            "--udp-ns",
            "none",
            "--config-net",
            "--userns",
            "/proc/self/fd/3",
            "--netns",
            "/proc/self/fd/4",
        ]
        .map(String::from),
    );
    Ok(stack::launch(
        &PASTA,
        &args,
        pid_file,
        &[user.as_raw_fd(), net.as_raw_fd()],
    )?)
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
