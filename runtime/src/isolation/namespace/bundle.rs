//! A container described by an OCI bundle (`nook-runtime`, the runc command line): the same
//! namespace set-up as nook's own containers (the clone and id maps of [`super::process`], the
//! common tail of [`super::init`] with its user, capabilities, seccomp, pty and `execve`, the
//! device binds and masks of [`super::rootfs`] and [`super::masks`], mount targets resolved
//! inside the root as [`super::binds`] does), with what config.json decides in place of the
//! image and the flags: the root is the bundle's directory bound onto itself, the mounts are
//! the spec's list, namespaces may be joined by path, and the first process waits before its
//! `execve` until the runtime's `start` opens the container's fifo.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::confine::Confinement;
use super::idmap::IdMap;
use super::init::{self, Tail};
use super::process::{self, spawn, spawn_with, wait_pid, ChildFailure};
use super::rooted::{fd_path, Rooted};
use super::sys::{LinuxSys, Sys};
use super::{binds, masks, rootfs, user};
use crate::isolation::{IsolationError, ProcessSpec, Stdio};

/// What a mount of the spec mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountKind {
    /// A host path (`bind`/`rbind` in the options).
    Bind { source: PathBuf, recursive: bool },
    /// A file system of type `fstype` (proc, sysfs, tmpfs, devpts, mqueue, cgroup, ...).
    Fs { fstype: String, source: String },
}

/// One mount of config.json, its options split into what mount(2) takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecMount {
    pub kind: MountKind,
    /// Absolute, inside the container's root.
    pub target: PathBuf,
    /// `MS_RDONLY`, `MS_NOSUID`, ...: for a bind, applied by a remount.
    pub flags: libc::c_ulong,
    /// `MS_PRIVATE`, `MS_SLAVE`, ... (with `MS_REC`), or 0.
    pub propagation: libc::c_ulong,
    /// The file system's own options (`mode=755`, `size=65536k`).
    pub data: String,
}

/// The container's namespaces: made new, or joined by path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// `CLONE_NEW*` flags.
    pub new: libc::c_int,
    /// Joined before the container's first process is made, user namespace first.
    pub join: Vec<(PathBuf, libc::c_int)>,
}

/// A process of the container: the first one, or one `exec` starts.
pub struct ProcessPlan {
    pub spec: ProcessSpec,
    /// The ids as config.json gives them (home empty: looked up in the container).
    pub user: user::Ids,
    pub umask: Option<u32>,
    pub rlimits: Vec<(u32, u64, u64)>,
    pub confinement: Confinement,
}

/// Everything a bundle's container needs from the namespace column.
pub struct BundleSpec {
    /// The root directory (absolute).
    pub rootfs: PathBuf,
    pub readonly: bool,
    /// Set when the container has its own UTS namespace.
    pub hostname: Option<String>,
    pub mounts: Vec<SpecMount>,
    /// Host device nodes (absolute paths under /dev) bound into the container's /dev beside
    /// the default ones (a user namespace cannot create device nodes).
    pub devices: Vec<String>,
    pub masked: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub namespaces: Namespaces,
    /// The new user namespace's maps.
    pub ids: Option<IdMap>,
    pub process: ProcessPlan,
    /// Where the mount targets made in the root are recorded.
    pub targets_record: PathBuf,
    /// Kernel parameters (`net.ipv4.ip_forward`, `1`) of the container's own namespaces,
    /// written once its mounts are made, before the masks and read-only paths.
    pub sysctl: Vec<(String, String)>,
}

/// What the OCI front end runs inside the container's first process, given its pid as the
/// host sees it: once the root's mounts are made and before pivot_root (the createContainer
/// hooks), and once `start` let it go, just before `execve` (the startContainer hooks).
pub struct Inside<'a> {
    pub before_pivot: &'a dyn Fn(i32) -> Result<(), String>,
    pub before_exec: &'a dyn Fn(i32) -> Result<(), String>,
}

/// Creates the container: its namespaces, mounts and root, and its first process waiting
/// before `execve` until `fifo` (a FIFO, opened `O_PATH` by the caller) is opened for reading
/// (`start`). `created` runs with the first process's pid once its namespaces exist and before
/// it sets itself up (the OCI createRuntime and prestart hooks). Returns that pid.
pub fn create(
    spec: &BundleSpec,
    stdio: Stdio,
    fifo: &OwnedFd,
    keep_fds: u32,
    inside: &Inside<'_>,
    created: impl FnOnce(i32) -> Result<(), IsolationError>,
) -> Result<i32, IsolationError> {
    // Joining happens here, in the caller, which the first process is cloned from: a pid
    // namespace joined applies to children only.
    let (mount, joined): (Vec<_>, Vec<_>) = open_paths(&spec.namespaces.join)?
        .into_iter()
        .partition(|(_, flag)| *flag == libc::CLONE_NEWNS);
    join_all(&joined).map_err(|f| IsolationError::Start {
        code: 1,
        message: f.message,
    })?;
    // A mount namespace is joined by the first process itself (setns refuses it to a caller
    // that shares its file system context with threads).
    let mount = mount.into_iter().next().map(|(file, _)| file);
    let map = spec.ids.as_ref();
    // Without maps of its own, the user namespace is this process's (joined above, or the
    // host's): setgroups is as it allows.
    let setgroups = match map {
        Some(map) => map.setgroups_allowed(),
        None => {
            std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() != "deny")
        }
    };
    let pid = spawn_with(
        spec.namespaces.new,
        map,
        created,
        |()| Ok(()),
        || {
            Err(first_process(
                spec,
                &stdio,
                fifo,
                keep_fds,
                inside,
                setgroups,
                mount.as_ref(),
            ))
        },
    )?;
    drop(stdio);
    Ok(pid)
}

fn setup_failure(message: impl Into<String>) -> ChildFailure {
    ChildFailure {
        code: 1,
        message: message.into(),
    }
}

fn first_process(
    spec: &BundleSpec,
    stdio: &Stdio,
    fifo: &OwnedFd,
    keep_fds: u32,
    inside: &Inside<'_>,
    setgroups: bool,
    mount: Option<&File>,
) -> ChildFailure {
    // The host's /proc is still this process's: it names the pid the host sees.
    let host_pid = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse::<i32>().ok())
        .unwrap_or(0);
    if let Err(e) = init::become_root(setgroups) {
        return setup_failure(format!("cannot become root in the user namespace: {e}"));
    }
    let sys = LinuxSys;
    if let Some(name) = &spec.hostname {
        if let Err(e) = sys.sethostname(name) {
            return setup_failure(format!("cannot set the hostname {name:?}: {e}"));
        }
    }
    let rooted = match mount {
        Some(ns) => enter_joined(ns, spec, || (inside.before_pivot)(host_pid)),
        None => build_root(&sys, spec, || (inside.before_pivot)(host_pid)),
    };
    if let Err(message) = rooted {
        return setup_failure(message);
    }
    if spec.namespaces.new & libc::CLONE_NEWNET != 0 {
        if let Err(e) = init::loopback_up() {
            return setup_failure(format!("cannot bring the loopback interface up: {e}"));
        }
    }
    let fifo_fd = fifo.as_raw_fd();
    let gate = move || {
        wait_for_start(fifo_fd)?;
        (inside.before_exec)(host_pid).map_err(setup_failure)
    };
    let tail = Tail {
        ids: Some(spec.process.user.clone()),
        exact_env: true,
        rlimits: &spec.process.rlimits,
        umask: spec.process.umask,
        keep_fds,
        die_with_parent: false,
        gate: Some(&gate),
    };
    init::run_process_with(
        &spec.process.spec,
        stdio,
        setgroups,
        &spec.process.confinement,
        &tail,
    )
}

/// Lets the caller of `create` return, then blocks until `start` opens the fifo for reading
/// and writes a byte to it (runc's exec.fifo).
fn wait_for_start(fifo: i32) -> Result<(), ChildFailure> {
    process::detach_report()
        .map_err(|e| setup_failure(format!("cannot hand the container over: {e}")))?;
    let path = std::ffi::CString::new(format!("/proc/self/fd/{fifo}"))
        .map_err(|_| setup_failure("bad fifo path"))?;
    // SAFETY: open of a NUL-terminated path; blocks until a reader opens the fifo.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(setup_failure(format!(
            "cannot open the container's start fifo: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: one byte from a valid buffer to our own descriptor, then close it.
    unsafe {
        libc::write(fd, b"0".as_ptr().cast(), 1);
        libc::close(fd);
    }
    Ok(())
}

/// The container's root: the bundle's directory, its mounts, devices and masks, then
/// pivot_root into it.
fn build_root(
    sys: &dyn Sys,
    spec: &BundleSpec,
    before_pivot: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let chain = |e: super::sys::MountError| crate::errors::chain(&e);
    rootfs::bind_root(sys, &spec.rootfs).map_err(chain)?;
    let mut ops = Rooted::new(&spec.rootfs)
        .map_err(|e| format!("cannot open {}: {e}", spec.rootfs.display()))?;
    for m in &spec.mounts {
        mount_one(sys, &mut ops, m, &spec.targets_record)
            .map_err(|e| format!("cannot mount {}: {e}", m.target.display()))?;
    }
    devices(sys, &ops, spec)?;
    write_sysctls(&spec.rootfs, &spec.sysctl)?;
    masks::apply_lists(sys, &spec.rootfs, &spec.masked, &spec.readonly_paths).map_err(chain)?;
    before_pivot()?;
    rootfs::switch_to(sys, &spec.rootfs).map_err(chain)?;
    rootfs::seal(sys, spec.readonly).map_err(chain)
}

/// Writes the container's kernel parameters. A parameter is its writer's namespace's (net, ipc,
/// uts), whichever proc file system is written: the container's /proc when its root mounts one,
/// else the host's.
fn write_sysctls(rootfs: &Path, sysctl: &[(String, String)]) -> Result<(), String> {
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    if sysctl.is_empty() {
        return Ok(());
    }
    let theirs = rootfs.join("proc");
    let is_proc = std::ffi::CString::new(theirs.as_os_str().as_encoded_bytes())
        .ok()
        .is_some_and(|c| {
            // SAFETY: statfs reads the NUL-terminated path and fills the zeroed struct.
            let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
            // SAFETY: as above; both pointers are valid for the call.
            unsafe {
                libc::statfs(c.as_ptr(), &mut fs) == 0 && fs.f_type as i64 == PROC_SUPER_MAGIC
            }
        });
    let base = if is_proc {
        theirs
    } else {
        PathBuf::from("/proc")
    }
    .join("sys");
    for (key, value) in sysctl {
        let path = base.join(key.replace('.', "/"));
        std::fs::write(&path, value)
            .map_err(|e| format!("cannot set the sysctl {key} to {value:?}: {e}"))?;
    }
    Ok(())
}

/// The root in a mount namespace joined by path: that namespace is another's, set up already,
/// so nothing is mounted or pivoted in it; the process enters the spec's root (a path in that
/// namespace) with chroot.
fn enter_joined(
    ns: &File,
    spec: &BundleSpec,
    before_chroot: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    join_all(&[(
        ns.try_clone().map_err(|e| e.to_string())?,
        libc::CLONE_NEWNS,
    )])
    .map_err(|f| f.message)?;
    write_sysctls(Path::new("/"), &spec.sysctl)?;
    before_chroot()?;
    let root = std::ffi::CString::new(spec.rootfs.as_os_str().as_encoded_bytes())
        .map_err(|_| "NUL byte in the root path".to_string())?;
    // SAFETY: chdir and chroot of NUL-terminated paths.
    let entered = unsafe {
        libc::chdir(root.as_ptr()) == 0
            && libc::chroot(c".".as_ptr()) == 0
            && libc::chdir(c"/".as_ptr()) == 0
    };
    if !entered {
        return Err(format!(
            "cannot enter the root {} in the joined mount namespace: {}",
            spec.rootfs.display(),
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn mount_one(sys: &dyn Sys, ops: &mut Rooted, m: &SpecMount, record: &Path) -> Result<(), String> {
    let dir = match &m.kind {
        MountKind::Bind { source, .. } => std::fs::metadata(source)
            .map_err(|e| format!("{}: {e}", source.display()))?
            .is_dir(),
        MountKind::Fs { .. } => true,
    };
    binds::make_target(ops, &m.target, dir, record)?;
    let at = ops
        .open(&m.target, libc::O_PATH, 0)
        .map_err(|e| e.to_string())?;
    let path = fd_path(&at);
    let data = (!m.data.is_empty()).then_some(m.data.as_str());
    match &m.kind {
        MountKind::Bind { source, recursive } => {
            let rec = if *recursive { libc::MS_REC } else { 0 };
            sys.mount(
                &source.to_string_lossy(),
                &path,
                None,
                libc::MS_BIND | rec,
                None,
            )
            .map_err(|e| e.to_string())?;
            if m.flags != 0 {
                binds::remount_with(ops, &m.target, m.flags)?;
            }
        }
        MountKind::Fs { fstype, source } => {
            match sys.mount(source, &path, Some(fstype), m.flags, data) {
                Ok(()) => {}
                Err(e) => fs_fallback(sys, ops, m, fstype, &path, e)?,
            }
        }
    }
    if m.propagation != 0 {
        let at = ops
            .open(&m.target, libc::O_PATH, 0)
            .map_err(|e| e.to_string())?;
        sys.mount("none", &fd_path(&at), None, m.propagation, None)
            .map_err(|e| format!("cannot set its propagation: {e}"))?;
    }
    Ok(())
}

/// What runc does where a rootless container may not mount a file system: the host's sysfs,
/// cgroup tree or mqueue bound instead, and devpts without a `gid=` the user namespace lacks.
fn fs_fallback(
    sys: &dyn Sys,
    ops: &Rooted,
    m: &SpecMount,
    fstype: &str,
    path: &Path,
    err: io::Error,
) -> Result<(), String> {
    let refused = matches!(errno(&err), libc::EPERM | libc::EINVAL | libc::EBUSY);
    let host_bind = |host: &str| -> Result<(), String> {
        sys.mount(host, path, None, libc::MS_BIND | libc::MS_REC, None)
            .map_err(|e| format!("{err}, and binding the host's {host}: {e}"))?;
        binds::remount_with(ops, &m.target, m.flags & !libc::MS_RELATIME)
    };
    match fstype {
        "sysfs" if errno(&err) == libc::EPERM => {
            rootfs::mount_sysfs(sys, path).map_err(|e| crate::errors::chain(&e))
        }
        "cgroup" | "cgroup2" if refused => host_bind("/sys/fs/cgroup"),
        "mqueue" if refused => host_bind("/dev/mqueue"),
        "devpts" if errno(&err) == libc::EINVAL && m.data.contains("gid=") => {
            let data: Vec<&str> = m
                .data
                .split(',')
                .filter(|o| !o.starts_with("gid="))
                .collect();
            sys.mount(
                "devpts",
                path,
                Some("devpts"),
                m.flags,
                Some(&data.join(",")),
            )
            .map_err(|e| e.to_string())
        }
        _ => Err(err.to_string()),
    }
}

/// The devices every container gets (the host's null, zero, ... bound in) and the spec's own,
/// and the links of /dev, where the container's /dev is a directory.
fn devices(sys: &dyn Sys, ops: &Rooted, spec: &BundleSpec) -> Result<(), String> {
    let Ok(dev) = ops.open(Path::new("/dev"), libc::O_PATH | libc::O_DIRECTORY, 0) else {
        return Ok(());
    };
    let dev = fd_path(&dev);
    let chain = |e: super::sys::MountError| crate::errors::chain(&e);
    let mut names: Vec<&str> = rootfs::DEVICES.to_vec();
    for d in &spec.devices {
        let name = d.trim_start_matches("/dev/");
        if !name.contains('/') && !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    rootfs::bind_devices(sys, &dev, &names).map_err(chain)?;
    for (target, link) in rootfs::DEV_LINKS {
        let at = dev.join(link);
        if std::fs::symlink_metadata(&at).is_err() {
            sys.symlink(target, &at)
                .map_err(|e| format!("cannot create /dev/{link}: {e}"))?;
        }
    }
    Ok(())
}

/// The namespaces of process `init` that differ from this process's own, user first: what a
/// process `exec` starts joins.
pub fn open_differing(init: i32) -> Result<Vec<(File, libc::c_int)>, IsolationError> {
    let mut out = Vec::new();
    for (name, flag) in [
        ("user", libc::CLONE_NEWUSER),
        ("mnt", libc::CLONE_NEWNS),
        ("pid", libc::CLONE_NEWPID),
        ("uts", libc::CLONE_NEWUTS),
        ("ipc", libc::CLONE_NEWIPC),
        ("net", libc::CLONE_NEWNET),
        ("cgroup", libc::CLONE_NEWCGROUP),
    ] {
        let theirs = format!("/proc/{init}/ns/{name}");
        let ours = format!("/proc/self/ns/{name}");
        let same = match (std::fs::read_link(&theirs), std::fs::read_link(&ours)) {
            (Ok(a), Ok(b)) => a == b,
            (Err(e), _) => return Err(IsolationError::os(format!("read {theirs}"), e)),
            (_, Err(_)) => false,
        };
        if !same {
            let f =
                File::open(&theirs).map_err(|e| IsolationError::os(format!("open {theirs}"), e))?;
            out.push((f, flag));
        }
    }
    Ok(out)
}

fn open_paths(
    paths: &[(PathBuf, libc::c_int)],
) -> Result<Vec<(File, libc::c_int)>, IsolationError> {
    paths
        .iter()
        .map(|(p, flag)| {
            File::open(p)
                .map(|f| (f, *flag))
                .map_err(|e| IsolationError::Start {
                    code: 1,
                    message: format!("cannot open the namespace {}: {e}", p.display()),
                })
        })
        .collect()
}

fn namespace_name(flag: libc::c_int) -> &'static str {
    match flag {
        libc::CLONE_NEWUSER => "user",
        libc::CLONE_NEWNS => "mount",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWNET => "network",
        libc::CLONE_NEWCGROUP => "cgroup",
        _ => "other",
    }
}

fn join_all(namespaces: &[(File, libc::c_int)]) -> Result<(), ChildFailure> {
    for (file, flag) in namespaces {
        // SAFETY: file is an open namespace descriptor; setns takes no pointers.
        if unsafe { libc::setns(file.as_raw_fd(), *flag) } < 0 {
            return Err(setup_failure(format!(
                "cannot join the container's {} namespace: {}",
                namespace_name(*flag),
                io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

/// Starts `plan` in the running container whose first process is `init`. Returns the host pid
/// of the new process, which is this process's child only when this process is a subreaper
/// (the process that joins the container's pid namespace forks it and ends).
pub fn exec(
    init: i32,
    plan: &ProcessPlan,
    stdio: Stdio,
    keep_fds: u32,
) -> Result<i32, IsolationError> {
    let namespaces = open_differing(init)?;
    let setgroups = std::fs::read_to_string(format!("/proc/{init}/setgroups"))
        .map_or(true, |s| s.trim() != "deny");
    let (pid_read, pid_write) =
        process::pipe().map_err(|e| IsolationError::os("create a pipe", e))?;
    let joiner = spawn(0, None, || {
        join_all(&namespaces)?;
        let (report_read, report_write) =
            process::pipe().map_err(|e| setup_failure(format!("cannot create a pipe: {e}")))?;
        // SAFETY: fork of a single-threaded process; the child only continues below.
        let child = unsafe { libc::fork() };
        if child < 0 {
            return Err(setup_failure(format!(
                "cannot fork into the container: {}",
                io::Error::last_os_error()
            )));
        }
        if child == 0 {
            drop(report_read);
            let tail = Tail {
                ids: Some(plan.user.clone()),
                exact_env: true,
                rlimits: &plan.rlimits,
                umask: plan.umask,
                keep_fds,
                die_with_parent: false,
                gate: None,
            };
            let failure =
                init::run_process_with(&plan.spec, &stdio, setgroups, &plan.confinement, &tail);
            process::fail_child(&report_write, &failure);
        }
        drop(report_write);
        let bytes = child.to_le_bytes();
        // SAFETY: a valid buffer of four bytes to our open pipe.
        unsafe { libc::write(pid_write.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        if let Some(failure) = process::read_report(report_read) {
            let _ = wait_pid(child);
            return Err(failure);
        }
        Ok(())
    });
    drop(pid_write);
    drop(stdio);
    let joiner = joiner?;
    let _ = wait_pid(joiner);
    let mut buf = [0u8; 4];
    let mut file = File::from(pid_read);
    io::Read::read_exact(&mut file, &mut buf)
        .map_err(|e| IsolationError::os("read the pid of the new process", e))?;
    Ok(i32::from_le_bytes(buf))
}
