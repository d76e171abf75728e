//! Unpacking an image's layers into one flattened directory tree, inside a user namespace so the
//! files get the image's owners (mapped to the user's subordinate ids) without root.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use tar::EntryType;

/// One layer: its name for errors (e.g. "sha256:abcd...") and its decompressed tar stream.
pub struct LayerStream<'a> {
    pub name: String,
    pub tar: Box<dyn Read + 'a>,
}

use crate::image::layer::{
    relative_entry_path as clean, OPAQUE_WHITEOUT as OPAQUE, WHITEOUT_PREFIX as WHITEOUT,
};

fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Applies one layer on top of `root` (the flattened tree so far): whiteouts delete, opaque
/// markers empty a directory of what lower layers put there, other entries replace what is at
/// their path. `owners`: keep the tar's uid/gid (needs the full id mapping).
///
/// Runs as root of a user namespace whose root directory is `root` (chroot), so absolute
/// symlinks in the image resolve inside it.
pub fn apply_layer(tar: impl Read, root: &Path, owners: bool) -> io::Result<()> {
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(owners);
    archive.set_overwrite(true);
    let mut this_layer: HashSet<PathBuf> = HashSet::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let Some(path) = clean(&raw) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("entry {} climbs out of the image with ..", raw.display()),
            ));
        };
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue; // the root directory itself
        };
        let parent = path.parent().unwrap_or(Path::new(""));
        if name == OPAQUE {
            let dir = root.join(parent);
            if let Ok(children) = std::fs::read_dir(&dir) {
                for child in children {
                    let child = child?;
                    if !this_layer.contains(&parent.join(child.file_name())) {
                        remove_any(&child.path())?;
                    }
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            remove_any(&root.join(parent).join(hidden))?;
            continue;
        }
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::Char | EntryType::Block) {
            // A user namespace cannot create device nodes; containers get /dev from the host.
            continue;
        }
        let target = root.join(&path);
        if let Ok(existing) = std::fs::symlink_metadata(&target) {
            if !(existing.is_dir() && kind == EntryType::Directory) {
                remove_any(&target)?;
            }
        }
        entry
            .unpack_in(root)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        this_layer.insert(path);
    }
    Ok(())
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
        assert_eq!(clean(Path::new("./a/b")), Some(PathBuf::from("a/b")));
        assert_eq!(clean(Path::new("/a")), Some(PathBuf::from("a")));
        assert_eq!(clean(Path::new("a/../../b")), None);
    }
}
