//! A container's writable disk: a sparse copy of an empty ext4 template. The template is made
//! once per size with `mkfs.ext4` under the cache (`<cache>/ext4/<bytes>.ext4`), so creating a
//! container costs a copy of the few allocated blocks, not a mkfs.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::VmError;
use crate::host_tools::MKFS_EXT4;

/// Size of a container's writable disk (sparse: only what the guest writes takes space).
pub const DEFAULT_DISK_BYTES: u64 = 1 << 30;

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VmError {
    let path = path.to_path_buf();
    move |source| VmError::Io { what, path, source }
}

/// The empty ext4 template of `bytes` under `cache`, made on first use.
pub fn ensure_template(cache: &Path, bytes: u64) -> Result<PathBuf, VmError> {
    let dir = cache.join("ext4");
    let path = dir.join(format!("{bytes}.ext4"));
    if path.is_file() {
        return Ok(path);
    }
    fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    let tmp = dir.join(format!("{bytes}.ext4.tmp{}", std::process::id()));
    let result = (|| {
        let file = File::create(&tmp).map_err(io_err("create", &tmp))?;
        file.set_len(bytes).map_err(io_err("size", &tmp))?;
        drop(file);
        // root_owner: the guest's root owns the disk's root directory whoever ran mkfs.
        let mkfs = MKFS_EXT4.require().map_err(|e| VmError::Mkfs {
            path: tmp.clone(),
            message: e.to_string(),
        })?;
        let out = Command::new(&mkfs)
            .args(["-q", "-F", "-m", "0", "-E", "root_owner=0:0,nodiscard"])
            .arg(&tmp)
            .output()
            .map_err(|source| VmError::Mkfs {
                path: tmp.clone(),
                message: format!("cannot run {}: {source}", mkfs.display()),
            })?;
        if !out.status.success() {
            return Err(VmError::Mkfs {
                path: tmp.clone(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err("sync", &tmp))?;
        // Two nooks racing both make a template; either one is fine as the result.
        fs::rename(&tmp, &path).map_err(io_err("move into place", &path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| path)
}

/// Copies `src` to the new file `dst`, writing only the data extents (holes stay holes).
pub fn sparse_copy(src: &Path, dst: &Path) -> Result<(), VmError> {
    let from = File::open(src).map_err(io_err("open", src))?;
    let len = from.metadata().map_err(io_err("stat", src))?.len();
    let to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(io_err("create", dst))?;
    to.set_len(len).map_err(io_err("size", dst))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < len {
        let Some((start, end)) = next_extent(&from, pos, len).map_err(io_err("read", src))? else {
            break;
        };
        let mut off = start;
        while off < end {
            let want = buf.len().min((end - off) as usize);
            let got = from
                .read_at(&mut buf[..want], off)
                .map_err(io_err("read", src))?;
            if got == 0 {
                break;
            }
            to.write_all_at(&buf[..got], off)
                .map_err(io_err("write", dst))?;
            off += got as u64;
        }
        pos = end;
    }
    to.sync_all().map_err(io_err("sync", dst))
}

/// The next data extent at or after `pos`: [start, end). None when only holes remain.
fn next_extent(file: &File, pos: u64, len: u64) -> io::Result<Option<(u64, u64)>> {
    let seek = |offset: u64, whence| {
        // SAFETY: lseek on our open descriptor; takes no pointers.
        let r = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, whence) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as u64)
        }
    };
    let start = match seek(pos, libc::SEEK_DATA) {
        Ok(s) => s,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Ok(None),
        // A filesystem without SEEK_DATA: copy everything.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(Some((pos, len))),
        Err(e) => return Err(e),
    };
    let end = seek(start, libc::SEEK_HOLE)?.min(len);
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sparse_copy_keeps_data_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let f = File::create(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"middle", 32 << 20).unwrap();
        f.write_all_at(b"tail", (64 << 20) - 4).unwrap();
        drop(f);
        let dst = dir.path().join("dst");
        sparse_copy(&src, &dst).unwrap();
        assert_eq!(fs::read(&src).unwrap(), fs::read(&dst).unwrap());
        let meta = fs::metadata(&dst).unwrap();
        assert_eq!(meta.len(), 64 << 20);
        assert!(
            meta.blocks() * 512 < 8 << 20,
            "the copy is not sparse: {} blocks",
            meta.blocks()
        );
        // The destination must be new.
        assert!(matches!(
            sparse_copy(&src, &dst),
            Err(VmError::Io { what: "create", .. })
        ));
    }

    #[test]
    fn template_is_an_ext4_made_once() {
        if let Err(e) = MKFS_EXT4.require() {
            panic!("{e} (tests/setup.sh installs it)");
        }
        let dir = tempfile::tempdir().unwrap();
        let t = ensure_template(dir.path(), 16 << 20).unwrap();
        let data = fs::read(&t).unwrap();
        assert_eq!(data.len(), 16 << 20);
        // ext4 superblock magic 0xEF53 at offset 1024 + 0x38.
        assert_eq!(&data[1024 + 0x38..1024 + 0x3a], &[0x53, 0xef]);
        let mtime = fs::metadata(&t).unwrap().mtime_nsec();
        let again = ensure_template(dir.path(), 16 << 20).unwrap();
        assert_eq!(again, t);
        assert_eq!(fs::metadata(&again).unwrap().mtime_nsec(), mtime);
    }
}
