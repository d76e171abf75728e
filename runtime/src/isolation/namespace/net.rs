//! The namespace column's network: pasta (see [`crate::isolation::stack`]), attached to the
//! container's network namespace while the container sets itself up, configures `eth0`
//! (address, route, MTU) and forwards the published ports; the workload runs once it is ready.

use std::fs::File;
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

/// The pipes between the parent and the container's init while pasta configures the network:
/// `ready` (parent to child: a byte once pasta is fully ready, end of file if it failed) and
/// `seen` (child to parent: a byte once the child goes on).
pub struct Sync {
    ready: (OwnedFd, OwnedFd),
    seen: (OwnedFd, OwnedFd),
}

/// The init's ends, by descriptor number (it runs in a copy of the parent's memory).
#[derive(Clone, Copy)]
pub struct ChildEnds {
    ready_read: i32,
    ready_write: i32,
    seen_read: i32,
    seen_write: i32,
}

impl Sync {
    pub fn new() -> Result<Sync, IsolationError> {
        let pipe = || crate::util::fd::pipe().map_err(|e| IsolationError::os("create a pipe", e));
        Ok(Sync {
            ready: pipe()?,
            seen: pipe()?,
        })
    }

    pub fn child_ends(&self) -> ChildEnds {
        ChildEnds {
            ready_read: self.ready.0.as_raw_fd(),
            ready_write: self.ready.1.as_raw_fd(),
            seen_read: self.seen.0.as_raw_fd(),
            seen_write: self.seen.1.as_raw_fd(),
        }
    }

    /// The parent's side, once pasta runs: waits until pasta is fully ready, or, when nothing
    /// is published (no port needs pasta's listening sockets yet), until the container saw its
    /// interface configured. Then tells the child (if it still waits) that pasta is ready.
    pub fn wait(
        self,
        launch: stack::Launch,
        ports: bool,
    ) -> Result<stack::Running, IsolationError> {
        let Sync { ready, seen } = self;
        drop(seen.1);
        let seen_read = seen.0;
        let seen_byte = || {
            let mut fd = libc::pollfd {
                fd: seen_read.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll of one valid pollfd, without waiting.
            let n = unsafe { libc::poll(&mut fd, 1, 0) };
            n > 0 && fd.revents & libc::POLLIN != 0
        };
        let running = stack::wait_ready_or(launch, &mut || !ports && seen_byte())?;
        drop(ready.0);
        signal_ready(ready.1);
        Ok(running)
    }
}

/// Whether this process's network namespace has a default IPv4 route (pasta has configured
/// the interface).
fn has_default_route() -> bool {
    std::fs::read_to_string("/proc/net/route").is_ok_and(|t| {
        t.lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some("00000000"))
    })
}

/// The init's side: goes on once its interface is configured (or pasta says it is ready),
/// telling the parent; fails when pasta failed (the parent closed `ready`).
pub fn wait_configured(ends: ChildEnds) -> Result<(), String> {
    // SAFETY: closing the child's copies of the parent's ends, by number.
    unsafe {
        libc::close(ends.ready_write);
        libc::close(ends.seen_read);
    }
    let tell = || {
        // SAFETY: writing one byte from a valid buffer to our pipe.
        unsafe { libc::write(ends.seen_write, [1u8].as_ptr().cast(), 1) };
    };
    loop {
        if has_default_route() {
            tell();
            return Ok(());
        }
        let mut fd = libc::pollfd {
            fd: ends.ready_read,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll of one valid pollfd for at most a millisecond.
        if unsafe { libc::poll(&mut fd, 1, 1) } > 0 {
            let mut byte = [0u8; 1];
            // SAFETY: reading into a valid one-byte buffer.
            let n = unsafe { libc::read(ends.ready_read, byte.as_mut_ptr().cast(), 1) };
            if n == 1 {
                tell();
                return Ok(());
            }
            return Err("the container's network could not be set up".into());
        }
    }
}

/// Tells the child pasta is ready, if it still listens: a child that saw its interface
/// configured has gone on (and may have ended), which is fine.
fn signal_ready(writer: OwnedFd) {
    // SAFETY: writing one byte from a valid buffer to our pipe; a closed reading end gives
    // EPIPE (SIGPIPE ends nook only for its own standard streams, see `util::sigpipe`), which
    // is not an error here.
    unsafe { libc::write(writer.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
}
