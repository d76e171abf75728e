//! Container ids (64 hex digits, like docker's) and names: unique, docker-style random ones
//! (`adjective_surname`) when none is given.

use std::io::{self, Read};

/// `n` random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

/// A new container id: 32 random bytes in hex.
pub fn new_id() -> io::Result<String> {
    Ok(random_bytes::<32>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The 12-digit form `ps` shows.
pub use crate::util::short_id as short;

const ADJECTIVES: &[&str] = &[
    "admiring",
    "agitated",
    "amazing",
    "bold",
    "brave",
    "busy",
    "calm",
    "charming",
    "clever",
    "cool",
    "dazzling",
    "eager",
    "ecstatic",
    "elegant",
    "epic",
    "festive",
    "focused",
    "friendly",
    "gallant",
    "gifted",
    "happy",
    "hopeful",
    "jolly",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "modest",
    "nifty",
    "nostalgic",
    "peaceful",
    "pensive",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "sweet",
    "tender",
    "trusting",
    "upbeat",
    "vibrant",
    "wizardly",
    "youthful",
    "zealous",
];

const SURNAMES: &[&str] = &[
    "albattani",
    "archimedes",
    "babbage",
    "bardeen",
    "bell",
    "bohr",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euclid",
    "faraday",
    "fermat",
    "feynman",
    "galileo",
    "gauss",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "lamarr",
    "lovelace",
    "maxwell",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "pike",
    "ritchie",
    "shannon",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "wozniak",
    "yonath",
];

/// A docker-style name from two random numbers.
pub fn name_from(a: u32, b: u32) -> String {
    format!(
        "{}_{}",
        ADJECTIVES[a as usize % ADJECTIVES.len()],
        SURNAMES[b as usize % SURNAMES.len()]
    )
}

/// A random docker-style name.
pub fn random_name() -> io::Result<String> {
    let r = random_bytes::<8>()?;
    Ok(name_from(
        u32::from_le_bytes([r[0], r[1], r[2], r[3]]),
        u32::from_le_bytes([r[4], r[5], r[6], r[7]]),
    ))
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Whether `s` looks like a full id or a prefix of one.
pub fn is_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_digits_and_differ() {
        let a = new_id().unwrap();
        let b = new_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(is_hex(&a));
        assert_ne!(a, b);
        assert_eq!(short(&a).len(), 12);
    }

    #[test]
    fn names_follow_dockers_rule() {
        let n = name_from(3, 7);
        assert_eq!(n, "bold_darwin");
        assert!(valid_name(&n));
        assert!(valid_name(&random_name().unwrap()));
        for bad in ["", "a", "_x", "-x", "a b", "a/b", "é1"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_name("web-1.prod_x"));
    }
}
