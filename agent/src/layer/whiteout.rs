//! The names by which an OCI layer records deletions (OCI image spec, "Whiteouts"). The layer
//! writer here produces them; the runtime's layer rules (`nook::layers::rules`) read them. They
//! live in this crate because the runtime depends on it, never the other way.

/// An entry named `.wh.NAME` deletes NAME, and everything under it, of the layers below.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// An entry named `DIR/.wh..wh..opq` hides everything the layers below put in DIR.
pub const OPAQUE: &str = ".wh..wh..opq";

/// Names starting with `.wh..wh.` other than [`OPAQUE`] are aufs bookkeeping (hard link
/// directories, ...): they mean nothing to an OCI layer and readers skip them, as docker does.
pub const META_PREFIX: &str = ".wh..wh.";

/// The whiteout entry name that deletes `name`.
pub fn whiteout_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut out = std::ffi::OsString::from(WHITEOUT_PREFIX);
    out.push(name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_nest_as_the_spec_spells_them() {
        assert_eq!(whiteout_name("etc".as_ref()), ".wh.etc");
        assert!(OPAQUE.starts_with(META_PREFIX));
        assert!(META_PREFIX.starts_with(WHITEOUT_PREFIX));
    }
}
