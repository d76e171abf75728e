//! The host-side files a microVM needs besides the kernel: the VMM binary and the agent's
//! initramfs (cached under `<cache>/initramfs/<hash>.cpio`, the hash of the agent file's path and
//! identity: device, inode, size, modification time; a rebuilt agent gets a new one, and no
//! start reads and hashes the whole binary).

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::VmError;
use crate::isolation::vm::initramfs::build_initramfs;
use crate::paths::Env;

/// The directory of the `nook` binary on disk (its siblings are the VMM and the agent), also
/// when nook runs from its sealed in-memory copy.
fn exe_dir() -> Option<PathBuf> {
    crate::sealed_exe::nook_binary()
        .parent()
        .map(Path::to_path_buf)
}

/// Where an install puts the VMM, the agent and the kernel: `<prefix>/lib/nook` for a `nook`
/// in `<prefix>/bin` (see `install.sh`).
pub fn installed_dir() -> Option<PathBuf> {
    let dir = exe_dir()?.join("../lib/nook");
    Some(dir.canonicalize().unwrap_or(dir))
}

/// `nook-vmm`: `$NOOK_VMM`, else next to the `nook` binary, else in the install's lib directory.
pub fn find_vmm(env: &dyn Env) -> Result<PathBuf, VmError> {
    let path = match env.var("NOOK_VMM") {
        Some(p) => PathBuf::from(p),
        None => {
            let next_to_nook = exe_dir().unwrap_or_default().join("nook-vmm");
            let installed = installed_dir().map(|d| d.join("nook-vmm"));
            match installed {
                Some(p) if !next_to_nook.is_file() && p.is_file() => p,
                _ => next_to_nook,
            }
        }
    };
    if !path.is_file() {
        return Err(VmError::Missing {
            what: "the VMM binary nook-vmm",
            path,
            hint: "build it with `cargo build --release -p nook-vmm` or set NOOK_VMM",
        });
    }
    Ok(path)
}

/// True when `data` is an ELF file without a program interpreter (statically linked).
fn is_static_elf(data: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // 64-bit little-endian ELF only (the guest is x86_64).
    if data.get(..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).all(|i| {
        let off = phoff as usize + i * usize::from(phentsize);
        u32_at(off).is_some_and(|t| t != PT_INTERP)
    })
}

/// The static agent: `$NOOK_AGENT`, else `nook-agent` next to the `nook` binary when static,
/// else in the install's lib directory, else where `agent/build-static.sh` puts it
/// (`<target>/x86_64-unknown-linux-gnu/release/`).
pub fn find_agent(env: &dyn Env) -> Result<PathBuf, VmError> {
    let candidates: Vec<PathBuf> = match env.var("NOOK_AGENT") {
        Some(p) => vec![PathBuf::from(p)],
        None => {
            let dir = exe_dir().unwrap_or_default();
            vec![
                dir.join("nook-agent"),
                dir.join("../lib/nook/nook-agent"),
                dir.join("../x86_64-unknown-linux-gnu/release/nook-agent"),
            ]
        }
    };
    for path in &candidates {
        let Ok(head) = read_head(path) else { continue };
        if is_static_elf(&head) {
            return Ok(path.clone());
        }
        if env.var("NOOK_AGENT").is_some() {
            return Err(VmError::AgentNotStatic { path: path.clone() });
        }
    }
    Err(VmError::Missing {
        what: "the static guest agent",
        path: candidates.last().cloned().unwrap_or_default(),
        hint: "build it with agent/build-static.sh (tests/setup.sh does) or set NOOK_AGENT",
    })
}

/// The start of a file: enough for its ELF header and program headers.
fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(HEAD);
    fs::File::open(path)?
        .take(HEAD as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// How much of the agent [`read_head`] reads: its program headers follow the ELF header.
const HEAD: usize = 64 << 10;

/// A file's path and identity (device, inode, size, modification time): what names a cached
/// artefact built from it, without reading it; a rebuilt input gets a new one.
pub fn identity(path: &Path) -> Result<String, VmError> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).map_err(|source| VmError::Io {
        what: "stat",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(format!(
        "{}\0{}:{}:{}:{}.{}",
        path.display(),
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec()
    ))
}

/// The initramfs holding `agent` as /init, built once per agent binary.
pub fn ensure_initramfs(cache: &Path, agent: &Path) -> Result<PathBuf, VmError> {
    let hex: String = Sha256::digest(identity(agent)?.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = cache.join("initramfs");
    let dest = dir.join(format!("{}.cpio", &hex[..32]));
    if dest.is_file() {
        return Ok(dest);
    }
    fs::create_dir_all(&dir).map_err(|source| VmError::Io {
        what: "create",
        path: dir.clone(),
        source,
    })?;
    build_initramfs(agent, &dest)?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_binaries_are_told_apart() {
        // This test binary is dynamic (it has an interpreter).
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!is_static_elf(&me));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        assert!(!is_static_elf(b"\x7fELF\x02\x01"));
        // A minimal ELF header with no program headers is static.
        let mut hdr = vec![0u8; 64];
        hdr[..6].copy_from_slice(b"\x7fELF\x02\x01");
        hdr[0x36] = 56;
        assert!(is_static_elf(&hdr));
        // One PT_INTERP program header makes it dynamic.
        hdr[0x20] = 64;
        hdr[0x38] = 1;
        hdr.extend_from_slice(&3u32.to_le_bytes());
        hdr.resize(64 + 56, 0);
        assert!(!is_static_elf(&hdr));
    }
}
