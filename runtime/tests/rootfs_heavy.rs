//! Heavy EROFS writer checks, `#[ignore]`d in plain `cargo test` and run by tests/erofs/check.sh:
//! a real Debian root filesystem, and a file larger than 4 GiB.

mod common;

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;

use common::*;
use nook::layers::erofs::{build_erofs, Layer};

/// An upper layer on the Debian rootfs, as an image built `FROM debian` would add: a file with
/// a capability, whiteouts of a file and a whole tree, an opaque directory and a hard link to a
/// file of the lower layer.
fn debian_upper_layer() -> Vec<u8> {
    // A VFS capability v2 blob granting cap_net_raw (what `setcap cap_net_raw+ep` writes).
    const CAP_NET_RAW: &[u8] = &[
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut l = LayerBuilder::new();
    l.pax(&[("SCHILY.xattr.security.capability", CAP_NET_RAW)])
        .file(b"usr/bin/ping", b"\x7fELF not really ping", &attrs(0o755))
        .whiteout(b"etc", b"hostname")
        .whiteout(b"usr/share", b"doc")
        .dir(b"etc/apt", &attrs(0o755))
        .opaque(b"etc/apt")
        .file(
            b"etc/apt/sources.list",
            b"deb http://example.invalid/debian stable main\n",
            &attrs(0o644),
        )
        .hardlink(b"usr/bin/bash-again", b"usr/bin/bash");
    l.finish()
}

fn attrs(mode: u32) -> Attrs {
    Attrs { mode, ..DEFAULT }
}

#[test]
#[ignore = "needs the debootstrap fixture; run by tests/erofs/check.sh"]
fn debootstrap_rootfs_matches_gnu_tar_and_the_kernel() {
    let tar = std::env::var_os("NOOK_DEBOOTSTRAP_TAR")
        .map(PathBuf::from)
        .expect("NOOK_DEBOOTSTRAP_TAR must name the tarball tests/fixtures/debootstrap.sh prints");
    let work = tempfile::tempdir().unwrap();
    let upper = work.path().join("upper.tar");
    std::fs::write(&upper, debian_upper_layer()).unwrap();
    let image = work.path().join("debootstrap.erofs");
    let out = create(&image);
    let layers = [tar.clone(), upper.clone()]
        .iter()
        .map(|p| Layer {
            name: p.display().to_string(),
            tar: Box::new(BufReader::new(File::open(p).expect("open layer"))) as Box<dyn Read>,
        })
        .collect();
    let stats = build_erofs(layers, &out).expect("build the debootstrap image");
    eprintln!("debootstrap image: {stats:?}");
    let snap = check_against_gnu_tar(&image, &[tar, upper], work.path());
    assert!(snap.len() > 3000, "a minbase rootfs has thousands of files");
    let setuid = snap
        .values()
        .filter(|n| n.kind == 'f' && n.perm & 0o4000 != 0)
        .count();
    assert!(setuid >= 5, "setuid binaries survive ({setuid} found)");
    let linked = snap.iter().filter(|(p, n)| **p != n.link_group).count();
    assert!(
        linked >= 2,
        "hard links survive, also across layers ({linked} found)"
    );
    assert_eq!(
        snap[&b"usr/bin/bash-again"[..]].link_group,
        b"usr/bin/bash".to_vec()
    );
    assert!(snap[&b"usr/bin/ping"[..]]
        .xattrs
        .contains_key(&b"security.capability"[..]));
    assert!(!snap.contains_key(&b"usr/share/doc"[..]));
    assert!(!snap.contains_key(&b"etc/hostname"[..]));
    let apt: Vec<_> = snap.keys().filter(|k| k.starts_with(b"etc/apt/")).collect();
    assert_eq!(apt, vec![&b"etc/apt/sources.list".to_vec()]);
    assert!(snap.values().any(|n| n.kind == 'c'), "device nodes survive");
}

/// A tar stream of one file of `size` bytes whose content is a function of the offset,
/// generated on the fly so the test holds no more than a buffer in memory.
struct BigTar {
    header: Vec<u8>,
    size: u64,
    pos: u64,
    /// Two periods of the pattern, so any read can be one copy.
    template: Vec<u8>,
}

const BIG: u64 = (4 << 30) + 12_345;

/// The content repeats with a prime period, so a block written at the wrong offset (any shift
/// that is not a multiple of the period) reads back different bytes.
const PERIOD: u64 = 65_521;

fn pattern(off: u64) -> u8 {
    let i = off % PERIOD;
    (i ^ (i >> 8) ^ (i >> 13)) as u8
}

impl BigTar {
    fn new(size: u64) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_path("huge").unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        BigTar {
            header: h.as_bytes().to_vec(),
            size,
            pos: 0,
            template: (0..2 * PERIOD).map(pattern).collect(),
        }
    }
}

impl Read for BigTar {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let data_end = 512 + self.size.next_multiple_of(512);
        let total = data_end + 1024;
        let pos = self.pos;
        let n = if pos < 512 {
            let n = buf.len().min(512 - pos as usize);
            buf[..n].copy_from_slice(&self.header[pos as usize..pos as usize + n]);
            n
        } else if pos - 512 < self.size {
            let off = pos - 512;
            let n = (buf.len() as u64).min(self.size - off).min(PERIOD) as usize;
            let start = (off % PERIOD) as usize;
            buf[..n].copy_from_slice(&self.template[start..start + n]);
            n
        } else {
            let n = (buf.len() as u64).min(total - pos) as usize;
            buf[..n].fill(0);
            n
        };
        self.pos += n as u64;
        Ok(n)
    }
}

#[test]
#[ignore = "writes a 4 GiB image; run by tests/erofs/check.sh"]
fn file_over_4_gib_survives() {
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("big.erofs");
    let out = create(&image);
    let layer = Layer {
        name: "big".into(),
        tar: Box::new(BigTar::new(BIG)),
    };
    build_erofs(vec![layer], &out).expect("build the 4 GiB image");
    fsck(&image);
    let check = |what: &str, read_at: &dyn Fn(u64, &mut [u8]) -> usize| {
        for off in [0, 4095, (4 << 30) - 10, 4 << 30, BIG - 100] {
            let mut buf = vec![0u8; 100];
            let n = read_at(off, &mut buf);
            let want: Vec<u8> = (off..off + n as u64).map(pattern).collect();
            assert_eq!(&buf[..n], &want[..], "{what}: bytes at offset {off}");
            assert!(n > 0, "{what}: nothing read at {off}");
        }
    };
    // SAFETY: the image file is not modified while it is mapped (this test owns it).
    let mapped = unsafe { erofs_rs::backend::MmapImage::new_from_path(&image) }.expect("mmap");
    let fs = erofs_rs::EroFS::new(mapped).expect("erofs-rs opens the image");
    let f = fs.open("/huge").expect("open /huge");
    assert_eq!(f.size(), BIG);
    check("erofs-rs", &|off, buf| {
        f.read_at(buf, off).expect("read_at")
    });
    if !is_root() {
        say_not_root("the kernel mount check of the 4 GiB file");
        return;
    }
    let mount = Mount::new(&image);
    let file = File::open(mount.dir.path().join("huge")).expect("open mounted file");
    assert_eq!(file.metadata().unwrap().len(), BIG);
    use std::os::unix::fs::FileExt;
    check("kernel", &|off, buf| file.read_at(buf, off).expect("pread"));
}
