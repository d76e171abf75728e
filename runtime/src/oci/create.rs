//! `create`, `start` and `run`: a container's first process made and left waiting on the
//! container's fifo, then let go.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::cli::CreateArgs;
use super::config::{self, Bundle};
use super::error::OciError;
use super::hooks::{self, Point};
use super::resources;
use super::state::{self, Container, Record, Root, Status};
use super::Context;
use crate::isolation::limits::{self, delegation::Delegation, delegation::Unavailable};
use crate::isolation::namespace::bundle;
use crate::isolation::namespace::process::wait_pid;

/// The record of a container just created from `bundle`: no process yet, no cgroup.
pub(super) fn new_record(args: &CreateArgs, bundle: &Bundle) -> Record {
    Record {
        id: args.id.clone(),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        pid: 0,
        start_time: 0,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        owner: owner(),
        annotations: bundle
            .spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        cgroup: None,
    }
}

pub(super) fn owner() -> String {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

/// Creates container `args.id` from its bundle; returns it, its first process waiting.
pub fn create(ctx: &Context, args: &CreateArgs) -> Result<Container, OciError> {
    Root::check_id(&args.id)?;
    let bundle = Bundle::load(&args.bundle)?;
    let in_vm = super::vm::wanted(&bundle.spec)?;
    std::fs::create_dir_all(&ctx.root.dir).map_err(|e| {
        OciError::io(
            format!("create the state directory {}", ctx.root.dir.display()),
            e,
        )
    })?;
    let dir = ctx.root.container_dir(&args.id);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(OciError::Exists(args.id.clone()))
        }
        Err(e) => return Err(OciError::io(format!("create {}", dir.display()), e)),
    }
    let made = if in_vm {
        super::vm::create_in(ctx, args, &bundle, &dir)
    } else {
        create_in(ctx, args, &bundle, &dir)
    };
    if made.is_err() {
        // No state is left behind by a create that failed.
        let _ = std::fs::remove_dir_all(&dir);
    }
    made
}

fn mkfifo(path: &Path) -> Result<OwnedFd, OciError> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| OciError::Spec("NUL byte in the state path".into()))?;
    // Writable by the container's user whoever that is (runc's mode): only the container's
    // first process opens it for writing, through the descriptor it inherits.
    // SAFETY: mkfifo and open of a NUL-terminated path; the descriptor, when valid, is ours.
    let fd = unsafe {
        if libc::mkfifo(c.as_ptr(), 0o622) < 0 || libc::chmod(c.as_ptr(), 0o622) < 0 {
            return Err(OciError::io(
                format!("create {}", path.display()),
                std::io::Error::last_os_error(),
            ));
        }
        libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC)
    };
    if fd < 0 {
        return Err(OciError::io(
            format!("open {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn create_in(
    ctx: &Context,
    args: &CreateArgs,
    bundle: &Bundle,
    dir: &Path,
) -> Result<Container, OciError> {
    let spec = config::translate(bundle, dir, &ctx.log)?;
    if args.no_pivot {
        ctx.log
            .debug("--no-pivot: the root is entered with pivot_root all the same");
    }
    super::write_atomic(&dir.join("config.json"), bundle.text.as_bytes())?;
    let fifo = mkfifo(&dir.join("exec.fifo"))?;
    let stdio = super::stdio(spec.process.spec.terminal, args.console_socket.as_deref())?;
    let mut container = Container {
        dir: dir.to_path_buf(),
        record: new_record(args, bundle),
    };
    let limits = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .map(|r| resources::limits(r, &ctx.log))
        .unwrap_or_default();
    // A cgroup only where limits are asked for, where nook would make one for `nook run`.
    let delegation = if limits.is_default() {
        Err(Unavailable("no limits".into()))
    } else {
        Delegation::detect(&crate::paths::ProcessEnv)
    };
    if let (Err(why), false) = (&delegation, limits.is_default()) {
        ctx.log
            .warn(&format!("linux.resources cannot be enforced here: {why}"));
    }
    let mut cgroup = None;
    let hooks = bundle.spec.hooks().as_ref();
    let pid = {
        let for_hooks = &container;
        let doc = |pid: i32, status: Status| {
            let mut doc = for_hooks.state_json(status);
            doc["pid"] = pid.into();
            doc.to_string()
        };
        let in_container = |point: Point, status: Status| {
            move |pid: i32| {
                hooks::run(hooks, point, &doc(pid, status)).map_err(|e| crate::errors::chain(&e))
            }
        };
        let before_pivot = in_container(Point::CreateContainer, Status::Creating);
        let before_exec = in_container(Point::StartContainer, Status::Created);
        let inside = bundle::Inside {
            before_pivot: &before_pivot,
            before_exec: &before_exec,
        };
        let made = bundle::create(&spec, stdio, &fifo, args.preserve_fds, &inside, |pid| {
            // Before the container runs anything of its own: its limits hold from the start.
            cgroup = limits::place(&delegation, &args.id, pid, &limits)?;
            let mut doc = for_hooks.state_json(Status::Creating);
            doc["pid"] = pid.into();
            let doc = doc.to_string();
            for point in [Point::CreateRuntime, Point::Prestart] {
                hooks::run(hooks, point, &doc).map_err(|e| {
                    crate::isolation::IsolationError::Start {
                        code: 1,
                        message: e.to_string(),
                    }
                })?;
            }
            Ok(())
        });
        match made {
            Ok(pid) => pid,
            Err(e) => {
                if let Some(c) = &cgroup {
                    c.remove();
                }
                return Err(e.into());
            }
        }
    };
    container.record.cgroup = cgroup.as_ref().map(|c| c.path().to_path_buf());
    let kept = (|| {
        container.record.pid = pid;
        container.record.start_time = state::start_time(pid).ok_or_else(|| {
            OciError::Spec("the container's first process ended while it was created".into())
        })?;
        container.save()?;
        if let Some(pid_file) = &args.pid_file {
            super::write_atomic(pid_file, pid.to_string().as_bytes())?;
        }
        Ok(())
    })();
    if let Err(e) = kept {
        // SAFETY: kill takes a pid and a signal number; the process is the one just made.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        if let Some(c) = &cgroup {
            c.remove();
        }
        return Err(e);
    }
    Ok(container)
}

/// Lets the created container's first process run: opens the fifo it waits on and reads the
/// byte it writes, unless it ends meanwhile.
fn release(container: &Container) -> Result<(), OciError> {
    let path = container.fifo();
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| OciError::Spec("NUL byte in the state path".into()))?;
    // Non-blocking, so that a first process that died does not leave `start` waiting for a
    // writer that never comes.
    // SAFETY: open of a NUL-terminated path; the descriptor, when valid, is ours.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(OciError::io(
            format!("open {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    loop {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, 100) };
        if ready > 0 {
            let mut byte = [0u8; 1];
            // SAFETY: reads at most one byte into the valid buffer.
            let n = unsafe { libc::read(fd.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
            if n == 1 {
                break;
            }
        }
        if container.status() == Status::Stopped {
            return Err(OciError::BadState {
                action: "start",
                status: "has stopped",
            });
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// `start`.
pub fn start(ctx: &Context, id: &str) -> Result<(), OciError> {
    let container = ctx.root.load(id)?;
    match container.status() {
        Status::Created => {}
        status => {
            return Err(OciError::BadState {
                action: "start",
                status: status.phrase(),
            })
        }
    }
    release(&container)?;
    poststart(ctx, &container);
    Ok(())
}

fn poststart(ctx: &Context, container: &Container) {
    let Ok(config) = container.config() else {
        return;
    };
    let doc = container.state_json(Status::Running).to_string();
    if let Err(e) = hooks::run(config.hooks().as_ref(), Point::Poststart, &doc) {
        ctx.log.warn(&crate::errors::chain(&e));
    }
}

/// `run`: create, start, and unless `detach` wait for the first process and delete the
/// container (unless `keep`); the status is the process's.
pub fn run(ctx: &Context, args: &CreateArgs, detach: bool, keep: bool) -> Result<i32, OciError> {
    let container = create(ctx, args)?;
    if let Err(e) = release(&container) {
        let _ = super::ops::delete(ctx, &args.id, true);
        return Err(e);
    }
    poststart(ctx, &container);
    if detach {
        return Ok(0);
    }
    let exit = wait_pid(container.record.pid)?;
    if !keep {
        super::ops::delete(ctx, &args.id, true)?;
    }
    Ok(exit.status())
}
