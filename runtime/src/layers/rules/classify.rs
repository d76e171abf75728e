//! What one tar entry of a layer means, from its path alone: an entry to put, a whiteout, an
//! opaque marker, bookkeeping to skip, or a name no layer may use.

use nook_agent::layer::whiteout::{META_PREFIX, OPAQUE, WHITEOUT_PREFIX};

use super::path::{components, NAME_MAX, PATH_MAX};

/// A layer entry's meaning; paths are components relative to the image root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class<'a> {
    /// The image root itself (`./`, `/`).
    Root,
    /// A file, directory, link or device to put at this (non-empty) path.
    Entry(Vec<&'a [u8]>),
    /// `DIR/.wh.NAME`: deletes `DIR/NAME` (the path given, never empty) and what is under it.
    Whiteout(Vec<&'a [u8]>),
    /// `DIR/.wh..wh..opq`: hides what the layers below put in DIR (empty for the root).
    Opaque(Vec<&'a [u8]>),
    /// Another `.wh..wh.` name: aufs bookkeeping, skipped as docker skips it.
    Bookkeeping,
}

/// Why an entry's path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("it contains a NUL byte")]
    Nul,
    #[error("it is {len} bytes long, more than {PATH_MAX}")]
    PathTooLong { len: usize },
    #[error("a component is {len} bytes long, more than {NAME_MAX}")]
    NameTooLong { len: usize },
    #[error("it contains a `..` component")]
    DotDot,
    /// `.wh.`, `.wh..` or `.wh...`: the whiteout of nothing, of its own directory or of its
    /// parent.
    #[error("the whiteout names no file")]
    WhiteoutOfNothing,
}

/// Classifies the raw path of a tar entry (its bytes as stored, PAX path or long name
/// included).
pub fn classify(raw: &[u8]) -> Result<Class<'_>, Refused> {
    let mut comps = components(raw)?;
    let Some(&name) = comps.last() else {
        return Ok(Class::Root);
    };
    let Some(target) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) else {
        return Ok(Class::Entry(comps));
    };
    comps.pop();
    if name == OPAQUE.as_bytes() {
        return Ok(Class::Opaque(comps));
    }
    if name.starts_with(META_PREFIX.as_bytes()) {
        return Ok(Class::Bookkeeping);
    }
    if target.is_empty() || target == b"." || target == b".." {
        return Err(Refused::WhiteoutOfNothing);
    }
    comps.push(target);
    Ok(Class::Whiteout(comps))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(p: &[&'static str]) -> Vec<&'static [u8]> {
        p.iter().map(|c| c.as_bytes()).collect()
    }

    #[test]
    fn plain_entries_are_normalized() {
        assert_eq!(
            classify(b"etc/passwd"),
            Ok(Class::Entry(entry(&["etc", "passwd"])))
        );
        assert_eq!(classify(b"./etc/"), Ok(Class::Entry(entry(&["etc"]))));
        assert_eq!(classify(b"/abs/x"), Ok(Class::Entry(entry(&["abs", "x"]))));
        assert_eq!(classify(b"a//./b"), Ok(Class::Entry(entry(&["a", "b"]))));
        // Whiteout names only count as the last component, and only with the exact prefix.
        assert_eq!(
            classify(b".wh.d/f"),
            Ok(Class::Entry(entry(&[".wh.d", "f"])))
        );
        assert_eq!(classify(b"d/.wh"), Ok(Class::Entry(entry(&["d", ".wh"]))));
        assert_eq!(classify(b"d/wh.x"), Ok(Class::Entry(entry(&["d", "wh.x"]))));
        assert_eq!(
            classify(b"d/.WH.x"),
            Ok(Class::Entry(entry(&["d", ".WH.x"])))
        );
        assert_eq!(classify(b"d/...x"), Ok(Class::Entry(entry(&["d", "...x"]))));
    }

    #[test]
    fn the_root_is_its_own_class() {
        for root in [&b""[..], b".", b"./", b"/", b"//./."] {
            assert_eq!(classify(root), Ok(Class::Root), "{root:?}");
        }
    }

    #[test]
    fn whiteouts_name_the_path_they_delete() {
        assert_eq!(
            classify(b"etc/.wh.gone"),
            Ok(Class::Whiteout(entry(&["etc", "gone"])))
        );
        assert_eq!(classify(b".wh.top"), Ok(Class::Whiteout(entry(&["top"]))));
        assert_eq!(
            classify(b"./a/b/.wh.c"),
            Ok(Class::Whiteout(entry(&["a", "b", "c"])))
        );
        // Only the first prefix is the marker: this deletes a file named `.wh.x`.
        assert_eq!(
            classify(b"d/.wh..wh"),
            Ok(Class::Whiteout(entry(&["d", ".wh"])))
        );
        assert_eq!(
            classify(b"d/.wh....x"),
            Ok(Class::Whiteout(entry(&["d", "...x"])))
        );
        assert_eq!(
            classify(b"d/.wh. "),
            Ok(Class::Whiteout(entry(&["d", " "])))
        );
        assert_eq!(
            classify(b"d/.wh.\xff"),
            Ok(Class::Whiteout(vec![&b"d"[..], b"\xff"]))
        );
    }

    #[test]
    fn opaque_markers_name_their_directory() {
        assert_eq!(
            classify(b"var/.wh..wh..opq"),
            Ok(Class::Opaque(entry(&["var"])))
        );
        assert_eq!(
            classify(b"./a/b/.wh..wh..opq"),
            Ok(Class::Opaque(entry(&["a", "b"])))
        );
        assert_eq!(classify(b".wh..wh..opq"), Ok(Class::Opaque(vec![])));
        // A directory called like the marker is still the marker: it has no other meaning.
        assert_eq!(
            classify(b"d/.wh..wh..opq/"),
            Ok(Class::Opaque(entry(&["d"])))
        );
    }

    #[test]
    fn aufs_bookkeeping_is_skipped() {
        for name in [
            &b".wh..wh.plnk"[..],
            b"d/.wh..wh.aufs",
            b".wh..wh.plnk/123.456",
            b"d/.wh..wh.",
            b"d/.wh..wh..opqx",
            b"d/.wh..wh..op",
        ] {
            let class = classify(name);
            if name.ends_with(b"/123.456") {
                // Inside a bookkeeping directory is an ordinary path; its own entry is skipped.
                assert_eq!(class, Ok(Class::Entry(entry(&[".wh..wh.plnk", "123.456"]))));
            } else {
                assert_eq!(class, Ok(Class::Bookkeeping), "{name:?}");
            }
        }
    }

    #[test]
    fn whiteouts_of_nothing_or_of_a_parent_are_refused() {
        for name in [
            &b".wh."[..],
            b"etc/.wh.",
            b"etc/.wh..",
            b".wh...",
            b"a/b/.wh.../",
        ] {
            assert_eq!(classify(name), Err(Refused::WhiteoutOfNothing), "{name:?}");
        }
    }

    #[test]
    fn hostile_paths_are_refused() {
        assert_eq!(classify(b"../etc/shadow"), Err(Refused::DotDot));
        assert_eq!(classify(b"a/../../b"), Err(Refused::DotDot));
        assert_eq!(classify(b"/.."), Err(Refused::DotDot));
        assert_eq!(classify(b"d/../.wh.x"), Err(Refused::DotDot));
        assert_eq!(classify(b"../.wh..wh..opq"), Err(Refused::DotDot));
        assert_eq!(classify(b"a\0b"), Err(Refused::Nul));
        assert_eq!(classify(b"d/.wh.\0"), Err(Refused::Nul));
        let long_name = [b'x'; 256];
        assert_eq!(classify(&long_name), Err(Refused::NameTooLong { len: 256 }));
        let mut long_whiteout = b".wh.".to_vec();
        long_whiteout.extend([b'x'; 252]);
        assert_eq!(
            classify(&long_whiteout),
            Err(Refused::NameTooLong { len: 256 })
        );
        let deep = b"d/".repeat(2048);
        assert_eq!(classify(&deep), Err(Refused::PathTooLong { len: 4096 }));
    }
}
