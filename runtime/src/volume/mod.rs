//! Volumes: directories in the store that outlive the containers mounting them
//! (`<store>/volumes/<name>/_data`, with the volume's record `volume.json` beside it). Named
//! volumes are made by `nook volume create` or on first use by `-v NAME:/path`; anonymous ones
//! (a 64-digit name) by `-v /path` and an image's `VOLUME`, and go with `rm -v` or `--rm`.
//!
//! A volume appears whole or not at all: it is made in a temporary directory and renamed into
//! place, and removed by a rename out of `volumes/` before its files are deleted. Creating and
//! removing take the store-wide `locks/volumes.lock` exclusively; a container's `create` holds
//! it shared while it resolves and records its mounts, so a volume cannot be removed between
//! the check that no container uses it and the removal.

mod name;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::isolation::IsolationError;
use crate::util::atomic::{self, AtomicError};
use crate::util::lock::{FileLock, LockError, LockMode};

pub use name::{check_name, is_anonymous_name};

/// The file holding a volume's record, next to its `_data`.
const RECORD: &str = "volume.json";
/// The directory a container sees.
pub const DATA: &str = "_data";

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(
        "{0:?} includes invalid characters for a local volume name, only \
         \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, \
         use absolute path"
    )]
    InvalidName(String),
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("remove {name}: volume is in use - [{}]", containers.join(", "))]
    InUse {
        name: String,
        containers: Vec<String>,
    },
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the record of volume {} is damaged", path.display())]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Atomic(#[from] AtomicError),
    #[error(transparent)]
    Isolation(#[from] IsolationError),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::Io { what, path, source }
}

/// A volume's record (`volume.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub created: DateTime<Utc>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made by `-v /path` or an image's `VOLUME`: removed with its container by `rm -v`.
    #[serde(default)]
    pub anonymous: bool,
    /// Where its data lives (filled in when read; not kept in the record).
    #[serde(skip)]
    pub mountpoint: PathBuf,
}

/// The volumes of the store at `root`.
pub struct VolumeStore {
    root: PathBuf,
}

impl VolumeStore {
    pub fn new(root: &Path) -> VolumeStore {
        VolumeStore {
            root: root.to_path_buf(),
        }
    }

    fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name)
    }

    /// The data directory of volume `name` (what containers mount).
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir(name).join(DATA)
    }

    /// Takes the store-wide volume lock (see the module's documentation).
    pub fn lock(&self, mode: LockMode) -> Result<FileLock, VolumeError> {
        for dir in [self.volumes_dir(), self.root.join("locks")] {
            std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        Ok(FileLock::acquire(
            &self.root.join("locks/volumes.lock"),
            mode,
        )?)
    }

    /// Volume `name`, made now (empty) unless it exists; true when it was made. The caller
    /// holds [`VolumeStore::lock`] (either mode: two makers of one name both see one volume).
    pub fn ensure(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<(Volume, bool), VolumeError> {
        check_name(name)?;
        match self.get(name) {
            Ok(v) => return Ok((v, false)),
            Err(VolumeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let volumes = self.volumes_dir();
        std::fs::create_dir_all(&volumes).map_err(io_err("create", &volumes))?;
        let staging = volumes.join(format!(".new-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir(&staging).map_err(io_err("create", &staging))?;
        let made = (|| {
            let data = staging.join(DATA);
            std::fs::create_dir(&data).map_err(io_err("create", &data))?;
            let volume = Volume {
                name: name.to_string(),
                created: Utc::now(),
                labels,
                anonymous,
                mountpoint: self.data_dir(name),
            };
            let text =
                serde_json::to_vec_pretty(&volume).map_err(|source| VolumeError::Record {
                    path: staging.join(RECORD),
                    source,
                })?;
            atomic::write_file(&staging, &staging.join(RECORD), &text)?;
            let dir = self.dir(name);
            match std::fs::rename(&staging, &dir) {
                Ok(()) => Ok((volume, true)),
                // Made meanwhile by a maker that did not take the lock: it is the volume.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {
                    self.get(name).map(|v| (v, false))
                }
                Err(e) => Err(io_err("rename into place", &dir)(e)),
            }
        })();
        let _ = std::fs::remove_dir_all(&staging);
        if made.is_ok() {
            atomic::sync_parent(&self.dir(name))?;
        }
        made
    }

    /// A new anonymous volume with a random 64-digit name.
    pub fn create_anonymous(&self) -> Result<Volume, VolumeError> {
        self.ensure(&random_name()?, BTreeMap::new(), true)
            .map(|(v, _)| v)
    }

    /// Volume `name`'s record.
    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        check_name(name)?;
        let path = self.dir(name).join(RECORD);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VolumeError::NotFound(name.to_string()))
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let mut volume: Volume =
            serde_json::from_slice(&text).map_err(|source| VolumeError::Record { path, source })?;
        volume.mountpoint = self.data_dir(name);
        Ok(volume)
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>, VolumeError> {
        let dir = self.volumes_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", &dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("read", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Staging and removal directories start with a dot, which no volume name does.
            if check_name(&name).is_err() {
                continue;
            }
            match self.get(&name) {
                Ok(v) => out.push(v),
                Err(VolumeError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes volume `name` and its data. The caller holds [`VolumeStore::lock`] exclusively
    /// and has checked that no container uses it. `remove_all` deletes files the containers'
    /// ids own ([`crate::isolation::Host::remove_all`]). Returns the bytes its data took.
    pub fn remove(
        &self,
        name: &str,
        remove_all: impl FnOnce(&Path) -> Result<(), IsolationError>,
    ) -> Result<u64, VolumeError> {
        self.get(name)?;
        let dir = self.dir(name);
        let bytes = disk_usage(&dir);
        let trash = self
            .volumes_dir()
            .join(format!(".removing-{name}-{}", std::process::id()));
        std::fs::rename(&dir, &trash).map_err(io_err("move away", &dir))?;
        remove_all(&trash)?;
        Ok(bytes)
    }
}

/// A random 64-digit name, the form anonymous volumes (and unnamed `volume create`s) get.
pub fn random_name() -> Result<String, VolumeError> {
    let mut bytes = [0u8; 32];
    let urandom = Path::new("/dev/urandom");
    std::fs::File::open(urandom)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(io_err("read", urandom))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The bytes the files under `path` take (what `prune` reports); what cannot be read counts 0.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let own = meta.blocks() * 512;
    if !meta.is_dir() {
        return own;
    }
    own + std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| disk_usage(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_helper(p: &Path) -> Result<(), IsolationError> {
        std::fs::remove_dir_all(p).map_err(|e| IsolationError::os("remove", e))
    }

    #[test]
    fn volumes_are_made_once_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = VolumeStore::new(dir.path());
        let _lock = store.lock(LockMode::Exclusive).unwrap();
        let labels = BTreeMap::from([("a".to_string(), "b".to_string())]);
        let (v, made) = store.ensure("data", labels.clone(), false).unwrap();
        assert!(made && v.labels == labels && !v.anonymous);
        assert_eq!(v.mountpoint, dir.path().join("volumes/data/_data"));
        assert!(v.mountpoint.is_dir());
        std::fs::write(v.mountpoint.join("f"), "kept").unwrap();
        let (again, made) = store.ensure("data", BTreeMap::new(), false).unwrap();
        assert!(!made && again == v, "an existing volume is kept as it is");
        assert_eq!(
            std::fs::read_to_string(again.mountpoint.join("f")).unwrap(),
            "kept"
        );
        let anon = store.create_anonymous().unwrap();
        assert!(anon.anonymous && is_anonymous_name(&anon.name));
        let names: Vec<String> = store.list().unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"data".to_string()));
        assert!(store.remove("data", no_helper).unwrap() > 0);
        assert!(matches!(store.get("data"), Err(VolumeError::NotFound(_))));
        assert!(matches!(
            store.remove("data", no_helper),
            Err(VolumeError::NotFound(_))
        ));
        assert_eq!(store.list().unwrap().len(), 1);
        // Nothing left behind but the volumes themselves.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("volumes"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(anon.name)]);
    }

    #[test]
    fn bad_names_touch_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = VolumeStore::new(dir.path());
        for bad in ["", "../x", "a/b", "..", ".hidden", "-x", "a b"] {
            assert!(
                matches!(
                    store.ensure(bad, BTreeMap::new(), false),
                    Err(VolumeError::InvalidName(_))
                ),
                "{bad:?}"
            );
        }
        assert!(!dir.path().join("volumes").exists() || store.list().unwrap().is_empty());
        assert!(!dir.path().join("x").exists());
    }
}
