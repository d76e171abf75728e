//! Turning a tar member name into the components of a path inside the image.
//!
//! Like docker, leading `/` and `.` components are dropped (`/etc/x` and `./etc/x` are `etc/x`).
//! Unlike a lexical clean, any `..` component is refused outright: a layer has no reason to name
//! one, and refusing it makes escapes impossible by construction.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::Refused;

/// The longest name a single directory entry can hold (EROFS's and Linux's limit).
pub const NAME_MAX: usize = 255;
/// The longest path Linux resolves (PATH_MAX without the NUL): a longer one cannot be opened
/// in the container, so it is refused here.
pub const PATH_MAX: usize = 4095;

/// Splits `raw` into non-empty components; an empty result means the image root.
pub fn components(raw: &[u8]) -> Result<Vec<&[u8]>, Refused> {
    if raw.contains(&0) {
        return Err(Refused::Nul);
    }
    if raw.len() > PATH_MAX {
        return Err(Refused::PathTooLong { len: raw.len() });
    }
    let mut out = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return Err(Refused::DotDot),
            _ if comp.len() > NAME_MAX => return Err(Refused::NameTooLong { len: comp.len() }),
            _ => out.push(comp),
        }
    }
    Ok(out)
}

/// Path components as a relative path (the empty path for the root).
pub fn to_path(comps: &[&[u8]]) -> PathBuf {
    comps.iter().map(|c| OsStr::from_bytes(c)).collect()
}

/// A printable form of a raw path, for error messages.
pub fn display(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// A printable form of path components.
pub fn display_components(comps: &[&[u8]]) -> String {
    let joined: Vec<u8> = comps.join(&b'/');
    display(&joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_slash_and_dots_are_dropped() {
        assert_eq!(
            components(b"/./etc//passwd").unwrap(),
            vec![&b"etc"[..], b"passwd"]
        );
        assert_eq!(components(b"./").unwrap(), Vec::<&[u8]>::new());
        assert_eq!(components(b"a/b/").unwrap(), vec![&b"a"[..], b"b"]);
    }

    #[test]
    fn dotdot_nul_and_long_names_are_refused() {
        assert!(components(b"a/../b")
            .unwrap_err()
            .to_string()
            .contains(".."));
        assert!(components(b"../etc").is_err());
        assert!(components(b"a\0b").unwrap_err().to_string().contains("NUL"));
        let long = vec![b'x'; 256];
        assert!(components(&long).unwrap_err().to_string().contains("256"));
        assert!(components(&vec![b'x'; 255]).is_ok());
        let deep = b"abcdefg/".repeat(625);
        assert!(components(&deep)
            .unwrap_err()
            .to_string()
            .contains("5000 bytes"));
        assert!(components(&deep[..4095]).is_ok());
    }

    #[test]
    fn non_utf8_components_are_kept_byte_for_byte() {
        assert_eq!(
            components(b"d/\xff\xfe").unwrap(),
            vec![&b"d"[..], b"\xff\xfe"]
        );
        assert_eq!(to_path(&[b"d", b"\xff"]).as_os_str().as_bytes(), b"d/\xff");
        assert_eq!(to_path(&[]), PathBuf::new());
    }
}
