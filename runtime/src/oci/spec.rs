//! `spec` (a starting config.json, runc's) and `features` (what this runtime supports, the
//! spec's features document).

use std::path::Path;

use oci_spec::runtime::Spec;

use super::error::OciError;
use super::state::OCI_VERSION;
use crate::isolation::security::CAPABILITIES;

/// `spec`: writes config.json into `bundle` (the working directory by default).
pub fn spec(bundle: Option<&Path>, rootless: bool) -> Result<(), OciError> {
    let dir = bundle.unwrap_or(Path::new("."));
    let path = dir.join("config.json");
    if path.exists() {
        return Err(OciError::Spec(
            "File config.json exists. Remove it first".into(),
        ));
    }
    let mut spec = if rootless {
        // SAFETY: geteuid/getegid have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Spec::rootless(uid, gid)
    } else {
        Spec::default()
    };
    spec.set_version(OCI_VERSION.to_string());
    spec.set_hostname(Some("nook".into()));
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(true));
    }
    // No cgroup is made, so no resources are asked for.
    if let Some(linux) = spec.linux_mut() {
        linux.set_resources(None);
    }
    let text = serde_json::to_string_pretty(&spec).expect("a spec serializes");
    std::fs::write(&path, text + "\n")
        .map_err(|e| OciError::io(format!("write {}", path.display()), e))
}

/// `features`.
pub fn features() -> Result<(), OciError> {
    let doc = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": [
            "prestart", "createRuntime", "createContainer", "startContainer", "poststart",
            "poststop"
        ],
        "mountOptions": [
            "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "sync", "async",
            "dirsync", "mand", "nomand", "noatime", "atime", "nodiratime", "diratime",
            "relatime", "norelatime", "strictatime", "nostrictatime", "bind", "rbind",
            "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable",
            "runbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": CAPABILITIES.to_vec(),
            "cgroup": {"v1": false, "v2": false, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                    "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                    "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"
                ],
                "operators": [
                    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
                ],
                "archs": ["SCMP_ARCH_X86_64"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {
            "org.nook.isolation": "container (vm is refused so far)"
        }
    });
    println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
    Ok(())
}
