//! Isolation backends: how a container's processes are confined.
//!
//! A container runs in one column, fixed at create and kept in its record as an [`Isolation`]
//! value that carries what that column needs (the namespace column's overlay, the VM column's
//! disks and size). Everything that differs between the columns sits behind the [`Backend`]
//! trait; [`Column::prepare`] makes a new container's root filesystem and [`Isolation::backend`]
//! gives the backend of an existing one. Above this module (the engine, the monitor, `commit`,
//! the CLI) no code asks which column a container runs in.

pub mod copy;
mod error;
pub mod limits;
pub mod mounts;
pub mod namespace;
pub mod network;
pub mod seccomp_profile;
pub mod security;
pub mod stack;
mod syscalls;
pub mod vm;

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::image::{Image, Store};
use crate::layers::changes::Change;
use crate::layers::Layer;

pub use error::IsolationError;
/// The process a container runs (its first process, or one started by `exec`): one definition,
/// the agent protocol's, for both columns.
pub use nook_agent::protocol::ProcessSpec;

/// Everything a container's first process needs beyond its root filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchSpec {
    pub process: ProcessSpec,
    pub hostname: String,
    pub network: network::NetworkSpec,
    /// Volumes, bind mounts and tmpfs mounts, in order.
    pub mounts: Vec<mounts::MountSpec>,
    /// Capabilities, no_new_privs and seccomp: for the first process and every `exec`.
    pub security: security::SecurityOptions,
    /// Memory, CPU and process limits (a cgroup in the namespace column).
    pub limits: limits::Limits,
}

impl LaunchSpec {
    /// The container-wide settings both columns apply before the first process runs, in the
    /// agent protocol's form: the hostname, `/etc/hosts` and `/etc/resolv.conf`; and the limits
    /// the VM column's agent applies inside the guest (the namespace column makes its own).
    pub fn start_spec(&self) -> nook_agent::protocol::StartSpec {
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        nook_agent::protocol::StartSpec {
            process: self.process.clone(),
            hostname: self.hostname.clone(),
            resolv_conf: self.network.resolv_conf(&host_resolv).unwrap_or_default(),
            hosts: self.network.hosts_file(&self.hostname),
            // Each column makes its own: the VM column's name virtio-fs tags.
            mounts: Vec::new(),
            limits: self.limits.guest_limits(),
            // The VM column compiles its own (a profile can fail): see vm::security.
            security: Default::default(),
            keep_id: self
                .security
                .keep_id
                .then(|| Box::new(namespace::idmap::keep_id_user())),
        }
    }
}

/// The id of the container whose directory is `dir` (the directory's name).
pub fn container_id(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The column a new container is asked to run in (`--isolation`, with the VM's size).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    Container,
    Vm(vm::VmSettings),
}

/// The column a container runs in, with what that column keeps about it: one typed value in
/// the container's record, so the record cannot contradict itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Namespaces, over the image's unpacked tree.
    Container(namespace::Overlay),
    /// A microVM booting the image's EROFS disk.
    Vm(vm::Machine),
}

/// What the backends need of the host: the store they keep trees and temp files in, and the
/// subordinate ids containers are mapped to (which own what containers write).
#[derive(Clone)]
pub struct Host {
    /// The store's root directory.
    pub root: PathBuf,
    pub ids: namespace::Ids,
}

impl Host {
    /// The host as a container of `--userns=keep-id` (or not) sees it: the ids of its user
    /// namespace own what it wrote, and read its image tree and writable layer right.
    pub fn for_container(
        &self,
        keep_id: bool,
    ) -> Result<std::borrow::Cow<'_, Host>, IsolationError> {
        Ok(if keep_id {
            std::borrow::Cow::Owned(Host {
                root: self.root.clone(),
                ids: self.ids.keep_id()?,
            })
        } else {
            std::borrow::Cow::Borrowed(self)
        })
    }

    pub fn new(root: &Path) -> Host {
        Host {
            root: root.to_path_buf(),
            ids: namespace::Ids::for_current_user(),
        }
    }

    /// Where short-lived files of the containers go (a result of `diff`, a layer, an export's
    /// mount point); the same file system as the containers.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Deletes `path` and everything under it, including files owned by the containers' ids.
    pub fn remove_all(&self, path: &Path) -> Result<(), IsolationError> {
        self.ids.remove_all(path)
    }
}

/// The image a new container is made of.
pub struct ImageSource<'a> {
    pub store: &'a Store,
    pub image: &'a Image,
}

impl ImageSource<'_> {
    /// The image's decompressed layer tars, bottom first, each named by its digest.
    pub fn layers(&self) -> Result<Vec<Layer<'static>>, IsolationError> {
        crate::image::layer_streams::image_layers(self.store, self.image)
            .map_err(IsolationError::from)
    }
}

/// What `create` decides beyond the column.
#[derive(Clone, Copy, Debug, Default)]
pub struct RootfsOptions {
    /// `--read-only`.
    pub read_only: bool,
    /// `--rm`: the writable layer dies with the container (a VM gets a tmpfs, not a disk).
    pub auto_remove: bool,
    /// `--userns=keep-id`: the namespace column's image tree is the one unpacked under that
    /// mapping.
    pub keep_id: bool,
}

impl Column {
    /// The name `--isolation` takes, and `inspect` and `ps` show.
    pub fn name(&self) -> &'static str {
        match self {
            Column::Container => "container",
            Column::Vm(_) => "vm",
        }
    }

    /// Refuses what this column cannot give a container's network: the host's network
    /// namespace is the namespace column's alone.
    pub fn check_network(&self, spec: &network::NetworkSpec) -> Result<(), network::NetworkError> {
        match (self, &spec.mode) {
            (Column::Vm(_), network::NetworkMode::Host) => Err(network::NetworkError::HostInVm),
            _ => spec.check(),
        }
    }

    /// Prepares a new container's root filesystem in `dir` (its directory, which exists): the
    /// image's unpacked tree and an empty writable layer for namespaces, the image's EROFS disk
    /// and an empty ext4 disk for a VM. Returns what the record keeps.
    pub fn prepare(
        &self,
        host: &Host,
        image: &ImageSource<'_>,
        dir: &Path,
        opts: RootfsOptions,
    ) -> Result<Isolation, IsolationError> {
        match self {
            Column::Container => {
                namespace::Overlay::prepare(host, image, dir, opts).map(Isolation::Container)
            }
            Column::Vm(settings) => {
                vm::Machine::prepare(settings, image, dir, opts).map(Isolation::Vm)
            }
        }
    }
}

impl Isolation {
    /// The name `--isolation` takes, and `inspect` and `ps` show.
    pub fn name(&self) -> &'static str {
        match self {
            Isolation::Container(_) => "container",
            Isolation::Vm(_) => "vm",
        }
    }

    /// The backend of the container whose directory is `dir`, which runs its processes with
    /// `security` and `limits` (its `--ulimit`s reach `exec`'d processes too).
    pub fn backend<'a>(
        &'a self,
        host: &'a Host,
        dir: &Path,
        security: &'a security::SecurityOptions,
        limits: &'a limits::Limits,
    ) -> Box<dyn Backend + 'a> {
        match self {
            Isolation::Container(overlay) => Box::new(namespace::Backend::new(
                host, dir, overlay, security, limits,
            )),
            Isolation::Vm(machine) => Box::new(vm::Backend::new(host, dir, machine)),
        }
    }

    /// `--read-only`.
    pub fn read_only(&self) -> bool {
        match self {
            Isolation::Container(o) => o.read_only,
            Isolation::Vm(m) => m.disks.read_only,
        }
    }

    /// The VM's size, for a VM container.
    pub fn vm_settings(&self) -> Option<&vm::VmSettings> {
        match self {
            Isolation::Container(_) => None,
            Isolation::Vm(m) => Some(&m.settings),
        }
    }

    /// What `inspect` shows as the graph driver's directories: the image's read-only parts,
    /// the writable layer (a directory, or a VM's disk file) and the overlay's work directory.
    pub fn layer_paths(&self) -> (Vec<&Path>, &Path, PathBuf) {
        match self {
            Isolation::Container(o) => (
                o.lower.iter().map(PathBuf::as_path).collect(),
                &o.upper,
                o.work.clone(),
            ),
            Isolation::Vm(m) => (
                vec![m.disks.image.as_path()],
                &m.disks.upper,
                m.disks.upper.with_file_name("work"),
            ),
        }
    }

    /// `nook cp` for the container whose directory is `dir`, with the mounts it was created
    /// with; `running` is its host pid while it runs (the caller holds the container's lock
    /// otherwise, so that it does not start meanwhile).
    pub fn copy(
        &self,
        host: &Host,
        dir: &Path,
        mounts: &[mounts::MountSpec],
        running: Option<i32>,
        op: &CopyOp,
    ) -> Result<(), IsolationError> {
        if let CopyOp::ToContainer { dst, .. } = op {
            copy::check_destination(self.read_only(), mounts, dst).map_err(|e| {
                IsolationError::Start {
                    code: 125,
                    message: e.to_string(),
                }
            })?;
        }
        match self {
            Isolation::Container(overlay) => namespace::cp::copy(
                host,
                overlay,
                mounts,
                &dir.join(nook_agent::layer::targets::RECORD_NAME),
                running,
                op,
            ),
            Isolation::Vm(machine) => vm::copy(host, dir, machine, mounts, running, op),
        }
    }

    /// The host pids of the processes of the running container whose first process is
    /// `host_pid` (`nook top` of a namespace container).
    pub fn processes(&self, host_pid: i32) -> Result<Vec<i32>, IsolationError> {
        match self {
            Isolation::Container(_) => namespace::procs::processes(host_pid),
            Isolation::Vm(_) => Err(IsolationError::Start {
                code: 125,
                message: "a VM container's processes run in its guest kernel, where the host sees \
                          only the VMM: its agent lists them (nook top)"
                    .into(),
            }),
        }
    }

    /// Changes the limits of a container from `old` to `new` (`change` is what `update` was
    /// given); `running` holds the cgroup of a running container, if it has one. A stopped
    /// container takes them at its next start.
    pub fn update_limits(
        &mut self,
        new: &limits::Limits,
        change: &limits::Limits,
        running: Option<Option<&Path>>,
    ) -> Result<(), IsolationError> {
        new.check()?;
        let refuse = |message: String| Err(IsolationError::Start { code: 125, message });
        match self {
            Isolation::Container(_) => match running {
                Some(Some(cgroup)) => {
                    limits::cgroup::Cgroup::at(cgroup)
                        .write_all(&new.cgroup_files(Some(change)))?;
                    Ok(())
                }
                Some(None) => refuse(format!(
                    "the container runs without a cgroup of its own, so its limits cannot \
                     change: {}",
                    match limits::delegation::Delegation::detect(&crate::paths::ProcessEnv) {
                        Err(why) => why.to_string(),
                        Ok(_) => "it was started before a delegated cgroup was set up".into(),
                    }
                )),
                None => Ok(()),
            },
            Isolation::Vm(machine) => {
                let refused = change.not_in_vm();
                if !refused.is_default() {
                    return refuse(format!(
                        "{} cannot be changed for --isolation=vm: the VM column takes --memory, \
                         --cpus and --pids-limit only",
                        refused.flag_names().join(", ")
                    ));
                }
                if running.is_some() {
                    return refuse(
                        "a running VM's memory, vCPUs and pids limit are fixed at boot: stop \
                         the container, update it, and start it again"
                            .into(),
                    );
                }
                let kernel = machine.settings.kernel.clone();
                machine.settings =
                    vm::VmSettings::from_flags(new.memory, new.nano_cpus.map(|n| n as f64 / 1e9))?;
                machine.settings.kernel = kernel;
                Ok(())
            }
        }
    }

    /// What the running container `id` whose first process (or VMM) is `host_pid` consumes;
    /// `cgroup` is its own cgroup, if it has one. A VM's figures are the guest's, asked of its
    /// agent through the container's monitor, with the VMM's beside them; when the agent cannot
    /// be asked, the VMM's alone, its memory against the VM's size.
    pub fn sample(
        &self,
        id: &str,
        host_pid: i32,
        cgroup: Option<&Path>,
    ) -> Result<limits::stats::Sample, IsolationError> {
        let cgroup = cgroup
            .filter(|cg| cg.exists())
            .map(limits::cgroup::Cgroup::at);
        match (self, cgroup) {
            (Isolation::Container(_), Some(cg)) => Ok(limits::stats::from_cgroup(&cg, host_pid)),
            (Isolation::Container(_), None) => Ok(limits::stats::from_procs(
                &namespace::procs::processes(host_pid)?,
                host_pid,
            )),
            (Isolation::Vm(m), cg) => {
                let mut host = match cg {
                    Some(cg) => limits::stats::from_cgroup(&cg, 0),
                    None => limits::stats::from_procs(&[host_pid], 0),
                };
                host.memory_limit = u64::from(m.settings.memory_mib) << 20;
                let guest = vm::control_path(&crate::paths::ProcessEnv, id)
                    .ok()
                    .and_then(|p| vm::control::client::stats(&p).ok());
                Ok(match guest {
                    Some(usage) => limits::stats::from_guest(&usage, &host),
                    None => host,
                })
            }
        }
    }

    /// The image's read-only part (its unpacked tree, or its EROFS disk): `prune` keeps it
    /// while the container exists.
    pub fn image_path(&self) -> &Path {
        match self {
            Isolation::Container(o) => o.image_tree(),
            Isolation::Vm(m) => &m.disks.image,
        }
    }
}

/// What `nook cp` copies: paths inside the container are absolute and resolved inside its
/// root; a host side of none is a tar stream (stdout or stdin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyOp {
    FromContainer {
        src: String,
        dst: Option<PathBuf>,
        /// `-L`: follow a symlink at `src`.
        follow: bool,
        /// `-a`: keep the owners (else the copies belong to whoever writes them).
        archive: bool,
    },
    ToContainer {
        src: Option<PathBuf>,
        dst: String,
        follow: bool,
        archive: bool,
    },
}

/// The three standard streams handed to a container process: pipes, or a pty nook made, never
/// the caller's own descriptors.
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// With a terminal, where the namespace column sends back the leader of the pty it opens
    /// inside the container (so that the container sees its terminal in its own `/dev/pts`);
    /// the process then uses that pty, sized like `stdin`, instead of the three above. The VM
    /// column makes its pty in the guest and relays the three.
    pub console: Option<OwnedFd>,
}

/// How a process of a container ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell-style status: the code, or 128 + the signal number.
    pub fn status(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// A started container process, owned by the caller (the monitor, or `nook exec`).
pub trait Process {
    /// Blocks until the process ends.
    fn wait(&mut self) -> Result<Exit, IsolationError>;
}

/// A started container: its first process plus the host process whose life is the
/// container's (the container's init in namespaces, the VMM for a VM). The container's record
/// names that host process; [`Backend::signal`], [`Backend::exec`] and
/// [`Backend::force_stop`] take it back.
pub trait Workload: Process {
    fn host_pid(&self) -> i32;

    /// The cgroup holding the container's processes, when it has its own.
    fn cgroup(&self) -> Option<&Path> {
        None
    }

    /// Whether the kernel's OOM killer ended one of its processes (known once
    /// [`Process::wait`] returned).
    fn oom_killed(&self) -> bool {
        false
    }
}

/// What [`Backend::signal`] did: delivered as asked, or with a notice the user should read.
pub type Notice = Option<String>;

/// One isolation column, for one container: everything that differs between the columns.
pub trait Backend {
    /// Starts the container's first process. Returns once it runs the workload's executable,
    /// or with the reason it could not.
    fn start(&self, spec: &LaunchSpec, stdio: Stdio) -> Result<Box<dyn Workload>, IsolationError>;

    /// Starts a second process in the running container held by host process `host_pid`.
    fn exec(
        &self,
        host_pid: i32,
        process: &ProcessSpec,
        stdio: Stdio,
    ) -> Result<Box<dyn Process>, IsolationError>;

    /// Makes the empty writable layer of a container just recorded (`create`).
    fn create_layer(&self, auto_remove: bool) -> Result<(), IsolationError>;

    /// Sends `signal` to the container's first process.
    fn signal(&self, host_pid: i32, signal: i32) -> Result<Notice, IsolationError>;

    /// Ends a container that a SIGKILL through [`Backend::signal`] did not end; the notice says
    /// what was done.
    fn force_stop(&self, host_pid: i32) -> Result<Notice, IsolationError>;

    /// Writes the container's writable layer as an OCI layer tar (whiteouts as `.wh.` files,
    /// hard links, xattrs) into `out`. `running` says whether the container runs now.
    fn write_layer(&self, running: bool, out: &mut dyn Write) -> Result<(), IsolationError>;

    /// The writable layer's changes against `image`, sorted by path.
    fn diff(&self, image: &ImageSource<'_>, running: bool) -> Result<Vec<Change>, IsolationError>;

    /// Writes the container's whole filesystem (image and writable layer) as a tar to `out`.
    fn export(
        &self,
        image: &ImageSource<'_>,
        running: bool,
        out: File,
    ) -> Result<(), IsolationError>;

    /// Removes what the container left outside its directory (a monitor killed by hand leaves
    /// its control socket behind). The directory itself goes through [`Host::remove_all`].
    fn cleanup(&self);

    /// Saves the running container held by host process `host_pid` as checkpoint `name`
    /// (`nook checkpoint create`); the container stops.
    fn checkpoint(&self, _host_pid: i32, _name: &str) -> Result<(), IsolationError> {
        Err(IsolationError::NoCheckpoints {
            what: "nook checkpoint create",
        })
    }

    /// Starts the container where its checkpoint `name` left it (`nook start --checkpoint`):
    /// its processes go on, nothing is started anew.
    fn restore(
        &self,
        _spec: &LaunchSpec,
        _stdio: Stdio,
        _name: &str,
    ) -> Result<Box<dyn Workload>, IsolationError> {
        Err(IsolationError::NoCheckpoints {
            what: "nook start --checkpoint",
        })
    }
}
