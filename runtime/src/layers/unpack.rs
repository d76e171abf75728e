//! Unpacking an image's layers into one flattened directory tree, inside a user namespace so the
//! files get the image's owners (mapped to the user's subordinate ids) without root.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::rules::path::{display, to_path};
use super::rules::{self, Existing, Refused};

/// Removes whatever is at `path`, a whole tree included; nothing there is fine.
fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Applies one layer on top of `root` (the flattened tree so far), by the layer rules
/// ([`rules`]). `owners`: keep the tar's uid/gid (needs the full id mapping).
///
/// Runs as root of a user namespace whose root directory is `root` (chroot), so absolute
/// symlinks in the image resolve inside it.
pub fn apply_layer(tar: impl Read, root: &Path, owners: bool) -> io::Result<()> {
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(owners);
    archive.set_overwrite(true);
    let mut dir = Directory {
        root,
        this_layer: HashSet::new(),
    };
    for entry in archive.entries()? {
        rules::apply(&mut dir, &mut entry?)?;
    }
    Ok(())
}

/// The directory tree a layer is unpacked into: the rules' output for the namespace column.
struct Directory<'r> {
    root: &'r Path,
    /// What this layer has put so far, which its own opaque markers keep.
    this_layer: HashSet<PathBuf>,
}

impl<R: Read> rules::Output<R> for Directory<'_> {
    type Error = io::Error;

    fn refused(&mut self, raw: &[u8], why: Refused) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("entry {}: {why}", display(raw)),
        ))
    }

    fn skips(&self, kind: EntryType) -> bool {
        // A user namespace cannot create device nodes; containers get /dev from the host.
        matches!(kind, EntryType::Char | EntryType::Block)
    }

    fn existing(&mut self, path: &[&[u8]]) -> io::Result<Option<Existing>> {
        Ok(std::fs::symlink_metadata(self.root.join(to_path(path)))
            .ok()
            .map(|m| {
                if m.is_dir() {
                    Existing::Dir
                } else {
                    Existing::Other
                }
            }))
    }

    fn remove(&mut self, path: &[&[u8]]) -> io::Result<()> {
        remove_any(&self.root.join(to_path(path)))
    }

    fn make_opaque(&mut self, dir: &[&[u8]]) -> io::Result<()> {
        let mut dirs = vec![to_path(dir)];
        while let Some(dir) = dirs.pop() {
            let Ok(children) = std::fs::read_dir(self.root.join(&dir)) else {
                continue;
            };
            for child in children {
                let child = child?;
                let rel = dir.join(child.file_name());
                if !self.this_layer.contains(&rel) {
                    remove_any(&child.path())?;
                } else if child.file_type()?.is_dir() {
                    // Re-declared by this layer: what the layers below put inside goes too.
                    dirs.push(rel);
                }
            }
        }
        Ok(())
    }

    fn put(&mut self, path: &[&[u8]], entry: &mut tar::Entry<'_, R>) -> io::Result<()> {
        let path = to_path(path);
        entry
            .unpack_in(self.root)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        self.this_layer.insert(path);
        Ok(())
    }

    fn put_root(&mut self, _: &mut tar::Entry<'_, R>) -> io::Result<()> {
        // The root directory is the container's, not the image's.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut h = tar::Header::new_gnu();
            match content {
                Some(c) => {
                    h.set_entry_type(EntryType::Regular);
                    h.set_size(c.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, path, c.as_bytes()).unwrap();
                }
                None => {
                    h.set_entry_type(EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn layers_stack_with_whiteouts_and_opaque_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let base = layer(&[
            ("etc/", None),
            ("etc/a", Some("a1")),
            ("etc/b", Some("b1")),
            ("var/", None),
            ("var/old", Some("x")),
            ("keep", Some("k")),
        ]);
        apply_layer(&base[..], root, false).unwrap();
        let top = layer(&[
            ("etc/a", Some("a2")),
            ("etc/.wh.b", Some("")),
            ("var/new", Some("n")),
            ("var/.wh..wh..opq", Some("")),
            ("keep/", None),
        ]);
        apply_layer(&top[..], root, false).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("etc/a")).unwrap(), "a2");
        assert!(!root.join("etc/b").exists());
        assert!(!root.join("etc/.wh.b").exists());
        assert!(
            !root.join("var/old").exists(),
            "opaque dir hides the lower layer"
        );
        assert_eq!(std::fs::read_to_string(root.join("var/new")).unwrap(), "n");
        assert!(root.join("keep").is_dir(), "a directory replaces a file");
    }

    #[test]
    fn entries_climbing_out_are_refused() {
        use crate::layers::rules::{classify, Class};
        assert_eq!(classify(b"./a/b"), Ok(Class::Entry(vec![&b"a"[..], b"b"])));
        assert_eq!(classify(b"/a"), Ok(Class::Entry(vec![&b"a"[..]])));
        assert_eq!(classify(b"a/../../b"), Err(Refused::DotDot));
        let dir = tempfile::tempdir().unwrap();
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..9].copy_from_slice(b"a/../../b");
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(0);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &[][..]).unwrap();
        let err = apply_layer(&b.into_inner().unwrap()[..], dir.path(), false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("a/../../b"), "{err}");
    }

    #[test]
    fn hostile_whiteouts_are_refused_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        apply_layer(
            &layer(&[("d/", None), ("d/f", Some("f"))])[..],
            &root,
            false,
        )
        .unwrap();
        for name in ["d/.wh..", "d/.wh...", ".wh.", ".wh..."] {
            let err = apply_layer(&layer(&[(name, Some(""))])[..], &root, false).unwrap_err();
            assert!(err.to_string().contains("names no file"), "{name}: {err}");
        }
        assert_eq!(std::fs::read_to_string(root.join("d/f")).unwrap(), "f");
    }

    #[test]
    fn an_opaque_directory_hides_lower_files_under_a_redeclared_subdirectory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let base = layer(&[("d/", None), ("d/sub/", None), ("d/sub/old", Some("o"))]);
        apply_layer(&base[..], root, false).unwrap();
        let top = layer(&[
            ("d/sub/", None),
            ("d/sub/new", Some("n")),
            ("d/.wh..wh..opq", Some("")),
            ("d/.wh..wh.plnk", Some("")),
        ]);
        apply_layer(&top[..], root, false).unwrap();
        assert!(!root.join("d/sub/old").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("d/sub/new")).unwrap(),
            "n"
        );
        assert!(!root.join("d/.wh..wh.plnk").exists());
    }
}
