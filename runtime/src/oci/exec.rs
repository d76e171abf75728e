//! `exec`: a process started in a running container, from `--process` (the spec's process
//! JSON, as containerd and conmon give it) or from a command and flags.

use super::cli::ExecArgs;
use super::config;
use super::error::OciError;
use super::Context;
use crate::isolation::namespace::bundle;
use crate::isolation::namespace::process::wait_pid;
use oci_spec::runtime::Process;

/// The process `exec` runs.
pub(super) fn process(
    args: &ExecArgs,
    container_process: Option<&Process>,
) -> Result<Process, OciError> {
    if let Some(path) = &args.process {
        let text = std::fs::read_to_string(path)
            .map_err(|e| OciError::io(format!("read {}", path.display()), e))?;
        return serde_json::from_str(&text).map_err(|source| OciError::ParseConfig {
            path: path.clone(),
            source,
        });
    }
    if args.command.is_empty() {
        return Err(OciError::Spec("exec needs --process or a command".into()));
    }
    let mut p = container_process.cloned().unwrap_or_default();
    p.set_args(Some(args.command.clone()));
    p.set_terminal(Some(args.tty));
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(args.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &args.cwd {
        p.set_cwd(cwd.into());
    }
    if let Some(user) = &args.user {
        let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
        let parse = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| OciError::Spec(format!("invalid --user {user:?}: uid[:gid]")))
        };
        let u = p.user_mut();
        u.set_uid(parse(uid)?);
        u.set_gid(parse(gid)?);
    }
    if args.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

/// `exec`: returns the process's status unless `--detach`.
pub fn exec(ctx: &Context, args: &ExecArgs) -> Result<i32, OciError> {
    let container = ctx.root.load(&args.id)?;
    if super::vm::is_vm(&container) {
        return super::vm::exec(ctx, args, &container);
    }
    let Some(init) = container.pid() else {
        return Err(OciError::BadState {
            action: "exec in",
            status: "has stopped",
        });
    };
    let config = container.config()?;
    let process = process(args, config.process().as_ref())?;
    let seccomp = config.linux().as_ref().and_then(|l| l.seccomp().clone());
    let plan = config::process_plan(&process, seccomp.as_ref(), &ctx.log)?;
    let tty = plan.spec.terminal;
    let stdio = super::stdio(tty, args.console_socket.as_deref())?;
    if !args.detach {
        // The process is forked by a helper that ends: as a subreaper this process inherits
        // it and waits for it.
        // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    let pid = bundle::exec(init, &plan, stdio, args.preserve_fds)?;
    if let Some(pid_file) = &args.pid_file {
        super::write_atomic(pid_file, pid.to_string().as_bytes())?;
    }
    if args.detach {
        return Ok(0);
    }
    Ok(wait_pid(pid)?.status())
}
