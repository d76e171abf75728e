//! The runtime's state: one directory per container under `--root` (runc's layout), holding
//! `state.json` (what `create` recorded), `config.json` (the bundle's, as created: `exec`,
//! `delete`'s hooks), `exec.fifo` (present from `create` until `start`) and the record of the
//! mount targets made in the root. The status is never stored: it is read from the first
//! process (alive, by pid and start time) and the fifo.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::OciError;

/// The OCI spec version nook-runtime implements.
pub const OCI_VERSION: &str = "1.2.0";

/// What `create` records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// The first process, as the host sees it.
    pub pid: i32,
    /// Its start time (`/proc/PID/stat` field 22), so that a reused pid is not taken for it.
    pub start_time: u64,
    /// RFC 3339.
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The cgroup made for `linux.resources`, removed with the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
}

/// The lifecycle states of the OCI spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }

    /// As runc's errors word it ("cannot start a container that has stopped").
    pub fn phrase(self) -> &'static str {
        match self {
            Status::Creating => "is being created",
            Status::Created => "is created",
            Status::Running => "is running",
            Status::Stopped => "has stopped",
        }
    }
}

/// The start time of process `pid`, unless it has ended (a zombie has ended).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

fn parse_stat(stat: &str) -> Option<u64> {
    // The command may hold spaces and parentheses: fields are counted after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (the state), fields[19] field 22 (the start time).
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether this process runs in a user namespace other than the host's (whose map is the
/// identity of every id).
fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
        .unwrap_or(false)
}

/// The state directory (`--root`).
pub struct Root {
    pub dir: PathBuf,
}

impl Root {
    /// `--root`, else runc's defaults with nook's name: /run/nook-runtime for the host's root,
    /// `$XDG_RUNTIME_DIR/nook-runtime` for a user, also when it is root of a user namespace
    /// (rootless podman runs its runtime so).
    pub fn new(dir: Option<&Path>) -> Root {
        let dir = dir.map(Path::to_path_buf).unwrap_or_else(|| {
            // SAFETY: geteuid has no preconditions.
            let uid = unsafe { libc::geteuid() };
            let host_root = uid == 0 && !in_user_namespace();
            match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
                Some(run) if !host_root => PathBuf::from(run).join("nook-runtime"),
                _ if !host_root => std::env::temp_dir().join(format!("nook-runtime-{uid}")),
                _ => PathBuf::from("/run/nook-runtime"),
            }
        });
        Root { dir }
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Checks an id as runc does: it names a directory here.
    pub fn check_id(id: &str) -> Result<(), OciError> {
        let ok = !id.is_empty()
            && id != "."
            && id != ".."
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
        if ok {
            Ok(())
        } else {
            Err(OciError::BadId(id.to_string()))
        }
    }

    /// The container `id`, as recorded.
    pub fn load(&self, id: &str) -> Result<Container, OciError> {
        Root::check_id(id)?;
        let dir = self.container_dir(id);
        let text = match std::fs::read_to_string(dir.join("state.json")) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OciError::NotFound(id.to_string()))
            }
            Err(e) => return Err(OciError::io(format!("read the state of {id}"), e)),
        };
        let record: Record = serde_json::from_str(&text)
            .map_err(|e| OciError::Spec(format!("the state of {id} is damaged: {e}")))?;
        Ok(Container { dir, record })
    }

    /// Every container's id, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().join("state.json").is_file())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }
}

/// A recorded container.
pub struct Container {
    pub dir: PathBuf,
    pub record: Record,
}

impl Container {
    pub fn fifo(&self) -> PathBuf {
        self.dir.join("exec.fifo")
    }

    pub fn status(&self) -> Status {
        let alive =
            self.record.pid > 0 && start_time(self.record.pid) == Some(self.record.start_time);
        if !alive {
            Status::Stopped
        } else if self.fifo().exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    /// The first process's pid while it runs.
    pub fn pid(&self) -> Option<i32> {
        (self.status() != Status::Stopped).then_some(self.record.pid)
    }

    /// The spec's state document (runc's, with its `rootfs`, `created` and `owner`).
    pub fn state_json(&self, status: Status) -> serde_json::Value {
        let r = &self.record;
        let pid = if status == Status::Stopped { 0 } else { r.pid };
        serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": r.id,
            "pid": pid,
            "status": status.name(),
            "bundle": r.bundle,
            "rootfs": r.rootfs,
            "created": r.created,
            "owner": r.owner,
            "annotations": r.annotations,
        })
    }

    /// The bundle's config.json as `create` read it.
    pub fn config(&self) -> Result<oci_spec::runtime::Spec, OciError> {
        let path = self.dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| OciError::ReadConfig {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| OciError::ParseConfig { path, source })
    }

    pub fn save(&self) -> Result<(), OciError> {
        let text = serde_json::to_vec_pretty(&self.record).expect("a record serializes");
        super::write_atomic(&self.dir.join("state.json"), &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_start_times_skip_odd_names_and_zombies() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
        assert_eq!(parse_stat(line), Some(98765));
        let zombie = "42 (sh) Z 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
        assert_eq!(parse_stat(zombie), None);
        assert!(start_time(std::process::id() as i32).is_some());
    }

    #[test]
    fn ids_are_checked_like_runcs() {
        for ok in ["a", "abc-1.2_x+y", "0123456789abcdef"] {
            Root::check_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "x\n"] {
            assert!(Root::check_id(bad).is_err(), "{bad:?}");
        }
    }
}
