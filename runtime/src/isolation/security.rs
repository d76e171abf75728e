//! A container's security options, docker's flags: `--cap-add`, `--cap-drop`, `--privileged`,
//! `--security-opt no-new-privileges[=true|false]` and `--security-opt
//! seccomp=PROFILE.json|unconfined`. They are parsed and checked at `create`, kept in the
//! container's record (a profile by its text, so that every start applies what `create`
//! checked, wherever the file went), and applied by the column at every start and `exec`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::seccomp_profile::{self, ProfileError};

/// Every capability by number, as the kernel names them (`include/uapi/linux/capability.h`).
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default capabilities (moby `oci/caps/defaults.go`).
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
];

/// Every capability this table knows, as a mask.
pub const ALL_CAPS: u64 = (1 << CAPABILITIES.len()) - 1;

/// Why security options are refused.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("unknown capability: {0:?} (see capabilities(7); ALL means every one)")]
    UnknownCapability(String),
    #[error(
        "invalid --security-opt {0:?}: nook takes no-new-privileges[=true|false] and \
         seccomp=PROFILE.json|unconfined"
    )]
    BadOption(String),
    #[error(
        "--security-opt {0:?} is not supported: nook applies no LSM (AppArmor, SELinux) profile"
    )]
    Lsm(String),
    #[error(
        "--userns={0:?} is not supported: nook takes --userns=keep-id (the user's own uid and \
         gid inside) or none (the user is root of the container)"
    )]
    Userns(String),
    #[error("cannot read the seccomp profile {}", file.display())]
    ReadProfile {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid seccomp profile {}", file.display())]
    Profile {
        file: PathBuf,
        #[source]
        source: ProfileError,
    },
}

/// The seccomp filter a container runs under.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Seccomp {
    /// The column's own profile (the namespace column's deny-list).
    #[default]
    Default,
    /// `seccomp=unconfined`: none.
    Unconfined,
    /// `seccomp=PROFILE.json`: the file as named (for messages) and its text.
    Profile { file: PathBuf, text: String },
}

impl Seccomp {
    fn is_default(&self) -> bool {
        *self == Seccomp::Default
    }
}

/// The options as given, normalized and checked; empty is docker's defaults (and nook's:
/// no_new_privs is set unless asked otherwise).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityOptions {
    /// `--cap-add`, as `CAP_` names or `ALL`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// `--cap-drop`, as `CAP_` names or `ALL`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// `--privileged`: every capability of the container's user namespace, no seccomp filter,
    /// nothing of /proc or /sys masked. The user namespace stays: still rootless.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// `--security-opt no-new-privileges[=true|false]`; none: as nook always does, set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_new_privileges: Option<bool>,
    #[serde(default, skip_serializing_if = "Seccomp::is_default")]
    pub seccomp: Seccomp,
    /// `--userns=keep-id` (podman's): the user's own uid and gid inside, the process running
    /// as them, an entry for the user in the container's /etc/passwd and /etc/group.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_id: bool,
}

/// `--userns`: the default (empty) or podman's `keep-id`; podman's other modes are refused.
pub fn parse_userns(value: &str) -> Result<bool, SecurityError> {
    match value {
        "" => Ok(false),
        "keep-id" => Ok(true),
        other => Err(SecurityError::Userns(other.to_string())),
    }
}

/// The name docker would use: upper case, with `CAP_`; `ALL` stays `ALL`.
pub fn normalize_capability(name: &str) -> Result<String, SecurityError> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(SecurityError::UnknownCapability(name.to_string()))
    }
}

fn mask_of<'a>(names: impl IntoIterator<Item = &'a str>) -> u64 {
    names
        .into_iter()
        .filter_map(|n| CAPABILITIES.iter().position(|c| *c == n))
        .fold(0, |m, n| m | 1 << n)
}

/// Docker's default set as a mask.
pub fn default_caps() -> u64 {
    mask_of(DEFAULT_CAPS)
}

/// The names of the capabilities in `mask`.
pub fn capability_names(mask: u64) -> Vec<&'static str> {
    CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(n, _)| mask & (1 << n) != 0)
        .map(|(_, c)| *c)
        .collect()
}

impl SecurityOptions {
    /// Builds the options from the flags as given: names are normalized and checked, a
    /// profile file is read and compiled (so that a bad one fails here, named).
    pub fn from_flags(
        cap_add: &[String],
        cap_drop: &[String],
        security_opt: &[String],
        privileged: bool,
    ) -> Result<SecurityOptions, SecurityError> {
        let norm = |list: &[String]| -> Result<Vec<String>, SecurityError> {
            let mut out: Vec<String> = Vec::new();
            for c in list {
                let c = normalize_capability(c)?;
                if !out.contains(&c) {
                    out.push(c);
                }
            }
            Ok(out)
        };
        let mut opts = SecurityOptions {
            cap_add: norm(cap_add)?,
            cap_drop: norm(cap_drop)?,
            privileged,
            ..SecurityOptions::default()
        };
        for opt in security_opt {
            opts.apply_opt(opt)?;
        }
        Ok(opts)
    }

    fn apply_opt(&mut self, opt: &str) -> Result<(), SecurityError> {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        match (key, value) {
            ("no-new-privileges", None) => self.no_new_privileges = Some(true),
            ("no-new-privileges", Some(v)) => {
                self.no_new_privileges = Some(match v {
                    "true" => true,
                    "false" => false,
                    _ => return Err(SecurityError::BadOption(opt.to_string())),
                })
            }
            ("seccomp", Some("unconfined")) => self.seccomp = Seccomp::Unconfined,
            ("seccomp", Some(file)) if !file.is_empty() => {
                let file = PathBuf::from(file);
                let text = std::fs::read_to_string(&file).map_err(|source| {
                    SecurityError::ReadProfile {
                        file: file.clone(),
                        source,
                    }
                })?;
                self.seccomp = Seccomp::Profile { file, text };
            }
            ("apparmor" | "label", Some(_)) => return Err(SecurityError::Lsm(opt.to_string())),
            _ => return Err(SecurityError::BadOption(opt.to_string())),
        }
        Ok(())
    }

    /// Whether any option differs from the defaults.
    pub fn is_default(&self) -> bool {
        *self == SecurityOptions::default()
    }

    /// Whether no_new_privs is set: unless `no-new-privileges=false`.
    pub fn no_new_privs(&self) -> bool {
        self.no_new_privileges.unwrap_or(true)
    }

    /// The capabilities the container's root gets, docker's way (moby `TweakCapabilities`):
    /// everything when privileged; with `--cap-add ALL`, everything but what is dropped; with
    /// `--cap-drop ALL`, only what is added; else the default set, minus the dropped, plus the
    /// added.
    pub fn capabilities(&self) -> u64 {
        let has_all = |l: &[String]| l.iter().any(|c| c == "ALL");
        let names = |l: &[String]| mask_of(l.iter().map(String::as_str));
        if self.privileged {
            ALL_CAPS
        } else if has_all(&self.cap_add) {
            ALL_CAPS & !names(&self.cap_drop)
        } else if has_all(&self.cap_drop) {
            names(&self.cap_add)
        } else {
            (default_caps() & !names(&self.cap_drop)) | names(&self.cap_add)
        }
    }

    /// Checks what a start will compile: the profile, against the capabilities it gets.
    /// Returns the syscall names the profile names but this architecture does not have, which
    /// are ignored as docker ignores them (so that one profile serves every architecture and
    /// kernel).
    pub fn check(&self) -> Result<Vec<String>, SecurityError> {
        match &self.seccomp {
            Seccomp::Profile { file, text } if !self.privileged => {
                seccomp_profile::compile(text, self.capabilities())
                    .map(|c| c.ignored)
                    .map_err(|source| profile_error(file, source))
            }
            _ => Ok(Vec::new()),
        }
    }

    /// docker's `HostConfig.SecurityOpt`: the options as given, a profile by its text.
    pub fn security_opt(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.no_new_privileges {
            Some(true) => out.push("no-new-privileges".to_string()),
            Some(false) => out.push("no-new-privileges=false".to_string()),
            None => {}
        }
        match &self.seccomp {
            Seccomp::Default => {}
            Seccomp::Unconfined => out.push("seccomp=unconfined".to_string()),
            Seccomp::Profile { text, .. } => out.push(format!("seccomp={text}")),
        }
        out
    }
}

/// A profile's error, naming its file.
pub fn profile_error(file: &Path, source: ProfileError) -> SecurityError {
    SecurityError::Profile {
        file: file.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userns_takes_keep_id_or_nothing() {
        assert!(!parse_userns("").unwrap());
        assert!(parse_userns("keep-id").unwrap());
        for bad in [
            "host",
            "auto",
            "keep-id:uid=5",
            "nomap",
            "private",
            "ns:/proc/1/ns/user",
        ] {
            let err = parse_userns(bad).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("keep-id"), "{err}");
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn caps(add: &[&str], drop: &[&str]) -> Vec<&'static str> {
        let o = SecurityOptions::from_flags(&s(add), &s(drop), &[], false).unwrap();
        capability_names(o.capabilities())
    }

    #[test]
    fn names_are_dockers_with_or_without_the_prefix() {
        assert_eq!(normalize_capability("net_admin").unwrap(), "CAP_NET_ADMIN");
        assert_eq!(
            normalize_capability("CAP_SYS_ADMIN").unwrap(),
            "CAP_SYS_ADMIN"
        );
        assert_eq!(normalize_capability("all").unwrap(), "ALL");
        let e = normalize_capability("CAP_FLY").unwrap_err().to_string();
        assert!(e.starts_with("unknown capability: \"CAP_FLY\""), "{e}");
        assert!(normalize_capability("").is_err());
        assert_eq!(CAPABILITIES[21], "CAP_SYS_ADMIN");
        assert_eq!(CAPABILITIES[40], "CAP_CHECKPOINT_RESTORE");
    }

    #[test]
    fn capabilities_follow_dockers_rules() {
        assert_eq!(caps(&[], &[]).len(), 14);
        assert!(caps(&[], &["ALL"]).is_empty());
        assert_eq!(caps(&["chown"], &["ALL"]), ["CAP_CHOWN"]);
        let no_chown = caps(&[], &["CHOWN"]);
        assert!(!no_chown.contains(&"CAP_CHOWN") && no_chown.len() == 13);
        let admin = caps(&["SYS_ADMIN"], &[]);
        assert!(admin.contains(&"CAP_SYS_ADMIN") && admin.len() == 15);
        let all_but = caps(&["ALL"], &["NET_RAW"]);
        assert_eq!(all_but.len(), 40);
        assert!(!all_but.contains(&"CAP_NET_RAW"));
        let privileged = SecurityOptions::from_flags(&[], &s(&["ALL"]), &[], true).unwrap();
        assert_eq!(privileged.capabilities(), ALL_CAPS);
        let dup = SecurityOptions::from_flags(&s(&["chown", "CAP_CHOWN"]), &[], &[], false);
        assert_eq!(dup.unwrap().cap_add, ["CAP_CHOWN"]);
    }

    #[test]
    fn security_opts_are_parsed_strictly() {
        let parse = |o: &[&str]| SecurityOptions::from_flags(&[], &[], &s(o), false);
        assert_eq!(
            parse(&["no-new-privileges"]).unwrap().no_new_privileges,
            Some(true)
        );
        let off = parse(&["no-new-privileges=false"]).unwrap();
        assert!(!off.no_new_privs() && off.security_opt() == ["no-new-privileges=false"]);
        assert!(parse(&[]).unwrap().no_new_privs());
        assert_eq!(
            parse(&["seccomp=unconfined"]).unwrap().seccomp,
            Seccomp::Unconfined
        );
        for bad in [
            "no-new-privileges=yes",
            "seccomp",
            "seccomp=",
            "nonsense",
            "systempaths=x",
        ] {
            let e = parse(&[bad]).unwrap_err();
            assert!(matches!(e, SecurityError::BadOption(_)), "{bad}: {e}");
        }
        let e = parse(&["apparmor=unconfined"]).unwrap_err();
        assert!(e.to_string().contains("no LSM"), "{e}");
        let e = parse(&["seccomp=/nonexistent/profile.json"]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/profile.json"), "{e}");
        assert!(parse(&[]).unwrap().is_default());
    }

    #[test]
    fn the_record_keeps_only_what_was_given() {
        assert_eq!(
            serde_json::to_string(&SecurityOptions::default()).unwrap(),
            "{}"
        );
        let o = SecurityOptions {
            cap_drop: s(&["ALL"]),
            seccomp: Seccomp::Profile {
                file: "p.json".into(),
                text: "{}".into(),
            },
            ..SecurityOptions::default()
        };
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(
            json,
            r#"{"cap_drop":["ALL"],"seccomp":{"kind":"profile","file":"p.json","text":"{}"}}"#
        );
        assert_eq!(serde_json::from_str::<SecurityOptions>(&json).unwrap(), o);
    }
}
