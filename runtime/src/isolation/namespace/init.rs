//! What runs inside the container's namespaces, in the child, before `execve`: the container's
//! first process (hostname, filesystem, network loopback) and the common tail shared with `exec`
//! (user, working directory, stdio, capabilities, no_new_privs, seccomp, executable lookup).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use nook_agent::guest::rootfs::{sethostname, GuestSetup};
use nook_agent::layer::targets::RECORD_NAME;
use nook_agent::protocol::StartSpec;
use nook_agent::supervisor::ContainerSetup;
use std::path::Path;

use super::confine::Confinement;
use super::process::ChildFailure;
use super::rooted::Rooted;
use super::sys::LinuxSys;
use super::{caps, rootfs, seccomp, user};
use crate::isolation::limits::ulimit::Ulimit;
use crate::isolation::{LaunchSpec, ProcessSpec, Stdio};
use crate::terminal;
use nook_agent::process_env;

fn os(what: &str, e: io::Error) -> ChildFailure {
    ChildFailure::setup(format!("{what}: {e}"))
}

/// The container's own files, handed to its init: its directory and what goes into them.
pub struct ContainerFiles {
    pub dir: PathBuf,
    pub start: StartSpec,
}

/// The container's first process, from its fresh namespaces to the workload.
pub fn container_init(
    spec: &LaunchSpec,
    overlay: &super::Overlay,
    setup: &ContainerFiles,
    stdio: &Stdio,
    setgroups: bool,
    confinement: &Confinement,
    network: Option<super::net::ChildEnds>,
) -> ChildFailure {
    if let Err(e) = become_root(setgroups) {
        return os("cannot become root in the user namespace", e);
    }
    if spec.security.keep_id {
        // The directories the host user made for the container (its root, the writable layer's
        // top, and the init layer's /etc) belong to the container's root, as the image's do;
        // else they would show as the user's own uid under keep-id.
        let init_etc = overlay.lower.get(1).map(|init| init.join("etc"));
        for dir in [Some(&overlay.upper), init_etc.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Err(e) = std::os::unix::fs::lchown(dir, Some(0), Some(0)) {
                return os(
                    &format!("cannot give {} to the container's root", dir.display()),
                    e,
                );
            }
        }
    }
    let sys = LinuxSys;
    if let Err(e) = super::sys::Sys::sethostname(&sys, &spec.hostname) {
        return os(&format!("cannot set the hostname {:?}", spec.hostname), e);
    }
    if let Err(e) = rootfs::mount(&sys, overlay, confinement.masks, spec.limits.shm_size) {
        return ChildFailure::setup(crate::errors::chain(&e));
    }
    // /etc/hostname, /etc/hosts and /etc/resolv.conf, bound from the container's directory by
    // the guest agent's own code, the targets resolved inside the new root (the targets it
    // has to create are recorded beside the writable layer, so that they never show in `diff`
    // or `commit`).
    let ops = match Rooted::new(&overlay.merged) {
        Ok(ops) => ops,
        Err(e) => return os(&format!("cannot open {}", overlay.merged.display()), e),
    };
    let mut files = GuestSetup {
        ops,
        files_dir: setup.dir.clone(),
        targets_record: setup.dir.join(RECORD_NAME),
        set_hostname: sethostname,
        read_only: false,
    };
    if let Err(message) = files.apply(&setup.start) {
        return ChildFailure::setup(message);
    }
    // Volumes, bind mounts and tmpfs mounts, over the root and the files above.
    if let Err(message) = super::binds::apply(&mut files.ops, &spec.mounts, &files.targets_record) {
        return ChildFailure::setup(message);
    }
    if let Err(e) = rootfs::switch(&sys, overlay) {
        return ChildFailure::setup(crate::errors::chain(&e));
    }
    if let Err(e) = rootfs::seal(&sys, overlay.read_only) {
        return ChildFailure::setup(crate::errors::chain(&e));
    }
    if let Err(e) = loopback_up() {
        return os("cannot bring the loopback interface up", e);
    }
    if let Some(ends) = network {
        if let Err(message) = super::net::wait_configured(ends) {
            return ChildFailure::setup(message);
        }
    }
    let rlimits = Ulimit::rlimits(&spec.limits.ulimits);
    let tail = Tail {
        rlimits: &rlimits,
        ..Tail::default()
    };
    run_process_with(&spec.process, stdio, setgroups, confinement, &tail)
}

pub(super) fn become_root(setgroups: bool) -> io::Result<()> {
    // SAFETY: plain id-setting calls with no pointers (setgroups with an empty list).
    unsafe {
        if setgroups && libc::setgroups(0, std::ptr::null()) < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setresgid(0, 0, 0) < 0 || libc::setresuid(0, 0, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The new network namespace has only `lo`, and it starts down.
pub(super) fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket call; the descriptor is closed below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: req is a valid ifreq naming "lo"; the union member written is ifru_flags.
    let result = unsafe {
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(io::Error::last_os_error())
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: sock is our open descriptor.
    unsafe { libc::close(sock) };
    result
}

fn cstrings<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Vec<CString>, ChildFailure> {
    items
        .into_iter()
        .map(|s| CString::new(s).map_err(|_| ChildFailure::setup(format!("NUL byte in {s:?}"))))
        .collect()
}

/// What an OCI bundle asks of the common tail beyond nook's own process spec; the default is
/// what `nook run` and `nook exec` do.
pub struct Tail<'a> {
    /// The user's ids as given (an OCI process's uid, gid and additional gids, with the home
    /// directory from the container's passwd); none: `process.user` resolved by name.
    pub ids: Option<user::Ids>,
    /// The environment exactly as given, plus `HOME` when absent (runc's rule); else docker's
    /// defaults are added.
    pub exact_env: bool,
    /// Resource limits set before the workload runs: (resource, soft, hard).
    pub rlimits: &'a [(u32, u64, u64)],
    pub umask: Option<u32>,
    /// Descriptors from 3 on that the workload inherits (`--preserve-fds`).
    pub keep_fds: u32,
    /// Whether the workload dies with its parent (nook's monitor): not when the caller of an
    /// OCI runtime, whose process the parent is, exits right away.
    pub die_with_parent: bool,
    /// Called last before `execve`: an OCI container waits there for `start`.
    pub gate: Option<&'a dyn Fn() -> Result<(), ChildFailure>>,
}

impl Default for Tail<'_> {
    fn default() -> Self {
        Tail {
            ids: None,
            exact_env: false,
            rlimits: &[],
            umask: None,
            keep_fds: 0,
            die_with_parent: true,
            gate: None,
        }
    }
}

/// The common tail: from a process inside the container's namespaces (as root, with the
/// container's filesystem as its root) to the workload. Returns only on failure.
pub fn run_process(
    process: &ProcessSpec,
    stdio: &Stdio,
    setgroups: bool,
    confinement: &Confinement,
) -> ChildFailure {
    run_process_with(process, stdio, setgroups, confinement, &Tail::default())
}

/// [`run_process`] with what an OCI bundle adds.
pub fn run_process_with(
    process: &ProcessSpec,
    stdio: &Stdio,
    setgroups: bool,
    confinement: &Confinement,
    tail: &Tail<'_>,
) -> ChildFailure {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let resolved = match &tail.ids {
        Some(ids) if ids.home.is_empty() => {
            // HOME comes from the container's passwd entry of the uid, `/` without one.
            let home = user::resolve(&ids.uid.to_string()).map_or_else(|_| "/".into(), |r| r.home);
            Ok(user::Ids {
                home,
                ..ids.clone()
            })
        }
        Some(ids) => Ok(ids.clone()),
        None => user::resolve(&process.user),
    };
    let mut ids = match resolved.and_then(|ids| {
        let map = |p| read(&format!("/proc/self/{p}"));
        user::check_mapped(&ids, &map("uid_map"), &map("gid_map")).map(|()| ids)
    }) {
        Ok(ids) => ids,
        Err(e) => return ChildFailure::setup(crate::errors::chain(&e)),
    };
    // The process's own additional groups (`--group-add`), after the user's, as the guest
    // agent adds them in the VM column.
    for g in &process.groups {
        if !ids.groups.contains(g) {
            ids.groups.push(*g);
        }
    }
    if !process.groups.is_empty() && !setgroups {
        return ChildFailure::setup(
            "cannot add supplementary groups: the container's user namespace denies setgroups \
             (the user needs subordinate gids in /etc/subgid, and newgidmap)",
        );
    }
    let cwd = if process.cwd.is_empty() {
        "/"
    } else {
        &process.cwd
    };
    if let Err(e) = std::fs::create_dir_all(cwd).and_then(|()| std::env::set_current_dir(cwd)) {
        return os(&format!("cannot enter the working directory {cwd}"), e);
    }
    let console = match (&stdio.console, process.terminal) {
        (Some(socket), true) => match container_pty(socket, &stdio.stdin, &ids, process) {
            Ok(follower) => Some(follower),
            Err(failure) => return failure,
        },
        _ => None,
    };
    let streams = match &console {
        Some(follower) => [follower; 3],
        None => [&stdio.stdin, &stdio.stdout, &stdio.stderr],
    };
    for (fd, target) in streams.into_iter().zip(0..) {
        // SAFETY: fd is open; dup2 onto a standard descriptor number.
        if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
            return os(
                "cannot set up the standard streams",
                io::Error::last_os_error(),
            );
        }
    }
    if let Err(failure) = own_session(process.terminal, tail.keep_fds) {
        return failure;
    }
    // The hostname is the container's: set by its first process, joined by `exec`.
    let hostname = process_env::kernel_hostname();
    let env = if tail.exact_env {
        let mut env = process.env.clone();
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", ids.home));
        }
        env
    } else {
        process_env::build(
            &process.env,
            process_env::Defaults {
                home: &ids.home,
                hostname: &hostname,
                terminal: process.terminal,
            },
        )
    };
    let path_var = process_env::search_path(&env).to_string();
    let argv = match cstrings(process.argv.iter().map(String::as_str)) {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => {
            return ChildFailure::setup("no command given: the image has no entrypoint or cmd")
        }
        Err(f) => return f,
    };
    let envp = match cstrings(env.iter().map(String::as_str)) {
        Ok(e) => e,
        Err(f) => return f,
    };
    let candidates: Vec<String> = if process.argv[0].contains('/') {
        vec![process.argv[0].clone()]
    } else {
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{}", d.trim_end_matches('/'), process.argv[0]))
            .collect()
    };
    let candidates = match cstrings(candidates.iter().map(String::as_str)) {
        Ok(c) => c,
        Err(f) => return f,
    };

    for &(resource, soft, hard) in tail.rlimits {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the valid struct.
        if unsafe { libc::setrlimit(resource, &limit) } < 0 {
            return os(
                &format!("cannot set resource limit {resource} to {soft}:{hard}"),
                io::Error::last_os_error(),
            );
        }
    }
    // The workload starts with SIGPIPE's default action, as under docker and runc, even when
    // this process was forked by one that ignores it (an attached monitor).
    crate::util::sigpipe::restore_default();
    if let Some(mask) = tail.umask {
        // SAFETY: umask takes a mode and cannot fail.
        unsafe { libc::umask(mask) };
    }
    if let Err(e) = caps::drop_bounding(confinement.caps, caps::last_cap()) {
        return os("cannot drop capabilities", e);
    }
    let install = || {
        seccomp::apply(&confinement.filters)
            .map_err(|e| ChildFailure::setup(format!("cannot install the seccomp profile: {e}")))
    };
    // Without no_new_privs, only a process holding CAP_SYS_ADMIN may install a filter: this
    // one, still root of the container, before it switches user (runc's order).
    if !confinement.no_new_privs {
        if let Err(failure) = install() {
            return failure;
        }
    }
    if let Err(e) = switch_user(&ids, setgroups, confinement) {
        return os(&format!("cannot switch to user {:?}", process.user), e);
    }
    if confinement.no_new_privs {
        // SAFETY: PR_SET_NO_NEW_PRIVS takes no pointers.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            return os("cannot set no_new_privs", io::Error::last_os_error());
        }
        if let Err(failure) = install() {
            return failure;
        }
    }
    if let Some(gate) = tail.gate {
        if let Err(failure) = gate() {
            return failure;
        }
    }
    // The container dies with its monitor (a monitor killed with SIGKILL cannot clean up).
    // Set last: a change of credentials clears it.
    if tail.die_with_parent {
        // SAFETY: PR_SET_PDEATHSIG takes a signal number.
        unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
    }
    exec_first(&candidates, &argv, &envp, &process.argv[0])
}

/// Opens a pty inside the container, so that the process sees its terminal in the container's
/// own `/dev/pts` (a pty of the host's devpts has no name there), sized like `sized_like` and
/// owned by the process's user; sends its leader back to nook over `socket` and returns the
/// follower.
fn container_pty(
    socket: &OwnedFd,
    sized_like: &OwnedFd,
    ids: &user::Ids,
    process: &ProcessSpec,
) -> Result<OwnedFd, ChildFailure> {
    let fail = |what: &str| os(what, io::Error::last_os_error());
    // SAFETY: open of a NUL-terminated path; the result, when valid, is ours alone.
    let leader = unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if leader < 0 {
        return Err(fail("cannot open /dev/ptmx in the container"));
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    let leader = unsafe { OwnedFd::from_raw_fd(leader) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the valid pointer; TIOCGPTPEER takes open flags
    // and fails unless `leader` is a pty multiplexer (whatever the container put at the path).
    let follower = unsafe {
        if libc::ioctl(leader.as_raw_fd(), libc::TIOCSPTLCK, &unlock) < 0 {
            return Err(fail("cannot unlock the container's pty"));
        }
        libc::ioctl(
            leader.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if follower < 0 {
        return Err(fail(
            "cannot open the container's pty (is /dev/ptmx a pty?)",
        ));
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    let follower = unsafe { OwnedFd::from_raw_fd(follower) };
    if process.rows > 0 && process.cols > 0 {
        let _ = terminal::set_size(follower.as_fd(), (process.rows, process.cols));
    } else if let Some(size) = terminal::size(sized_like.as_fd()) {
        let _ = terminal::set_size(follower.as_fd(), size);
    }
    // Best effort, as the process already holds it open: its own user may reopen it by name.
    // SAFETY: fchown of our own descriptor to plain ids.
    unsafe { libc::fchown(follower.as_raw_fd(), ids.uid, ids.gid) };
    terminal::send_fd(socket.as_fd(), leader.as_fd())
        .map_err(|e| os("cannot hand the container's pty to nook", e))?;
    Ok(follower)
}

/// Makes the process the leader of a new session, so that the caller's terminal is never its
/// controlling terminal (`/dev/tty` and `TIOCSTI` would reach the user's shell through it);
/// with a terminal, its stdin (a pty of its own) becomes its controlling terminal. No
/// descriptor beyond the standard three survives `execve`: the caller's others stay out.
fn own_session(terminal: bool, keep_fds: u32) -> Result<(), ChildFailure> {
    // SAFETY: setsid has no preconditions; this child is never a process group leader.
    if unsafe { libc::setsid() } < 0 {
        return Err(os("cannot start a new session", io::Error::last_os_error()));
    }
    // SAFETY: TIOCSCTTY on fd 0 takes an int argument, not a pointer.
    if terminal && unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(os(
            "cannot make the pty the controlling terminal",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: close_range takes two descriptor numbers and flags; marking descriptors
    // close-on-exec leaves the ones still needed before execve (the report pipe) usable.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32.saturating_add(keep_fds),
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked < 0 {
        return Err(os(
            "cannot close the caller's other descriptors",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn switch_user(ids: &user::Ids, setgroups: bool, confinement: &Confinement) -> io::Result<()> {
    // Sets of their own survive a switch to another user: the permitted set is kept across
    // setresuid, and the sets are written after it.
    let keep = confinement.sets.is_some() && ids.uid != 0;
    // SAFETY: PR_SET_KEEPCAPS takes a flag; no pointers.
    if keep && unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: id-setting calls; the group list pointer and length describe `ids.groups`.
    unsafe {
        if setgroups && libc::setgroups(ids.groups.len(), ids.groups.as_ptr()) < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setresgid(ids.gid, ids.gid, ids.gid) < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setresuid(ids.uid, ids.uid, ids.uid) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    match &confinement.sets {
        Some(sets) => {
            // SAFETY: PR_SET_KEEPCAPS takes a flag; no pointers.
            if keep && unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) } < 0 {
                return Err(io::Error::last_os_error());
            }
            caps::set_sets(sets)?;
        }
        None if ids.uid == 0 => caps::set(confinement.caps)?,
        None => {}
    }
    Ok(())
}

/// execve of each candidate path in turn, like execvp: returns only when none could run.
fn exec_first(
    candidates: &[CString],
    argv: &[CString],
    envp: &[CString],
    name: &str,
) -> ChildFailure {
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let mut denied = None;
    for path in candidates {
        // SAFETY: path, argv and envp are NUL-terminated strings in null-terminated arrays,
        // all alive for the call.
        unsafe { libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => continue,
            Some(libc::EACCES) | Some(libc::ENOEXEC) | Some(libc::EISDIR) => {
                denied = Some(err);
            }
            _ => return ChildFailure::setup(format!("exec {name:?}: {err}")),
        }
    }
    match denied {
        Some(err) => ChildFailure {
            code: 126,
            message: format!("exec {name:?}: {err}"),
        },
        None if Path::new(name).is_absolute() || name.contains('/') => ChildFailure {
            code: 127,
            message: format!("exec {name:?}: no such file or directory"),
        },
        None => ChildFailure {
            code: 127,
            message: format!("exec {name:?}: executable file not found in $PATH"),
        },
    }
}
