//! The container operations the CLI verbs share: create from an image, start, stop, kill,
//! remove, wait. The verbs parse flags and print; the rules live here and in `lifecycle`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::id;
use super::lifecycle;
use super::monitor::{self, Attach};
use super::mount_args::{MountRequest, VolumesFrom};
use super::state::{ContainerConfig, Status};
use super::store::{Container, ContainerError, ContainerStore};
use super::volumes;
use crate::image::Store;
use crate::isolation::network::{self, NetworkSpec};
use crate::isolation::{
    Backend, Column, Exit, Host, ImageSource, Isolation, LaunchSpec, Notice, Process, ProcessSpec,
    RootfsOptions, Stdio,
};
use crate::util::lock::LockMode;
use crate::volume::VolumeStore;

/// What `create` and `run` take from the command line.
#[derive(Clone, Debug)]
pub struct CreateOptions {
    pub image: String,
    pub name: Option<String>,
    /// Replaces the image's cmd when not empty.
    pub cmd: Vec<String>,
    /// Replaces the image's entrypoint (and drops its cmd), as docker's `--entrypoint`.
    pub entrypoint: Option<String>,
    /// `KEY=value` (or `KEY`, taken from nook's own environment) entries.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// `--group-add`: group names of the image's /etc/group or numeric gids.
    pub group_add: Vec<String>,
    pub hostname: Option<String>,
    pub read_only: bool,
    pub tty: bool,
    pub interactive: bool,
    pub auto_remove: bool,
    /// `--isolation`, with the VM's size.
    pub column: Column,
    /// `--log-opt`: the log's rotation.
    pub log: super::log::LogOptions,
    /// `--network`, `-p`, `--dns`, `--dns-search`, `--add-host`.
    pub network: NetworkSpec,
    /// `-P`: publish every port the image exposes on a free host port.
    pub publish_all: bool,
    /// `-v`, `--mount`, `--tmpfs`, in order.
    pub mounts: Vec<MountRequest>,
    /// `--volumes-from`.
    pub volumes_from: Vec<VolumesFrom>,
    /// `--cap-add`, `--cap-drop`, `--privileged`, `--security-opt`.
    pub security: crate::isolation::security::SecurityOptions,
    /// `--memory`, `--memory-swap`, `--cpus`, `--cpu-shares`, `--cpuset-cpus`, `--pids-limit`.
    pub limits: crate::isolation::limits::Limits,
}

/// Merges `extra` into `base`: a key set twice keeps the last value, at its first position.
pub fn merge_env(base: &[String], extra: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for e in extra {
        let (key, entry) = match e.split_once('=') {
            Some((k, _)) => (k, e.clone()),
            // `-e KEY`: the value from our environment, or dropped when unset (docker).
            None => match std::env::var(e) {
                Ok(v) => (e.as_str(), format!("{e}={v}")),
                Err(_) => continue,
            },
        };
        match out
            .iter_mut()
            .find(|o| o.split_once('=').map_or(o.as_str(), |(k, _)| k) == key)
        {
            Some(slot) => *slot = entry,
            None => out.push(entry),
        }
    }
    out
}

/// The argv a container runs: docker's entrypoint/cmd rules.
pub fn command_line(
    image_entrypoint: &[String],
    image_cmd: &[String],
    entrypoint: Option<&str>,
    cmd: &[String],
) -> Vec<String> {
    let entry: Vec<String> = match entrypoint {
        Some("") => Vec::new(),
        Some(e) => vec![e.to_string()],
        None => image_entrypoint.to_vec(),
    };
    let cmd = if !cmd.is_empty() {
        cmd.to_vec()
    } else if entrypoint.is_some() {
        Vec::new()
    } else {
        image_cmd.to_vec()
    };
    entry.into_iter().chain(cmd).collect()
}

pub struct Engine {
    pub root: PathBuf,
    pub containers: ContainerStore,
    /// What the isolation backends need of the host.
    pub host: Host,
}

impl Engine {
    pub fn new(root: &Path) -> Engine {
        // Absolute: the paths recorded in a container's config outlive this process's working
        // directory (the monitor daemon runs in `/`).
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        Engine {
            containers: ContainerStore::new(&root),
            host: Host::new(&root),
            root,
        }
    }

    fn images(&self) -> Result<Store, ContainerError> {
        Ok(Store::open(&self.root)?)
    }

    /// The isolation backend of `container`.
    pub fn backend<'a>(&'a self, container: &'a Container) -> Box<dyn Backend + 'a> {
        container.config.isolation.backend(
            &self.host,
            &self.containers.dir(container.id()),
            &container.config.launch.security,
            &container.config.launch.limits,
        )
    }

    /// Deletes `path` and everything under it, including what containers wrote.
    pub fn remove_all(&self, path: &Path) -> Result<(), crate::isolation::IsolationError> {
        self.host.remove_all(path)
    }

    /// Creates a container of `opts.image`; it is not started.
    pub fn create(&self, opts: &CreateOptions) -> Result<Container, ContainerError> {
        let store = self.images()?;
        let image = store.resolve(&opts.image)?;
        let config = image.config.config().clone().unwrap_or_default();
        let none = Vec::new();
        let argv = command_line(
            config.entrypoint().as_ref().unwrap_or(&none),
            config.cmd().as_ref().unwrap_or(&none),
            opts.entrypoint.as_deref(),
            &opts.cmd,
        );
        if argv.is_empty() {
            return Err(ContainerError::NoCommand(opts.image.clone()));
        }
        let mut network = opts.network.clone();
        if opts.publish_all {
            for port in config.exposed_ports().iter().flatten() {
                let spec = match port.split_once('/') {
                    Some((p, proto)) => format!("{p}/{proto}"),
                    None => format!("{port}/tcp"),
                };
                network.ports.extend(network::parse_publish(&spec)?);
            }
        }
        opts.column.check_network(&network)?;
        let image_volumes: Vec<String> = config.volumes().clone().unwrap_or_default();
        // Held until the record names the volumes: `volume rm` cannot take one meanwhile.
        let volume_store = VolumeStore::new(&self.root);
        let _volumes_lock = volume_store.lock(LockMode::Shared)?;
        let (mounts, made) = volumes::resolve(
            &volume_store,
            &self.containers,
            &opts.volumes_from,
            &opts.mounts,
            &image_volumes,
        )?;
        let created = self.create_with_mounts(opts, &store, &image, &config, argv, network, mounts);
        if created.is_err() {
            for name in &made {
                let _ = volume_store.remove(name, |p| self.host.remove_all(p));
            }
        }
        created
    }

    /// The rest of [`Engine::create`], once the mounts are resolved.
    #[allow(clippy::too_many_arguments)]
    fn create_with_mounts(
        &self,
        opts: &CreateOptions,
        store: &Store,
        image: &crate::image::Image,
        config: &oci_spec::image::Config,
        argv: Vec<String>,
        network: NetworkSpec,
        mounts: Vec<crate::isolation::mounts::MountSpec>,
    ) -> Result<Container, ContainerError> {
        let none = Vec::new();
        let cid = id::new_id().map_err(|source| ContainerError::Io {
            what: "read",
            path: "/dev/urandom".into(),
            source,
        })?;
        let dir = self.containers.dir(&cid);
        check_group_add(&opts.group_add)?;
        let source = ImageSource { store, image };
        let isolation = opts.column.prepare(
            &self.host,
            &source,
            &dir,
            RootfsOptions {
                read_only: opts.read_only,
                auto_remove: opts.auto_remove,
                keep_id: opts.security.keep_id,
            },
        )?;
        let launch = LaunchSpec {
            process: ProcessSpec {
                argv,
                env: merge_env(config.env().as_ref().unwrap_or(&none), &opts.env),
                cwd: opts
                    .workdir
                    .clone()
                    .or_else(|| config.working_dir().clone())
                    .filter(|w| !w.is_empty())
                    .unwrap_or_else(|| "/".to_string()),
                // With --userns=keep-id, the user's own ids (podman's) unless --user says
                // otherwise.
                user: opts
                    .user
                    .clone()
                    .or_else(|| opts.security.keep_id.then(keep_id_user))
                    .or_else(|| config.user().clone())
                    .unwrap_or_default(),
                terminal: opts.tty,
                groups: group_add_gids(&opts.group_add, &isolation, &source)?,
                ..ProcessSpec::default()
            },
            hostname: opts
                .hostname
                .clone()
                .unwrap_or_else(|| id::short(&cid).to_string()),
            network,
            mounts,
            security: opts.security.clone(),
            limits: opts.limits.clone(),
        };
        let container = self.containers.create(ContainerConfig {
            id: cid,
            name: opts.name.clone().unwrap_or_default(),
            image: opts.image.clone(),
            image_id: image.config_digest.to_string(),
            created: Utc::now(),
            isolation,
            launch,
            tty: opts.tty,
            open_stdin: opts.interactive,
            auto_remove: opts.auto_remove,
            log: opts.log,
        })?;
        if let Err(e) = self.backend(&container).create_layer(opts.auto_remove) {
            let _ = self
                .containers
                .remove(container.id(), |p| self.host.remove_all(p));
            return Err(e.into());
        }
        Ok(container)
    }

    /// Starts a created or exited container (see [`monitor::Monitor::start`]).
    pub fn start(&self, id: &str, attach: Attach) -> Result<Option<Exit>, ContainerError> {
        self.start_from(id, attach, None)
    }

    /// [`Engine::start`], resuming the container from its checkpoint `checkpoint` when given.
    pub fn start_from(
        &self,
        id: &str,
        attach: Attach,
        checkpoint: Option<&str>,
    ) -> Result<Option<Exit>, ContainerError> {
        let container = self.containers.load(id)?;
        let backend = self.backend(&container);
        monitor::Monitor {
            store: &self.containers,
            backend: backend.as_ref(),
            host: &self.host,
            checkpoint,
        }
        .start(id, attach)
    }

    /// `nook checkpoint create`: saves the running container as checkpoint `name`; it stops,
    /// and with `leave_running` goes on at once from that checkpoint.
    pub fn checkpoint(
        &self,
        container: &Container,
        name: &str,
        leave_running: bool,
    ) -> Result<(), ContainerError> {
        let id = container.id();
        let Status::Running { init, .. } = container.status() else {
            return Err(lifecycle::LifecycleError::NotRunning(container.name().to_string()).into());
        };
        if container.config.auto_remove {
            return Err(ContainerError::Checkpoint(format!(
                "container {} is removed when it stops (--rm): its checkpoint would go with it",
                container.name()
            )));
        }
        self.backend(container).checkpoint(init.pid, name)?;
        // The monitor records the stop once the VM has ended.
        if !self.wait_stopped(id, Some(Duration::from_secs(60)))? {
            return Err(ContainerError::Checkpoint(format!(
                "container {} did not stop after its checkpoint {name} was written",
                container.name()
            )));
        }
        if leave_running {
            self.start_from(id, Attach::Detached, Some(name))?;
        }
        Ok(())
    }

    /// Waits until the container is no longer running, at most `timeout`; true when it stopped.
    pub fn wait_stopped(
        &self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<bool, ContainerError> {
        let start = Instant::now();
        loop {
            match self.containers.load(id) {
                Ok(c) if c.status().is_running() => {}
                Ok(_) | Err(ContainerError::NotFound(_)) => return Ok(true),
                Err(e) => return Err(e),
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A backend's notice, naming the container.
    fn notice(container: &Container, notice: Notice) -> Notice {
        notice.map(|n| format!("container {}: {n}", container.name()))
    }

    /// Sends `signal` to the container's process; the notice says when the backend had to
    /// take another way (a VM whose agent could not be reached).
    fn signal(&self, container: &Container, signal: i32) -> Result<Notice, ContainerError> {
        let Status::Running { init, .. } = container.status() else {
            return Ok(None);
        };
        if !init.alive(&super::state::ProcFs) {
            return Ok(None);
        }
        let notice = self.backend(container).signal(init.pid, signal)?;
        Ok(Self::notice(container, notice))
    }

    /// docker stop: SIGTERM, then SIGKILL when still running after `timeout`. Returns a notice
    /// when the container had to be ended another way.
    pub fn stop(&self, container: &Container, timeout: Duration) -> Result<Notice, ContainerError> {
        if !lifecycle::can_stop(&container.status()) {
            return Ok(None);
        }
        let notice = self.signal(container, libc::SIGTERM)?;
        if self.wait_stopped(container.id(), Some(timeout))? {
            return Ok(notice);
        }
        let notice = self.signal(container, libc::SIGKILL)?.or(notice);
        if self.wait_stopped(container.id(), Some(Duration::from_secs(30)))? {
            return Ok(notice);
        }
        self.force_stop(container).map(|n| n.or(notice))
    }

    /// Last resort for a container that a SIGKILL did not end: its backend ends it.
    fn force_stop(&self, container: &Container) -> Result<Notice, ContainerError> {
        let Status::Running { init, .. } = self.containers.load(container.id())?.status() else {
            return Ok(None);
        };
        if !init.alive(&super::state::ProcFs) {
            return Ok(None);
        }
        let notice = self.backend(container).force_stop(init.pid)?;
        self.wait_stopped(container.id(), Some(Duration::from_secs(30)))?;
        Ok(Self::notice(container, notice))
    }

    /// docker kill: sends `signal` to a running container (see [`Engine::signal`]).
    pub fn kill(&self, container: &Container, signal: i32) -> Result<Notice, ContainerError> {
        lifecycle::can_kill(container.name(), &container.status())?;
        self.signal(container, signal)
    }

    /// docker rm: deletes the container and its writable layer (`force` kills it first), and
    /// with `volumes` (`rm -v`) the anonymous volumes only it used.
    pub fn remove(
        &self,
        container: &Container,
        force: bool,
        volumes: bool,
    ) -> Result<(), ContainerError> {
        let status = container.status();
        lifecycle::can_remove(container.name(), &status, force)?;
        if status.is_running() {
            self.signal(container, libc::SIGKILL)?;
            if !self.wait_stopped(container.id(), Some(Duration::from_secs(30)))? {
                self.force_stop(container)?;
            }
        }
        self.backend(container).cleanup();
        let lock = self.containers.lock(container.id());
        if !self.containers.dir(container.id()).exists() {
            // An auto-removing container we just killed went as asked; otherwise another
            // `rm` got here first (its lock file went with the directory): docker's answer.
            return match container.config.auto_remove && status.is_running() {
                true => Ok(()),
                false => Err(ContainerError::NotFound(container.name().to_string())),
            };
        }
        let _lock = lock?;
        if volumes {
            volumes::remove_anonymous(&self.root, &self.containers, &self.host, container)?;
        }
        self.containers
            .remove(container.id(), |p| self.host.remove_all(p))
    }

    /// docker wait: blocks until the container is not running; returns its exit code.
    pub fn wait(&self, container: &Container) -> Result<i32, ContainerError> {
        self.wait_stopped(container.id(), None)?;
        match self.containers.load(container.id()) {
            Ok(c) => match c.status() {
                Status::Exited { code, .. } => Ok(code),
                _ => Ok(0),
            },
            // Removed (--rm) before we could read its code.
            Err(ContainerError::NotFound(_)) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// docker update: merges `change` into the container's limits, applies them to it when it
    /// runs (its cgroup), and records them for its next starts.
    pub fn update(
        &self,
        container: &Container,
        change: &crate::isolation::limits::Limits,
    ) -> Result<(), ContainerError> {
        let _lock = self.containers.lock(container.id())?;
        let mut container = self.containers.load(container.id())?;
        let new = container.config.launch.limits.updated_with(change);
        let status = container.status();
        let running = match &status {
            Status::Running { cgroup, .. } => Some(cgroup.as_deref()),
            _ => None,
        };
        container
            .config
            .isolation
            .update_limits(&new, change, running)?;
        container.config.launch.limits = new;
        self.containers.save_config(&container.config)
    }

    /// Starts `process` in the running container; the caller relays its stdio and waits.
    pub fn exec(
        &self,
        container: &Container,
        process: &ProcessSpec,
        stdio: Stdio,
    ) -> Result<Box<dyn Process>, ContainerError> {
        let status = container.status();
        lifecycle::can_exec(container.name(), &status)?;
        let Status::Running { init, .. } = status else {
            return Err(lifecycle::LifecycleError::NotRunning(container.name().to_string()).into());
        };
        Ok(self.backend(container).exec(init.pid, process, stdio)?)
    }
}

/// Checks `--group-add` before anything is made: each value a group name or a numeric gid.
fn check_group_add(given: &[String]) -> Result<(), ContainerError> {
    for g in given {
        if g.is_empty() || g.contains([':', '\n']) {
            return Err(ContainerError::InvalidGroup(g.clone()));
        }
    }
    Ok(())
}

/// The largest /etc/group read from an image's layers for `--group-add` names.
const GROUP_FILE_LIMIT: u64 = 4 << 20;

/// `--group-add` as the gids of the process's `groups` (OCI's `additionalGids`, which both
/// columns add to the user's groups: the namespace column's init and the guest agent): a number
/// as it is, a name looked up in the image's /etc/group, as docker looks them up at create;
/// each gid once, in order. The namespace column reads the file beneath the image's tree, as
/// the container's init reads it; the VM column reads it from the image's layers (the file
/// the top-most layer shows), since the image's disk is the guest's.
fn group_add_gids(
    given: &[String],
    isolation: &Isolation,
    image: &ImageSource<'_>,
) -> Result<Vec<u32>, ContainerError> {
    let mut gids = Vec::new();
    let mut vm_groups: Option<String> = None;
    for g in given {
        let gid = match (g.parse::<u32>(), isolation) {
            (Ok(gid), _) => gid,
            (Err(_), Isolation::Container(overlay)) => {
                nook_agent::user::resolve_user(overlay.image_tree(), &format!("0:{g}"))?.gid
            }
            (Err(_), Isolation::Vm(_)) => {
                if vm_groups.is_none() {
                    let data = crate::isolation::vm::image_file(
                        image,
                        std::path::Path::new("etc/group"),
                        GROUP_FILE_LIMIT,
                    )?;
                    vm_groups =
                        Some(String::from_utf8_lossy(&data.unwrap_or_default()).into_owned());
                }
                let groups = vm_groups.as_deref().unwrap_or_default();
                nook_agent::user::resolve(&format!("0:{g}"), "", groups)?.gid
            }
        };
        if !gids.contains(&gid) {
            gids.push(gid);
        }
    }
    Ok(gids)
}

/// The process user of a `--userns=keep-id` container: the caller's uid and gid.
fn keep_id_user() -> String {
    // SAFETY: getuid/getgid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    format!("{uid}:{gid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let ep = s(&["/entry"]);
        let cmd = s(&["sh"]);
        assert_eq!(command_line(&ep, &cmd, None, &[]), s(&["/entry", "sh"]));
        assert_eq!(
            command_line(&ep, &cmd, None, &s(&["ls"])),
            s(&["/entry", "ls"])
        );
        assert_eq!(command_line(&ep, &cmd, Some("/bin/x"), &[]), s(&["/bin/x"]));
        assert_eq!(command_line(&ep, &cmd, Some(""), &s(&["id"])), s(&["id"]));
        assert!(command_line(&[], &[], None, &[]).is_empty());
    }

    #[test]
    fn env_later_values_win_in_place() {
        let base = s(&["PATH=/bin", "A=1"]);
        assert_eq!(
            merge_env(&base, &s(&["A=2", "B=3", "PATH=/x"])),
            s(&["PATH=/x", "A=2", "B=3"])
        );
        assert_eq!(
            merge_env(&[], &s(&["NOOK_SURELY_UNSET_VAR"])),
            Vec::<String>::new()
        );
    }
}
