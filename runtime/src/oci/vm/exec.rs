//! `exec` in the VM column: the process runs in the guest, started by the agent through the
//! monitor's control socket (`nook exec`'s code); on the host a relay process carries its
//! streams and exits with its status. The relay's pid is the one `--pid-file` names.

use std::io::{Read, Write};

use super::super::cli::ExecArgs;
use super::super::error::OciError;
use super::super::state::{Container, Status};
use super::super::Context;
use super::translate;
use crate::isolation::vm::{Backend, Machine, VmSettings};
use crate::isolation::{Backend as _, Host};

/// `exec`: returns the process's status unless `--detach`.
pub fn exec(ctx: &Context, args: &ExecArgs, container: &Container) -> Result<i32, OciError> {
    if container.status() != Status::Running {
        return Err(OciError::BadState {
            action: "exec in",
            status: container.status().name(),
        });
    }
    if args.preserve_fds > 0 {
        ctx.log
            .warn("--preserve-fds: descriptors cannot be passed into a VM; none are");
    }
    let config = container.config()?;
    let process = super::super::exec::process(args, config.process().as_ref())?;
    let spec = translate::process(&process, &ctx.log)?;
    let stdio = super::stdio(spec.terminal, args.console_socket.as_deref())?;
    // exec reaches the VM through its monitor's control socket alone: the machine's size and
    // disks are not used.
    let settings = VmSettings::from_flags(None, None).map_err(|e| OciError::Spec(e.to_string()))?;
    let machine = Machine::with_host_root(&settings, &container.record.rootfs, false);
    let host = Host::new(&container.dir);
    let backend = Backend::new(&host, &container.dir, &machine);
    if !args.detach {
        if let Some(pid_file) = &args.pid_file {
            super::super::write_atomic(pid_file, std::process::id().to_string().as_bytes())?;
        }
        let mut p = backend.exec(container.record.pid, &spec, stdio)?;
        return Ok(p.wait()?.status());
    }
    let (ready_read, ready_write) =
        crate::util::fd::pipe().map_err(|e| OciError::io("create a pipe", e))?;
    // SAFETY: nook-runtime is single-threaded here; the child relays and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(OciError::io("fork", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(ready_read);
        let mut ready = std::fs::File::from(ready_write);
        // The child never returns into `exec`, not even by a panic.
        let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match backend.exec(container.record.pid, &spec, stdio) {
                Ok(mut p) => {
                    let _ = ready.write_all(&[0]);
                    drop(ready);
                    p.wait().map(|e| e.status()).unwrap_or(1)
                }
                Err(e) => {
                    let _ = ready.write_all(crate::errors::chain(&e).as_bytes());
                    1
                }
            }
        }));
        std::process::exit(status.unwrap_or(1));
    }
    drop(ready_write);
    drop(stdio);
    let mut answer = Vec::new();
    let _ = std::fs::File::from(ready_read).read_to_end(&mut answer);
    if answer != [0] {
        // SAFETY: waitpid of the child just forked, which has ended or is ending.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        return Err(OciError::Spec(
            String::from_utf8_lossy(&answer).trim().to_string(),
        ));
    }
    if let Some(pid_file) = &args.pid_file {
        super::super::write_atomic(pid_file, pid.to_string().as_bytes())?;
    }
    Ok(0)
}
