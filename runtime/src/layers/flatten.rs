//! OCI layer tars stacked without unpacking them: which entry of which layer is visible at each
//! path once whiteouts, opaque directories and replacements are applied. The VM column reads
//! its containers this way (their files live in the guest's ext4 disk, which the host does not
//! mount): `diff` compares the writable layer's tar with the image's paths, `export` writes the
//! visible entries of the image layers plus the writable layer as one tar.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use tar::Entry;

use super::changes::{Change, ChangeKind};
use super::rules::path::to_path;
use super::rules::{self, classify, Class, Existing, Refused};

/// Where a visible entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Source {
    layer: usize,
    /// The entry's index in that layer's tar.
    index: usize,
    dir: bool,
}

/// The visible entry at each path, once the layers pushed so far are stacked by the layer
/// rules ([`rules`]). Directories a layer implies without an entry of their own are not
/// tracked: their visible contents are.
#[derive(Default, Debug)]
pub struct Stack {
    visible: BTreeMap<PathBuf, Source>,
    layers: usize,
}

impl Stack {
    /// The visible paths strictly under `dir` (all of them for the root), parents before
    /// their children.
    fn under<'s>(&'s self, dir: &'s Path) -> impl Iterator<Item = (&'s PathBuf, &'s Source)> {
        self.visible
            .range(dir.to_path_buf()..)
            .skip_while(move |(p, _)| p.as_path() == dir)
            .take_while(move |(p, _)| dir.as_os_str().is_empty() || p.starts_with(dir))
    }

    /// Applies the next layer.
    pub fn push(&mut self, tar: impl Read) -> io::Result<()> {
        let layer = self.layers;
        self.layers += 1;
        let mut pushing = Pushing {
            stack: self,
            layer,
            index: 0,
        };
        for (index, entry) in tar::Archive::new(tar).entries()?.enumerate() {
            pushing.index = index;
            rules::apply(&mut pushing, &mut entry?)?;
        }
        Ok(())
    }

    /// Whether a path is visible.
    pub fn contains(&self, path: &Path) -> bool {
        self.visible.contains_key(path)
    }

    /// The layer and entry index that show `path`, if any.
    pub fn source_of(&self, path: &Path) -> Option<(usize, usize)> {
        self.visible.get(path).map(|s| (s.layer, s.index))
    }

    /// The content of the regular file at entry `index` of a layer's tar (the same tar again,
    /// as given to [`Stack::push`]), at most `limit` bytes; none when that entry is not a
    /// regular file (a link, a directory) or is larger.
    pub fn read_entry(tar: impl Read, index: usize, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let mut archive = tar::Archive::new(tar);
        let Some(entry) = archive.entries()?.nth(index) else {
            return Ok(None);
        };
        let mut entry = entry?;
        let header = entry.header();
        if !header.entry_type().is_file() || header.size()? > limit {
            return Ok(None);
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        Ok(Some(data))
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
            let Some(path) = entry_path(&entry) else {
                continue;
            };
            if self
                .visible
                .get(&path)
                .is_none_or(|s| (s.layer, s.index) != (layer, index))
            {
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

/// The path of an entry that puts a file, directory, link or device.
fn entry_path<R: Read>(entry: &Entry<'_, R>) -> Option<PathBuf> {
    match classify(&entry.path_bytes()) {
        Ok(Class::Entry(path)) => Some(to_path(&path)),
        _ => None,
    }
}

/// The stack as one layer's entries change it: the rules' output for the flattened view.
struct Pushing<'s> {
    stack: &'s mut Stack,
    layer: usize,
    index: usize,
}

impl<R: Read> rules::Output<R> for Pushing<'_> {
    type Error = io::Error;

    fn refused(&mut self, _: &[u8], _: Refused) -> io::Result<()> {
        // The view reads layers nook checked when it stored them, or wrote itself: an entry no
        // layer may hold is left out of it rather than failing `diff` or `export`.
        Ok(())
    }

    fn existing(&mut self, path: &[&[u8]]) -> io::Result<Option<Existing>> {
        let path = to_path(path);
        Ok(match self.stack.visible.get(&path) {
            Some(s) if !s.dir => Some(Existing::Other),
            Some(_) => Some(Existing::Dir),
            // A directory implied by what is visible under it.
            None if self.stack.under(&path).next().is_some() => Some(Existing::Dir),
            None => None,
        })
    }

    fn remove(&mut self, path: &[&[u8]]) -> io::Result<()> {
        let path = to_path(path);
        let gone: Vec<PathBuf> = self.stack.under(&path).map(|(p, _)| p.clone()).collect();
        for p in gone {
            self.stack.visible.remove(&p);
        }
        self.stack.visible.remove(&path);
        Ok(())
    }

    fn make_opaque(&mut self, dir: &[&[u8]]) -> io::Result<()> {
        let dir = to_path(dir);
        let mut gone: Vec<PathBuf> = Vec::new();
        // The last entry a lower layer put: what is under it goes with it, this layer's too.
        let mut cut: Option<&PathBuf> = None;
        for (path, source) in self.stack.under(&dir) {
            if cut.is_some_and(|c| path.starts_with(c)) {
                gone.push(path.clone());
            } else if source.layer != self.layer {
                gone.push(path.clone());
                cut = Some(path);
            }
        }
        for p in gone {
            self.stack.visible.remove(&p);
        }
        Ok(())
    }

    fn put(&mut self, path: &[&[u8]], entry: &mut Entry<'_, R>) -> io::Result<()> {
        let source = Source {
            layer: self.layer,
            index: self.index,
            dir: entry.header().entry_type().is_dir(),
        };
        self.stack.visible.insert(to_path(path), source);
        Ok(())
    }

    fn put_root(&mut self, _: &mut Entry<'_, R>) -> io::Result<()> {
        // The root is not an entry of the view.
        Ok(())
    }
}

/// `docker diff` lines for a writable layer given as an OCI layer tar, against the image whose
/// visible paths are `lower`.
pub fn diff_layer(upper: impl Read, lower: &Stack) -> io::Result<Vec<Change>> {
    let mut out = Vec::new();
    for entry in tar::Archive::new(upper).entries()? {
        let entry = entry?;
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            continue;
        }
        let change = match classify(&entry.path_bytes()) {
            Ok(Class::Whiteout(path)) => Change {
                path: to_path(&path),
                kind: ChangeKind::Deleted,
            },
            Ok(Class::Entry(path)) => {
                let path = to_path(&path);
                Change {
                    kind: if lower.contains(&path) {
                        ChangeKind::Changed
                    } else {
                        ChangeKind::Added
                    },
                    path,
                }
            }
            Ok(Class::Root | Class::Opaque(_) | Class::Bookkeeping) | Err(_) => continue,
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

    /// The image's layers with the upper one on top, and their stack.
    fn image_and_upper() -> (Vec<Vec<u8>>, Stack) {
        let mut layers = image();
        layers.push(upper());
        let mut stack = Stack::default();
        for l in &layers {
            stack.push(&l[..]).unwrap();
        }
        (layers, stack)
    }

    #[test]
    fn a_file_is_read_from_the_layer_that_shows_it() {
        let (layers, stack) = image_and_upper();
        let read = |path: &str, limit| {
            let (layer, index) = stack.source_of(Path::new(path))?;
            Stack::read_entry(&layers[layer][..], index, limit).unwrap()
        };
        // The upper layer's passwd replaces the image's.
        assert_eq!(read("etc/passwd", 1024).as_deref(), Some(&b"changed"[..]));
        // Whited out, never there, a directory, or over the limit: none.
        assert_eq!(read("etc/gone", 1024), None);
        assert_eq!(read("etc/nothing", 1024), None);
        assert_eq!(read("usr/bin", 1024), None);
        assert_eq!(read("etc/passwd", 3), None);
    }

    #[test]
    fn flattening_applies_whiteouts_opaque_dirs_and_replacements() {
        let (layers, stack) = image_and_upper();
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

    fn stacked(layers: &[Vec<u8>]) -> Vec<String> {
        let mut stack = Stack::default();
        for l in layers {
            stack.push(&l[..]).unwrap();
        }
        stack
            .visible
            .keys()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_file_over_an_implied_directory_hides_what_was_under_it() {
        let lower = layer(&[("a/b", Some("b")), ("a/c/d", Some("d"))]);
        let upper = layer(&[("a", Some("now a file"))]);
        assert_eq!(stacked(&[lower, upper]), ["a"]);
    }

    #[test]
    fn an_opaque_marker_takes_lower_directories_with_what_this_layer_put_in_them() {
        let lower = layer(&[("d", None), ("d/sub", None), ("d/sub/old", Some("o"))]);
        let upper = layer(&[
            ("d/sub/new", Some("n")),
            ("d/kept", None),
            ("d/.wh..wh..opq", Some("")),
            ("d/after", Some("a")),
        ]);
        assert_eq!(stacked(&[lower, upper]), ["d", "d/after", "d/kept"]);
    }

    #[test]
    fn a_whiteout_deletes_what_its_own_layer_put_before_it() {
        let l = layer(&[("x", Some("x")), (".wh.x", Some("")), ("y", Some("y"))]);
        assert_eq!(stacked(&[l]), ["y"]);
    }

    #[test]
    fn bookkeeping_and_names_no_layer_may_hold_are_left_out() {
        let lower = layer(&[("d", None), ("d/f", Some("f"))]);
        let upper = layer(&[
            ("d/.wh..", Some("")),
            ("d/.wh...", Some("")),
            (".wh..wh.plnk", None),
            (".wh..wh.plnk/1", Some("")),
        ]);
        // Entries inside an aufs bookkeeping directory are ordinary paths to the rules.
        assert_eq!(
            stacked(&[lower.clone(), upper.clone()]),
            [".wh..wh.plnk/1", "d", "d/f"]
        );
        let mut stack = Stack::default();
        stack.push(&lower[..]).unwrap();
        let lines: Vec<String> = diff_layer(&upper[..], &stack)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(lines, ["A /.wh..wh.plnk/1"]);
    }

    #[test]
    fn the_view_matches_the_unpacked_directory() {
        let mut layers = image();
        layers.push(upper());
        layers.push(layer(&[
            ("opt", Some("a file now")),
            ("usr/bin/.wh.sh", Some("")),
            ("usr/lib", None),
        ]));
        let dir = tempfile::tempdir().unwrap();
        for l in &layers {
            super::super::unpack::apply_layer(&l[..], dir.path(), false).unwrap();
        }
        let mut on_disk = Vec::new();
        let mut dirs = vec![PathBuf::new()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(dir.path().join(&d)).unwrap() {
                let e = e.unwrap();
                let rel = d.join(e.file_name());
                if e.file_type().unwrap().is_dir() {
                    dirs.push(rel.clone());
                }
                on_disk.push(rel.to_string_lossy().into_owned());
            }
        }
        on_disk.sort();
        let mut view = stacked(&layers);
        view.sort();
        assert_eq!(view, on_disk);
    }
}
