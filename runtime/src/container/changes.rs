//! Reading a container's writable layer (an overlayfs upper directory): the changes against
//! the image as `docker diff` lines, and the layer as an OCI tar (whiteouts as `.wh.` files)
//! for `commit`. Both run as root of a user namespace mapped like the containers, so files of
//! any container user are readable.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

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

/// overlayfs marks a deleted file with a 0/0 character device of the same name.
pub fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether overlayfs marked `dir` opaque (it hides the lower layers' directory of that name).
/// In a user namespace overlayfs uses the `user.` xattr namespace.
pub fn is_opaque(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 4];
    ["user.overlay.opaque", "trusted.overlay.opaque"]
        .iter()
        .any(|name| {
            let name = CString::new(*name).expect("static name");
            // SAFETY: path and name are valid C strings; buf is a writable buffer of its length.
            let n = unsafe {
                libc::lgetxattr(
                    path.as_ptr(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            n == 1 && buf[0] == b'y'
        })
}

/// Entries of `dir`, sorted by name (deterministic output and tar order).
fn sorted_entries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    names.sort();
    Ok(names)
}

/// The changes in `upper` against the image tree `lower`.
pub fn diff(upper: &Path, lower: &Path) -> io::Result<Vec<Change>> {
    let mut out = Vec::new();
    walk_diff(upper, lower, Path::new(""), &mut out)?;
    out.sort();
    Ok(out)
}

fn walk_diff(upper: &Path, lower: &Path, rel: &Path, out: &mut Vec<Change>) -> io::Result<()> {
    for path in sorted_entries(&upper.join(rel))? {
        let name = path.file_name().expect("read_dir entries have names");
        let rel_path = rel.join(name);
        let meta = std::fs::symlink_metadata(&path)?;
        if is_whiteout(&meta) {
            out.push(Change {
                path: rel_path,
                kind: ChangeKind::Deleted,
            });
            continue;
        }
        let in_lower = std::fs::symlink_metadata(lower.join(&rel_path)).is_ok();
        out.push(Change {
            path: rel_path.clone(),
            kind: if in_lower {
                ChangeKind::Changed
            } else {
                ChangeKind::Added
            },
        });
        if meta.is_dir() {
            walk_diff(upper, lower, &rel_path, out)?;
        }
    }
    Ok(())
}

/// Writes `upper` as an OCI layer tar: deletions become `.wh.NAME` entries and opaque
/// directories get a `.wh..wh..opq` entry. Owners are the ids seen here (the container's).
pub fn layer_tar(upper: &Path, out: impl Write) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    walk_tar(&mut builder, upper, Path::new(""))?;
    builder.into_inner()?.flush()
}

fn empty_entry<W: Write>(builder: &mut tar::Builder<W>, path: &Path) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(0);
    header.set_mode(0o644);
    builder.append_data(&mut header, path, io::empty())
}

fn walk_tar<W: Write>(builder: &mut tar::Builder<W>, upper: &Path, rel: &Path) -> io::Result<()> {
    for path in sorted_entries(&upper.join(rel))? {
        let name = path.file_name().expect("read_dir entries have names");
        let rel_path = rel.join(name);
        let meta = std::fs::symlink_metadata(&path)?;
        if is_whiteout(&meta) {
            let mut wh = std::ffi::OsString::from(crate::image::layer::WHITEOUT_PREFIX);
            wh.push(name);
            empty_entry(builder, &rel.join(wh))?;
            continue;
        }
        let ft = meta.file_type();
        if ft.is_block_device() || ft.is_char_device() || ft.is_socket() {
            continue; // device nodes cannot be made rootless; sockets are not content
        }
        builder.append_path_with_name(&path, &rel_path)?;
        if meta.is_dir() {
            if is_opaque(&path) {
                empty_entry(
                    builder,
                    &rel_path.join(crate::image::layer::OPAQUE_WHITEOUT),
                )?;
            }
            walk_tar(builder, upper, &rel_path)?;
        }
    }
    Ok(())
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
