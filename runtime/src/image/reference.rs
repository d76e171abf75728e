//! Image references, parsed and normalized like docker does: `busybox` means
//! `docker.io/library/busybox:latest`; a name may carry a registry host (with a port), a tag, a
//! `@sha256:` digest, or both.
//!
//! Grammar (from the distribution reference format):
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path-component [ "/" path-component ]*
//! domain     := host [ ":" port ]
//! path-comp  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! ```

use std::fmt;

use super::digest::{Digest, DigestError};

/// The registry a name without a domain belongs to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The old spelling of [`DEFAULT_DOMAIN`], normalized away.
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Single-component names on the default registry live under `library/`.
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag a reference without tag and digest gets.
pub const DEFAULT_TAG: &str = "latest";
/// Longest repository name (domain and path) docker accepts.
const NAME_MAX: usize = 255;
/// Longest tag docker accepts.
const TAG_MAX: usize = 128;

/// Why a string is not a valid image reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference format: the reference is empty")]
    Empty,
    #[error("invalid reference format: repository name {name:?} must be lowercase")]
    Uppercase { name: String },
    #[error("invalid reference format: {reference:?}: {reason}")]
    Format { reference: String, reason: String },
    #[error(
        "invalid reference format: repository name {name:?} is longer than {NAME_MAX} characters"
    )]
    NameTooLong { name: String },
    #[error("invalid repository name {name:?}: a 64-character hexadecimal string is an image id, not a name")]
    HexName { name: String },
    #[error("invalid tag {tag:?} in reference {reference:?}: a tag is 1 to {TAG_MAX} characters of [A-Za-z0-9_.-] and does not start with '.' or '-'")]
    Tag { reference: String, tag: String },
    #[error("invalid digest in reference {reference:?}")]
    Digest {
        reference: String,
        #[source]
        source: DigestError,
    },
}

/// Whether `s` has the form of an image id or id prefix (hex digits, optionally after
/// `sha256:`), which is looked up in the store rather than parsed as a reference.
pub fn is_id_like(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    !hex.is_empty()
        && hex.len() <= 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses `s` like `docker pull` does; a reference with neither tag nor digest gets `latest`.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let mut reference = Self::parse_name_only(s)?;
        if reference.tag.is_none() && reference.digest.is_none() {
            reference.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(reference)
    }

    /// Parses `s` without adding the default tag (for filters like `nook images busybox`).
    pub fn parse_name_only(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let format_error = |reason: &str| ReferenceError::Format {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                let digest = Digest::parse(digest).map_err(|source| ReferenceError::Digest {
                    reference: s.to_string(),
                    source,
                })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(ReferenceError::Tag {
                    reference: s.to_string(),
                    tag: tag.to_string(),
                });
            }
        }
        if name.is_empty() {
            return Err(format_error("the repository name is empty"));
        }
        if name.len() > NAME_MAX {
            return Err(ReferenceError::NameTooLong {
                name: name.to_string(),
            });
        }
        let (domain, path) = split_domain(name);
        validate_domain(domain).map_err(|reason| format_error(&reason))?;
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                name: name.to_string(),
            });
        }
        for component in path.split('/') {
            validate_path_component(component).map_err(|reason| format_error(&reason))?;
        }
        let mut path = path.to_string();
        if domain == DEFAULT_DOMAIN && !path.contains('/') {
            if path.len() == 64 && path.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ReferenceError::HexName { name: path });
            }
            path = format!("{OFFICIAL_REPO_PREFIX}{path}");
        }
        Ok(Reference {
            domain: domain.to_string(),
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry host (and port), e.g. `docker.io` or `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The full repository name, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository name as docker prints it, e.g. `busybox` or `localhost:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The whole reference as docker prints it, e.g. `busybox:latest`.
    pub fn familiar(&self) -> String {
        self.render(&self.familiar_name())
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository with neither tag nor digest (the repository itself).
    pub fn repository(&self) -> Reference {
        Reference {
            tag: None,
            digest: None,
            ..self.clone()
        }
    }

    fn render(&self, name: &str) -> String {
        let mut out = name.to_string();
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        }
        out
    }
}

impl fmt::Display for Reference {
    /// The fully qualified form, e.g. `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&self.name()))
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Splits off the registry host the way docker does: the first component is a host only if it
/// has a `.` or a `:`, is `localhost`, or has upper-case letters (which a path cannot have).
fn split_domain(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            if first == LEGACY_DEFAULT_DOMAIN {
                (DEFAULT_DOMAIN, rest)
            } else {
                (first, rest)
            }
        }
        _ => (DEFAULT_DOMAIN, name),
    }
}

fn validate_domain(domain: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // An IPv6 literal: [::1]:5000.
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("registry host {domain:?} has an unclosed '['"))?;
        if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!(
                "registry host {domain:?} is not a valid IPv6 address"
            ));
        }
        match after {
            "" => (None, None),
            p => (
                None,
                Some(p.strip_prefix(':').ok_or_else(|| {
                    format!("registry host {domain:?} has text after the address")
                })?),
            ),
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        for component in host.split('.') {
            let bytes = component.as_bytes();
            let ok = !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-';
            if !ok {
                return Err(format!("registry host {domain:?} is not a valid host name"));
            }
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "registry port {port:?} in {domain:?} is not a number"
            ));
        }
    }
    Ok(())
}

fn validate_path_component(component: &str) -> Result<(), String> {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() {
        return Err("the repository name has an empty path component".to_string());
    }
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(format!(
            "path component {component:?} must start and end with a lowercase letter or digit"
        ));
    }
    // Separators between alphanumeric runs: ".", "_", "__" or any number of "-".
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(format!(
                "path component {component:?} has the invalid separator {sep:?}"
            ));
        }
    }
    Ok(())
}

fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= TAG_MAX
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn full(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn short_names_normalize_to_docker_hub_library() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(full("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            full("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            full("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(full("user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(full("a/b/c"), "docker.io/a/b/c:latest");
    }

    #[test]
    fn registry_hosts_and_ports() {
        assert_eq!(full("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(full("localhost/app:x"), "localhost/app:x");
        assert_eq!(full("quay.io/org/app:1.0"), "quay.io/org/app:1.0");
        assert_eq!(full("127.0.0.1:5000/a/b:t"), "127.0.0.1:5000/a/b:t");
        assert_eq!(full("[::1]:5000/app"), "[::1]:5000/app:latest");
        assert_eq!(full("Registry.Example/app"), "Registry.Example/app:latest");
        let r = Reference::parse("localhost:5000/app:v2").unwrap();
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.path(), "app");
        assert_eq!(r.tag(), Some("v2"));
    }

    #[test]
    fn digests_with_and_without_tags() {
        let r = Reference::parse(&format!("busybox@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag(), None, "a digest reference gets no default tag");
        assert_eq!(r.digest().unwrap().hex(), HEX);
        assert_eq!(r.familiar(), format!("busybox@sha256:{HEX}"));
        let r = Reference::parse(&format!("localhost:5000/a:v1@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.domain(), "localhost:5000");
        assert!(matches!(
            Reference::parse("busybox@sha256:abc"),
            Err(ReferenceError::Digest { .. })
        ));
        assert!(matches!(
            Reference::parse(&format!("busybox@md5:{HEX}")),
            Err(ReferenceError::Digest { .. })
        ));
    }

    #[test]
    fn familiar_forms_strip_defaults() {
        let cases = [
            ("busybox", "busybox:latest"),
            ("docker.io/library/busybox:1", "busybox:1"),
            ("docker.io/library/a/b", "library/a/b:latest"),
            ("user/app", "user/app:latest"),
            ("localhost:5000/app:t", "localhost:5000/app:t"),
        ];
        for (input, familiar) in cases {
            assert_eq!(
                Reference::parse(input).unwrap().familiar(),
                familiar,
                "{input}"
            );
        }
    }

    #[test]
    fn name_only_keeps_missing_tag() {
        let r = Reference::parse_name_only("busybox").unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), "docker.io/library/busybox");
        assert_eq!(r.with_tag("x").familiar(), "busybox:x");
    }

    #[test]
    fn rejects_bad_references_with_reasons() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(
            Reference::parse("BusyBox"),
            Err(ReferenceError::Uppercase { .. })
        ));
        assert!(matches!(
            Reference::parse("quay.io/Org/app"),
            Err(ReferenceError::Uppercase { .. })
        ));
        assert!(matches!(
            Reference::parse(HEX),
            Err(ReferenceError::HexName { .. })
        ));
        for bad in [
            "busybox:",
            "busybox:-x",
            "busybox:.x",
            &format!("busybox:{}", "a".repeat(129)),
        ] {
            assert!(
                matches!(Reference::parse(bad), Err(ReferenceError::Tag { .. })),
                "{bad}"
            );
        }
        for bad in [
            "-busybox",
            "busybox-",
            "bus..box",
            "bus___box",
            "a//b",
            "/busybox",
            "busy box",
            "localhost:port/app",
            "exa_mple.com/app",
            "[::1/app",
            ":tag",
            "busybox:a/b",
        ] {
            assert!(
                matches!(Reference::parse(bad), Err(ReferenceError::Format { .. })),
                "{bad}: {:?}",
                Reference::parse(bad)
            );
        }
        assert!(matches!(
            Reference::parse(&"a".repeat(256)),
            Err(ReferenceError::NameTooLong { .. })
        ));
    }

    #[test]
    fn separators_in_path_components() {
        for ok in ["a.b", "a_b", "a__b", "a-b", "a---b", "a1.b2_c3__d4-e5"] {
            assert!(Reference::parse(ok).is_ok(), "{ok}");
        }
        let tag127 = format!("x:{}", "a".repeat(128));
        assert!(Reference::parse(&tag127).is_ok());
    }

    #[test]
    fn error_messages_name_the_input() {
        let err = Reference::parse("Bad/Name:x y").unwrap_err().to_string();
        assert!(err.contains("x y"), "{err}");
        let err = Reference::parse("BusyBox").unwrap_err().to_string();
        assert!(
            err.contains("BusyBox") && err.contains("lowercase"),
            "{err}"
        );
    }

    #[test]
    fn id_like_strings_are_hex_with_an_optional_algorithm() {
        assert!(is_id_like(HEX));
        assert!(is_id_like("sha256:0123ab"));
        assert!(is_id_like("0123ab"));
        for not_id in [
            "",
            "sha256:",
            "UPPER:bad",
            "busybox",
            "0123AB",
            &format!("{HEX}0"),
        ] {
            assert!(!is_id_like(not_id), "{not_id}");
        }
    }
}
