//! The containers of a store: `containers/<id>/` holds `config.json`, `state.json`, the log
//! (`log.json`), the lock file, and the writable layer its isolation backend makes there.
//!
//! Creating a container takes the store-wide `locks/containers.lock` so names stay unique under
//! concurrent `nook` commands; state changes of one container take its own `lock`.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use chrono::Utc;

use super::id;
use super::lifecycle::LifecycleError;
use super::state::{ContainerConfig, ProcFs, Status};
use crate::isolation::IsolationError;
use crate::util::atomic::{self, AtomicError};
use crate::util::lock::{FileLock, LockError, LockMode};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("multiple containers match {0:?}: give more of the id")]
    Ambiguous(String),
    #[error("the container name \"/{name}\" is already in use by container \"{id}\"")]
    NameInUse { name: String, id: String },
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot parse {}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Checkpoint(String),
    #[error("image {0} has no command to run: give one after the image name")]
    NoCommand(String),
    #[error(transparent)]
    Image(#[from] crate::image::StoreError),
    #[error(transparent)]
    Rootfs(#[from] crate::image::rootfs_cache::RootfsCacheError),
    #[error("invalid change {change:?}: {reason}")]
    BadChange { change: String, reason: String },
    #[error("cannot read layer {layer}")]
    Layer {
        layer: String,
        #[source]
        source: crate::image::layer::LayerError,
    },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Network(#[from] crate::isolation::network::NetworkError),
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    #[error(transparent)]
    MountArg(#[from] super::mount_args::MountArgError),
    #[error(transparent)]
    Mounts(#[from] super::volumes::ResolveError),
    #[error(transparent)]
    Atomic(#[from] AtomicError),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Isolation(#[from] IsolationError),
    #[error("invalid --group-add {0:?}: give a group name or a numeric gid")]
    InvalidGroup(String),
    /// A `--group-add` name the image's /etc/group does not have (docker's message).
    #[error(transparent)]
    Group(#[from] nook_agent::user::UserError),
    #[error(transparent)]
    Security(#[from] crate::isolation::security::SecurityError),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ContainerError {
    let path = path.to_path_buf();
    move |source| ContainerError::Io { what, path, source }
}

/// A container's record as stored.
#[derive(Clone, Debug)]
pub struct Container {
    pub config: ContainerConfig,
    /// As recorded; see [`Container::status`] for what it really is.
    pub recorded: Status,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.config.id
    }
    pub fn name(&self) -> &str {
        &self.config.name
    }
    /// The observed status: a running record whose monitor died is exited.
    pub fn status(&self) -> Status {
        self.recorded.observed(&ProcFs, Utc::now())
    }
}

pub struct ContainerStore {
    root: PathBuf,
}

impl ContainerStore {
    /// The containers of the store at `root` (`$NOOK_ROOT`).
    pub fn new(root: &Path) -> ContainerStore {
        ContainerStore {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join("log.json")
    }

    fn ensure_dirs(&self) -> Result<(), ContainerError> {
        for dir in [
            self.containers_dir(),
            self.tmp_dir(),
            self.root.join("locks"),
        ] {
            std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        Ok(())
    }

    /// Creates the container's directory and records. An empty name gets a random one.
    pub fn create(&self, mut config: ContainerConfig) -> Result<Container, ContainerError> {
        self.ensure_dirs()?;
        let _guard = FileLock::acquire(
            &self.root.join("locks/containers.lock"),
            LockMode::Exclusive,
        )?;
        let existing = self.list()?;
        if config.name.is_empty() {
            loop {
                let name = id::random_name().map_err(io_err("read", Path::new("/dev/urandom")))?;
                if !existing.iter().any(|c| c.name() == name) {
                    config.name = name;
                    break;
                }
            }
        } else if !id::valid_name(&config.name) {
            return Err(ContainerError::InvalidName(config.name));
        } else if let Some(c) = existing.iter().find(|c| c.name() == config.name) {
            return Err(ContainerError::NameInUse {
                name: config.name,
                id: c.id().to_string(),
            });
        }
        let dir = self.dir(&config.id);
        std::fs::create_dir(&dir).map_err(io_err("create", &dir))?;
        if let Err(e) = self.write_records(&dir, &config) {
            // Nothing ran in it yet, so everything in it is ours: a failed create (a full disk)
            // leaves no directory that `ps -a` would not show.
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(Container {
            config,
            recorded: Status::Created,
        })
    }

    /// Replaces the container's configuration (`update`); the caller holds its lock.
    pub fn save_config(&self, config: &ContainerConfig) -> Result<(), ContainerError> {
        self.write_json(
            &self.dir(&config.id).join("config.json"),
            config,
            !config.auto_remove,
        )
    }

    fn write_records(&self, dir: &Path, config: &ContainerConfig) -> Result<(), ContainerError> {
        let durable = !config.auto_remove;
        self.write_json(&dir.join("config.json"), config, durable)?;
        // state.json last: a directory without it is an unfinished create and is not listed.
        self.write_json(&dir.join("state.json"), &Status::Created, durable)
    }

    fn write_json<T: serde::Serialize>(
        &self,
        path: &Path,
        value: &T,
        durable: bool,
    ) -> Result<(), ContainerError> {
        let data = serde_json::to_vec_pretty(value).map_err(|source| ContainerError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        if durable {
            atomic::write_file(&self.tmp_dir(), path, &data)?;
            return Ok(());
        }
        // Still atomic (a reader sees the old file or the new one), without the fsyncs: for
        // the records of `--rm` containers, which do not outlive their run.
        let mut tmp = atomic::TempFile::new_in(&self.tmp_dir(), "write-")?;
        tmp.file_mut()
            .write_all(&data)
            .map_err(io_err("write", tmp.path()))?;
        std::fs::rename(tmp.path(), path).map_err(io_err("replace", path))?;
        Ok(())
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, path: &Path) -> Result<T, ContainerError> {
        let data = std::fs::read(path).map_err(io_err("read", path))?;
        serde_json::from_slice(&data).map_err(|source| ContainerError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Loads the container with the full id `id`.
    pub fn load(&self, id: &str) -> Result<Container, ContainerError> {
        let dir = self.dir(id);
        let config = self.read_json(&dir.join("config.json"));
        let recorded = self.read_json(&dir.join("state.json"));
        match (config, recorded) {
            (Ok(config), Ok(recorded)) => Ok(Container { config, recorded }),
            (Err(ContainerError::Io { source, .. }), _)
            | (_, Err(ContainerError::Io { source, .. }))
                if source.kind() == io::ErrorKind::NotFound =>
            {
                Err(ContainerError::NotFound(id.to_string()))
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }

    /// Every complete container record, oldest first.
    pub fn list(&self) -> Result<Vec<Container>, ContainerError> {
        let dir = self.containers_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", &dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("read", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            match self.load(&name) {
                Ok(c) => out.push(c),
                // Being created or removed right now.
                Err(ContainerError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|c| c.config.created);
        Ok(out)
    }

    /// Finds a container by name, full id or unique id prefix.
    pub fn find(&self, key: &str) -> Result<Container, ContainerError> {
        let key = key.strip_prefix('/').unwrap_or(key);
        let all = self.list()?;
        if let Some(c) = all.iter().find(|c| c.name() == key || c.id() == key) {
            return Ok(c.clone());
        }
        if !id::is_hex(key) {
            return Err(ContainerError::NotFound(key.to_string()));
        }
        let mut matches = all.into_iter().filter(|c| c.id().starts_with(key));
        match (matches.next(), matches.next()) {
            (Some(c), None) => Ok(c),
            (Some(_), Some(_)) => Err(ContainerError::Ambiguous(key.to_string())),
            (None, _) => Err(ContainerError::NotFound(key.to_string())),
        }
    }

    /// Takes the container's own lock (held across a state transition).
    pub fn lock(&self, id: &str) -> Result<FileLock, ContainerError> {
        Ok(FileLock::acquire(
            &self.dir(id).join("lock"),
            LockMode::Exclusive,
        )?)
    }

    /// Records `status`; `durable` also fsyncs it (not worth it for `--rm` containers).
    ///
    /// On a full disk the atomic replacement cannot create its temp file, so the record is
    /// rewritten in place instead (see [`overwrite_in_place`]): a container's status is what
    /// a full disk must not cost.
    pub fn save_status(
        &self,
        id: &str,
        status: &Status,
        durable: bool,
    ) -> Result<(), ContainerError> {
        let path = self.dir(id).join("state.json");
        match self.write_json(&path, status, durable) {
            Err(e) if is_out_of_space(&e) => {
                let data = serde_json::to_vec(status).map_err(|source| ContainerError::Json {
                    path: path.clone(),
                    source,
                })?;
                overwrite_in_place(&path, &data, durable).map_err(|source| ContainerError::Io {
                    what: "record the status in",
                    path,
                    source,
                })
            }
            other => other,
        }
    }

    /// Moves the container's directory out of `containers/` (it disappears at once), then
    /// deletes it with `remove_all`, which can delete files owned by the container's ids.
    pub fn remove(
        &self,
        id: &str,
        remove_all: impl FnOnce(&Path) -> Result<(), IsolationError>,
    ) -> Result<(), ContainerError> {
        let dir = self.dir(id);
        let trash = self.tmp_dir().join(format!("removing-{id}"));
        std::fs::rename(&dir, &trash).map_err(io_err("move away", &dir))?;
        remove_all(&trash)?;
        Ok(())
    }
}

/// Whether `e` comes from a full disk (or an exhausted quota).
pub fn is_out_of_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// Rewrites the existing small file `path` with `data` without allocating: one write from
/// offset 0, padded with spaces (JSON whitespace) to the old length, so the file never
/// shrinks and a record that fits in the blocks it already has needs no free space. Not
/// atomic like a rename: only the fallback when the disk is full.
fn overwrite_in_place(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let old = file.metadata()?.len() as usize;
    let mut padded = data.to_vec();
    if padded.len() < old {
        padded.resize(old - 1, b' ');
        padded.push(b'\n');
    }
    file.write_all_at(&padded, 0)?;
    if durable {
        file.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolation::namespace::Overlay;
    use crate::isolation::{Isolation, LaunchSpec, ProcessSpec};

    fn config(name: &str) -> ContainerConfig {
        ContainerConfig {
            id: id::new_id().unwrap(),
            name: name.to_string(),
            image: "busybox".into(),
            image_id: "sha256:00".into(),
            created: Utc::now(),
            isolation: Isolation::Container(Overlay {
                lower: vec![],
                upper: "/u".into(),
                work: "/w".into(),
                merged: "/m".into(),
                read_only: false,
            }),
            launch: LaunchSpec {
                process: ProcessSpec {
                    argv: vec!["true".into()],
                    cwd: "/".into(),
                    ..ProcessSpec::default()
                },
                hostname: "h".into(),
                network: Default::default(),
                mounts: Vec::new(),
                security: Default::default(),
                limits: Default::default(),
            },
            tty: false,
            open_stdin: false,
            auto_remove: false,
            log: Default::default(),
        }
    }

    #[test]
    fn names_are_unique_and_random_names_are_given() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::new(dir.path());
        let a = store.create(config("web")).unwrap();
        let err = store.create(config("web")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the container name \"/web\" is already in use by container \"{}\"",
                a.id()
            )
        );
        let b = store.create(config("")).unwrap();
        assert!(id::valid_name(b.name()));
        assert!(matches!(
            store.create(config("bad name")),
            Err(ContainerError::InvalidName(_))
        ));
        assert_eq!(
            store.list().unwrap().len(),
            2,
            "failed creates left nothing"
        );
    }

    #[test]
    fn a_record_rewritten_in_place_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::new(dir.path());
        let a = store.create(config("inplace")).unwrap();
        let path = store.dir(a.id()).join("state.json");
        let running = Status::Running {
            init: super::super::state::ProcessId {
                pid: 10,
                start_time: 11,
            },
            monitor: super::super::state::ProcessId {
                pid: 12,
                start_time: 13,
            },
            started_at: Utc::now(),
            cgroup: None,
        };
        // Longer than the record it replaces, then shorter: both parse.
        let longer = serde_json::to_vec_pretty(&running).unwrap();
        overwrite_in_place(&path, &longer, true).unwrap();
        assert_eq!(store.load(a.id()).unwrap().recorded, running);
        let exited = Status::Exited {
            code: 0,
            started_at: None,
            finished_at: Utc::now(),
            monitor_lost: false,
            oom_killed: false,
        };
        overwrite_in_place(&path, &serde_json::to_vec(&exited).unwrap(), false).unwrap();
        assert_eq!(store.load(a.id()).unwrap().recorded, exited);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), longer.len() as u64);
    }

    #[test]
    fn out_of_space_is_found_through_the_error_chain() {
        let full = ContainerError::Atomic(AtomicError::Write {
            path: "/x".into(),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        });
        assert!(is_out_of_space(&full));
        let other = ContainerError::Atomic(AtomicError::Write {
            path: "/x".into(),
            source: io::Error::from_raw_os_error(libc::EIO),
        });
        assert!(!is_out_of_space(&other));
    }

    #[test]
    fn a_failed_create_leaves_no_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::new(dir.path());
        store.create(config("first")).unwrap();
        // tmp/ as a file: the records cannot be staged.
        std::fs::remove_dir_all(store.tmp_dir()).unwrap();
        std::fs::write(store.tmp_dir(), b"").unwrap();
        let c = config("second");
        let id = c.id.clone();
        assert!(store.create(c).is_err());
        assert!(!store.dir(&id).exists());
    }

    #[test]
    fn find_by_name_id_and_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::new(dir.path());
        let a = store.create(config("one")).unwrap();
        assert_eq!(store.find("one").unwrap().id(), a.id());
        assert_eq!(store.find("/one").unwrap().id(), a.id());
        assert_eq!(store.find(a.id()).unwrap().name(), "one");
        assert_eq!(store.find(&a.id()[..6]).unwrap().name(), "one");
        assert_eq!(
            store.find("nosuch").unwrap_err().to_string(),
            "No such container: nosuch"
        );
    }

    #[test]
    fn status_is_persisted_and_remove_deletes_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::new(dir.path());
        let a = store.create(config("xx")).unwrap();
        let exited = Status::Exited {
            code: 3,
            started_at: None,
            finished_at: Utc::now(),
            monitor_lost: false,
            oom_killed: false,
        };
        store.save_status(a.id(), &exited, true).unwrap();
        assert_eq!(store.load(a.id()).unwrap().status(), exited);
        store
            .remove(a.id(), |p| {
                std::fs::remove_dir_all(p).map_err(|e| IsolationError::os("remove", e))
            })
            .unwrap();
        assert!(!store.dir(a.id()).exists());
        assert!(store.list().unwrap().is_empty());
        assert!(matches!(
            store.load(a.id()),
            Err(ContainerError::NotFound(_))
        ));
    }
}
