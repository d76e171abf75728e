//! The rootless namespace backend (`--isolation=container`): user, mount, pid, uts, ipc and
//! network namespaces, overlayfs over the image's unpacked tree, pivot_root, docker's default
//! capabilities, no_new_privs and a default seccomp profile.

pub mod binds;
pub mod bundle;
pub mod caps;
pub mod confine;
pub mod cp;
pub mod idmap;
pub mod init;
mod layer;
pub mod masks;
mod net;
pub mod process;
pub mod procs;
pub mod rooted;
pub mod rootfs;
pub mod seccomp;
pub mod sys;
pub mod tree;
pub mod user;

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use idmap::IdMap;
use process::{spawn, spawn_with, wait_pid, ChildFailure};

pub use rootfs::Overlay;

use super::limits::{self, cgroup::Cgroup, delegation::Delegation, ulimit::Ulimit, Limits};
use super::network::NetworkMode;
use super::security::SecurityOptions;
use super::{
    Exit, Host, ImageSource, IsolationError, LaunchSpec, Notice, Process, ProcessSpec,
    RootfsOptions, Stdio, Workload,
};

/// Namespaces of a container's first process.
const CONTAINER_NAMESPACES: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET;

/// The namespaces `exec` joins, user first: it grants the rights to join the others.
const JOINED: [(&str, libc::c_int); 6] = [
    ("user", libc::CLONE_NEWUSER),
    ("mnt", libc::CLONE_NEWNS),
    ("pid", libc::CLONE_NEWPID),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("net", libc::CLONE_NEWNET),
];

/// The subordinate ids containers are mapped to, and the work done as their root: unpacking an
/// image's tree, removing what containers wrote, reading a writable layer.
#[derive(Clone)]
pub struct Ids {
    pub map: IdMap,
}

impl Ids {
    /// The mapping of the calling user, from /etc/subuid and /etc/subgid.
    pub fn for_current_user() -> Self {
        Ids {
            map: IdMap::for_current_user(),
        }
    }

    /// The ids of a `--userns=keep-id` container (see [`IdMap::keep_id`]).
    pub fn keep_id(&self) -> Result<Self, IsolationError> {
        let map = self.map.keep_id().map_err(|e| IsolationError::Start {
            code: 125,
            message: e.to_string(),
        })?;
        Ok(Ids { map })
    }

    /// The ids a container runs under: these, or their keep-id form.
    pub fn for_container(
        &self,
        keep_id: bool,
    ) -> Result<std::borrow::Cow<'_, Self>, IsolationError> {
        Ok(if keep_id {
            std::borrow::Cow::Owned(self.keep_id()?)
        } else {
            std::borrow::Cow::Borrowed(self)
        })
    }

    /// Unpacks `layers` (bottom first) into a new directory `dst`, inside a user namespace so
    /// that owners are the image's. `dst` must not exist; its parent must.
    pub fn unpack(
        &self,
        layers: Vec<crate::layers::Layer<'_>>,
        dst: &Path,
    ) -> Result<(), IsolationError> {
        std::fs::create_dir(dst)
            .map_err(|e| IsolationError::os(format!("create {}", dst.display()), e))?;
        let owners = self
            .map
            .uids
            .iter()
            .map(|r| u64::from(r.count))
            .sum::<u64>()
            > 1;
        let dst_owned = dst.to_path_buf();
        process::in_user_namespace(
            &self.map,
            &format!("unpack into {}", dst.display()),
            move || {
                chroot(&dst_owned)
                    .map_err(|e| format!("chroot into {}: {e}", dst_owned.display()))?;
                for layer in layers {
                    crate::layers::unpack::apply_layer(layer.tar, Path::new("/"), owners)
                        .map_err(|e| format!("layer {}: {e}", layer.name))?;
                }
                // The mount points every container gets, made once here (like docker's init
                // layer) so that they never show up in a container's writable layer.
                for dir in ["dev", "proc", "sys"] {
                    std::fs::create_dir_all(Path::new("/").join(dir))
                        .map_err(|e| format!("create /{dir}: {e}"))?;
                }
                Ok(())
            },
        )
    }

    /// Deletes `path` and everything under it, including files owned by the container's ids.
    pub fn remove_all(&self, path: &Path) -> Result<(), IsolationError> {
        // Most trees (a container that wrote nothing, or only as root) go without a helper.
        match remove_own_tree(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(_) => {}
        }
        let owned = path.to_path_buf();
        process::in_user_namespace(
            &self.map,
            &format!("remove {}", path.display()),
            move || match std::fs::remove_dir_all(&owned) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.to_string()),
            },
        )
    }

    /// Runs `work` as root of a user namespace mapped like the containers (reading a
    /// container's upper directory for `diff`, `commit` and `export`).
    pub fn as_container_root(
        &self,
        what: &str,
        work: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), IsolationError> {
        process::in_user_namespace(&self.map, what, work)
    }
}

impl Overlay {
    /// A new container's overlay: the image's tree (unpacked on first use) under the empty
    /// `upper/` of its directory `dir`.
    pub fn prepare(
        host: &Host,
        image: &ImageSource<'_>,
        dir: &Path,
        opts: RootfsOptions,
    ) -> Result<Overlay, IsolationError> {
        // Under keep-id the image's owners are other host ids (its root is the first
        // subordinate id, not the user): a tree of its own, as podman's storage makes one.
        let ids = host.ids.for_container(opts.keep_id)?;
        let tree = tree::ensure_tree(&host.root, &ids, image)?;
        Ok(Overlay {
            // The image, then the container's init layer (docker's): the mount targets of its
            // own /etc files, so that binding them changes nothing in its writable layer.
            lower: vec![tree, dir.join("init")],
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("merged"),
            read_only: opts.read_only,
        })
    }

    /// The image's unpacked tree.
    pub fn image_tree(&self) -> &Path {
        self.lower.first().map_or(Path::new(""), PathBuf::as_path)
    }
}

/// The namespace column's backend for one container.
pub struct Backend<'a> {
    host: &'a Host,
    overlay: &'a Overlay,
    /// The container's directory.
    dir: PathBuf,
    /// Its processes' capabilities, no_new_privs and seccomp filter (`exec` gets them too).
    security: &'a SecurityOptions,
    /// Its `--ulimit`s, for `exec`'d processes.
    limits: &'a Limits,
}

impl<'a> Backend<'a> {
    pub fn new(
        host: &'a Host,
        dir: &Path,
        overlay: &'a Overlay,
        security: &'a SecurityOptions,
        limits: &'a Limits,
    ) -> Self {
        Backend {
            host,
            overlay,
            dir: dir.to_path_buf(),
            security,
            limits,
        }
    }
}

/// Deletes a tree whose directories all belong to us, opening up directories we own but
/// cannot read (overlayfs leaves its `work/work` with mode 000). Fails on a directory of
/// another owner, for the caller to retry as the container's root.
fn remove_own_tree(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    if meta.permissions().mode() & 0o700 != 0o700 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    for entry in std::fs::read_dir(path)? {
        remove_own_tree(&entry?.path())?;
    }
    std::fs::remove_dir(path)
}

fn chroot(dir: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in a path"))?;
    // SAFETY: c is a valid NUL-terminated path alive for the call.
    if unsafe { libc::chroot(c.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    std::env::set_current_dir("/")
}

/// A process started by this backend, waited for with waitpid; a container's first process
/// also owns the pasta serving its network.
struct Child {
    pid: i32,
    pasta: Option<crate::isolation::stack::Running>,
    /// Whether pasta publishes ports, which must be free once the container has stopped.
    published: bool,
    /// A container's own cgroup, removed when its first process ends.
    cgroup: Option<Cgroup>,
    oom_killed: bool,
}

impl Process for Child {
    fn wait(&mut self) -> Result<Exit, IsolationError> {
        let exit = wait_pid(self.pid);
        if let Some(cgroup) = self.cgroup.take() {
            self.oom_killed = cgroup.oom_kills() > 0;
            cgroup.remove();
        }
        // The container is gone: so is its network.
        if let Some(pasta) = self.pasta.take() {
            if self.published {
                drop(pasta);
            } else {
                pasta.end_in_background();
            }
        }
        exit
    }
}

impl Workload for Child {
    fn host_pid(&self) -> i32 {
        self.pid
    }

    fn cgroup(&self) -> Option<&Path> {
        self.cgroup.as_ref().map(Cgroup::path)
    }

    fn oom_killed(&self) -> bool {
        self.oom_killed
    }
}

fn open_namespaces(init: i32) -> Result<Vec<(File, libc::c_int)>, IsolationError> {
    JOINED
        .iter()
        .map(|(name, flag)| {
            let path = PathBuf::from(format!("/proc/{init}/ns/{name}"));
            File::open(&path)
                .map(|f| (f, *flag))
                .map_err(|e| IsolationError::os(format!("open {}", path.display()), e))
        })
        .collect()
}

fn join(namespaces: &[(File, libc::c_int)]) -> Result<(), ChildFailure> {
    for (file, flag) in namespaces {
        // SAFETY: file is an open namespace descriptor; setns takes no pointers.
        if unsafe { libc::setns(file.as_raw_fd(), *flag) } < 0 {
            return Err(ChildFailure::setup(format!(
                "cannot join the container's namespaces: {}",
                io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

impl super::Backend for Backend<'_> {
    fn start(&self, spec: &LaunchSpec, stdio: Stdio) -> Result<Box<dyn Workload>, IsolationError> {
        let confinement = confine::Confinement::of(&spec.security)?;
        let ids = self.host.ids.for_container(spec.security.keep_id)?;
        let map = &ids.map;
        let setgroups = map.setgroups_allowed();
        let mut flags = CONTAINER_NAMESPACES;
        if spec.network.mode == NetworkMode::Host {
            flags &= !libc::CLONE_NEWNET;
        }
        // With a network stack, the container sets itself up while pasta attaches to its
        // namespace, and runs its workload once its interface is configured.
        let sync = match spec.network.stack() {
            Some(_) => Some(net::Sync::new()?),
            None => None,
        };
        let ends = sync.as_ref().map(net::Sync::child_ends);
        let pid_file = crate::isolation::stack::pid_file(&self.dir)?;
        let files = init::ContainerFiles {
            dir: self.dir.clone(),
            start: spec.start_spec(),
        };
        let mut pasta = None;
        let delegation = Delegation::detect(&crate::paths::ProcessEnv);
        let id = super::container_id(&self.dir);
        let mut cgroup = None;
        let started = spawn_with(
            flags,
            Some(map),
            |pid| {
                // Before the container runs anything of its own: its limits hold from the start.
                cgroup = limits::place(&delegation, &id, pid, &spec.limits.cgroup_limits())?;
                match sync {
                    Some(sync) => Ok(Some((
                        net::launch_pasta(&spec.network, pid, &pid_file)?,
                        sync,
                    ))),
                    None => Ok(None),
                }
            },
            |launched| {
                if let Some((launch, sync)) = launched {
                    pasta = Some(sync.wait(launch, !spec.network.ports.is_empty())?);
                }
                Ok(())
            },
            || {
                Err(init::container_init(
                    spec,
                    self.overlay,
                    &files,
                    &stdio,
                    setgroups,
                    &confinement,
                    ends,
                ))
            },
        );
        let pid = match started {
            Ok(pid) => pid,
            Err(e) => {
                if let Some(c) = &cgroup {
                    c.remove();
                }
                return Err(e);
            }
        };
        drop(stdio);
        Ok(Box::new(Child {
            pid,
            pasta,
            published: !spec.network.ports.is_empty(),
            cgroup,
            oom_killed: false,
        }))
    }

    fn exec(
        &self,
        init: i32,
        process: &ProcessSpec,
        stdio: Stdio,
    ) -> Result<Box<dyn Process>, IsolationError> {
        let confinement = confine::Confinement::of(self.security)?;
        let namespaces = open_namespaces(init)?;
        let setgroups = self.host.ids.map.setgroups_allowed();
        let rlimits = Ulimit::rlimits(&self.limits.ulimits);
        // In the container's cgroup, under its limits, like its other processes.
        let cgroup = Cgroup::of_process(init);
        let enter = |pid| match &cgroup {
            Some(c) => c.add(pid).map_err(IsolationError::from),
            None => Ok(()),
        };
        // Joining a pid namespace only affects children, so the joiner forks the process that
        // runs the command and passes its status on.
        let pid = spawn_with(
            0,
            None,
            enter,
            |()| Ok(()),
            || {
                join(&namespaces)?;
                let (report_read, report_write) = process::pipe()
                    .map_err(|e| ChildFailure::setup(format!("cannot create a pipe: {e}")))?;
                // SAFETY: fork of a single-threaded process; the child only continues below.
                let child = unsafe { libc::fork() };
                if child < 0 {
                    return Err(ChildFailure::setup(format!(
                        "cannot fork into the container: {}",
                        io::Error::last_os_error()
                    )));
                }
                if child == 0 {
                    drop(report_read);
                    let tail = init::Tail {
                        rlimits: &rlimits,
                        ..init::Tail::default()
                    };
                    let failure =
                        init::run_process_with(process, &stdio, setgroups, &confinement, &tail);
                    process::fail_child(&report_write, &failure);
                }
                drop(report_write);
                drop_stdio(&stdio);
                if let Some(failure) = process::read_report(report_read) {
                    let _ = wait_pid(child);
                    return Err(failure);
                }
                // Running: let `spawn` return now (it waits for its report pipe to close) so that
                // the caller relays the process's stdio while it runs. Nothing here is needed any
                // more but the child's pid.
                // SAFETY: close_range takes descriptor numbers and flags; this process only waits
                // and _exits from here on.
                unsafe { libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) };
                let status = wait_pid(child).map(Exit::status).unwrap_or(125);
                // SAFETY: ends this intermediate process with the command's status.
                unsafe { libc::_exit(status) }
            },
        )?;
        drop(stdio);
        Ok(Box::new(Child {
            pid,
            pasta: None,
            published: false,
            cgroup: None,
            oom_killed: false,
        }))
    }

    fn create_layer(&self, _auto_remove: bool) -> Result<(), IsolationError> {
        let o = self.overlay;
        let io = |p: &Path| {
            let what = format!("create {}", p.display());
            move |e| IsolationError::os(what, e)
        };
        for dir in [&o.upper, &o.work, &o.merged] {
            std::fs::create_dir(dir).map_err(io(dir))?;
        }
        if let Some(init) = o.lower.get(1) {
            let etc = init.join("etc");
            std::fs::create_dir_all(&etc).map_err(io(&etc))?;
            for file in ["hostname", "hosts", "resolv.conf"] {
                let p = etc.join(file);
                File::create(&p).map_err(io(&p))?;
            }
        }
        Ok(())
    }

    fn signal(&self, init: i32, signal: i32) -> Result<Notice, IsolationError> {
        send_signal(init, signal).map(|()| None)
    }

    fn force_stop(&self, _init: i32) -> Result<Notice, IsolationError> {
        // SIGKILL of the init ends its pid namespace: nothing is left to end.
        Ok(None)
    }

    fn write_layer(
        &self,
        _running: bool,
        out: &mut dyn std::io::Write,
    ) -> Result<(), IsolationError> {
        let host = self.host.for_container(self.security.keep_id)?;
        layer::write_layer(&host, self.overlay, out)
    }

    fn diff(
        &self,
        _image: &ImageSource<'_>,
        _running: bool,
    ) -> Result<Vec<crate::layers::changes::Change>, IsolationError> {
        let host = self.host.for_container(self.security.keep_id)?;
        layer::diff(&host, self.overlay)
    }

    fn export(
        &self,
        _image: &ImageSource<'_>,
        _running: bool,
        out: File,
    ) -> Result<(), IsolationError> {
        let host = self.host.for_container(self.security.keep_id)?;
        layer::export(&host, &super::container_id(&self.dir), self.overlay, out)
    }

    fn cleanup(&self) {
        if let Ok(pid_file) = crate::isolation::stack::pid_file(&self.dir) {
            crate::isolation::stack::end_leftover(&pid_file);
        }
    }
}

/// Sends `signal` to process `init`, the first process of a container, from inside the
/// container's user namespace when the host's uid may not (a workload running as a non-root
/// container user has a subordinate host uid). A process that ended meanwhile is no error.
pub fn send_signal(init: i32, signal: i32) -> Result<(), IsolationError> {
    // SAFETY: kill takes a pid and a signal number.
    if unsafe { libc::kill(init, signal) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        // It ended meanwhile (a concurrent `rm -f`): nothing left to signal.
        return Ok(());
    }
    if err.raw_os_error() != Some(libc::EPERM) {
        return Err(IsolationError::os(format!("signal process {init}"), err));
    }
    // A workload running as a non-root container user has a subordinate host uid: only
    // from inside the container's user namespace may we signal it.
    let userns = open_namespaces(init)?
        .into_iter()
        .take(1)
        .collect::<Vec<_>>();
    let pid = spawn(0, None, || {
        join(&userns)?;
        // SAFETY: as above.
        if unsafe { libc::kill(init, signal) } < 0 {
            return Err(ChildFailure::setup(format!(
                "cannot signal process {init}: {}",
                io::Error::last_os_error()
            )));
        }
        Ok(())
    })?;
    wait_pid(pid)?;
    Ok(())
}

/// Closes this process's copies of the container's stdio, so that a reader sees end of file
/// when the container's process ends.
fn drop_stdio(stdio: &Stdio) {
    for fd in [&stdio.stdin, &stdio.stdout, &stdio.stderr] {
        let raw: &OwnedFd = fd;
        // SAFETY: closing our copy in a process that ends soon; the OwnedFd is never used again
        // here (this process _exits without running destructors).
        unsafe { libc::close(raw.as_raw_fd()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn own_trees_are_removed_even_with_unreadable_directories() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("c");
        std::fs::create_dir_all(tree.join("work/work")).unwrap();
        std::fs::write(tree.join("work/file"), "x").unwrap();
        std::os::unix::fs::symlink("/nonexistent", tree.join("link")).unwrap();
        std::fs::set_permissions(
            tree.join("work/work"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        remove_own_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert_eq!(
            remove_own_tree(&tree).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
