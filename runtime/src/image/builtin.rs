//! The built-in default image `busybox:latest`, made locally from a static busybox binary
//! (Debian's `busybox-static` installs one at /bin/busybox): /bin/busybox, a hard link for each
//! applet `busybox --list-full` names, /etc/passwd, /etc/group, /tmp, and `CMD ["sh"]`.
//!
//! The tarball is deterministic (times come from the binary's mtime, entries are sorted), so
//! creating the image twice gives the same digests and the second time changes nothing.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::config::empty_config;
use super::digest::Digest;
use super::import::{import, ImportError, ImportOptions};
use super::reference::Reference;
use super::store::{Image, Store, StoreError};

/// Where Debian's busybox-static puts the binary.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";
/// The default image's name.
pub const DEFAULT_IMAGE: &str = "busybox:latest";

/// Why the default image could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("cannot read {path} (install Debian's busybox-static package)")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a 64-bit little-endian ELF executable")]
    NotElf { path: PathBuf },
    #[error(
        "{path} is dynamically linked; a container needs a static busybox (install busybox-static)"
    )]
    Dynamic { path: PathBuf },
    #[error("cannot run {path} --list-full")]
    ListApplets {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} --list-full printed no applets")]
    NoApplets { path: PathBuf },
    #[error("applet path {applet:?} from {path} --list-full is not a plain relative path")]
    BadApplet { path: PathBuf, applet: String },
    #[error("cannot build the default image tarball")]
    Tar(#[source] io::Error),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The root filesystem tarball of the default image, and its creation time (RFC 3339).
pub fn rootfs_tar(busybox: &Path) -> Result<(Vec<u8>, String), BuiltinError> {
    let read_err = |source| BuiltinError::Read {
        path: busybox.to_path_buf(),
        source,
    };
    let binary = fs::read(busybox).map_err(read_err)?;
    check_static_elf(&binary, busybox)?;
    let mtime = fs::metadata(busybox).map_err(read_err)?.mtime().max(0) as u64;
    let applets = list_applets(busybox)?;

    let mut dirs: BTreeSet<String> = [
        "bin", "dev", "etc", "home", "proc", "root", "sbin", "sys", "tmp", "usr", "usr/bin",
        "usr/sbin", "var", "var/tmp",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for applet in &applets {
        let mut parent = Path::new(applet).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_string_lossy().into_owned());
            parent = p.parent();
        }
    }

    let mut tar = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        h
    };
    for dir in &dirs {
        let mode = match dir.as_str() {
            "tmp" | "var/tmp" => 0o1777,
            "root" => 0o700,
            _ => 0o755,
        };
        let mut h = header(tar::EntryType::Directory, mode, 0);
        tar.append_data(&mut h, format!("{dir}/"), io::empty())
            .map_err(BuiltinError::Tar)?;
    }
    let mut h = header(tar::EntryType::Regular, 0o755, binary.len() as u64);
    tar.append_data(&mut h, "bin/busybox", &binary[..])
        .map_err(BuiltinError::Tar)?;
    for applet in &applets {
        if applet == "bin/busybox" {
            continue;
        }
        let mut h = header(tar::EntryType::Link, 0o755, 0);
        tar.append_link(&mut h, applet, "bin/busybox")
            .map_err(BuiltinError::Tar)?;
    }
    let files: [(&str, &str, u32); 4] = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
            0o644,
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644),
        ("etc/hostname", "nook\n", 0o644),
        (
            "etc/shadow",
            "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
            0o600,
        ),
    ];
    for (path, content, mode) in files {
        let mut h = header(tar::EntryType::Regular, mode, content.len() as u64);
        tar.append_data(&mut h, path, content.as_bytes())
            .map_err(BuiltinError::Tar)?;
    }
    let data = tar.into_inner().map_err(BuiltinError::Tar)?;
    let created = chrono::DateTime::from_timestamp(mtime as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok((data, created))
}

/// Creates `busybox:latest` from `busybox` unless it already holds exactly that content.
/// Returns the image and whether it was (re)created.
pub fn create_default_image(store: &Store, busybox: &Path) -> Result<(Image, bool), BuiltinError> {
    let (tar, created) = rootfs_tar(busybox)?;
    let tag = Reference::parse(DEFAULT_IMAGE).map_err(StoreError::from)?;
    let layer = Digest::of(&tar);
    if let Ok(existing) = store.resolve(DEFAULT_IMAGE) {
        if existing.layer_digests()? == [layer]
            && existing.config.created().as_deref() == Some(&created)
        {
            return Ok((existing, false));
        }
    }
    let mut config = empty_config();
    config.set_env(Some(vec![format!(
        "PATH={}",
        nook_agent::process_env::DEFAULT_PATH
    )]));
    config.set_cmd(Some(vec!["sh".into()]));
    let options = ImportOptions {
        config,
        created,
        comment: format!("nook built-in default image from {}", busybox.display()),
        created_by: Some(format!(
            "nook image default --busybox {}",
            busybox.display()
        )),
        tags: vec![tag],
    };
    let image = import(store, &tar[..], &busybox.display().to_string(), options)?;
    Ok((image, true))
}

/// Applet paths (`bin/sh`, `usr/bin/awk`, ...), checked to be plain relative paths.
fn list_applets(busybox: &Path) -> Result<Vec<String>, BuiltinError> {
    let output = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|source| BuiltinError::ListApplets {
            path: busybox.to_path_buf(),
            source,
        })?;
    if !output.status.success() {
        return Err(BuiltinError::ListApplets {
            path: busybox.to_path_buf(),
            source: io::Error::other(format!("it exited with {}", output.status)),
        });
    }
    let mut applets = BTreeSet::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let applet = line.trim();
        if applet.is_empty() {
            continue;
        }
        let plain = !applet.starts_with('/')
            && applet
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !plain {
            return Err(BuiltinError::BadApplet {
                path: busybox.to_path_buf(),
                applet: applet.to_string(),
            });
        }
        applets.insert(applet.to_string());
    }
    if applets.is_empty() {
        return Err(BuiltinError::NoApplets {
            path: busybox.to_path_buf(),
        });
    }
    Ok(applets.into_iter().collect())
}

/// Accepts a 64-bit little-endian ELF without a program interpreter (statically linked).
fn check_static_elf(data: &[u8], path: &Path) -> Result<(), BuiltinError> {
    let not_elf = || BuiltinError::NotElf {
        path: path.to_path_buf(),
    };
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return Err(not_elf());
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let mut phoff = [0u8; 8];
    phoff.copy_from_slice(&data[0x20..0x28]);
    let phoff = u64::from_le_bytes(phoff) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        let at = phoff
            .checked_add(i.checked_mul(phentsize).ok_or_else(not_elf)?)
            .ok_or_else(not_elf)?;
        let mut p_type = [0u8; 4];
        let bytes = data.get(at..at + 4).ok_or_else(not_elf)?;
        p_type.copy_from_slice(bytes);
        if u32::from_le_bytes(p_type) == PT_INTERP {
            return Err(BuiltinError::Dynamic {
                path: path.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Reads the tar entries of the default image (for tests and diagnostics).
pub fn entry_paths(tar: &[u8]) -> io::Result<Vec<(String, tar::EntryType)>> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let kind = entry.header().entry_type();
        io::copy(&mut entry, &mut io::sink())?;
        out.push((path, kind));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These tests need the host's static busybox; without it they fail, saying so.
    fn busybox() -> PathBuf {
        let p = PathBuf::from(DEFAULT_BUSYBOX);
        assert!(
            p.exists(),
            "{DEFAULT_BUSYBOX} is required (install busybox-static)"
        );
        p
    }

    #[test]
    fn tarball_has_busybox_applets_and_etc_files() {
        let bb = busybox();
        let (tar, created) = rootfs_tar(&bb).unwrap();
        assert!(created.ends_with('Z'));
        let entries = entry_paths(&tar).unwrap();
        let has = |p: &str, k: tar::EntryType| entries.iter().any(|(q, kk)| q == p && *kk == k);
        assert!(has("bin/busybox", tar::EntryType::Regular));
        assert!(has("bin/sh", tar::EntryType::Link));
        assert!(has("etc/passwd", tar::EntryType::Regular));
        assert!(has("etc/group", tar::EntryType::Regular));
        assert!(has("tmp/", tar::EntryType::Directory));
        assert!(entries.len() > 100, "{} entries", entries.len());
        // Deterministic.
        assert_eq!(rootfs_tar(&bb).unwrap().0, tar);
    }

    #[test]
    fn default_image_is_idempotent() {
        let bb = busybox();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (first, created) = create_default_image(&store, &bb).unwrap();
        assert!(created);
        let (second, created) = create_default_image(&store, &bb).unwrap();
        assert!(!created);
        assert_eq!(first.manifest_digest, second.manifest_digest);
        let cfg = first.config.config().clone().unwrap();
        assert_eq!(cfg.cmd().as_deref().unwrap(), ["sh"]);
    }

    #[test]
    fn refuses_non_elf_and_dynamic_binaries() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake");
        fs::write(&script, b"#!/bin/sh\necho bin/sh\n").unwrap();
        assert!(matches!(
            rootfs_tar(&script),
            Err(BuiltinError::NotElf { .. })
        ));
        // /bin/ls is dynamically linked on every distribution nook targets.
        let err = rootfs_tar(Path::new("/bin/ls")).unwrap_err();
        assert!(matches!(err, BuiltinError::Dynamic { .. }), "{err}");
        let err = rootfs_tar(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("busybox-static"), "{err}");
    }
}
