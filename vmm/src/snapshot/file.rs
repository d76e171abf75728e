//! A snapshot on disk: a directory with `state` (the vCPUs' and the VM's state, versioned and
//! checksummed) and `memory` (guest RAM, range after range, sparse where the guest never wrote,
//! for [`crate::memory::from_snapshot`] to map copy-on-write).
//!
//! `state` is `NOOKSNAP`, the format version (u32 LE), 4 reserved bytes, the payload's length
//! (u64 LE), the payload's SHA-256, then the payload (JSON). Nothing of it reaches KVM before
//! every check passed: magic, version, length, checksum, the shape of the machine, and the
//! identity of `memory` as it was written (device, inode, size, modification and change times):
//! a memory file edited, truncated or replaced since is refused without reading it whole, so
//! that a restore does not pay for hashing the guest's RAM.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use super::vcpu::VcpuState;
use super::vm::VmState;
use super::SnapshotError;
use crate::devices::virtio::mmio::MmioState;
use crate::memory::{ram_ranges, GuestMemory};

/// The state file's first bytes.
pub const MAGIC: &[u8; 8] = b"NOOKSNAP";
/// Bumped whenever the payload's meaning changes: an older or newer snapshot is refused.
pub const FORMAT_VERSION: u32 = 2;
/// The state file's name in a snapshot directory.
pub const STATE: &str = "state";
/// The memory file's name in a snapshot directory.
pub const MEMORY: &str = "memory";

const HEADER: usize = 8 + 4 + 4 + 8 + 32;
/// No state file is this large (a vCPU's state is a few KiB).
const MAX_PAYLOAD: u64 = 16 << 20;
const PAGE: usize = 4096;

/// What a snapshot holds besides guest memory.
#[derive(Serialize, Deserialize)]
pub struct Snapshot {
    /// The nook-vmm version that wrote it: device models may differ between versions.
    pub vmm_version: String,
    /// Guest RAM in MiB; the memory file holds [`ram_ranges`] of it, in order.
    pub memory_mib: u32,
    /// The VM-wide state.
    pub vm: VmState,
    /// One state per vCPU, by index.
    pub vcpus: Vec<VcpuState>,
    /// Each virtio transport with its device, by slot.
    #[serde(default)]
    pub devices: Vec<MmioState>,
    /// The memory file as written, filled in by [`write`].
    pub memory_file: FileIdentity,
}

/// What identifies a file's contents without reading them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileIdentity {
    /// The identity of the file `meta` describes.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let path = path.to_path_buf();
    move |source| SnapshotError::Io { path, what, source }
}

fn invalid(path: &Path, why: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// Writes guest memory into `file` (at `path`), leaving holes where a page is all zeros.
fn write_memory(path: &Path, file: &File, mem: &GuestMemory) -> Result<(), SnapshotError> {
    let mut offset = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for region in mem.iter() {
        let len = region.len() as usize;
        let mut at = 0usize;
        while at < len {
            let n = buf.len().min(len - at);
            let slice = region
                .get_slice(vm_memory::MemoryRegionAddress(at as u64), n)
                .map_err(|e| invalid(path, format!("guest memory at {at:#x}: {e}")))?;
            slice.copy_to(&mut buf[..n]);
            for (i, page) in buf[..n].chunks(PAGE).enumerate() {
                if page.iter().any(|&b| b != 0) {
                    file.write_all_at(page, offset + (at + i * PAGE) as u64)
                        .map_err(io(path, "write"))?;
                }
            }
            at += n;
        }
        offset += len as u64;
    }
    file.set_len(offset)
        .map_err(io(path, "set the length of"))?;
    file.sync_all().map_err(io(path, "sync"))
}

/// Creates a snapshot file that must not exist yet.
pub fn create(path: &Path) -> Result<File, SnapshotError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io(path, "create"))
}

/// Writes `snap` (filling in its memory file's identity) into `state` and `mem` into
/// `memory`, files of the directory `dir` opened with [`create`]; only calls on the open
/// descriptors are made (the VMM writes them under its seccomp filter).
pub fn write_files(
    dir: &Path,
    state: &File,
    memory: &File,
    snap: &mut Snapshot,
    mem: &GuestMemory,
) -> Result<(), SnapshotError> {
    let memory_path = dir.join(MEMORY);
    write_memory(&memory_path, memory, mem)?;
    let meta = memory.metadata().map_err(io(&memory_path, "stat"))?;
    snap.memory_file = FileIdentity::of(&meta);
    let payload = serde_json::to_vec(&*snap).map_err(|e| invalid(dir, format!("encode: {e}")))?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    let state_path = dir.join(STATE);
    state
        .write_all_at(&out, 0)
        .map_err(io(&state_path, "write"))?;
    state.sync_all().map_err(io(&state_path, "sync"))
}

/// Writes `snap` (filling in its memory file's identity) and `mem` as a new snapshot directory `dir` (which must not exist): written
/// beside it under a temporary name and renamed into place, so that `dir` is whole or absent.
pub fn write(dir: &Path, snap: &mut Snapshot, mem: &GuestMemory) -> Result<(), SnapshotError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .ok_or_else(|| invalid(dir, "not a directory name"))?
        .to_string_lossy();
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(io(&tmp, "create"))?;
    let result = (|| {
        let state = create(&tmp.join(STATE))?;
        let memory = create(&tmp.join(MEMORY))?;
        write_files(&tmp, &state, &memory, snap, mem)?;
        std::fs::rename(&tmp, dir).map_err(io(dir, "rename into place"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Reads and checks the snapshot in `dir`; returns its state and its memory file, opened
/// read-only, for [`crate::memory::from_snapshot`].
pub fn read(dir: &Path) -> Result<(Snapshot, File), SnapshotError> {
    let state: PathBuf = dir.join(STATE);
    let raw = read_state(&state)?;
    let snap = decode(&state, &raw)?;
    let file = open_memory(dir, snap.memory_mib, &snap.memory_file)?;
    Ok((snap, file))
}

/// What [`check`] decodes of a state: serde skips the rest (the vCPUs', the VM's and the
/// devices' state) without building it.
#[derive(Deserialize)]
struct Summary {
    vmm_version: String,
    memory_mib: u32,
    memory_file: FileIdentity,
}

/// Whether the snapshot in `dir` would be read, at a fraction of [`read`]'s cost: the same
/// header, checksum, version, memory size and memory file checks, without decoding the
/// machine's state. Only a state altered with a valid checksum (written on purpose, never by
/// damage) passes here and is refused by [`read`], before KVM sees it.
pub fn check(dir: &Path) -> Result<(), SnapshotError> {
    let state: PathBuf = dir.join(STATE);
    let raw = read_state(&state)?;
    let summary: Summary = serde_json::from_slice(payload(&state, &raw)?)
        .map_err(|e| invalid(&state, format!("decode: {e}")))?;
    check_origin(&state, &summary.vmm_version, summary.memory_mib)?;
    open_memory(dir, summary.memory_mib, &summary.memory_file).map(drop)
}

fn read_state(state: &Path) -> Result<Vec<u8>, SnapshotError> {
    let mut raw = Vec::new();
    File::open(state)
        .map_err(io(state, "open"))?
        .take(HEADER as u64 + MAX_PAYLOAD + 1)
        .read_to_end(&mut raw)
        .map_err(io(state, "read"))?;
    Ok(raw)
}

/// Opens the memory file of the snapshot in `dir`: it must be the file the state was written
/// with, and hold `memory_mib` of guest RAM.
fn open_memory(dir: &Path, memory_mib: u32, written: &FileIdentity) -> Result<File, SnapshotError> {
    let memory = dir.join(MEMORY);
    let file = File::open(&memory).map_err(io(&memory, "open"))?;
    let meta = file.metadata().map_err(io(&memory, "stat"))?;
    if FileIdentity::of(&meta) != *written {
        return Err(invalid(
            &memory,
            "changed since the snapshot was written (size, times or inode differ)",
        ));
    }
    let expected: u64 = ram_ranges(memory_mib)
        .iter()
        .map(|(_, len)| *len as u64)
        .sum();
    if meta.size() != expected {
        return Err(invalid(
            &memory,
            format!(
                "{} bytes, but {memory_mib} MiB of guest memory is {expected}",
                meta.size(),
            ),
        ));
    }
    Ok(file)
}

/// The checked payload of a state file's bytes: magic, version, length and checksum.
fn payload<'a>(path: &Path, raw: &'a [u8]) -> Result<&'a [u8], SnapshotError> {
    if raw.len() < HEADER {
        return Err(invalid(
            path,
            format!("{} bytes, shorter than its header", raw.len()),
        ));
    }
    if &raw[..8] != MAGIC {
        return Err(invalid(path, "not a nook snapshot (bad magic)"));
    }
    let version = u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(invalid(
            path,
            format!("format version {version}, this nook-vmm reads {FORMAT_VERSION}"),
        ));
    }
    let len = u64::from_le_bytes(raw[16..24].try_into().expect("8 bytes"));
    if len > MAX_PAYLOAD || raw.len() as u64 != HEADER as u64 + len {
        return Err(invalid(
            path,
            format!(
                "truncated or extended: {} bytes of payload, the header says {len}",
                raw.len() - HEADER
            ),
        ));
    }
    let payload = &raw[HEADER..];
    if Sha256::digest(payload).as_slice() != &raw[24..56] {
        return Err(invalid(path, "checksum mismatch: the state was altered"));
    }
    Ok(payload)
}

/// The writer's version must be this one, and the memory size one a VM can have.
fn check_origin(path: &Path, vmm_version: &str, memory_mib: u32) -> Result<(), SnapshotError> {
    let this = env!("CARGO_PKG_VERSION");
    if vmm_version != this {
        return Err(invalid(
            path,
            format!("written by nook-vmm {vmm_version}, this is {this}"),
        ));
    }
    if !(crate::memory::MIN_MEMORY_MIB..=crate::memory::MAX_MEMORY_MIB).contains(&memory_mib) {
        return Err(invalid(path, format!("{memory_mib} MiB of memory")));
    }
    Ok(())
}

/// Checks and decodes a state file's bytes.
pub fn decode(path: &Path, raw: &[u8]) -> Result<Snapshot, SnapshotError> {
    let snap: Snapshot = serde_json::from_slice(payload(path, raw)?)
        .map_err(|e| invalid(path, format!("decode: {e}")))?;
    check_origin(path, &snap.vmm_version, snap.memory_mib)?;
    snap.vm.check().map_err(|why| invalid(path, why))?;
    if snap.vcpus.is_empty()
        || snap.vcpus.len() > usize::from(crate::arch::x86_64::mptable::MAX_VCPUS)
        || snap
            .vcpus
            .iter()
            .enumerate()
            .any(|(i, v)| usize::from(v.id) != i)
    {
        return Err(invalid(
            path,
            format!("{} vCPUs, or their ids out of order", snap.vcpus.len()),
        ));
    }
    Ok(snap)
}
