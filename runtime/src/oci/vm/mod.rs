//! The VM column of `nook-runtime`: each container is a microVM booted by the very code of
//! `nook run --isolation=vm` ([`crate::isolation::vm::Backend`]), whose root is the bundle's
//! root directory shared through virtio-fs (the agent mounts it as the container's root,
//! `nook.roottag`).
//!
//! Chosen by the binary's name (`nook-runtime-vm`, a second binary or a link to
//! `nook-runtime`) or by the bundle's `org.nook.isolation` annotation (`vm` or `container`,
//! which wins over the name).
//!
//! `create` forks the container's monitor ([`monitor`]), which boots the VM and, once the
//! agent is ready, waits on the container's `exec.fifo` as runc's init does; `start` opens
//! the fifo (the namespace column's `start`, unchanged), and the monitor has the agent start
//! the process. The monitor's pid is the container's: it lives exactly as long as the VM,
//! forwards the signals it gets to the container's process through the agent, exits with the
//! process's status (128 + N for signal N), and its SIGKILL takes the VM along.

mod exec;
mod monitor;
mod signals;
mod translate;

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use oci_spec::runtime::Spec;

pub use exec::exec;

use super::cli::CreateArgs;
use super::config::Bundle;
use super::error::OciError;
use super::hooks::{self, Point};
use super::state::{self, Container, Status};
use super::Context;
use crate::isolation::vm::Machine;
use crate::isolation::Stdio;

/// The annotation that asks for an isolation column: `vm` or `container`.
pub const ISOLATION_ANNOTATION: &str = "org.nook.isolation";
/// The name the VM column's binary goes by.
pub const VM_BINARY: &str = "nook-runtime-vm";
/// The file in a container's state directory that says it runs in a VM.
const MARKER: &str = "vm-column";

/// Whether this binary was called as the VM column's (its name, or a link's).
pub fn called_as_vm() -> bool {
    std::env::args_os()
        .next()
        .and_then(|a| Path::new(&a).file_name().map(|n| n == VM_BINARY))
        .unwrap_or(false)
}

/// Whether a bundle runs in a VM: its annotation, else the binary's name.
pub fn wanted(spec: &Spec) -> Result<bool, OciError> {
    match spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ISOLATION_ANNOTATION))
        .map(String::as_str)
    {
        Some("vm") => Ok(true),
        Some("container") => Ok(false),
        None => Ok(called_as_vm()),
        Some(other) => Err(OciError::Spec(format!(
            "annotation {ISOLATION_ANNOTATION}={other:?}: vm or container"
        ))),
    }
}

/// Whether the recorded container runs in a VM.
pub fn is_vm(container: &Container) -> bool {
    container.dir.join(MARKER).exists()
}

fn mkfifo(path: &Path) -> Result<(), OciError> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| OciError::Spec("NUL byte in the state path".into()))?;
    // SAFETY: mkfifo of a NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } < 0 {
        return Err(OciError::io(
            format!("create {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// The process's streams: with a terminal, a pty on the host whose leader goes to the console
/// socket (runc's protocol) and whose other side the monitor relays to the guest's pty; else
/// this process's own streams.
fn stdio(terminal: bool, console_socket: Option<&Path>) -> Result<Stdio, OciError> {
    if !terminal {
        return super::stdio(false, None);
    }
    let Some(socket) = console_socket else {
        return Err(OciError::Spec(
            "cannot allocate a tty without --console-socket".into(),
        ));
    };
    let (leader, follower) =
        crate::terminal::open_pty().map_err(|e| OciError::io("open a pty", e))?;
    let stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        OciError::io(
            format!("connect to the console socket {}", socket.display()),
            e,
        )
    })?;
    crate::terminal::send_fd(stream.as_fd(), leader.as_fd())
        .map_err(|e| OciError::io("send the pty to the console socket", e))?;
    let dup = |fd: &OwnedFd| {
        fd.try_clone()
            .map_err(|e| OciError::io("duplicate the pty", e))
    };
    Ok(Stdio {
        stdin: dup(&follower)?,
        stdout: dup(&follower)?,
        stderr: follower,
        console: None,
    })
}

/// `create` in the VM column: the monitor forked, the VM booted, the process waiting for
/// `start`; the container's state is in `dir`, made by the caller.
pub fn create_in(
    ctx: &Context,
    args: &CreateArgs,
    bundle: &Bundle,
    dir: &Path,
) -> Result<Container, OciError> {
    let mut container = Container {
        dir: dir.to_path_buf(),
        // The VM is sized from linux.resources instead; the monitor is in no cgroup of
        // nook-runtime's.
        record: super::create::new_record(args, bundle),
    };
    let launch = translate::launch_spec(bundle, &ctx.log)?;
    let read_only = bundle
        .spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    let machine = Machine::with_host_root(&translate::settings(bundle)?, &bundle.rootfs, read_only);
    super::write_atomic(&dir.join("config.json"), bundle.text.as_bytes())?;
    super::write_atomic(&dir.join(MARKER), b"vm\n")?;
    mkfifo(&container.fifo())?;
    if args.preserve_fds > 0 {
        ctx.log
            .warn("--preserve-fds: descriptors cannot be passed into a VM; none are");
    }
    let stdio = stdio(launch.process.terminal, args.console_socket.as_deref())?;
    let (ready_read, ready_write) =
        crate::util::fd::pipe().map_err(|e| OciError::io("create a pipe", e))?;
    // SAFETY: nook-runtime is single-threaded here; the child runs the monitor and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(OciError::io(
            "fork the monitor",
            std::io::Error::last_os_error(),
        ));
    }
    if pid == 0 {
        drop(ready_read);
        let fifo = container.fifo();
        let monitor = monitor::Monitor {
            dir,
            machine: &machine,
            launch: &launch,
            stdio,
            ready: ready_write,
            fifo: &fifo,
            log: &ctx.log,
        };
        // The child never returns into `create`, not even by a panic.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| monitor::run(monitor)));
        std::process::exit(1);
    }
    drop(ready_write);
    drop(stdio);
    let kill = || {
        // SAFETY: kill and waitpid of the monitor just forked.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    };
    // The monitor answers once the agent is ready: one zero byte, or why the VM did not boot.
    let mut answer = Vec::new();
    let _ = std::fs::File::from(ready_read).read_to_end(&mut answer);
    if answer != [0] {
        kill();
        let why = String::from_utf8_lossy(&answer).trim().to_string();
        return Err(OciError::Spec(if why.is_empty() {
            "the container's monitor ended before its VM was ready".into()
        } else {
            why
        }));
    }
    let kept = (|| {
        container.record.pid = pid;
        container.record.start_time = state::start_time(pid).ok_or_else(|| {
            OciError::Spec("the container's monitor ended while it was created".into())
        })?;
        container.save()?;
        let mut doc = container.state_json(Status::Created);
        doc["pid"] = pid.into();
        let doc = doc.to_string();
        let hooks = bundle.spec.hooks().as_ref();
        for point in [Point::CreateRuntime, Point::Prestart] {
            hooks::run(hooks, point, &doc)?;
        }
        if let Some(pid_file) = &args.pid_file {
            super::write_atomic(pid_file, pid.to_string().as_bytes())?;
        }
        Ok(())
    })();
    if let Err(e) = kept {
        kill();
        return Err(e);
    }
    Ok(container)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(annotations: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion": "1.0.2", "annotations": {annotations}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn the_annotation_chooses_the_column_over_the_binary_name() {
        assert!(wanted(&spec(r#"{"org.nook.isolation": "vm"}"#)).unwrap());
        assert!(!wanted(&spec(r#"{"org.nook.isolation": "container"}"#)).unwrap());
        // The test binary is not called nook-runtime-vm.
        assert!(!wanted(&spec("{}")).unwrap());
        assert!(wanted(&spec(r#"{"org.nook.isolation": "kvm"}"#)).is_err());
    }
}
