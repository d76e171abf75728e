//! config.json's mounts as mount(2) takes them: each entry's `options` split into flags, a
//! propagation and the file system's own data, a bind told apart by its type or options.

use std::path::Path;

use oci_spec::runtime::Mount;

use super::error::OciError;
use crate::isolation::namespace::bundle::{MountKind, SpecMount};

/// Flags an option sets (`true`) or clears (`false`).
const FLAGS: &[(&str, bool, libc::c_ulong)] = &[
    ("ro", true, libc::MS_RDONLY),
    ("rw", false, libc::MS_RDONLY),
    ("nosuid", true, libc::MS_NOSUID),
    ("suid", false, libc::MS_NOSUID),
    ("nodev", true, libc::MS_NODEV),
    ("dev", false, libc::MS_NODEV),
    ("noexec", true, libc::MS_NOEXEC),
    ("exec", false, libc::MS_NOEXEC),
    ("sync", true, libc::MS_SYNCHRONOUS),
    ("async", false, libc::MS_SYNCHRONOUS),
    ("dirsync", true, libc::MS_DIRSYNC),
    ("mand", true, libc::MS_MANDLOCK),
    ("nomand", false, libc::MS_MANDLOCK),
    ("noatime", true, libc::MS_NOATIME),
    ("atime", false, libc::MS_NOATIME),
    ("nodiratime", true, libc::MS_NODIRATIME),
    ("diratime", false, libc::MS_NODIRATIME),
    ("relatime", true, libc::MS_RELATIME),
    ("norelatime", false, libc::MS_RELATIME),
    ("strictatime", true, libc::MS_STRICTATIME),
    ("nostrictatime", false, libc::MS_STRICTATIME),
];

const PROPAGATION: &[(&str, libc::c_ulong)] = &[
    ("private", libc::MS_PRIVATE),
    ("rprivate", libc::MS_PRIVATE | libc::MS_REC),
    ("shared", libc::MS_SHARED),
    ("rshared", libc::MS_SHARED | libc::MS_REC),
    ("slave", libc::MS_SLAVE),
    ("rslave", libc::MS_SLAVE | libc::MS_REC),
    ("unbindable", libc::MS_UNBINDABLE),
    ("runbindable", libc::MS_UNBINDABLE | libc::MS_REC),
];

/// Options some callers add that mean nothing to the kernel here (crun's `tmpcopyup`, podman's
/// SELinux relabel requests, which reach no runtime normally).
const IGNORED: &[&str] = &["tmpcopyup", "notmpcopyup", "z", "Z", "U", "copy", "nocopy"];

/// One mount of config.json, with relative bind sources taken inside `bundle`.
pub fn translate(m: &Mount, bundle: &Path) -> Result<SpecMount, OciError> {
    let target = m.destination().clone();
    if !target.is_absolute() {
        return Err(OciError::Spec(format!(
            "mount destination {} is not absolute",
            target.display()
        )));
    }
    let options = m.options().clone().unwrap_or_default();
    let fstype = m.typ().clone().unwrap_or_default();
    let mut flags = 0;
    let mut propagation = 0;
    let mut data = Vec::new();
    let mut bind = fstype == "bind";
    let mut recursive = false;
    for o in &options {
        if let Some((_, set, flag)) = FLAGS.iter().find(|(n, ..)| n == o) {
            if *set {
                flags |= flag;
            } else {
                flags &= !flag;
            }
        } else if let Some((_, p)) = PROPAGATION.iter().find(|(n, _)| n == o) {
            propagation = *p;
        } else if o == "bind" {
            bind = true;
        } else if o == "rbind" {
            bind = true;
            recursive = true;
        } else if o == "idmap" || o == "ridmap" {
            return Err(OciError::Unsupported {
                what: format!("the mount option {o:?} of {}", target.display()),
                why: "id-mapped mounts are not implemented",
            });
        } else if IGNORED.contains(&o.as_str()) || o == "defaults" {
        } else {
            data.push(o.clone());
        }
    }
    let source = m.source().clone().unwrap_or_default();
    let kind = if bind {
        let source = if source.is_absolute() {
            source
        } else {
            bundle.join(source)
        };
        MountKind::Bind { source, recursive }
    } else {
        if fstype.is_empty() {
            return Err(OciError::Spec(format!(
                "mount {} has no type and is no bind mount",
                target.display()
            )));
        }
        MountKind::Fs {
            fstype,
            source: source_text(&source),
        }
    };
    Ok(SpecMount {
        kind,
        target,
        flags,
        propagation,
        data: data.join(","),
    })
}

fn source_text(p: &Path) -> String {
    match p.to_string_lossy() {
        s if s.is_empty() => "none".into(),
        s => s.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(json: &str) -> SpecMount {
        let m: Mount = serde_json::from_str(json).unwrap();
        translate(&m, Path::new("/b")).unwrap()
    }

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let m = mount(
            r#"{"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}"#,
        );
        assert_eq!(m.flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(m.data, "mode=755,size=65536k");
        assert_eq!(
            m.kind,
            MountKind::Fs {
                fstype: "tmpfs".into(),
                source: "tmpfs".into()
            }
        );
        let m = mount(
            r#"{"destination": "/etc/hosts", "type": "bind", "source": "hosts",
                "options": ["rbind", "rprivate", "ro", "rw", "nodev"]}"#,
        );
        assert_eq!(
            m.kind,
            MountKind::Bind {
                source: "/b/hosts".into(),
                recursive: true
            }
        );
        assert_eq!(m.flags, libc::MS_NODEV, "rw undoes ro");
        assert_eq!(m.propagation, libc::MS_PRIVATE | libc::MS_REC);
        assert!(m.data.is_empty());
        // A bind told by its options alone, as containerd writes them.
        let m = mount(r#"{"destination": "/x", "source": "/h", "options": ["bind", "ro"]}"#);
        assert!(matches!(
            m.kind,
            MountKind::Bind {
                recursive: false,
                ..
            }
        ));
        assert_eq!(m.flags, libc::MS_RDONLY);
    }

    #[test]
    fn what_cannot_be_done_is_refused() {
        let bad = |json: &str| {
            let m: Mount = serde_json::from_str(json).unwrap();
            translate(&m, Path::new("/b")).unwrap_err().to_string()
        };
        assert!(bad(r#"{"destination": "rel", "type": "tmpfs"}"#).contains("not absolute"));
        assert!(bad(r#"{"destination": "/x", "source": "/h"}"#).contains("no type"));
        assert!(bad(
            r#"{"destination": "/x", "type": "bind", "source": "/h", "options": ["idmap"]}"#
        )
        .contains("id-mapped"));
    }
}
