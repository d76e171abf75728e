//! config.json in the VM column's terms: the process, hostname and mounts of a
//! [`LaunchSpec`], the VM's size, and what the guest cannot honour (said in the log).

use std::path::Path;

use oci_spec::runtime::{Mount, Process};

use super::super::config::{self, Bundle};
use super::super::error::OciError;
use super::super::log::Log;
use crate::isolation::limits::ulimit::Ulimit;
use crate::isolation::limits::Limits;
use crate::isolation::mounts::MountSpec;
use crate::isolation::vm::VmSettings;
use crate::isolation::{LaunchSpec, ProcessSpec};
use nook_agent::protocol::Rlimit;

/// Mount types the guest provides itself (its own /proc, /sys, /dev, /dev/pts, /dev/mqueue).
const GUEST_OWN: [&str; 6] = ["proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2"];

/// Files podman and containerd bind into every container; the guest writes its own
/// /etc/hosts, /etc/hostname and /etc/resolv.conf, and a VM has no use for the rest.
const CALLER_FILES: [&str; 4] = [
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/run/.containerenv",
];

/// The agent's form of a spec process: argv, env, cwd, `uid:gid`, terminal, the additional
/// gids and the rlimits of this process (an exec's; `create` makes the first process's the
/// container's, see [`launch_spec`]).
pub fn process(p: &Process, log: &Log) -> Result<ProcessSpec, OciError> {
    let plan = config::process_plan(p, None, log)?;
    let mut rlimits = Vec::new();
    for (resource, soft, hard) in plan.rlimits {
        if soft > hard {
            return Err(OciError::Spec(format!(
                "process.rlimits: resource {resource} has soft limit {soft} above hard limit {hard}"
            )));
        }
        rlimits.push(Rlimit {
            resource,
            soft,
            hard,
        });
    }
    Ok(ProcessSpec {
        user: format!("{}:{}", plan.user.uid, plan.user.gid),
        groups: plan.user.groups,
        rlimits,
        ..plan.spec
    })
}

/// The container's limits from its first process's rlimits: `nook run --ulimit`'s, which the
/// agent applies to the first process and to every process exec'd later.
fn limits(process: &mut ProcessSpec) -> Result<Limits, OciError> {
    let mut limits = Limits::default();
    for r in std::mem::take(&mut process.rlimits) {
        limits.ulimits.push(
            Ulimit::from_rlimit(r.resource, r.soft, r.hard).ok_or_else(|| {
                OciError::Spec(format!("process.rlimits: unknown resource {}", r.resource))
            })?,
        );
    }
    Ok(limits)
}

/// The container's first process and mounts as `nook run --isolation=vm` gets them: no
/// network but loopback (a VM joins no network namespace of the caller's).
pub fn launch_spec(bundle: &Bundle, log: &Log) -> Result<LaunchSpec, OciError> {
    let spec = &bundle.spec;
    let first = spec
        .process()
        .as_ref()
        .ok_or_else(|| OciError::Spec("config.json has no process".into()))?;
    let mut mounts = Vec::new();
    for m in spec.mounts().clone().unwrap_or_default() {
        if let Some(m) = mount(&m, &bundle.dir, log)? {
            mounts.push(m);
        }
    }
    let linux = spec.linux().clone().unwrap_or_default();
    if linux.seccomp().is_some() {
        log.debug("linux.seccomp is not applied inside the VM: the VM is the boundary");
    }
    let hooks = spec.hooks().clone().unwrap_or_default();
    if hooks
        .create_container()
        .as_ref()
        .is_some_and(|h| !h.is_empty())
        || hooks
            .start_container()
            .as_ref()
            .is_some_and(|h| !h.is_empty())
    {
        log.warn("createContainer and startContainer hooks are not run in the VM column: they run in the container's namespaces, which are inside the guest");
    }
    let mut process = process(first, log)?;
    let limits = limits(&mut process)?;
    Ok(LaunchSpec {
        process,
        hostname: spec.hostname().clone().unwrap_or_default(),
        network: Default::default(),
        mounts,
        security: Default::default(),
        limits,
    })
}

/// The VM's size: linux.resources.memory.limit and the CPU quota, as `--memory` and `--cpus`.
pub fn settings(bundle: &Bundle) -> Result<VmSettings, OciError> {
    let resources = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone());
    let memory = resources
        .as_ref()
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|l| *l > 0)
        .map(|l| l as u64);
    let cpus = resources
        .as_ref()
        .and_then(|r| r.cpu().as_ref())
        .and_then(|c| match (c.quota(), c.period()) {
            (Some(q), Some(p)) if q > 0 && p > 0 => Some(q as f64 / p as f64),
            _ => None,
        });
    VmSettings::from_flags(memory, cpus)
        .map_err(|e| OciError::Spec(format!("linux.resources: {e}")))
}

fn has(options: &[String], name: &str) -> bool {
    options.iter().any(|o| o == name)
}

fn option_value<'a>(options: &'a [String], key: &str) -> Option<&'a str> {
    options
        .iter()
        .find_map(|o| o.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// One spec mount in the guest: a host directory becomes a virtio-fs share, a tmpfs the
/// guest's own; the kernel's file systems are the guest's already (None).
fn mount(m: &Mount, bundle: &Path, log: &Log) -> Result<Option<MountSpec>, OciError> {
    let target = m.destination().to_string_lossy().into_owned();
    let options = m.options().clone().unwrap_or_default();
    let typ = m.typ().clone().unwrap_or_default();
    let bind = typ == "bind" || has(&options, "bind") || has(&options, "rbind");
    let readonly = has(&options, "ro");
    if bind {
        let Some(source) = m.source() else {
            return Err(OciError::Spec(format!(
                "bind mount at {target} has no source"
            )));
        };
        let source = if source.is_absolute() {
            source.clone()
        } else {
            bundle.join(source)
        };
        if CALLER_FILES.contains(&target.as_str()) {
            log.debug(&format!("{target}: the guest's own, not the caller's"));
            return Ok(None);
        }
        if source.is_dir() || source.is_file() {
            return Ok(Some(MountSpec::Bind {
                source,
                target,
                readonly,
                volume: None,
            }));
        }
        log.warn(&format!(
            "bind mount of {} at {target} is left out: the VM column shares directories and \
             regular files only",
            source.display()
        ));
        return Ok(None);
    }
    if GUEST_OWN.contains(&typ.as_str()) || target == "/dev" {
        return Ok(None);
    }
    if typ == "tmpfs" {
        let size = option_value(&options, "size")
            .map(|s| {
                crate::container::mount_args::parse_size(s)
                    .ok_or_else(|| OciError::Spec(format!("tmpfs at {target}: size={s}")))
            })
            .transpose()?;
        let mode = option_value(&options, "mode")
            .map(|s| {
                u32::from_str_radix(s, 8)
                    .map_err(|_| OciError::Spec(format!("tmpfs at {target}: mode={s}")))
            })
            .transpose()?;
        return Ok(Some(MountSpec::Tmpfs {
            target,
            size,
            mode,
            readonly,
        }));
    }
    log.warn(&format!(
        "mount of type {typ:?} at {target} is left out in the VM column"
    ));
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::super::super::log::LogFormat;
    use super::*;

    fn log() -> Log {
        Log::open(None, LogFormat::Text, false)
    }

    fn one(json: &str, bundle: &Path) -> Option<MountSpec> {
        let m: Mount = serde_json::from_str(json).unwrap();
        mount(&m, bundle, &log()).unwrap()
    }

    #[test]
    fn directories_are_shared_tmpfs_is_the_guests_and_kernel_fs_are_left_to_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("hosts"), "x").unwrap();
        assert_eq!(
            one(
                r#"{"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]}"#,
                dir.path()
            ),
            Some(MountSpec::Bind {
                source: dir.path().join("data"),
                target: "/data".into(),
                readonly: true,
                volume: None,
            })
        );
        // A single file other than the caller's own is shared too.
        assert_eq!(
            one(
                r#"{"destination": "/etc/app.conf", "type": "bind", "source": "hosts", "options": ["bind", "ro"]}"#,
                dir.path()
            ),
            Some(MountSpec::Bind {
                source: dir.path().join("hosts"),
                target: "/etc/app.conf".into(),
                readonly: true,
                volume: None,
            })
        );
        assert_eq!(
            one(
                r#"{"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=64k", "mode=755"]}"#,
                dir.path()
            ),
            Some(MountSpec::Tmpfs {
                target: "/run".into(),
                size: Some(64 << 10),
                mode: Some(0o755),
                readonly: false,
            })
        );
        for json in [
            r#"{"destination": "/proc", "type": "proc", "source": "proc"}"#,
            r#"{"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}"#,
            r#"{"destination": "/dev/pts", "type": "devpts", "source": "devpts"}"#,
            r#"{"destination": "/etc/hosts", "type": "bind", "source": "hosts", "options": ["bind"]}"#,
        ] {
            assert_eq!(one(json, dir.path()), None, "{json}");
        }
    }

    #[test]
    fn the_process_keeps_its_fields_and_its_ids() {
        let p: Process = serde_json::from_str(
            r#"{"cwd": "/w", "user": {"uid": 1000, "gid": 100}, "args": ["sh", "-c", "id"],
                "env": ["A=1"], "terminal": true}"#,
        )
        .unwrap();
        let spec = process(&p, &log()).unwrap();
        assert_eq!(spec.argv, ["sh", "-c", "id"]);
        assert_eq!(spec.env, ["A=1"]);
        assert_eq!((spec.cwd.as_str(), spec.user.as_str()), ("/w", "1000:100"));
        assert!(spec.terminal);
        assert!(spec.groups.is_empty() && spec.rlimits.is_empty());
    }

    fn with_limits() -> Process {
        serde_json::from_str(
            r#"{"cwd": "/", "args": ["true"],
                "user": {"uid": 1000, "gid": 100, "additionalGids": [10, 4242]},
                "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
                            {"type": "RLIMIT_CORE", "soft": 0, "hard": 18446744073709551615}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn additional_gids_and_rlimits_reach_the_agent() {
        // An exec's process: its own groups and rlimits.
        let spec = process(&with_limits(), &log()).unwrap();
        assert_eq!(spec.user, "1000:100");
        assert_eq!(spec.groups, [10, 4242]);
        let nofile = Rlimit {
            resource: libc::RLIMIT_NOFILE,
            soft: 512,
            hard: 1024,
        };
        let core = Rlimit {
            resource: libc::RLIMIT_CORE,
            soft: 0,
            hard: u64::MAX,
        };
        assert_eq!(spec.rlimits, [nofile, core]);

        // The first process's rlimits become the container's, as `--ulimit nofile=512:1024
        // --ulimit core=0:-1` would make them.
        let mut first = spec;
        let limits = limits(&mut first).unwrap();
        assert!(first.rlimits.is_empty());
        assert_eq!(first.groups, [10, 4242]);
        let docker = |s| Ulimit::parse(s).unwrap();
        assert_eq!(
            limits.ulimits,
            [docker("nofile=512:1024"), docker("core=0:-1")]
        );
        assert_eq!(limits.guest_limits().rlimits, [nofile, core]);
        assert_eq!(limits.guest_limits().pids_max, None);
    }

    #[test]
    fn a_soft_limit_above_the_hard_one_is_refused() {
        let p: Process = serde_json::from_str(
            r#"{"cwd": "/", "args": ["true"], "user": {"uid": 0, "gid": 0},
                "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]}"#,
        )
        .unwrap();
        let err = process(&p, &log()).unwrap_err().to_string();
        assert!(
            err.contains("soft limit 2048 above hard limit 1024"),
            "{err}"
        );
    }
}
