//! `nook exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] CONTAINER COMMAND [ARG...]`: run a second
//! process in a running container; exits with its status.

use std::os::fd::{FromRawFd, OwnedFd};

use anyhow::Context as _;

use nook::container::engine::merge_env;
use nook::isolation::{ProcessSpec, Stdio};

use super::status::ExitStatus;
use super::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY (the caller's terminal is passed through)
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    container: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn dup(fd: i32) -> anyhow::Result<OwnedFd> {
    // SAFETY: duplicating a standard descriptor; the copy is owned by the returned OwnedFd.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    anyhow::ensure!(
        new >= 0,
        "cannot duplicate descriptor {fd}: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = ctx.engine();
    let container = engine.containers.find(&args.container)?;
    let base = &container.config.launch.process;
    let process = ProcessSpec {
        argv: args.command.clone(),
        env: merge_env(&base.env, &args.env),
        cwd: args.workdir.clone().unwrap_or_else(|| base.cwd.clone()),
        user: args.user.clone().unwrap_or_else(|| base.user.clone()),
        terminal: args.tty,
    };
    let stdin = if args.interactive || args.tty {
        dup(0)?
    } else {
        std::fs::File::open("/dev/null")
            .context("cannot open /dev/null")?
            .into()
    };
    let stdio = Stdio {
        stdin,
        stdout: dup(1)?,
        stderr: dup(2)?,
    };
    let exit = engine.exec(&container, &process, stdio)?;
    match exit.status() {
        0 => Ok(()),
        code => Err(ExitStatus(code).into()),
    }
}
