//! The on-disk shape of a container's `config.json`. It is the shape nook has always written
//! (the column's name, the VM's size beside it, and one rootfs layout for both columns), so
//! records written before the typed [`Isolation`] load unchanged and records written now stay
//! readable by older versions. [`ContainerConfig`] is converted from it, and a record that
//! contradicts itself (a VM without its size, an unknown column, a VM without its image disk)
//! is refused, named.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::log::LogOptions;
use super::state::ContainerConfig;
use crate::isolation::limits::Limits;
use crate::isolation::mounts::MountSpec;
use crate::isolation::namespace::Overlay;
use crate::isolation::network::NetworkSpec;
use crate::isolation::security::SecurityOptions;
use crate::isolation::vm::{Disks, Machine, VmSettings};
use crate::isolation::{Isolation, LaunchSpec, ProcessSpec};

#[derive(Serialize, Deserialize)]
pub struct Record {
    id: String,
    name: String,
    image: String,
    image_id: String,
    created: DateTime<Utc>,
    /// "container" (namespaces) or "vm".
    isolation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vm: Option<VmSettings>,
    launch: Launch,
    tty: bool,
    open_stdin: bool,
    auto_remove: bool,
    /// Records from before log rotation get the default.
    #[serde(default)]
    log: LogOptions,
}

#[derive(Serialize, Deserialize)]
struct Launch {
    process: Process,
    rootfs: Rootfs,
    hostname: String,
    /// Records from before networking existed had only `lo`.
    #[serde(default)]
    network: NetworkSpec,
    /// Records from before volumes existed had none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mounts: Vec<MountSpec>,
    /// Records from before the security options had docker's defaults.
    #[serde(default, skip_serializing_if = "SecurityOptions::is_default")]
    security: SecurityOptions,
    /// Records from before the limits had none.
    #[serde(default, skip_serializing_if = "Limits::is_default")]
    limits: Limits,
}

#[derive(Serialize, Deserialize)]
struct Process {
    argv: Vec<String>,
    env: Vec<String>,
    cwd: String,
    user: String,
    terminal: bool,
    /// `--group-add`'s gids; records from before it had none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<u32>,
}

/// The namespace column's overlay; a VM keeps its image disk as `lower[0]` and its writable
/// disk as `upper`.
#[derive(Serialize, Deserialize)]
struct Rootfs {
    lower: Vec<PathBuf>,
    upper: PathBuf,
    work: PathBuf,
    merged: PathBuf,
    read_only: bool,
}

impl TryFrom<Record> for ContainerConfig {
    type Error = String;

    fn try_from(r: Record) -> Result<Self, String> {
        let Rootfs {
            lower,
            upper,
            work,
            merged,
            read_only,
        } = r.launch.rootfs;
        let isolation = match (r.isolation.as_str(), r.vm) {
            ("container", _) => Isolation::Container(Overlay {
                lower,
                upper,
                work,
                merged,
                read_only,
            }),
            ("vm", Some(settings)) => Isolation::Vm(Machine {
                settings,
                disks: Disks {
                    image: lower
                        .into_iter()
                        .next()
                        .ok_or("a VM container's record names no image disk")?,
                    upper,
                    read_only,
                },
                host_root: None,
            }),
            ("vm", None) => return Err("a VM container's record has no VM size".into()),
            (other, _) => return Err(format!("unknown isolation {other:?}")),
        };
        let p = r.launch.process;
        Ok(ContainerConfig {
            id: r.id,
            name: r.name,
            image: r.image,
            image_id: r.image_id,
            created: r.created,
            isolation,
            launch: LaunchSpec {
                process: ProcessSpec {
                    argv: p.argv,
                    env: p.env,
                    cwd: p.cwd,
                    user: p.user,
                    terminal: p.terminal,
                    groups: p.groups,
                    ..ProcessSpec::default()
                },
                hostname: r.launch.hostname,
                network: r.launch.network,
                mounts: r.launch.mounts,
                security: r.launch.security,
                limits: r.launch.limits,
            },
            tty: r.tty,
            open_stdin: r.open_stdin,
            auto_remove: r.auto_remove,
            log: r.log,
        })
    }
}

impl From<ContainerConfig> for Record {
    fn from(c: ContainerConfig) -> Record {
        let name = c.isolation.name().to_string();
        let (vm, rootfs) = match c.isolation {
            Isolation::Container(o) => (
                None,
                Rootfs {
                    lower: o.lower,
                    upper: o.upper,
                    work: o.work,
                    merged: o.merged,
                    read_only: o.read_only,
                },
            ),
            Isolation::Vm(m) => {
                let dir = m
                    .disks
                    .upper
                    .parent()
                    .map(PathBuf::from)
                    .unwrap_or_default();
                (
                    Some(m.settings),
                    Rootfs {
                        lower: vec![m.disks.image],
                        upper: m.disks.upper,
                        // Unused by a VM; written as nook always did.
                        work: dir.join("work"),
                        merged: dir.join("merged"),
                        read_only: m.disks.read_only,
                    },
                )
            }
        };
        let p = c.launch.process;
        Record {
            id: c.id,
            name: c.name,
            image: c.image,
            image_id: c.image_id,
            created: c.created,
            isolation: name,
            vm,
            launch: Launch {
                process: Process {
                    argv: p.argv,
                    env: p.env,
                    cwd: p.cwd,
                    user: p.user,
                    terminal: p.terminal,
                    groups: p.groups,
                },
                rootfs,
                hostname: c.launch.hostname,
                network: c.launch.network,
                mounts: c.launch.mounts,
                security: c.launch.security,
                limits: c.launch.limits,
            },
            tty: c.tty,
            open_stdin: c.open_stdin,
            auto_remove: c.auto_remove,
            log: c.log,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as the version before the typed isolation wrote them, one per column.
    const NAMESPACE_RECORD: &str = r#"{
  "id": "3f9d0c2a41b7e8f6a5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a29180f7e",
  "name": "web",
  "image": "busybox",
  "image_id": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
  "created": "2026-11-30T10:00:00.123456789Z",
  "isolation": "container",
  "launch": {
    "process": {"argv": ["sh", "-c", "echo hi"], "env": ["PATH=/bin", "A=1"], "cwd": "/",
                "user": "1000:1000", "terminal": false},
    "rootfs": {"lower": ["/s/rootfs/abc.0-1000.tree"], "upper": "/s/containers/3f/upper",
               "work": "/s/containers/3f/work", "merged": "/s/containers/3f/merged",
               "read_only": true},
    "hostname": "3f9d0c2a41b7"
  },
  "tty": false, "open_stdin": true, "auto_remove": false,
  "log": {"max_size": 1048576, "max_file": 3}
}"#;

    const VM_RECORD: &str = r#"{
  "id": "aa", "name": "vm1", "image": "alpine", "image_id": "sha256:22",
  "created": "2026-11-30T10:00:00Z",
  "isolation": "vm",
  "vm": {"memory_mib": 512, "vcpus": 2, "kernel": "/k/vmlinux"},
  "launch": {
    "process": {"argv": ["true"], "env": [], "cwd": "/", "user": "", "terminal": true},
    "rootfs": {"lower": ["/cache/rootfs/x.erofs"], "upper": "/s/containers/aa/upper.ext4",
               "work": "/s/containers/aa/work", "merged": "/s/containers/aa/merged",
               "read_only": false},
    "hostname": "h"
  },
  "tty": true, "open_stdin": true, "auto_remove": false
}"#;

    #[test]
    fn records_of_the_previous_version_load_typed() {
        let c: ContainerConfig = serde_json::from_str(NAMESPACE_RECORD).unwrap();
        let Isolation::Container(o) = &c.isolation else {
            panic!("{:?}", c.isolation)
        };
        assert_eq!(
            o.image_tree(),
            std::path::Path::new("/s/rootfs/abc.0-1000.tree")
        );
        assert_eq!(o.upper, PathBuf::from("/s/containers/3f/upper"));
        assert!(o.read_only && c.isolation.read_only());
        assert_eq!(c.launch.process.user, "1000:1000");
        assert_eq!(c.log.max_file, 3);

        let v: ContainerConfig = serde_json::from_str(VM_RECORD).unwrap();
        let Isolation::Vm(m) = &v.isolation else {
            panic!("{:?}", v.isolation)
        };
        assert_eq!(m.settings.memory_mib, 512);
        assert_eq!(m.settings.kernel, Some(PathBuf::from("/k/vmlinux")));
        assert_eq!(m.disks.image, PathBuf::from("/cache/rootfs/x.erofs"));
        assert_eq!(m.disks.upper, PathBuf::from("/s/containers/aa/upper.ext4"));
        assert!(v.launch.process.terminal);
        assert_eq!(v.log, LogOptions::default());
    }

    #[test]
    fn records_are_written_in_the_same_shape() {
        for json in [NAMESPACE_RECORD, VM_RECORD] {
            let c: ContainerConfig = serde_json::from_str(json).unwrap();
            let written = serde_json::to_value(&c).unwrap();
            let mut old: serde_json::Value = serde_json::from_str(json).unwrap();
            old["log"] = serde_json::to_value(c.log).unwrap();
            // Written now: the network they had, only `lo`.
            old["launch"]["network"] = serde_json::json!({"mode": "none"});
            assert_eq!(written, old, "{json}");
            let again: ContainerConfig = serde_json::from_value(written).unwrap();
            assert_eq!(again, c);
        }
    }

    #[test]
    fn security_options_are_kept_and_reloaded() {
        let mut c: ContainerConfig = serde_json::from_str(NAMESPACE_RECORD).unwrap();
        assert!(c.launch.security.is_default());
        c.launch.security = SecurityOptions {
            cap_drop: vec!["ALL".into()],
            no_new_privileges: Some(false),
            ..SecurityOptions::default()
        };
        let written = serde_json::to_value(&c).unwrap();
        assert_eq!(
            written["launch"]["security"],
            serde_json::json!({"cap_drop": ["ALL"], "no_new_privileges": false})
        );
        let again: ContainerConfig = serde_json::from_value(written).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn added_groups_are_kept_and_reloaded() {
        let mut c: ContainerConfig = serde_json::from_str(NAMESPACE_RECORD).unwrap();
        assert!(c.launch.process.groups.is_empty());
        c.launch.process.groups = vec![1234, 65534];
        let written = serde_json::to_value(&c).unwrap();
        assert_eq!(
            written["launch"]["process"]["groups"],
            serde_json::json!([1234, 65534])
        );
        let again: ContainerConfig = serde_json::from_value(written).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn contradicting_records_are_refused_by_name() {
        let no_size = VM_RECORD.replace(
            r#""vm": {"memory_mib": 512, "vcpus": 2, "kernel": "/k/vmlinux"},"#,
            "",
        );
        let e = serde_json::from_str::<ContainerConfig>(&no_size).unwrap_err();
        assert!(e.to_string().contains("no VM size"), "{e}");
        let odd = NAMESPACE_RECORD.replace(r#""isolation": "container""#, r#""isolation": "jail""#);
        let e = serde_json::from_str::<ContainerConfig>(&odd).unwrap_err();
        assert!(e.to_string().contains("unknown isolation \"jail\""), "{e}");
        let no_disk = VM_RECORD.replace(r#"["/cache/rootfs/x.erofs"]"#, "[]");
        let e = serde_json::from_str::<ContainerConfig>(&no_disk).unwrap_err();
        assert!(e.to_string().contains("no image disk"), "{e}");
    }
}
