//! Platforms (`os/arch[/variant]`) and choosing the manifest for one from an image index: the
//! one rule `pull` (a registry's index) and `load` (an OCI archive's nested index) share.

use std::fmt;

use oci_spec::image::{Descriptor, ImageIndex};

use super::config::host_arch;
use super::store::is_manifest;

/// An `os/arch[/variant]` platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// Why a `--platform` value is not one.
#[derive(Debug, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8")]
pub struct PlatformError(pub String);

impl Platform {
    /// linux and this machine's architecture.
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: host_arch().to_string(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]` (or a bare `arch`, taken as linux).
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !parts.iter().all(ok) {
            return Err(PlatformError(s.to_string()));
        }
        let lower = |p: &str| p.to_ascii_lowercase();
        match parts.as_slice() {
            [arch] => Ok(Platform {
                os: "linux".into(),
                architecture: lower(arch),
                variant: None,
            }),
            [os, arch] => Ok(Platform {
                os: lower(os),
                architecture: lower(arch),
                variant: None,
            }),
            [os, arch, variant] => Ok(Platform {
                os: lower(os),
                architecture: lower(arch),
                variant: Some(lower(variant)),
            }),
            _ => Err(PlatformError(s.to_string())),
        }
    }

    /// Whether an index entry's platform is this one (a variant, if asked for, must match).
    pub fn matches(&self, p: &oci_spec::image::Platform) -> bool {
        p.os().to_string() == self.os
            && p.architecture().to_string() == self.architecture
            && match &self.variant {
                None => true,
                Some(v) => p.variant().as_deref() == Some(v.as_str()),
            }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What an index entry that names no platform counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlabeled {
    /// Never chosen: a registry's index labels every image (`pull`).
    Skip,
    /// Chosen when no entry matches: archives written by older tools leave the platform out
    /// of a single-image index (`load`).
    LastResort,
}

/// The entry of `index` for `platform`: the first image manifest whose platform
/// [matches](Platform::matches), else, as `unlabeled` says, the first without a platform.
/// Entries that are not image manifests (attestations, nested indexes) are never chosen.
pub fn select<'a>(
    index: &'a ImageIndex,
    platform: &Platform,
    unlabeled: Unlabeled,
) -> Option<&'a Descriptor> {
    let candidates = || {
        index
            .manifests()
            .iter()
            .filter(|m| is_manifest(m.media_type()))
    };
    candidates()
        .find(|m| m.platform().as_ref().is_some_and(|p| platform.matches(p)))
        .or_else(|| match unlabeled {
            Unlabeled::Skip => None,
            Unlabeled::LastResort => candidates().find(|m| m.platform().is_none()),
        })
}

/// The platforms an index offers, for an error message.
pub fn offered(index: &ImageIndex) -> String {
    let list: Vec<String> = index
        .manifests()
        .iter()
        .filter_map(|m| m.platform().as_ref())
        .map(|p| {
            let mut s = format!("{}/{}", p.os(), p.architecture());
            if let Some(v) = p.variant() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect();
    if list.is_empty() {
        "no platforms".into()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layer::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

    #[test]
    fn platforms_parse_and_print() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(Platform::parse("amd64").unwrap().to_string(), "linux/amd64");
        assert_eq!(
            Platform::parse("Linux/AMD64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(Platform::host().os, "linux");
        assert_eq!(Platform::host().variant, None);
        for bad in [
            "",
            "/",
            "linux/",
            "a/b/c/d",
            "linux/am d64",
            "linux/../amd64",
        ] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    fn index(entries: serde_json::Value) -> ImageIndex {
        serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        }))
        .unwrap()
    }

    fn entry(
        letter: char,
        media_type: &str,
        platform: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let mut e = serde_json::json!({
            "mediaType": media_type,
            "size": 1,
            "digest": format!("sha256:{}", letter.to_string().repeat(64)),
        });
        if let Some(p) = platform {
            e["platform"] = p;
        }
        e
    }

    fn pick(index: &ImageIndex, p: &str, unlabeled: Unlabeled) -> Option<String> {
        select(index, &Platform::parse(p).unwrap(), unlabeled)
            .map(|d| d.digest().to_string()[7..8].to_string())
    }

    #[test]
    fn os_architecture_and_an_asked_variant_must_match() {
        let i = index(serde_json::json!([
            entry(
                'a',
                OCI_MANIFEST,
                Some(serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"}))
            ),
            entry(
                'b',
                DOCKER_MANIFEST,
                Some(serde_json::json!({"os": "linux", "architecture": "amd64"}))
            ),
            entry(
                'c',
                OCI_MANIFEST,
                Some(serde_json::json!({"os": "windows", "architecture": "amd64"}))
            ),
            entry(
                'd',
                OCI_MANIFEST,
                Some(serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v7"}))
            ),
        ]));
        for unlabeled in [Unlabeled::Skip, Unlabeled::LastResort] {
            assert_eq!(pick(&i, "linux/amd64", unlabeled).as_deref(), Some("b"));
            assert_eq!(pick(&i, "windows/amd64", unlabeled).as_deref(), Some("c"));
            assert_eq!(pick(&i, "linux/arm64", unlabeled).as_deref(), Some("a"));
            assert_eq!(pick(&i, "linux/arm64/v8", unlabeled).as_deref(), Some("a"));
            assert_eq!(pick(&i, "linux/arm/v7", unlabeled).as_deref(), Some("d"));
            assert_eq!(pick(&i, "linux/arm/v6", unlabeled), None);
            assert_eq!(pick(&i, "linux/s390x", unlabeled), None);
        }
        assert_eq!(
            offered(&i),
            "linux/arm64/v8, linux/amd64, windows/amd64, linux/arm/v7"
        );
        assert_eq!(offered(&index(serde_json::json!([]))), "no platforms");
    }

    #[test]
    fn an_unlabeled_manifest_is_a_last_resort_only_when_asked() {
        let i = index(serde_json::json!([
            entry('a', OCI_MANIFEST, None),
            entry(
                'b',
                OCI_MANIFEST,
                Some(serde_json::json!({"os": "linux", "architecture": "riscv64"}))
            ),
        ]));
        assert_eq!(
            pick(&i, "linux/riscv64", Unlabeled::LastResort).as_deref(),
            Some("b")
        );
        assert_eq!(
            pick(&i, "linux/amd64", Unlabeled::LastResort).as_deref(),
            Some("a")
        );
        assert_eq!(pick(&i, "linux/amd64", Unlabeled::Skip), None);
    }

    #[test]
    fn entries_that_are_not_image_manifests_are_never_chosen() {
        let amd64 = serde_json::json!({"os": "linux", "architecture": "amd64"});
        let i = index(serde_json::json!([
            entry('a', OCI_INDEX, Some(amd64.clone())),
            entry('b', "application/vnd.in-toto+json", Some(amd64)),
            entry('c', OCI_INDEX, None),
        ]));
        assert_eq!(pick(&i, "linux/amd64", Unlabeled::LastResort), None);
        assert_eq!(pick(&i, "linux/amd64", Unlabeled::Skip), None);
    }
}
