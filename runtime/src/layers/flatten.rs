//! OCI layer tars stacked without unpacking them: which entry of which layer is visible at each
//! path once whiteouts, opaque directories and replacements are applied. The VM column reads
//! its containers this way (their files live in the guest's ext4 disk, which the host does not
//! mount): `diff` compares the writable layer's tar with the image's paths, `export` writes the
//! visible entries of the image layers plus the writable layer as one tar.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::changes::{Change, ChangeKind};

use crate::image::layer::{
    relative_entry_path, OPAQUE_WHITEOUT as OPAQUE, WHITEOUT_PREFIX as WHITEOUT,
};

/// An entry's path made relative, without `.`; None for the root itself or a path with `..`.
fn clean(path: &Path) -> Option<PathBuf> {
    relative_entry_path(path).filter(|p| !p.as_os_str().is_empty())
}

/// What one tar entry does to the stack.
enum Op {
    /// `.wh.NAME`: deletes NAME (and what is under it) of the layers below.
    Whiteout(PathBuf),
    /// `DIR/.wh..wh..opq`: hides what the layers below put in DIR.
    Opaque(PathBuf),
    /// A file, directory, link or device at this path.
    Entry { path: PathBuf, dir: bool },
}

fn op_of(entry: &tar::Entry<'_, impl Read>) -> io::Result<Option<Op>> {
    let raw = entry.path()?;
    let Some(path) = clean(&raw) else {
        return Ok(None);
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
    Ok(Some(if name == OPAQUE {
        Op::Opaque(parent)
    } else if let Some(target) = name.strip_prefix(WHITEOUT) {
        Op::Whiteout(parent.join(target))
    } else {
        Op::Entry {
            dir: entry.header().entry_type().is_dir(),
            path,
        }
    }))
}

/// The visible entry at each path: (layer index, entry index in that layer's tar).
#[derive(Default, Debug)]
pub struct Stack {
    visible: BTreeMap<PathBuf, (usize, usize)>,
    layers: usize,
}

impl Stack {
    /// Removes `dir`'s descendants (not `dir`).
    fn clear_under(&mut self, dir: &Path) {
        let under: Vec<PathBuf> = self
            .visible
            .range(dir.to_path_buf()..)
            .skip_while(|(p, _)| p.as_path() == dir)
            .take_while(|(p, _)| dir.as_os_str().is_empty() || p.starts_with(dir))
            .map(|(p, _)| p.clone())
            .collect();
        for p in under {
            self.visible.remove(&p);
        }
    }

    /// Applies the next layer.
    pub fn push(&mut self, tar: impl Read) -> io::Result<()> {
        let layer = self.layers;
        self.layers += 1;
        let mut ops = Vec::new();
        for (index, entry) in tar::Archive::new(tar).entries()?.enumerate() {
            if let Some(op) = op_of(&entry?)? {
                ops.push((index, op));
            }
        }
        // Deletions apply to the layers below only, whatever their place in this tar.
        for (_, op) in &ops {
            match op {
                Op::Opaque(dir) => self.clear_under(dir),
                Op::Whiteout(path) => {
                    self.visible.remove(path);
                    self.clear_under(path);
                }
                Op::Entry { .. } => {}
            }
        }
        for (index, op) in ops {
            if let Op::Entry { path, dir } = op {
                if !dir {
                    // A file replacing a directory hides its contents.
                    self.clear_under(&path);
                }
                self.visible.insert(path, (layer, index));
            }
        }
        Ok(())
    }

    /// Whether a path is visible.
    pub fn contains(&self, path: &Path) -> bool {
        self.visible.contains_key(path)
    }

    /// Copies the visible entries of `layer` (the same tar again, as given to [`Stack::push`])
    /// into `out`.
    pub fn write_layer<W: Write>(
        &self,
        layer: usize,
        tar: impl Read,
        out: &mut tar::Builder<W>,
    ) -> io::Result<()> {
        for (index, entry) in tar::Archive::new(tar).entries()?.enumerate() {
            let mut entry = entry?;
            let Some(Op::Entry { path, .. }) = op_of(&entry)? else {
                continue;
            };
            if self.visible.get(&path) != Some(&(layer, index)) {
                continue;
            }
            let mut header = entry.header().clone();
            // Long names and PAX records (xattrs) are rewritten by the builder from the path.
            let link = entry.link_name()?.map(|l| l.into_owned());
            match link {
                Some(target) => out.append_link(&mut header, &path, &target)?,
                None => out.append_data(&mut header, &path, &mut entry)?,
            }
        }
        Ok(())
    }
}

/// `docker diff` lines for a writable layer given as an OCI layer tar, against the image whose
/// visible paths are `lower`.
pub fn diff_layer(upper: impl Read, lower: &Stack) -> io::Result<Vec<Change>> {
    let mut out = Vec::new();
    for entry in tar::Archive::new(upper).entries()? {
        let change = match op_of(&entry?)? {
            Some(Op::Whiteout(path)) => Change {
                path,
                kind: ChangeKind::Deleted,
            },
            Some(Op::Entry { path, .. }) => Change {
                kind: if lower.contains(&path) {
                    ChangeKind::Changed
                } else {
                    ChangeKind::Added
                },
                path,
            },
            Some(Op::Opaque(_)) | None => continue,
        };
        out.push(change);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar of (path, Some(content)) files and (path, None) directories.
    fn layer(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut h = tar::Header::new_gnu();
            match content {
                Some(c) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(c.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, path, c.as_bytes()).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn image() -> Vec<Vec<u8>> {
        vec![
            layer(&[
                ("etc", None),
                ("etc/passwd", Some("root")),
                ("etc/gone", Some("x")),
                ("opt", None),
                ("opt/a", Some("a")),
                ("opt/b", Some("b")),
            ]),
            layer(&[("usr", None), ("usr/bin", None), ("usr/bin/sh", Some("sh"))]),
        ]
    }

    fn upper() -> Vec<u8> {
        layer(&[
            ("etc", None),
            ("etc/passwd", Some("changed")),
            ("etc/.wh.gone", Some("")),
            ("opt", None),
            ("opt/.wh..wh..opq", Some("")),
            ("opt/c", Some("c")),
            ("new.txt", Some("new")),
        ])
    }

    #[test]
    fn diff_of_a_layer_tar_marks_added_changed_and_deleted() {
        let mut lower = Stack::default();
        for l in image() {
            lower.push(&l[..]).unwrap();
        }
        let lines: Vec<String> = diff_layer(&upper()[..], &lower)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "C /etc",
                "D /etc/gone",
                "C /etc/passwd",
                "A /new.txt",
                "C /opt",
                "A /opt/c"
            ]
        );
    }

    #[test]
    fn flattening_applies_whiteouts_opaque_dirs_and_replacements() {
        let mut layers = image();
        layers.push(upper());
        let mut stack = Stack::default();
        for l in &layers {
            stack.push(&l[..]).unwrap();
        }
        let mut b = tar::Builder::new(Vec::new());
        for (i, l) in layers.iter().enumerate() {
            stack.write_layer(i, &l[..], &mut b).unwrap();
        }
        let data = b.into_inner().unwrap();
        let mut files = BTreeMap::new();
        for e in tar::Archive::new(&data[..]).entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            assert!(files.insert(p, s).is_none(), "each path once");
        }
        let want: BTreeMap<String, String> = [
            ("etc", ""),
            ("etc/passwd", "changed"),
            ("new.txt", "new"),
            ("opt", ""),
            ("opt/c", "c"),
            ("usr", ""),
            ("usr/bin", ""),
            ("usr/bin/sh", "sh"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(files, want);
    }
}
