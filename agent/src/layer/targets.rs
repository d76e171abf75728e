//! The record of the bind-mount targets the agent itself created in the writable layer.
//!
//! The per-container files (/etc/hosts, /etc/hostname, /etc/resolv.conf) are bind-mounted over
//! the container root; when the image lacks one, the agent first creates an empty file (and a
//! missing parent directory) to mount onto, and overlayfs puts it in the upper directory. The
//! user never made those, so a layer streamed from the upper leaves them out (docker keeps them
//! in a separate init layer for the same reason).
//!
//! The record lives on the writable disk next to the upper directory, not inside it: it is
//! never part of the layer, and a restarted container (the same disk, where the targets now
//! exist already) still knows which targets were the agent's.
//!
//! Format: one target a line, its kind then its path relative to the container root
//! (`file etc/hosts`, `dir etc`): a directory the container put in place of a file target is
//! the container's.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// The record's file name, in the directory that holds the upper directory.
pub const RECORD_NAME: &str = "mount-targets";

/// Where the record of `upper` lives. `..` is resolved by the kernel rather than taken off the
/// path, so this also holds for a `/proc/self/fd/N` link to the upper directory (how the agent
/// reaches it after the switch into the container root).
pub fn record_path(upper: &Path) -> PathBuf {
    upper.join("..").join(RECORD_NAME)
}

#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    #[error("cannot read the record of mount targets {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the record of mount targets {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the record of mount targets {} has a line that is not `file PATH` or `dir PATH`: {line:?}", path.display())]
    BadLine { path: PathBuf, line: String },
    #[error("the mount target {} cannot be recorded: a record line cannot hold a newline or `..`", path.display())]
    BadPath { path: PathBuf },
}

/// What the agent created at a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// An empty file to bind-mount onto.
    File,
    /// A missing parent directory of a target.
    Dir,
}

impl TargetKind {
    fn word(self) -> &'static [u8] {
        match self {
            TargetKind::File => b"file",
            TargetKind::Dir => b"dir",
        }
    }
}

/// The recorded targets, as paths relative to the container root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountTargets {
    paths: BTreeMap<PathBuf, TargetKind>,
}

impl MountTargets {
    /// Reads the record at `record`; none yet is an empty record.
    pub fn load(record: &Path) -> Result<Self, TargetsError> {
        let bytes = match fs::read(record) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(TargetsError::Read {
                    path: record.to_owned(),
                    source,
                })
            }
        };
        let mut paths = BTreeMap::new();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let parsed = [TargetKind::File, TargetKind::Dir]
                .into_iter()
                .find_map(|kind| {
                    let rest = line.strip_prefix(kind.word())?.strip_prefix(b" ")?;
                    (!rest.is_empty()).then_some((kind, rest))
                });
            let Some((kind, rest)) = parsed else {
                return Err(TargetsError::BadLine {
                    path: record.to_owned(),
                    line: String::from_utf8_lossy(line).into_owned(),
                });
            };
            paths.insert(PathBuf::from(OsString::from_vec(rest.to_vec())), kind);
        }
        Ok(MountTargets { paths })
    }

    /// Adds `path` (absolute in the container, or relative to its root); false when it was
    /// recorded already.
    pub fn insert(&mut self, path: &Path, kind: TargetKind) -> Result<bool, TargetsError> {
        let rel: PathBuf = path
            .components()
            .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
            .collect();
        let bad = rel.as_os_str().as_bytes().contains(&b'\n')
            || rel.components().any(|c| c == Component::ParentDir)
            || rel.as_os_str().is_empty();
        if bad {
            return Err(TargetsError::BadPath {
                path: path.to_owned(),
            });
        }
        Ok(self.paths.insert(rel, kind).is_none())
    }

    /// What the agent created at `rel` (relative to the container root), if it is recorded.
    pub fn kind_of(&self, rel: &Path) -> Option<TargetKind> {
        self.paths.get(rel).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Writes the record to `record` whole or not at all (a temporary file renamed over it),
    /// synced, so a crash never leaves half a record.
    pub fn save(&self, record: &Path) -> Result<(), TargetsError> {
        let mut tmp_name = record.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let write_err = |source| TargetsError::Write {
            path: record.to_owned(),
            source,
        };
        let mut text = Vec::new();
        for (p, kind) in &self.paths {
            text.extend_from_slice(kind.word());
            text.push(b' ');
            text.extend_from_slice(p.as_os_str().as_bytes());
            text.push(b'\n');
        }
        let mut file = File::create(&tmp).map_err(write_err)?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(write_err)?;
        fs::rename(&tmp, record).map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_none_yet_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let record = record_path(&dir.path().join("upper"));
        assert_eq!(record, dir.path().join("upper/../mount-targets"));
        fs::create_dir(dir.path().join("upper")).unwrap();
        assert!(MountTargets::load(&record).unwrap().is_empty());

        let mut t = MountTargets::default();
        assert!(t.insert(Path::new("/etc/hosts"), TargetKind::File).unwrap());
        assert!(!t.insert(Path::new("etc/hosts"), TargetKind::File).unwrap());
        assert!(t.insert(Path::new("/etc"), TargetKind::Dir).unwrap());
        t.save(&record).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join(RECORD_NAME)).unwrap(),
            "dir etc\nfile etc/hosts\n"
        );
        assert!(!dir.path().join("mount-targets.tmp").exists());
        let loaded = MountTargets::load(&record).unwrap();
        assert_eq!(loaded, t);
        assert_eq!(
            loaded.kind_of(Path::new("etc/hosts")),
            Some(TargetKind::File)
        );
        assert_eq!(loaded.kind_of(Path::new("etc")), Some(TargetKind::Dir));
        assert_eq!(loaded.kind_of(Path::new("etc/hostname")), None);
    }

    /// The agent reaches the upper directory only through `/proc/self/fd/N` after the switch
    /// into the container root: the record must still land next to the directory itself.
    #[test]
    fn the_record_of_an_upper_reached_by_descriptor_is_next_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("upper");
        fs::create_dir(&upper).unwrap();
        let fd = File::open(&upper).unwrap();
        let by_fd = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ));
        let mut t = MountTargets::default();
        t.insert(Path::new("/etc/hosts"), TargetKind::File).unwrap();
        t.save(&record_path(&by_fd)).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join(RECORD_NAME)).unwrap(),
            "file etc/hosts\n"
        );
        assert_eq!(MountTargets::load(&record_path(&upper)).unwrap(), t);
    }

    #[test]
    fn paths_a_line_cannot_hold_are_refused() {
        let mut t = MountTargets::default();
        for bad in ["/etc/a\nb", "/etc/../hosts", "/"] {
            let err = t.insert(Path::new(bad), TargetKind::File).unwrap_err();
            assert!(err.to_string().contains("cannot be recorded"), "{err}");
        }
        assert!(t.is_empty());
    }

    #[test]
    fn a_damaged_record_is_an_error_naming_it_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join(RECORD_NAME);
        for bad in ["etc/hosts\n", "file\n", "file \n", "link etc/hosts\n"] {
            fs::write(&record, format!("file etc/hostname\n{bad}")).unwrap();
            let err = MountTargets::load(&record).unwrap_err().to_string();
            assert!(err.contains(&*record.to_string_lossy()), "{err}");
            assert!(err.contains(bad.trim_end()), "{err}");
        }
    }

    #[test]
    fn an_unreadable_record_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the record should be: reading it fails with something else than
        // "not found".
        let record = dir.path().join(RECORD_NAME);
        fs::create_dir(&record).unwrap();
        let err = MountTargets::load(&record).unwrap_err();
        assert!(
            err.to_string().contains(&*record.to_string_lossy()),
            "{err}"
        );
    }
}
