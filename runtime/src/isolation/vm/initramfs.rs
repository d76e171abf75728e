//! The guest's initramfs: a cpio "newc" archive holding the static agent as `/init`, the mount
//! points it needs, `/dev/console` (the kernel opens it for init's stdio before any devtmpfs
//! exists) and `/dev/null`: when the kernel has no console device, init starts with fds 0-2
//! closed, and Rust's runtime then reopens them on /dev/null, aborting if it cannot, which as PID 1
//! would be a kernel panic. Written by our own code so that nothing but the agent binary is an input, and the
//! same agent always gives byte-identical archives (all timestamps are zero).
//!
//! newc format: each entry is the ASCII magic `070701`, thirteen 8-digit hex fields (inode, mode,
//! uid, gid, nlink, mtime, file size, dev major/minor, rdev major/minor, name size including
//! its NUL, checksum 0), the NUL-terminated name padded to 4 bytes, then the data padded to 4
//! bytes. The archive ends with an entry named `TRAILER!!!`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;
const TRAILER: &str = "TRAILER!!!";

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("cannot read the agent binary {}", path.display())]
    ReadAgent {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the agent binary {} is empty", path.display())]
    EmptyAgent { path: PathBuf },
    #[error("cpio entry `{name}` must be a relative path without `.`, `..` or empty components")]
    BadName { name: String },
    #[error("cpio entry `{name}` holds {len} bytes, more than the format's 4 GiB limit")]
    TooLarge { name: String, len: usize },
    #[error("cannot write the initramfs {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Writes newc entries to a stream.
pub struct CpioWriter<W> {
    out: W,
    next_ino: u32,
    offset: u64,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_ino: 1,
            offset: 0,
        }
    }

    fn check_name(name: &str) -> Result<(), InitramfsError> {
        let bad = name.is_empty()
            || name.starts_with('/')
            || name.contains('\0')
            || name == TRAILER
            || name
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..");
        if bad {
            return Err(InitramfsError::BadName {
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rem = (self.offset % 4) as usize;
        if rem != 0 {
            self.write_raw(&[0u8; 3][..4 - rem])?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), io::Error> {
        let ino = if name == TRAILER { 0 } else { self.next_ino };
        self.next_ino += 1;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // checksum (newc has none)
        ];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for f in fields {
            header.push_str(&format!("{f:08x}"));
        }
        self.write_raw(header.as_bytes())?;
        self.write_raw(name.as_bytes())?;
        self.write_raw(&[0])?;
        self.pad()?;
        self.write_raw(data)?;
        self.pad()
    }

    fn checked(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), InitramfsError> {
        Self::check_name(name)?;
        if u32::try_from(data.len()).is_err() {
            return Err(InitramfsError::TooLarge {
                name: name.to_owned(),
                len: data.len(),
            });
        }
        self.entry(name, mode, nlink, rdev, data)
            .map_err(|source| InitramfsError::Write {
                path: PathBuf::from(name),
                source,
            })
    }

    /// A directory; `perm` holds the permission bits.
    pub fn dir(&mut self, name: &str, perm: u32) -> Result<(), InitramfsError> {
        self.checked(name, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[])
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), InitramfsError> {
        self.checked(name, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// A character device node.
    pub fn char_device(
        &mut self,
        name: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), InitramfsError> {
        self.checked(name, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the stream.
    pub fn finish(mut self) -> Result<W, InitramfsError> {
        let err = |source| InitramfsError::Write {
            path: PathBuf::from(TRAILER),
            source,
        };
        self.entry(TRAILER, 0, 1, (0, 0), &[]).map_err(err)?;
        self.out.flush().map_err(err)?;
        Ok(self.out)
    }
}

/// Writes the initramfs for `agent` (the static agent binary's bytes) into `out`.
pub fn write_initramfs<W: Write>(agent: &[u8], out: W) -> Result<W, InitramfsError> {
    let mut cpio = CpioWriter::new(out);
    cpio.dir("dev", 0o755)?;
    cpio.char_device("dev/console", 0o600, 5, 1)?;
    cpio.char_device("dev/null", 0o666, 1, 3)?;
    for dir in ["proc", "sys", "run", "tmp"] {
        cpio.dir(dir, 0o755)?;
    }
    cpio.file("init", 0o755, agent)?;
    cpio.finish()
}

/// Builds the initramfs for the agent binary at `agent` into `dest`, atomically (a temp file in
/// the same directory, fsynced, then renamed).
pub fn build_initramfs(agent: &Path, dest: &Path) -> Result<(), InitramfsError> {
    let bytes = fs::read(agent).map_err(|source| InitramfsError::ReadAgent {
        path: agent.to_owned(),
        source,
    })?;
    if bytes.is_empty() {
        return Err(InitramfsError::EmptyAgent {
            path: agent.to_owned(),
        });
    }
    let write_err = |source| InitramfsError::Write {
        path: dest.to_owned(),
        source,
    };
    let mut tmp_name = dest.as_os_str().to_owned();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let file = File::create(&tmp).map_err(write_err)?;
        let file = write_initramfs(&bytes, io::BufWriter::new(file))?;
        let file = file.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)?;
        fs::rename(&tmp, dest).map_err(write_err)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Name, mode, rdev and data of one parsed entry.
    type Parsed = (String, u32, (u32, u32), Vec<u8>);

    /// Parses newc the way the kernel does, independently of the writer's helpers.
    fn parse(mut data: &[u8]) -> Vec<Parsed> {
        let mut out = Vec::new();
        let mut offset = 0usize;
        loop {
            assert_eq!(&data[..6], b"070701", "bad magic at {offset}");
            let field = |i: usize| {
                u32::from_str_radix(
                    std::str::from_utf8(&data[6 + i * 8..14 + i * 8]).unwrap(),
                    16,
                )
                .unwrap()
            };
            let (mode, size, rmaj, rmin, namesize) =
                (field(1), field(6), field(9), field(10), field(11));
            let name_end = 110 + namesize as usize;
            let name = std::str::from_utf8(&data[110..name_end - 1])
                .unwrap()
                .to_owned();
            assert_eq!(data[name_end - 1], 0);
            let data_start = (offset + name_end).next_multiple_of(4) - offset;
            let data_end = data_start + size as usize;
            let body = data[data_start..data_end].to_vec();
            let next = (offset + data_end).next_multiple_of(4) - offset;
            if name == TRAILER {
                assert_eq!(data.len(), next, "bytes after the trailer");
                return out;
            }
            out.push((name, mode, (rmaj, rmin), body));
            offset += next;
            data = &data[next..];
        }
    }

    #[test]
    fn archive_holds_init_console_and_mount_points() {
        let agent = b"\x7fELF fake agent, odd length".to_vec();
        let bytes = write_initramfs(&agent, Vec::new()).unwrap();
        let entries = parse(&bytes);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "dev/null",
                "proc",
                "sys",
                "run",
                "tmp",
                "init"
            ]
        );
        let console = &entries[1];
        assert_eq!((console.1, console.2), (S_IFCHR | 0o600, (5, 1)));
        assert_eq!((entries[2].1, entries[2].2), (S_IFCHR | 0o666, (1, 3)));
        let init = &entries[7];
        assert_eq!(init.1, S_IFREG | 0o755);
        assert_eq!(init.3, agent);
        // Reproducible: no timestamps, no host state.
        assert_eq!(bytes, write_initramfs(&agent, Vec::new()).unwrap());
    }

    /// GNU cpio is an independent reader of the format (in the project's apt package list).
    #[test]
    fn gnu_cpio_extracts_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let agent_path = dir.path().join("agent");
        let agent: Vec<u8> = (0..100_003u32).map(|i| (i * 7) as u8).collect();
        fs::write(&agent_path, &agent).unwrap();
        let img = dir.path().join("initramfs.cpio");
        build_initramfs(&agent_path, &img).unwrap();

        let list = Command::new("cpio")
            .args(["-itv", "-F"])
            .arg(&img)
            .output()
            .expect("running cpio (apt package `cpio`, listed in tests/lib/common.sh)");
        assert!(
            list.status.success(),
            "{}",
            String::from_utf8_lossy(&list.stderr)
        );
        let listing = String::from_utf8_lossy(&list.stdout);
        assert!(listing.contains("crw-------"), "{listing}");
        assert!(listing.contains("-rwxr-xr-x"), "{listing}");

        let out = dir.path().join("x");
        fs::create_dir(&out).unwrap();
        // Device nodes need root to create: extract everything else. Patterns come last.
        let st = Command::new("cpio")
            .args(["-id", "--no-absolute-filenames", "-F"])
            .arg(&img)
            .args(["--nonmatching", "dev/*"])
            .current_dir(&out)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(fs::read(out.join("init")).unwrap(), agent);
        assert!(out.join("proc").is_dir() && out.join("run").is_dir());
    }

    #[test]
    fn bad_names_and_missing_agents_are_errors() {
        let mut cpio = CpioWriter::new(Vec::new());
        for name in ["/init", "a/../b", "", "a//b", TRAILER] {
            assert!(
                matches!(cpio.dir(name, 0o755), Err(InitramfsError::BadName { .. })),
                "{name}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let err =
            build_initramfs(&dir.path().join("missing"), &dir.path().join("out")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        fs::write(dir.path().join("empty"), b"").unwrap();
        let err = build_initramfs(&dir.path().join("empty"), &dir.path().join("out")).unwrap_err();
        assert!(matches!(err, InitramfsError::EmptyAgent { .. }));
        assert!(!dir.path().join("out").exists());
    }
}
