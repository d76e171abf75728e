//! docker's mount flags, parsed: `-v/--volume [SRC:]DST[:OPTS]`, `--mount KEY=VALUE,...`,
//! `--tmpfs DST[:OPTS]` and `--volumes-from CONTAINER[:ro|rw]`. Nothing here looks at the host
//! or the store; [`super::volumes`] turns the requests into the record's mounts.

use std::path::{Component, Path, PathBuf};

/// A mount as the command line asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountRequest {
    /// A host path, absolute.
    Bind {
        source: PathBuf,
        target: String,
        readonly: bool,
    },
    /// A named volume (made on first use), or an anonymous one (`name` none).
    Volume {
        name: Option<String>,
        target: String,
        readonly: bool,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
        mode: Option<u32>,
        readonly: bool,
    },
}

impl MountRequest {
    pub fn target(&self) -> &str {
        match self {
            MountRequest::Bind { target, .. }
            | MountRequest::Volume { target, .. }
            | MountRequest::Tmpfs { target, .. } => target,
        }
    }
}

/// `--volumes-from CONTAINER[:ro|rw]`: the container's volumes and bind mounts, read-only when
/// asked (none: as that container has them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumesFrom {
    pub container: String,
    pub readonly: Option<bool>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MountArgError {
    #[error("invalid volume specification: {spec:?}: {reason}")]
    Volume { spec: String, reason: String },
    #[error("invalid argument {spec:?} for \"--mount\" flag: {reason}")]
    Mount { spec: String, reason: String },
    #[error("invalid argument {spec:?} for \"--tmpfs\" flag: {reason}")]
    Tmpfs { spec: String, reason: String },
    #[error("invalid argument {spec:?} for \"--volumes-from\" flag: the mode must be ro or rw")]
    VolumesFrom { spec: String },
    #[error("invalid mount path: {0:?}: mount path must be absolute")]
    RelativeTarget(String),
    #[error("invalid mount path: {0:?}: the destination cannot be '/' or contain '..'")]
    BadTarget(String),
}

/// An absolute, clean container path: `//a/./b/` becomes `/a/b`; `/` and `..` are refused.
pub fn clean_target(target: &str) -> Result<String, MountArgError> {
    if !target.starts_with('/') {
        return Err(MountArgError::RelativeTarget(target.to_string()));
    }
    let mut out = String::new();
    for c in Path::new(target).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => {
                out.push('/');
                out.push_str(&part.to_string_lossy());
            }
            Component::ParentDir | Component::Prefix(_) => {
                return Err(MountArgError::BadTarget(target.to_string()))
            }
        }
    }
    if out.is_empty() {
        return Err(MountArgError::BadTarget(target.to_string()));
    }
    Ok(out)
}

/// A source that is neither a path nor anything else: an absolute path binds, anything else
/// names a volume (checked against the volume name rules when it is resolved).
fn source_request(source: &str, target: String, readonly: bool) -> MountRequest {
    if source.starts_with('/') {
        MountRequest::Bind {
            source: PathBuf::from(source),
            target,
            readonly,
        }
    } else {
        MountRequest::Volume {
            name: Some(source.to_string()),
            target,
            readonly,
        }
    }
}

/// The options of `-v`: `ro`, `rw`, and the SELinux labels `z`/`Z` (no SELinux here: they
/// change nothing), comma-separated. Returns read-only, or why not.
fn volume_mode(mode: &str) -> Result<bool, String> {
    let mut readonly = false;
    for opt in mode.split(',') {
        match opt {
            "ro" => readonly = true,
            "rw" => readonly = false,
            "z" | "Z" => {}
            other => return Err(format!("invalid mode: {other}")),
        }
    }
    Ok(readonly)
}

fn is_mode(s: &str) -> bool {
    volume_mode(s).is_ok()
}

/// `-v/--volume [SRC:]DST[:OPTS]`.
pub fn parse_volume(spec: &str) -> Result<MountRequest, MountArgError> {
    let err = |reason: &str| MountArgError::Volume {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [dst] => (None, *dst, None),
        [dst, mode] if dst.starts_with('/') && is_mode(mode) && !mode.starts_with('/') => {
            (None, *dst, Some(*mode))
        }
        [src, dst] => (Some(*src), *dst, None),
        [src, dst, mode] => (Some(*src), *dst, Some(*mode)),
        _ => return Err(err("too many colons")),
    };
    if source == Some("") || target.is_empty() {
        return Err(err("empty section between colons"));
    }
    let readonly = match mode {
        Some(m) => volume_mode(m).map_err(|r| err(&r))?,
        None => false,
    };
    let target = clean_target(target)?;
    Ok(match source {
        None => MountRequest::Volume {
            name: None,
            target,
            readonly,
        },
        Some(src) => source_request(src, target, readonly),
    })
}

/// A tmpfs size: the CLI's one size parser (`65536`, `64k`, `64m`, `1.5g`, `64MiB`), as docker
/// reads `--memory`; none when it is not a size.
pub fn parse_size(s: &str) -> Option<u64> {
    crate::isolation::limits::parse_size("--tmpfs", s).ok()
}

fn parse_mode(s: &str) -> Option<u32> {
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "" | "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// `--mount type=bind|volume|tmpfs,source=...,target=...,readonly,tmpfs-size=...,tmpfs-mode=...`.
pub fn parse_mount(spec: &str) -> Result<MountRequest, MountArgError> {
    let err = |reason: String| MountArgError::Mount {
        spec: spec.to_string(),
        reason,
    };
    let mut kind = "volume".to_string();
    let (mut source, mut target, mut readonly) = (None, None, false);
    let (mut size, mut mode) = (None, None);
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let value_of = |what: &str| {
            value.filter(|v| !v.is_empty()).ok_or_else(|| {
                err(format!(
                    "invalid field '{field}' must be a key=value pair: {what}"
                ))
            })
        };
        match key.as_str() {
            "type" => kind = value_of("type")?.to_string(),
            "source" | "src" => source = Some(value_of("source")?.to_string()),
            "target" | "destination" | "dst" => target = Some(value_of("target")?.to_string()),
            "readonly" | "ro" => {
                readonly = parse_bool(value.unwrap_or("")).ok_or_else(|| {
                    err(format!("invalid value for {key}: {}", value.unwrap_or("")))
                })?
            }
            "volume-nocopy" | "bind-propagation" | "consistency" => {
                return Err(err(format!("{key} is not supported by nook")))
            }
            "tmpfs-size" => {
                let v = value_of("tmpfs-size")?;
                size = Some(parse_size(v).ok_or_else(|| err(format!("invalid tmpfs-size {v:?}")))?)
            }
            "tmpfs-mode" => {
                let v = value_of("tmpfs-mode")?;
                mode = Some(parse_mode(v).ok_or_else(|| err(format!("invalid tmpfs-mode {v:?}")))?)
            }
            _ => return Err(err(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    let target = clean_target(&target.ok_or_else(|| err("target is required".into()))?)?;
    match kind.as_str() {
        "bind" => {
            let source =
                source.ok_or_else(|| err("source is required when type is bind".into()))?;
            if !source.starts_with('/') {
                return Err(err(format!(
                    "invalid mount config for type \"bind\": bind source path must be absolute: {source}"
                )));
            }
            Ok(MountRequest::Bind {
                source: PathBuf::from(source),
                target,
                readonly,
            })
        }
        "volume" if size.is_some() || mode.is_some() => {
            Err(err("tmpfs options are only valid with type=tmpfs".into()))
        }
        "volume" => Ok(MountRequest::Volume {
            name: source,
            target,
            readonly,
        }),
        "tmpfs" if source.is_some() => Err(err(
            "invalid mount config for type \"tmpfs\": source must not be specified".into(),
        )),
        "tmpfs" => Ok(MountRequest::Tmpfs {
            target,
            size,
            mode,
            readonly,
        }),
        other => Err(err(format!(
            "mount type {other:?} is not bind, volume or tmpfs"
        ))),
    }
}

/// `--tmpfs DST[:OPTS]`: `size=`, `mode=`, `ro`/`rw`, and `nosuid`/`nodev` (always applied).
pub fn parse_tmpfs(spec: &str) -> Result<MountRequest, MountArgError> {
    let err = |reason: String| MountArgError::Tmpfs {
        spec: spec.to_string(),
        reason,
    };
    let (target, opts) = spec.split_once(':').unwrap_or((spec, ""));
    let (mut size, mut mode, mut readonly) = (None, None, false);
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some(("size", v)) => {
                size = Some(parse_size(v).ok_or_else(|| err(format!("invalid size {v:?}")))?)
            }
            Some(("mode", v)) => {
                mode = Some(parse_mode(v).ok_or_else(|| err(format!("invalid mode {v:?}")))?)
            }
            None if opt == "ro" => readonly = true,
            None if opt == "rw" => readonly = false,
            None if opt == "nosuid" || opt == "nodev" => {}
            _ => return Err(err(format!("option {opt:?} is not supported by nook"))),
        }
    }
    Ok(MountRequest::Tmpfs {
        target: clean_target(target)?,
        size,
        mode,
        readonly,
    })
}

/// `--volumes-from CONTAINER[:ro|rw]`.
pub fn parse_volumes_from(spec: &str) -> Result<VolumesFrom, MountArgError> {
    let (container, readonly) = match spec.rsplit_once(':') {
        Some((c, "ro")) => (c, Some(true)),
        Some((c, "rw")) => (c, Some(false)),
        Some(_) => {
            return Err(MountArgError::VolumesFrom {
                spec: spec.to_string(),
            })
        }
        None => (spec, None),
    };
    if container.is_empty() {
        return Err(MountArgError::VolumesFrom {
            spec: spec.to_string(),
        });
    }
    Ok(VolumesFrom {
        container: container.to_string(),
        readonly,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(name: Option<&str>, target: &str, readonly: bool) -> MountRequest {
        MountRequest::Volume {
            name: name.map(String::from),
            target: target.into(),
            readonly,
        }
    }

    #[test]
    fn volume_flags_follow_docker() {
        assert_eq!(parse_volume("/data").unwrap(), vol(None, "/data", false));
        assert_eq!(parse_volume("/data:ro").unwrap(), vol(None, "/data", true));
        assert_eq!(
            parse_volume("db:/var/lib/db").unwrap(),
            vol(Some("db"), "/var/lib/db", false)
        );
        assert_eq!(
            parse_volume("/srv:/srv/./x/:ro,z").unwrap(),
            MountRequest::Bind {
                source: "/srv".into(),
                target: "/srv/x".into(),
                readonly: true
            }
        );
        // A relative source is taken as a volume name, refused when the volume is resolved.
        assert_eq!(
            parse_volume("../etc:/x").unwrap(),
            vol(Some("../etc"), "/x", false)
        );
        for (bad, says) in [
            ("/a:relative", "must be absolute"),
            ("/a:/", "cannot be '/'"),
            ("/a:/x/../..", "contain '..'"),
            ("/a:/b:/c:ro", "too many colons"),
            ("/a:/b:rx", "invalid mode: rx"),
            (":/b", "empty section"),
            ("", "empty section"),
        ] {
            let e = parse_volume(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn mount_flags_follow_docker() {
        assert_eq!(
            parse_mount("type=bind,src=/h,dst=/c,readonly").unwrap(),
            MountRequest::Bind {
                source: "/h".into(),
                target: "/c".into(),
                readonly: true
            }
        );
        assert_eq!(
            parse_mount("source=v,target=/c,ro=false").unwrap(),
            vol(Some("v"), "/c", false)
        );
        assert_eq!(parse_mount("target=/c").unwrap(), vol(None, "/c", false));
        assert_eq!(
            parse_mount("type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1770").unwrap(),
            MountRequest::Tmpfs {
                target: "/t".into(),
                size: Some(64 << 20),
                mode: Some(0o1770),
                readonly: false
            }
        );
        for (bad, says) in [
            ("type=bind,dst=/c", "source is required"),
            ("type=bind,src=rel,dst=/c", "must be absolute"),
            ("type=tmpfs,src=/x,dst=/c", "source must not be specified"),
            ("type=nfs,dst=/c", "not bind, volume or tmpfs"),
            ("src=v", "target is required"),
            ("dst=/c,colour=red", "unexpected key 'colour'"),
            ("type=tmpfs,dst=/c,tmpfs-size=lots", "invalid tmpfs-size"),
            ("type=tmpfs,dst=/c,tmpfs-mode=999", "invalid tmpfs-mode"),
            ("dst=c", "must be absolute"),
        ] {
            let e = parse_mount(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn tmpfs_and_volumes_from_flags() {
        assert_eq!(
            parse_tmpfs("/run:size=1m,mode=700,nosuid").unwrap(),
            MountRequest::Tmpfs {
                target: "/run".into(),
                size: Some(1 << 20),
                mode: Some(0o700),
                readonly: false
            }
        );
        assert!(parse_tmpfs("/run:noexec").is_err());
        assert!(parse_tmpfs("run").is_err());
        assert_eq!(
            parse_volumes_from("db:ro").unwrap(),
            VolumesFrom {
                container: "db".into(),
                readonly: Some(true)
            }
        );
        assert_eq!(parse_volumes_from("db").unwrap().readonly, None);
        assert!(parse_volumes_from("db:rx").is_err());
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
        // The limit flags' parser: fractions and IEC suffixes too.
        assert_eq!(parse_size("1.5m"), Some(3 << 19));
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("-1"), None);
    }
}
