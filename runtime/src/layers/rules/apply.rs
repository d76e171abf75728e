//! The order rules of stacking a layer on the ones below it, once for every output: a whiteout
//! deletes what is at its path, an opaque marker hides what the layers below put in its
//! directory, an entry replaces what is at its path unless both are directories (those merge:
//! the old children stay, the metadata is the new entry's). Entries apply in tar order, as
//! docker applies them.

use std::io::Read;

use tar::{Entry, EntryType};

use super::classify::{classify, Class, Refused};

/// What is at a path of an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Dir,
    Other,
}

/// A tree a layer is applied to. Paths are components relative to the image root; the layer
/// being applied is the output's to track (for [`Output::make_opaque`]).
pub trait Output<R: Read> {
    type Error;

    /// An entry whose path (`raw`, as stored) [`classify`] refuses: `Err` stops the layer, `Ok`
    /// leaves the entry out.
    fn refused(&mut self, raw: &[u8], why: Refused) -> Result<(), Self::Error>;

    /// Whether this output leaves out entries of this type altogether (nothing is replaced).
    fn skips(&self, _kind: EntryType) -> bool {
        false
    }

    /// What is at `path` now. A path the output cannot reach is `None`: [`Output::put`] then
    /// says why.
    fn existing(&mut self, path: &[&[u8]]) -> Result<Option<Existing>, Self::Error>;

    /// Deletes `path` and everything under it, if anything is there.
    fn remove(&mut self, path: &[&[u8]]) -> Result<(), Self::Error>;

    /// Deletes what is under `dir` (the root when empty) that the layer being applied did not
    /// put there itself.
    fn make_opaque(&mut self, dir: &[&[u8]]) -> Result<(), Self::Error>;

    /// Puts `entry` at `path`, where nothing is, or a directory is and `entry` is one too
    /// (merge). The layer being applied now owns `path`.
    fn put(&mut self, path: &[&[u8]], entry: &mut Entry<'_, R>) -> Result<(), Self::Error>;

    /// An entry for the image root itself (`./`).
    fn put_root(&mut self, entry: &mut Entry<'_, R>) -> Result<(), Self::Error>;
}

/// Applies one entry of the layer being applied to `out`.
pub fn apply<R: Read, O: Output<R>>(out: &mut O, entry: &mut Entry<'_, R>) -> Result<(), O::Error> {
    let kind = entry.header().entry_type();
    if kind == EntryType::XGlobalHeader {
        // PAX defaults for the entries after it (which the tar reader applies), not a file.
        return Ok(());
    }
    let raw = entry.path_bytes().into_owned();
    match classify(&raw) {
        Err(why) => out.refused(&raw, why),
        Ok(Class::Bookkeeping) => Ok(()),
        Ok(Class::Whiteout(path)) => out.remove(&path),
        Ok(Class::Opaque(dir)) => out.make_opaque(&dir),
        Ok(Class::Root) => out.put_root(entry),
        Ok(Class::Entry(_)) if out.skips(kind) => Ok(()),
        Ok(Class::Entry(path)) => {
            match out.existing(&path)? {
                Some(Existing::Dir) if kind.is_dir() => {}
                Some(_) => out.remove(&path)?,
                None => {}
            }
            out.put(&path, entry)
        }
    }
}

#[cfg(test)]
mod tests {
    //! The rules against a model output: a map of paths to (kind, layer).

    use std::collections::BTreeMap;
    use std::convert::Infallible;

    use super::*;

    #[derive(Default)]
    struct Model {
        layer: u32,
        paths: BTreeMap<Vec<Vec<u8>>, (Existing, u32, String)>,
        refused: Vec<Refused>,
        log: Vec<String>,
    }

    fn owned(p: &[&[u8]]) -> Vec<Vec<u8>> {
        p.iter().map(|c| c.to_vec()).collect()
    }

    impl<R: Read> Output<R> for Model {
        type Error = Infallible;
        fn refused(&mut self, _: &[u8], why: Refused) -> Result<(), Infallible> {
            self.refused.push(why);
            Ok(())
        }
        fn skips(&self, kind: EntryType) -> bool {
            kind == EntryType::Char
        }
        fn existing(&mut self, path: &[&[u8]]) -> Result<Option<Existing>, Infallible> {
            Ok(self.paths.get(&owned(path)).map(|e| e.0))
        }
        fn remove(&mut self, path: &[&[u8]]) -> Result<(), Infallible> {
            let p = owned(path);
            self.log
                .push(format!("remove {}", p.join(&b'/').escape_ascii()));
            self.paths.retain(|k, _| !k.starts_with(&p));
            Ok(())
        }
        fn make_opaque(&mut self, dir: &[&[u8]]) -> Result<(), Infallible> {
            let d = owned(dir);
            let layer = self.layer;
            self.paths
                .retain(|k, v| !(k.starts_with(&d) && k.len() > d.len()) || v.1 == layer);
            Ok(())
        }
        fn put(&mut self, path: &[&[u8]], entry: &mut Entry<'_, R>) -> Result<(), Infallible> {
            let kind = if entry.header().entry_type().is_dir() {
                Existing::Dir
            } else {
                Existing::Other
            };
            let mut data = String::new();
            entry.read_to_string(&mut data).unwrap();
            self.paths.insert(owned(path), (kind, self.layer, data));
            Ok(())
        }
        fn put_root(&mut self, _: &mut Entry<'_, R>) -> Result<(), Infallible> {
            self.log.push("root".into());
            Ok(())
        }
    }

    /// (path, Some(content)) files, (path, None) directories, ("c:path", None) char devices.
    fn layer(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o755);
            let (path, kind) = match (path.strip_prefix("c:"), content) {
                (Some(p), _) => (p, EntryType::Char),
                (None, Some(_)) => (*path, EntryType::Regular),
                (None, None) => (*path, EntryType::Directory),
            };
            h.set_entry_type(kind);
            let data = content.unwrap_or("").as_bytes();
            h.set_size(data.len() as u64);
            // Raw names, so hostile ones reach the rules as a layer would carry them.
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn stack(layers: &[Vec<u8>]) -> Model {
        let mut m = Model::default();
        for (i, l) in layers.iter().enumerate() {
            m.layer = i as u32;
            let mut archive = tar::Archive::new(&l[..]);
            for e in archive.entries().unwrap() {
                apply(&mut m, &mut e.unwrap()).unwrap();
            }
        }
        m
    }

    fn listing(m: &Model) -> Vec<String> {
        m.paths
            .iter()
            .map(|(k, (kind, layer, data))| {
                let kind = if *kind == Existing::Dir { "/" } else { "" };
                format!("{}{kind} {layer} {data}", k.join(&b'/').escape_ascii())
            })
            .collect()
    }

    #[test]
    fn whiteouts_opaque_markers_and_replacements_in_tar_order() {
        let m = stack(&[
            layer(&[
                ("etc", None),
                ("etc/a", Some("a0")),
                ("etc/b", Some("b0")),
                ("var", None),
                ("var/old", Some("o")),
                ("var/sub", None),
                ("var/sub/deep", Some("d")),
                ("f2d", Some("file")),
                ("d2f", None),
                ("d2f/x", Some("x")),
                ("merge", None),
                ("merge/low", Some("l")),
            ]),
            layer(&[
                ("etc/a", Some("a1")),
                ("etc/.wh.b", Some("")),
                ("var/sub", None),
                ("var/kept", Some("k")),
                ("var/.wh..wh..opq", Some("")),
                ("var/after", Some("n")),
                ("f2d", None),
                ("d2f", Some("file")),
                ("merge", None),
                ("merge/up", Some("u")),
                ("./", None),
                ("d/.wh..wh.plnk", Some("")),
                ("c:merge/low", None),
            ]),
        ]);
        assert_eq!(
            listing(&m),
            [
                "d2f 1 file",
                "etc/ 0 ",
                "etc/a 1 a1",
                "f2d/ 1 ",
                "merge/ 1 ",
                "merge/low 0 l",
                "merge/up 1 u",
                "var/ 0 ",
                "var/after 1 n",
                "var/kept 1 k",
                "var/sub/ 1 ",
            ]
        );
        assert!(m.log.contains(&"root".to_string()));
        assert!(m.refused.is_empty());
    }

    #[test]
    fn a_whiteout_deletes_what_this_layer_put_before_it_too() {
        let m = stack(&[layer(&[
            ("gone", Some("x")),
            (".wh.gone", Some("")),
            (".wh.back", Some("")),
            ("back", Some("y")),
        ])]);
        assert_eq!(listing(&m), ["back 0 y"]);
    }

    #[test]
    fn refused_entries_reach_the_output_and_change_nothing() {
        let m = stack(&[
            layer(&[("keep", None), ("keep/f", Some("f"))]),
            layer(&[
                ("../escape", Some("x")),
                ("keep/.wh..", Some("")),
                ("keep/.wh...", Some("")),
                (".wh.", Some("")),
            ]),
        ]);
        assert_eq!(listing(&m), ["keep/ 0 ", "keep/f 0 f"]);
        assert_eq!(
            m.refused,
            [
                Refused::DotDot,
                Refused::WhiteoutOfNothing,
                Refused::WhiteoutOfNothing,
                Refused::WhiteoutOfNothing
            ]
        );
        assert!(m.log.is_empty(), "{:?}", m.log);
    }
}
