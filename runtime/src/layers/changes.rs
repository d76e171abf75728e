//! Reading a container's writable layer (an overlayfs upper directory) in the namespace
//! column: the changes against the image as `docker diff` lines, and the layer as an OCI tar
//! (whiteouts as `.wh.` files) for `commit`. Both are the agent crate's one layer walker, the
//! one the VM column's guest agent streams its layer with; both run as root of a user
//! namespace mapped like the containers, so files of any container user are readable.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nook_agent::layer::walk::{Entry, Kind, Visitor};
use nook_agent::layer::{self, LayerError};

/// One `docker diff` line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub path: PathBuf,
    pub kind: ChangeKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = match self.kind {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        };
        write!(f, "{k} /{}", self.path.display())
    }
}

/// The changes in the upper directory `upper` against the image tree `lower`, sorted by path.
/// Both are read through descriptors (the agent's [`walk`](nook_agent::layer::walk)), so a
/// container changing its files meanwhile cannot steer the reading out of either tree.
pub fn diff(upper: &Path, lower: &Path) -> Result<Vec<Change>, LayerError> {
    let lower_fd = layer::open_root(lower)?;
    let mut visitor = DiffVisitor {
        lower: lower_fd,
        out: Vec::new(),
    };
    layer::walk_upper(upper, &mut visitor)?;
    let mut out = visitor.out;
    out.sort();
    Ok(out)
}

struct DiffVisitor {
    lower: OwnedFd,
    out: Vec<Change>,
}

impl Visitor for DiffVisitor {
    fn visit(&mut self, entry: Entry<'_>) -> Result<(), LayerError> {
        let path = entry.path.to_path_buf();
        let kind = if let Kind::Whiteout = entry.kind {
            ChangeKind::Deleted
        } else if layer::exists_beneath(self.lower.as_fd(), &path).map_err(|source| {
            LayerError::Read {
                path: path.clone(),
                source,
            }
        })? {
            ChangeKind::Changed
        } else {
            ChangeKind::Added
        };
        self.out.push(Change { path, kind });
        Ok(())
    }
}

/// Writes the upper directory `upper` as an OCI layer tar for `commit`: the same walk and the
/// same tar as the guest agent's layer stream, so a change gives the same layer in both
/// columns. Owners are the ids seen here (the container's).
pub fn layer_tar(upper: &Path, out: impl Write) -> Result<(), LayerError> {
    layer::write_upper_tar(upper, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_marks_added_and_changed_against_the_lower_tree() {
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(lower.path().join("etc")).unwrap();
        std::fs::write(lower.path().join("etc/passwd"), "x").unwrap();
        std::fs::create_dir_all(upper.path().join("etc")).unwrap();
        std::fs::write(upper.path().join("etc/passwd"), "y").unwrap();
        std::fs::create_dir_all(upper.path().join("new/sub")).unwrap();
        let lines: Vec<String> = diff(upper.path(), lower.path())
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(lines, ["C /etc", "C /etc/passwd", "A /new", "A /new/sub"]);
    }

    #[test]
    fn diff_does_not_look_through_a_symlink_of_the_image() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("f"), "host").unwrap();
        let lower = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(host.path(), lower.path().join("d")).unwrap();
        let upper = tempfile::tempdir().unwrap();
        std::fs::create_dir(upper.path().join("d")).unwrap();
        std::fs::write(upper.path().join("d/f"), "mine").unwrap();
        let lines: Vec<String> = diff(upper.path(), lower.path())
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        // `/d/f` is not in the image: the host's file behind the image's symlink is no answer.
        assert_eq!(lines, ["C /d", "A /d/f"]);
    }

    fn setxattr(path: &Path, name: &str, value: &[u8]) {
        use std::os::unix::ffi::OsStrExt;
        let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        let n = std::ffi::CString::new(name).unwrap();
        // SAFETY: NUL-terminated strings and a value buffer of its length, alive for the call.
        let ret = unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        assert_eq!(
            ret,
            0,
            "setxattr {name}: {}",
            std::io::Error::last_os_error()
        );
    }

    /// `commit` of the same change gives the same layer in both columns: the namespace
    /// column's `layer_tar` and the guest agent's layer stream (through its frame-sized
    /// chunks) are the same bytes, hard links and xattrs included.
    #[test]
    fn commit_layer_is_the_same_tar_as_the_guest_agents_layer_stream() {
        let upper = tempfile::tempdir().unwrap();
        let up = upper.path();
        std::fs::create_dir_all(up.join("bin")).unwrap();
        std::fs::write(up.join("bin/tool"), vec![7u8; 70_000]).unwrap();
        std::fs::hard_link(up.join("bin/tool"), up.join("bin/alias")).unwrap();
        setxattr(&up.join("bin/tool"), "user.origin", b"built");
        setxattr(
            &up.join("bin/tool"),
            "user.overlay.origin",
            b"overlay's own",
        );
        std::fs::create_dir(up.join("cache")).unwrap();
        setxattr(&up.join("cache"), "user.overlay.opaque", b"y");
        std::os::unix::fs::symlink("bin/tool", up.join("link")).unwrap();

        let mut namespace = Vec::new();
        layer_tar(up, &mut namespace).unwrap();

        let mut chunks = Vec::new();
        let mut sink = nook_agent::layer::ChunkSink::new(|c: &[u8]| {
            chunks.push(c.to_vec());
            Ok(())
        });
        nook_agent::layer::write_upper_tar(up, &mut sink).unwrap();
        sink.finish().unwrap();
        let vm = chunks.concat();
        assert!(namespace == vm, "the two columns' layers differ");

        let mut archive = tar::Archive::new(&namespace[..]);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let xattrs: Vec<String> = e
                .pax_extensions()
                .unwrap()
                .map(|x| x.map(|x| x.unwrap().key().unwrap().to_owned()).collect())
                .unwrap_or_default();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned());
            seen.push((path, e.header().entry_type(), link, xattrs));
        }
        let want = |p: &str, k, l: Option<&str>, x: &[&str]| {
            (
                p.to_owned(),
                k,
                l.map(str::to_owned),
                x.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        use tar::EntryType::{Directory, Link, Regular, Symlink};
        assert_eq!(
            seen,
            [
                want("bin", Directory, None, &[]),
                want("bin/alias", Regular, None, &["SCHILY.xattr.user.origin"]),
                want(
                    "bin/tool",
                    Link,
                    Some("bin/alias"),
                    &["SCHILY.xattr.user.origin"]
                ),
                want("cache", Directory, None, &[]),
                want("cache/.wh..wh..opq", Regular, None, &[]),
                want("link", Symlink, Some("bin/tool"), &[]),
            ]
        );
    }
    #[test]
    fn layer_tar_holds_the_upper_files() {
        let upper = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(upper.path().join("d")).unwrap();
        std::fs::write(upper.path().join("d/f"), "content").unwrap();
        std::os::unix::fs::symlink("f", upper.path().join("d/l")).unwrap();
        let mut data = Vec::new();
        layer_tar(upper.path(), &mut data).unwrap();
        let mut archive = tar::Archive::new(&data[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["d", "d/f", "d/l"]);
    }
}
