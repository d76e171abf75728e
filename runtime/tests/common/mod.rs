//! Helpers shared by the EROFS writer's integration tests: building tar layers, building images,
//! and reading trees back through independent readers (fsck.erofs, the erofs-rs crate, the
//! kernel through a loop mount) to compare with GNU tar's extraction of the same layers.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use erofs_rs::backend::SliceImage;
use erofs_rs::EroFS;
use nook::layers::erofs::{build_erofs, BuildStats, Layer};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

/// Builds one tar layer in memory with GNU headers (long names through GNU extensions).
pub struct LayerBuilder {
    builder: tar::Builder<Vec<u8>>,
}

pub struct Attrs {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

pub const DEFAULT: Attrs = Attrs {
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime: 1_600_000_000,
};

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerBuilder {
    pub fn new() -> Self {
        LayerBuilder {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: EntryType, a: &Attrs, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(a.mode);
        h.set_uid(a.uid);
        h.set_gid(a.gid);
        h.set_mtime(a.mtime);
        h.set_size(size);
        h
    }

    fn append(&mut self, mut h: Header, path: &[u8], data: &[u8]) -> &mut Self {
        self.builder
            .append_data(&mut h, OsStr::from_bytes(path), data)
            .expect("append to an in-memory tar");
        self
    }

    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.builder
            .append_pax_extensions(records.iter().copied())
            .expect("append pax records");
        self
    }

    pub fn file(&mut self, path: &[u8], data: &[u8], a: &Attrs) -> &mut Self {
        let h = Self::header(EntryType::Regular, a, data.len() as u64);
        self.append(h, path, data)
    }

    pub fn dir(&mut self, path: &[u8], a: &Attrs) -> &mut Self {
        let h = Self::header(EntryType::Directory, a, 0);
        self.append(h, path, &[])
    }

    pub fn symlink(&mut self, path: &[u8], target: &[u8], a: &Attrs) -> &mut Self {
        let mut h = Self::header(EntryType::Symlink, a, 0);
        self.builder
            .append_link(&mut h, OsStr::from_bytes(path), OsStr::from_bytes(target))
            .expect("append symlink");
        self
    }

    pub fn hardlink(&mut self, path: &[u8], target: &[u8]) -> &mut Self {
        let mut h = Self::header(EntryType::Link, &DEFAULT, 0);
        self.builder
            .append_link(&mut h, OsStr::from_bytes(path), OsStr::from_bytes(target))
            .expect("append hard link");
        self
    }

    pub fn device(
        &mut self,
        path: &[u8],
        kind: EntryType,
        major: u32,
        minor: u32,
        a: &Attrs,
    ) -> &mut Self {
        let mut h = Self::header(kind, a, 0);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        self.append(h, path, &[])
    }

    pub fn whiteout(&mut self, dir: &[u8], name: &[u8]) -> &mut Self {
        let mut p = dir.to_vec();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(b".wh.");
        p.extend_from_slice(name);
        self.file(&p, &[], &DEFAULT)
    }

    pub fn opaque(&mut self, dir: &[u8]) -> &mut Self {
        let mut p = dir.to_vec();
        p.extend_from_slice(b"/.wh..wh..opq");
        self.file(&p, &[], &DEFAULT)
    }

    /// Appends a raw header and data, for hand-made oddities.
    pub fn raw(&mut self, h: Header, path: &[u8], data: &[u8]) -> &mut Self {
        self.append(h, path, data)
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        b.into_inner().expect("finish tar")
    }
}

/// One tar member with a name written byte for byte (the tar crate's builder refuses `..`).
pub fn raw_entry(name: &[u8], kind: EntryType, size: u64, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h.set_cksum();
    let mut v = h.as_bytes().to_vec();
    v.extend_from_slice(data);
    v.resize(v.len().next_multiple_of(512), 0);
    v
}

pub fn end(mut v: Vec<u8>) -> Vec<u8> {
    v.extend_from_slice(&[0u8; 1024]);
    v
}

/// Writes `layers` to files in `dir` and builds `dir/image.erofs` from them.
pub fn build_image(dir: &Path, layers: &[Vec<u8>]) -> (PathBuf, Vec<PathBuf>, BuildStats) {
    let mut paths = Vec::new();
    let mut inputs = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let p = dir.join(format!("layer{i}.tar"));
        fs::write(&p, l).expect("write layer");
        paths.push(p);
        inputs.push(Layer {
            name: format!("layer{i}"),
            tar: Box::new(io::Cursor::new(l.clone())) as Box<dyn Read>,
        });
    }
    let image = dir.join("image.erofs");
    let out = create(&image);
    let stats = build_erofs(inputs, &out).expect("build the EROFS image");
    (image, paths, stats)
}

pub fn create(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .expect("create image file")
}

/// Runs `fsck.erofs` on the image; missing tools fail the test, they never skip it.
pub fn fsck(image: &Path) {
    let out = Command::new("fsck.erofs")
        .arg(image)
        .output()
        .expect("fsck.erofs (Debian package erofs-utils) must be installed");
    assert!(
        out.status.success(),
        "fsck.erofs rejected {}: {}{}",
        image.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Says on the real stderr (past the test harness's capture) that a check did not run.
pub fn say_not_root(what: &str) {
    let msg = format!(
        "\n!!!!!!!!\n!!! NOT ROOT: {what} DID NOT RUN here (it needs root: tests/erofs/check.sh runs it through sudo)\n!!!!!!!!\n"
    );
    // SAFETY: writes an initialised buffer of the given length to fd 2, which stays open.
    let _ = unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

/// What a tree holds at one path, as every reader reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: char,
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    /// Regular files and symlinks only.
    pub size: u64,
    pub sha256: Option<[u8; 32]>,
    pub target: Option<Vec<u8>>,
    pub rdev: Option<(u32, u32)>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Not for directories: adding entries changes them on a real filesystem.
    pub mtime: Option<(i64, u32)>,
    /// The first path (in byte order) of this inode: equal for hard links.
    pub link_group: Vec<u8>,
}

pub type Snapshot = BTreeMap<Vec<u8>, Node>;

fn finish_links(mut snap: Snapshot, keys: HashMap<Vec<u8>, u64>) -> Snapshot {
    let mut first: HashMap<u64, Vec<u8>> = HashMap::new();
    for path in snap.keys() {
        first.entry(keys[path]).or_insert_with(|| path.clone());
    }
    for (path, node) in snap.iter_mut() {
        node.link_group = first[&keys[path]].clone();
    }
    snap
}

/// Reads a tree from an EROFS image with the erofs-rs crate.
pub fn snapshot_erofs_rs(image: &Path) -> Snapshot {
    let data = fs::read(image).expect("read image");
    let fs = EroFS::new(SliceImage::new(&data)).expect("erofs-rs opens the image");
    let mut snap = Snapshot::new();
    let mut keys = HashMap::new();
    let root = fs
        .get_inode(fs.super_block().root_inode_id())
        .expect("root inode");
    let mut entries = vec![(b"".to_vec(), root)];
    for e in fs.walk_dir("/").expect("walk") {
        let e = e.expect("walk entry");
        let path = e.dir_entry.path();
        let rel = path
            .as_bytes()
            .strip_prefix(b"/")
            .unwrap_or(path.as_bytes())
            .to_vec();
        entries.push((rel, e.inode));
    }
    for (path, inode) in entries {
        use std::os::unix::fs::PermissionsExt;
        let perm = inode.permissions().mode() & 0o7777;
        let xattrs = fs.xattrs_inode(inode).expect("xattrs");
        let mut node = Node {
            kind: '?',
            perm,
            uid: inode.uid(),
            gid: inode.gid(),
            size: 0,
            sha256: None,
            target: None,
            rdev: inode.device(),
            xattrs,
            mtime: Some(inode.modified_unix()),
            link_group: Vec::new(),
        };
        let ft = fs_kind(&inode);
        node.kind = ft;
        match ft {
            'f' => {
                node.size = inode.data_size();
                let mut f = fs.open_inode_file(inode).expect("open file");
                node.sha256 = Some(hash_reader(&mut f));
            }
            'l' => {
                let t = fs.read_link_inode(inode).expect("read link");
                node.size = t.as_bytes().len() as u64;
                node.target = Some(t.as_bytes().to_vec());
            }
            'd' => node.mtime = None,
            _ => {}
        }
        keys.insert(path.clone(), inode.id());
        snap.insert(path, node);
    }
    finish_links(snap, keys)
}

fn fs_kind(inode: &erofs_rs::types::Inode) -> char {
    match inode.file_type().as_raw_mode() & libc::S_IFMT {
        libc::S_IFREG => 'f',
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFIFO => 'p',
        _ => '?',
    }
}

fn hash_reader(r: &mut impl Read) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).expect("read file data");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().into()
}

fn lxattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL in paths");
    let mut names = vec![0u8; 65536];
    // SAFETY: `c` is NUL-terminated and `names` is a writable buffer of the given length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(
        n >= 0,
        "llistxattr {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
    let mut out = BTreeMap::new();
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let cname = CString::new(name).expect("xattr names have no NUL");
        let mut value = vec![0u8; 65536];
        // SAFETY: both strings are NUL-terminated and `value` is writable for its length.
        let v = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        assert!(
            v >= 0,
            "lgetxattr {}: {}",
            path.display(),
            io::Error::last_os_error()
        );
        value.truncate(v as usize);
        out.insert(name.to_vec(), value);
    }
    out
}

/// Reads a tree from a directory (GNU tar's extraction, or a mounted image).
pub fn snapshot_dir(root: &Path) -> Snapshot {
    let mut snap = Snapshot::new();
    let mut keys = HashMap::new();
    let mut stack = vec![(root.to_path_buf(), Vec::new())];
    while let Some((path, rel)) = stack.pop() {
        let md = fs::symlink_metadata(&path).expect("lstat");
        let ft = md.file_type();
        let kind = if ft.is_file() {
            'f'
        } else if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else {
            '?'
        };
        let rdev =
            matches!(kind, 'c' | 'b').then(|| (libc::major(md.rdev()), libc::minor(md.rdev())));
        let mut node = Node {
            kind,
            perm: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: 0,
            sha256: None,
            target: None,
            rdev,
            xattrs: lxattrs(&path),
            mtime: (kind != 'd').then(|| (md.mtime(), md.mtime_nsec() as u32)),
            link_group: Vec::new(),
        };
        match kind {
            'f' => {
                node.size = md.len();
                node.sha256 = Some(hash_reader(&mut File::open(&path).expect("open")));
            }
            'l' => {
                let t = fs::read_link(&path).expect("readlink");
                node.size = t.as_os_str().len() as u64;
                node.target = Some(t.as_os_str().as_bytes().to_vec());
            }
            'd' => {
                for e in fs::read_dir(&path).expect("read_dir") {
                    let e = e.expect("dir entry");
                    let mut r = rel.clone();
                    if !r.is_empty() {
                        r.push(b'/');
                    }
                    r.extend_from_slice(e.file_name().as_bytes());
                    stack.push((e.path(), r));
                }
            }
            _ => {}
        }
        keys.insert(rel.clone(), md.ino());
        snap.insert(rel, node);
    }
    finish_links(snap, keys)
}

/// Asserts two snapshots are equal, listing every difference.
pub fn assert_same(what: &str, got: &Snapshot, want: &Snapshot) {
    let mut diffs = Vec::new();
    let paths: BTreeSet<&Vec<u8>> = got.keys().chain(want.keys()).collect();
    for p in paths {
        let name = String::from_utf8_lossy(p);
        match (got.get(p), want.get(p)) {
            (Some(g), Some(w)) if g != w => {
                diffs.push(format!("{name}:\n   got  {g:?}\n   want {w:?}"))
            }
            (Some(_), None) => diffs.push(format!("{name}: unexpected")),
            (None, Some(_)) => diffs.push(format!("{name}: missing")),
            _ => {}
        }
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} differences:\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Applies `layers` (plain tar files) into `dir` with GNU tar, handling OCI whiteouts and type
/// replacements around it the way docker's layer unpacker does. Needs root for owners/devices.
pub fn gnu_tar_reference(layers: &[PathBuf], dir: &Path) {
    fs::create_dir_all(dir).expect("mkdir reference");
    for layer in layers {
        let mut archive = tar::Archive::new(File::open(layer).expect("open layer"));
        for e in archive.entries().expect("entries") {
            let e = e.expect("entry");
            let raw = e.path_bytes().into_owned();
            let rel: Vec<u8> = raw
                .split(|b| *b == b'/')
                .filter(|c| !c.is_empty() && *c != b".")
                .collect::<Vec<_>>()
                .join(&b'/');
            let (parent, name) = match rel.iter().rposition(|b| *b == b'/') {
                Some(i) => (&rel[..i], &rel[i + 1..]),
                None => (&b""[..], &rel[..]),
            };
            let pdir = dir.join(OsStr::from_bytes(parent));
            if name == b".wh..wh..opq" {
                if let Ok(rd) = fs::read_dir(&pdir) {
                    for c in rd {
                        remove_any(&c.expect("entry").path());
                    }
                }
            } else if let Some(target) = name.strip_prefix(b".wh.") {
                remove_any(&pdir.join(OsStr::from_bytes(target)));
            } else if !rel.is_empty() {
                let p = dir.join(OsStr::from_bytes(&rel));
                if let Ok(md) = fs::symlink_metadata(&p) {
                    let new_dir = e.header().entry_type() == EntryType::Directory;
                    if md.is_dir() != new_dir {
                        remove_any(&p);
                    }
                }
            }
        }
        let out = Command::new("tar")
            .args(["-x", "--numeric-owner", "-p", "--same-owner", "--xattrs"])
            .args(["--xattrs-include=*", "--exclude=.wh.*", "-f"])
            .arg(layer)
            .arg("-C")
            .arg(dir)
            .output()
            .expect("GNU tar must be installed");
        assert!(
            out.status.success(),
            "tar -x {}: {}",
            layer.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn remove_any(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(p).expect("rm -r"),
        Ok(_) => fs::remove_file(p).expect("rm"),
        Err(_) => {}
    }
}

/// A read-only loop mount of an image, unmounted on drop.
pub struct Mount {
    pub dir: tempfile::TempDir,
}

impl Mount {
    pub fn new(image: &Path) -> Mount {
        let dir = tempfile::tempdir().expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "erofs", "-o", "loop,ro"])
            .arg(image)
            .arg(dir.path())
            .output()
            .expect("mount must be installed");
        assert!(
            out.status.success(),
            "the kernel refused to mount {}: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Mount { dir }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// The full check of one image: fsck.erofs, erofs-rs against the GNU tar reference, and (as
/// root) the kernel's view against the same reference. Returns the erofs-rs snapshot.
pub fn check_against_gnu_tar(image: &Path, layers: &[PathBuf], work: &Path) -> Snapshot {
    fsck(image);
    let ours = snapshot_erofs_rs(image);
    if !is_root() {
        say_not_root("the GNU tar reference comparison and the kernel mount check");
        return ours;
    }
    let reference = work.join("reference");
    gnu_tar_reference(layers, &reference);
    let want = snapshot_dir(&reference);
    assert_same("erofs-rs reading of the image vs GNU tar", &ours, &want);
    let mount = Mount::new(image);
    let kernel = snapshot_dir(mount.dir.path());
    assert_same("kernel mount of the image vs GNU tar", &kernel, &want);
    ours
}
