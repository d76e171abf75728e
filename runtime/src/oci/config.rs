//! A bundle's config.json, read and checked as runc does, and translated into the namespace
//! column's set-up ([`BundleSpec`]): the process and its confinement (capabilities,
//! no_new_privs and the spec's seccomp profile compiled by nook's profile compiler), the root,
//! the mounts, masks, namespaces and id maps.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use super::error::OciError;
use super::log::Log;
use super::mounts;
use crate::isolation::namespace::bundle::{BundleSpec, Namespaces, ProcessPlan};
use crate::isolation::namespace::caps;
use crate::isolation::namespace::confine::Confinement;
use crate::isolation::namespace::idmap::{IdMap, IdRange};
use crate::isolation::namespace::user;
use crate::isolation::security::CAPABILITIES;
use crate::isolation::{seccomp_profile, ProcessSpec};

/// A bundle: its directory (absolute), config.json and root directory.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    /// The text of config.json, kept in the container's state.
    pub text: String,
    pub rootfs: PathBuf,
}

impl Bundle {
    /// Reads `dir/config.json` and checks its version and root.
    pub fn load(dir: &Path) -> Result<Bundle, OciError> {
        let dir =
            std::path::absolute(dir).map_err(|e| OciError::io("resolve the bundle path", e))?;
        let path = dir.join("config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OciError::NoConfig(path))
            }
            Err(source) => return Err(OciError::ReadConfig { path, source }),
        };
        let spec: Spec =
            serde_json::from_str(&text).map_err(|source| OciError::ParseConfig { path, source })?;
        let version = spec.version();
        if !version.starts_with("1.") {
            return Err(OciError::Version(version.clone()));
        }
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| OciError::Spec("config.json has no root".into()))?;
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            dir.join(root.path())
        };
        if !rootfs.is_dir() {
            return Err(OciError::NoRootfs(rootfs));
        }
        Ok(Bundle {
            dir,
            spec,
            text,
            rootfs,
        })
    }
}

fn namespace_flag(t: LinuxNamespaceType) -> Result<libc::c_int, OciError> {
    Ok(match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => {
            return Err(OciError::Unsupported {
                what: "the time namespace".into(),
                why: "it is not implemented",
            })
        }
    })
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

fn egid() -> u32 {
    // SAFETY: getegid has no preconditions.
    unsafe { libc::getegid() }
}

/// Translates `bundle` into the namespace column's set-up; `state_dir` is the container's.
pub fn translate(bundle: &Bundle, state_dir: &Path, log: &Log) -> Result<BundleSpec, OciError> {
    let spec = &bundle.spec;
    let linux = spec.linux().clone().unwrap_or_default();
    let mut namespaces = Namespaces::default();
    for ns in linux.namespaces().clone().unwrap_or_default() {
        let flag = namespace_flag(ns.typ())?;
        match ns.path() {
            Some(p) if !p.as_os_str().is_empty() => namespaces.join.push((p.clone(), flag)),
            _ => namespaces.new |= flag,
        }
    }
    // The user namespace is joined first: it grants the rights to join the others.
    namespaces
        .join
        .sort_by_key(|(_, flag)| *flag != libc::CLONE_NEWUSER);
    let joins_mount = namespaces.join.iter().any(|(_, f)| *f == libc::CLONE_NEWNS);
    if namespaces.new & libc::CLONE_NEWNS == 0 && !joins_mount {
        return Err(OciError::Spec(
            "config.json must ask for a mount namespace, new or joined by path".into(),
        ));
    }
    let joins_pid = namespaces
        .join
        .iter()
        .any(|(_, f)| *f == libc::CLONE_NEWPID);
    if joins_mount && !joins_pid {
        // The container's first process reads its own /proc/self files before its execve.
        return Err(OciError::Spec(
            "a mount namespace joined by path needs the pid namespace joined by path too: \
             its /proc is that pid namespace's"
                .into(),
        ));
    }
    if joins_mount && !spec.mounts().as_ref().is_none_or(|m| m.is_empty()) {
        log.warn("mounts, devices, maskedPaths and readonlyPaths are not applied in a mount namespace joined by path: it is another's, set up already");
    }
    let own_userns = namespaces.new & libc::CLONE_NEWUSER != 0;
    let joins_userns = namespaces
        .join
        .iter()
        .any(|(_, f)| *f == libc::CLONE_NEWUSER);
    if euid() != 0 && !own_userns && !joins_userns {
        return Err(OciError::Spec(
            "rootless container requires user namespaces (add one to linux.namespaces, \
             with uidMappings and gidMappings)"
                .into(),
        ));
    }
    let ids = if own_userns {
        Some(id_map(
            linux.uid_mappings().as_deref().unwrap_or_default(),
            linux.gid_mappings().as_deref().unwrap_or_default(),
        )?)
    } else {
        None
    };
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| OciError::Spec("config.json has no process".into()))?;
    let plan = process_plan(process, linux.seccomp().as_ref(), log)?;

    let mut mounts = Vec::new();
    for m in spec.mounts().clone().unwrap_or_default() {
        mounts.push(mounts::translate(&m, &bundle.dir)?);
    }
    let hostname = match spec.hostname() {
        Some(h) if !h.is_empty() && namespaces.new & libc::CLONE_NEWUTS != 0 => Some(h.clone()),
        Some(h) if !h.is_empty() => {
            return Err(OciError::Spec(
                "unable to set the hostname without a new UTS namespace".into(),
            ))
        }
        _ => None,
    };
    if linux.cgroups_path().is_some() {
        log.debug("linux.cgroupsPath is not honoured: a container has a cgroup of its own, in nook's delegated subtree, only for linux.resources");
    }
    let sysctl = sysctls(&linux.sysctl().clone().unwrap_or_default(), &namespaces)?;
    Ok(BundleSpec {
        rootfs: bundle.rootfs.clone(),
        readonly: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        hostname,
        mounts,
        devices: linux
            .devices()
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|d| d.path().to_string_lossy().into_owned())
            .collect(),
        masked: linux.masked_paths().clone().unwrap_or_default(),
        readonly_paths: linux.readonly_paths().clone().unwrap_or_default(),
        namespaces,
        ids,
        process: plan,
        targets_record: state_dir.join("mount-targets"),
        sysctl,
    })
}

/// Whether the container's namespace of type `flag` is not this process's: made new, or joined
/// by a path that names another (podman joins a network namespace it made).
fn own_namespace(namespaces: &Namespaces, flag: libc::c_int, file: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let ours = id(Path::new(&format!("/proc/self/ns/{file}")));
    namespaces.new & flag != 0
        || namespaces
            .join
            .iter()
            .any(|(path, f)| *f == flag && id(path).is_some_and(|ns| Some(ns) != ours))
}

/// `linux.sysctl`, checked as runc does: only parameters of a namespace the container has of
/// its own (ipc, net, uts) may be set, as they change nothing outside it.
fn sysctls(
    sysctl: &std::collections::HashMap<String, String>,
    namespaces: &Namespaces,
) -> Result<Vec<(String, String)>, OciError> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let mut out: Vec<(String, String)> =
        sysctl.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    out.sort();
    for (key, _) in &out {
        if key.contains('/') || key.split('.').any(|c| c.is_empty()) {
            return Err(OciError::Spec(format!("invalid sysctl name {key:?}")));
        }
        let (flag, name, file) = if IPC.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
            (libc::CLONE_NEWIPC, "ipc", "ipc")
        } else if key.starts_with("net.") {
            (libc::CLONE_NEWNET, "network", "net")
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            (libc::CLONE_NEWUTS, "uts", "uts")
        } else {
            return Err(OciError::Spec(format!(
                "sysctl {key:?} is not in a separate kernel namespace"
            )));
        };
        if !own_namespace(namespaces, flag, file) {
            return Err(OciError::Spec(format!(
                "sysctl {key:?} is not allowed without a {name} namespace of the container's own"
            )));
        }
    }
    Ok(out)
}

fn id_map(
    uids: &[oci_spec::runtime::LinuxIdMapping],
    gids: &[oci_spec::runtime::LinuxIdMapping],
) -> Result<IdMap, OciError> {
    if uids.is_empty() || gids.is_empty() {
        return Err(OciError::Spec(
            "user namespaces enabled, but no uid or gid mappings found".into(),
        ));
    }
    let ranges = |m: &[oci_spec::runtime::LinuxIdMapping]| -> Vec<IdRange> {
        m.iter()
            .map(|r| IdRange {
                inside: r.container_id(),
                host: r.host_id(),
                count: r.size(),
            })
            .collect()
    };
    let (uids, gids) = (ranges(uids), ranges(gids));
    // A user may write a map of its own ids alone; anything more goes through newuidmap and
    // newgidmap, which check it against /etc/subuid and /etc/subgid.
    let own = |r: &[IdRange], id: u32| r.len() == 1 && r[0].count == 1 && r[0].host == id;
    let helpers = euid() != 0 && !(own(&uids, euid()) && own(&gids, egid()));
    Ok(IdMap {
        uids,
        gids,
        helpers,
    })
}

/// A process of config.json (or of `exec --process`), with the container's seccomp profile.
pub fn process_plan(
    process: &Process,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
    log: &Log,
) -> Result<ProcessPlan, OciError> {
    let argv = process.args().clone().unwrap_or_default();
    if argv.is_empty() {
        return Err(OciError::Spec("args must not be empty".into()));
    }
    let cwd = process.cwd().to_string_lossy().into_owned();
    if !cwd.starts_with('/') {
        return Err(OciError::Spec(format!(
            "cwd {cwd:?} is not an absolute path"
        )));
    }
    let size = process.console_size();
    let spec = ProcessSpec {
        argv,
        env: process.env().clone().unwrap_or_default(),
        cwd,
        user: String::new(),
        terminal: process.terminal().unwrap_or(false),
        rows: size.map_or(0, |b| u16::try_from(b.height()).unwrap_or(u16::MAX)),
        cols: size.map_or(0, |b| u16::try_from(b.width()).unwrap_or(u16::MAX)),
        ..ProcessSpec::default()
    };
    let u = process.user();
    let user = user::Ids {
        uid: u.uid(),
        gid: u.gid(),
        groups: u.additional_gids().clone().unwrap_or_default(),
        home: String::new(),
    };
    let mut rlimits = Vec::new();
    for r in process.rlimits().clone().unwrap_or_default() {
        rlimits.push((rlimit_resource(&r.typ().to_string())?, r.soft(), r.hard()));
    }
    let (caps, sets) = capability_sets(process);
    let filters = match seccomp {
        None => Vec::new(),
        Some(s) => compile_seccomp(s, caps, log)?,
    };
    if process
        .apparmor_profile()
        .as_ref()
        .is_some_and(|p| !p.is_empty())
        || process
            .selinux_label()
            .as_ref()
            .is_some_and(|p| !p.is_empty())
    {
        log.warn("process.apparmorProfile and process.selinuxLabel are not honoured: nook applies no LSM profile");
    }
    Ok(ProcessPlan {
        spec,
        user,
        umask: u.umask(),
        rlimits,
        confinement: Confinement {
            caps,
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            filters,
            masks: false,
            sets: Some(sets),
        },
    })
}

/// A capability set of the spec as a mask of those this kernel knows (capset refuses others;
/// names nook does not know are left out, as runc does).
fn mask_of(set: Option<&oci_spec::runtime::Capabilities>) -> u64 {
    let known = caps::known(caps::last_cap());
    set.into_iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok())
        .filter_map(|v| v.as_str().map(str::to_string))
        .filter_map(|name| CAPABILITIES.iter().position(|c| *c == name))
        .fold(0u64, |m, n| m | 1 << n)
        & known
}

/// The process's capabilities: its bounding set (the confinement's mask), and its effective,
/// permitted, inheritable and ambient sets, each as the spec gives it (a set left out is empty).
fn capability_sets(process: &Process) -> (u64, caps::Sets) {
    let Some(c) = process.capabilities() else {
        return (0, caps::Sets::default());
    };
    let sets = caps::Sets {
        effective: mask_of(c.effective().as_ref()),
        permitted: mask_of(c.permitted().as_ref()),
        inheritable: mask_of(c.inheritable().as_ref()),
        ambient: mask_of(c.ambient().as_ref()),
    };
    (mask_of(c.bounding().as_ref()), sets)
}

fn rlimit_resource(name: &str) -> Result<u32, OciError> {
    Ok(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        other => return Err(OciError::Spec(format!("unknown rlimit type {other}"))),
    })
}

/// The spec's seccomp profile compiled by nook's compiler of docker's format, whose fields it
/// shares; filter flags are dropped with a warning (nook sets none).
fn compile_seccomp(
    s: &oci_spec::runtime::LinuxSeccomp,
    caps: u64,
    log: &Log,
) -> Result<Vec<seccompiler::BpfProgram>, OciError> {
    let mut value = serde_json::to_value(s).expect("a seccomp profile serializes");
    if let Some(obj) = value.as_object_mut() {
        if let Some(flags) = obj.remove("flags") {
            if flags.as_array().is_some_and(|f| !f.is_empty()) {
                log.warn(&format!("linux.seccomp.flags {flags} are not honoured"));
            }
        }
    }
    let compiled = seccomp_profile::compile(&value.to_string(), caps).map_err(|e| {
        OciError::Spec(format!(
            "invalid linux.seccomp: {}",
            crate::errors::chain(&e)
        ))
    })?;
    if !compiled.ignored.is_empty() {
        log.debug(&format!(
            "seccomp: syscalls unknown on this architecture, ignored: {}",
            compiled.ignored.join(" ")
        ));
    }
    Ok(compiled.filters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_seccomp_profile_compiles_with_nooks_compiler() {
        let s: oci_spec::runtime::LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
                "architectures": ["SCMP_ARCH_X86_64"],
                "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                             {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                              "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]}"#,
        )
        .unwrap();
        let log = Log::open(None, super::super::log::LogFormat::Text, false);
        assert_eq!(compile_seccomp(&s, 0, &log).unwrap().len(), 1);
    }

    #[test]
    fn capabilities_and_rlimits_by_name() {
        let p: Process = serde_json::from_str(
            r#"{"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["sh"],
                "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"]},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}]}"#,
        )
        .unwrap();
        let (bounding, sets) = capability_sets(&p);
        assert_eq!(bounding, 1 | 1 << 5);
        assert_eq!(sets, caps::Sets::default(), "sets left out are empty");
        let log = Log::open(None, super::super::log::LogFormat::Text, false);
        let plan = process_plan(&p, None, &log).unwrap();
        assert_eq!(plan.rlimits, [(libc::RLIMIT_NOFILE, 512, 1024)]);
        assert!(!plan.confinement.no_new_privs && plan.confinement.filters.is_empty());
    }

    #[test]
    fn capability_sets_are_kept_apart() {
        let p: Process = serde_json::from_str(
            r#"{"cwd": "/", "user": {"uid": 1000, "gid": 1000}, "args": ["sh"],
                "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
                                 "permitted": ["CAP_CHOWN", "CAP_KILL"],
                                 "effective": ["CAP_KILL"],
                                 "inheritable": ["CAP_KILL"],
                                 "ambient": ["CAP_KILL"]}}"#,
        )
        .unwrap();
        let (bounding, sets) = capability_sets(&p);
        let kill = 1 << 5;
        assert_eq!(bounding, 1 | kill | 1 << 13);
        assert_eq!(
            sets,
            caps::Sets {
                effective: kill,
                permitted: 1 | kill,
                inheritable: kill,
                ambient: kill,
            }
        );
        let log = Log::open(None, super::super::log::LogFormat::Text, false);
        let plan = process_plan(&p, None, &log).unwrap();
        assert_eq!(plan.confinement.caps, bounding);
        assert_eq!(plan.confinement.sets, Some(sets));
    }

    #[test]
    fn sysctls_only_of_the_containers_own_namespaces() {
        let of = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let new = |flags| Namespaces {
            new: flags,
            join: Vec::new(),
        };
        let all = new(libc::CLONE_NEWIPC | libc::CLONE_NEWNET | libc::CLONE_NEWUTS);
        let ok = sysctls(
            &of(&[
                ("net.ipv4.ip_forward", "1"),
                ("kernel.shmmax", "4096"),
                ("fs.mqueue.msg_max", "20"),
                ("kernel.domainname", "example"),
            ]),
            &all,
        )
        .unwrap();
        assert_eq!(ok[0], ("fs.mqueue.msg_max".into(), "20".into()), "sorted");
        assert_eq!(ok.len(), 4);
        let forward = of(&[("net.ipv4.ip_forward", "1")]);
        let e = sysctls(&forward, &new(libc::CLONE_NEWIPC));
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("network namespace of the"));
        let e = sysctls(&of(&[("kernel.shmmax", "1")]), &new(libc::CLONE_NEWNET));
        assert!(e.unwrap_err().to_string().contains("ipc namespace of the"));
        let e = sysctls(&of(&[("vm.swappiness", "1")]), &all);
        assert!(e.unwrap_err().to_string().contains("not in a separate"));
        for bad in ["net..x", "net.ipv4/../../x", "net."] {
            assert!(sysctls(&of(&[(bad, "1")]), &all).is_err(), "{bad}");
        }
        // Joined by path: it must be another network namespace than this process's (podman
        // joins one it made; the podman test runs that case).
        let joined = |path: &str| Namespaces {
            new: 0,
            join: vec![(PathBuf::from(path), libc::CLONE_NEWNET)],
        };
        assert!(sysctls(&forward, &joined("/proc/self/ns/net")).is_err());
        assert!(sysctls(&forward, &joined("/nonexistent")).is_err());
    }

    fn bundle_of(linux: serde_json::Value) -> Bundle {
        let doc = serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "/"},
            "process": {"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["true"]},
            "linux": linux,
        });
        Bundle {
            dir: PathBuf::from("/"),
            spec: serde_json::from_value(doc.clone()).unwrap(),
            text: doc.to_string(),
            rootfs: PathBuf::from("/"),
        }
    }

    #[test]
    fn a_mount_namespace_is_joined_by_path() {
        let log = Log::open(None, super::super::log::LogFormat::Text, false);
        let b = bundle_of(serde_json::json!({"namespaces": [
            {"type": "ipc"},
            {"type": "pid", "path": "/proc/1/ns/pid"},
            {"type": "mount", "path": "/proc/1/ns/mnt"},
            {"type": "user", "path": "/proc/1/ns/user"}]}));
        let spec = translate(&b, Path::new("/nonexistent"), &log).unwrap();
        assert_eq!(spec.namespaces.new, libc::CLONE_NEWIPC);
        assert_eq!(spec.namespaces.join[0].1, libc::CLONE_NEWUSER, "user first");
        assert!(spec
            .namespaces
            .join
            .contains(&(PathBuf::from("/proc/1/ns/mnt"), libc::CLONE_NEWNS)));
        let b = bundle_of(serde_json::json!({"namespaces": [
            {"type": "pid"},
            {"type": "mount", "path": "/proc/1/ns/mnt"},
            {"type": "user", "path": "/proc/1/ns/user"}]}));
        let e = translate(&b, Path::new("/nonexistent"), &log)
            .err()
            .unwrap();
        assert!(e.to_string().contains("pid namespace joined"), "{e}");
        let b = bundle_of(serde_json::json!({"namespaces": [
            {"type": "user", "path": "/proc/1/ns/user"}]}));
        let e = translate(&b, Path::new("/nonexistent"), &log)
            .err()
            .unwrap();
        assert!(e.to_string().contains("mount namespace"), "{e}");
    }
}
