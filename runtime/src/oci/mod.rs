//! `nook-runtime`: an OCI runtime with runc's command line, so that podman (through conmon)
//! and containerd (through its runc shim) run containers on nook. It translates a bundle's
//! config.json into the namespace column's set-up
//! ([`crate::isolation::namespace::bundle`]); its state lives under `--root`, one directory
//! per container ([`state`]).
//!
//! The `create`/`start` split is runc's: `create` leaves the container's first process
//! waiting before its `execve` on the container's `exec.fifo`, and exits (the caller, a
//! subreaper, inherits the process); `start` opens the fifo, which lets it run.

pub mod cli;
mod config;
mod create;
mod error;
mod exec;
mod hooks;
mod log;
mod mounts;
mod ops;
mod resources;
mod spec;
mod state;
pub mod vm;

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use clap::Parser;

pub use error::OciError;
use log::Log;
use state::Root;

use crate::isolation::Stdio;

/// What every command gets: the state directory and the log.
pub struct Context {
    pub root: Root,
    pub log: Log,
}

/// Runs the command line of `nook-runtime`; returns its exit status.
pub fn main() -> i32 {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    if cli.version {
        println!(
            "nook-runtime version {}\ncommit: none\nspec: {}",
            env!("CARGO_PKG_VERSION"),
            state::OCI_VERSION
        );
        return 0;
    }
    let log = Log::open(cli.log.as_deref(), cli.log_format, cli.debug);
    let Some(command) = cli.command else {
        log.error("no command given: see nook-runtime --help");
        return 1;
    };
    if cli.systemd_cgroup {
        log.warn("--systemd-cgroup is not honoured: nook-runtime puts containers in no cgroup of their own");
    }
    let ctx = Context {
        root: Root::new(cli.root.as_deref()),
        log,
    };
    if matches!(
        command,
        cli::Command::Create(_) | cli::Command::Run { .. } | cli::Command::Exec(_)
    ) {
        // As `nook run` and `nook exec` do: no container may reach this binary's file
        // through /proc/PID/exe of the process that becomes its own.
        if let Err(e) = crate::sealed_exe::ensure_sealed() {
            ctx.log.error(&crate::errors::chain(&e));
            return 1;
        }
    }
    match dispatch(&ctx, command) {
        Ok(code) => code,
        Err(e) => {
            ctx.log.error(&crate::errors::chain(&e));
            1
        }
    }
}

fn dispatch(ctx: &Context, command: cli::Command) -> Result<i32, OciError> {
    use cli::Command as C;
    match command {
        C::Create(args) => create::create(ctx, &args).map(|_| 0),
        C::Start { id } => create::start(ctx, &id).map(|()| 0),
        C::Run {
            create: args,
            detach,
            keep,
        } => create::run(ctx, &args, detach, keep),
        C::State { id } => ops::state(ctx, &id).map(|()| 0),
        C::Kill { all, id, signal } => ops::kill(ctx, &id, signal.as_deref(), all).map(|()| 0),
        C::Delete { force, id } => ops::delete(ctx, &id, force).map(|()| 0),
        C::Exec(args) => exec::exec(ctx, &args),
        C::Ps {
            format,
            id,
            ps_args,
        } => ops::ps(ctx, &id, &format, &ps_args).map(|()| 0),
        C::List { format, quiet } => ops::list(ctx, &format, quiet).map(|()| 0),
        C::Features => spec::features().map(|()| 0),
        C::Spec { bundle, rootless } => spec::spec(bundle.as_deref(), rootless).map(|()| 0),
        C::Pause { .. } | C::Resume { .. } => Err(OciError::Unsupported {
            what: "pause and resume".into(),
            why: "they need a cgroup freezer, and nook-runtime puts containers in no cgroup of their own",
        }),
    }
}

/// Replaces `path` with `data` atomically (a pid file, a state file).
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), OciError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::util::atomic::write_file(dir, path, data)?;
    Ok(())
}

/// The process's standard streams: a pty whose leader goes to the console socket (runc's
/// protocol) when `terminal`, else this process's own streams, passed on.
fn stdio(terminal: bool, console_socket: Option<&Path>) -> Result<Stdio, OciError> {
    let null = || crate::util::fd::dev_null().map_err(|e| OciError::io("open /dev/null", e));
    if terminal {
        let Some(socket) = console_socket else {
            return Err(OciError::Spec(
                "cannot allocate a tty without --console-socket: nook-runtime does not stay \
                 to relay one"
                    .into(),
            ));
        };
        let stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
            OciError::io(
                format!("connect to the console socket {}", socket.display()),
                e,
            )
        })?;
        return Ok(Stdio {
            stdin: null()?,
            stdout: null()?,
            stderr: null()?,
            console: Some(OwnedFd::from(stream)),
        });
    }
    let own = |fd: i32| -> Result<OwnedFd, OciError> {
        // SAFETY: fd is a standard descriptor number; it is only borrowed to be duplicated,
        // and a closed one fails the fcntl below.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        match borrowed.try_clone_to_owned() {
            Ok(owned) => Ok(owned),
            Err(_) => null(),
        }
    };
    Ok(Stdio {
        stdin: own(0)?,
        stdout: own(1)?,
        stderr: own(2)?,
        console: None,
    })
}
