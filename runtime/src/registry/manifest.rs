//! Manifests and indexes from a registry: fetched with the media types nook understands,
//! bounded in size, checked against their digest, and, for an index, the platform chosen.

use std::io::Read as _;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use ureq::http::Method;

use crate::image::digest::Digest;
use crate::image::layer::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use crate::image::platform::{self, Unlabeled};
pub use crate::image::platform::{Platform, PlatformError};

use super::client::Request;
use super::error::RegistryError;
use super::session::Session;

/// The largest manifest or index nook reads (docker's own limit is 4 MiB too).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// What the `Accept` header asks for: indexes and image manifests, OCI and docker schema 2.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// An image manifest or an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image,
    Index,
}

/// A manifest as the registry sent it: the exact bytes (their digest is the image's name).
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
    pub kind: Kind,
}

/// The kind and media type of a manifest from its `Content-Type` and its own `mediaType`.
/// A generic or missing content type defers to the body; a foreign one is refused.
pub fn classify(content_type: Option<&str>, body: &[u8]) -> Result<(Kind, String), String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        layers: Option<serde_json::Value>,
    }
    let header = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|c| !c.is_empty());
    let probe: Probe = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
    let kind_of = |m: &str| match m {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(Kind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(Kind::Index),
        _ => None,
    };
    let declared = match header.as_deref() {
        Some("application/json") | Some("text/plain") | None => None,
        Some(h) => match kind_of(h) {
            Some(_) => Some(h.to_string()),
            None => {
                return Err(format!(
                    "content type {h:?} is not a manifest type nook accepts"
                ))
            }
        },
    };
    let media_type = match (declared, probe.media_type) {
        (Some(h), Some(b)) if h != b => {
            return Err(format!(
                "the content type {h:?} disagrees with the mediaType {b:?} inside"
            ))
        }
        (Some(h), _) => h,
        (None, Some(b)) => b,
        // Without any media type, the shape decides (as the OCI spec allows).
        (None, None) if probe.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) if probe.layers.is_some() => OCI_MANIFEST.to_string(),
        (None, None) => return Err("it has no media type and no layers or manifests".into()),
    };
    let kind = kind_of(&media_type).ok_or_else(|| {
        if media_type.contains("manifest.v1") {
            format!("{media_type:?} is docker's deprecated schema 1, which nook does not pull")
        } else {
            format!("media type {media_type:?} is not a manifest type nook accepts")
        }
    })?;
    Ok((kind, media_type))
}

/// Fetches the manifest `reference` (a tag or a digest) of the session's repository.
pub fn fetch(session: &Session, reference: &str) -> Result<Fetched, RegistryError> {
    let repo = &session.repo;
    let what = format!("GET manifest {reference}");
    let req = Request::new(
        Method::GET,
        session.repo_url(&format!("manifests/{reference}")),
    )
    .header("Accept", ACCEPT);
    let resp = session.send(req, &what)?;
    let status = resp.status().as_u16();
    if status == 404 {
        return Err(RegistryError::ManifestUnknown {
            repo: repo.clone(),
            reference: reference.to_string(),
        });
    }
    if status != 200 {
        return Err(session.status_error(resp, &what));
    }
    let too_large = || RegistryError::ManifestTooLarge {
        repo: repo.clone(),
        reference: reference.to_string(),
        limit: MAX_MANIFEST,
    };
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type");
    let named_digest = header("docker-content-digest");
    if header("content-length")
        .and_then(|l| l.parse::<u64>().ok())
        .is_some_and(|l| l > MAX_MANIFEST)
    {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    resp.into_body()
        .into_with_config()
        .limit(u64::MAX)
        .reader()
        .take(MAX_MANIFEST + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| RegistryError::MalformedManifest {
            repo: repo.clone(),
            reference: reference.to_string(),
            reason: format!("reading it failed: {source}"),
        })?;
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(too_large());
    }
    let digest = Digest::of(&bytes);
    let expected = match Digest::parse(reference) {
        Ok(d) => Some(d),
        Err(_) => named_digest.and_then(|d| Digest::parse(&d).ok()),
    };
    if let Some(expected) = expected {
        if expected != digest {
            return Err(RegistryError::ManifestDigest {
                repo: repo.clone(),
                reference: reference.to_string(),
                expected,
                actual: digest,
            });
        }
    }
    let (kind, media_type) = classify(content_type.as_deref(), &bytes).map_err(|reason| {
        match content_type.as_deref() {
            Some(ct) if reason.starts_with("content type") => RegistryError::ManifestMediaType {
                repo: repo.clone(),
                reference: reference.to_string(),
                media_type: ct.to_string(),
            },
            _ => RegistryError::MalformedManifest {
                repo: repo.clone(),
                reference: reference.to_string(),
                reason,
            },
        }
    })?;
    Ok(Fetched {
        bytes,
        digest,
        media_type,
        kind,
    })
}

impl Fetched {
    pub fn image(
        &self,
        session: &Session,
        reference: &str,
    ) -> Result<ImageManifest, RegistryError> {
        ImageManifest::from_reader(&self.bytes[..]).map_err(|e| RegistryError::MalformedManifest {
            repo: session.repo.clone(),
            reference: reference.to_string(),
            reason: e.to_string(),
        })
    }

    pub fn index(&self, session: &Session, reference: &str) -> Result<ImageIndex, RegistryError> {
        ImageIndex::from_reader(&self.bytes[..]).map_err(|e| RegistryError::MalformedManifest {
            repo: session.repo.clone(),
            reference: reference.to_string(),
            reason: e.to_string(),
        })
    }
}

/// The index entry for `platform` ([`platform::select`]): a registry's index labels its
/// images, so an entry without a platform is never chosen.
pub fn select<'a>(index: &'a ImageIndex, platform: &Platform) -> Option<&'a Descriptor> {
    platform::select(index, platform, Unlabeled::Skip)
}

/// The platforms an index offers, for an error message.
pub fn platforms(index: &ImageIndex) -> String {
    platform::offered(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_uses_header_then_body() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[]}"#;
        assert_eq!(
            classify(Some(DOCKER_MANIFEST), m).unwrap(),
            (Kind::Image, DOCKER_MANIFEST.to_string())
        );
        assert_eq!(classify(None, m).unwrap().0, Kind::Image);
        assert_eq!(
            classify(Some("application/json"), br#"{"manifests":[]}"#).unwrap(),
            (Kind::Index, OCI_INDEX.to_string())
        );
        assert!(classify(Some("text/html"), m)
            .unwrap_err()
            .contains("text/html"));
        assert!(classify(Some(OCI_INDEX), m)
            .unwrap_err()
            .contains("disagrees"));
        assert!(classify(None, b"<html>").unwrap_err().contains("not JSON"));
        let v1 = br#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        assert!(classify(None, v1).unwrap_err().contains("schema 1"));
    }

    #[test]
    fn selects_the_platform_of_an_index() {
        let index: ImageIndex = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "size": 1, "digest": format!("sha256:{}", "a".repeat(64)),
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"mediaType": OCI_MANIFEST, "size": 1, "digest": format!("sha256:{}", "b".repeat(64)),
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": OCI_MANIFEST, "size": 1, "digest": format!("sha256:{}", "c".repeat(64)),
                 "platform": {"os": "unknown", "architecture": "unknown"}}
            ]
        }))
        .unwrap();
        let pick = |p: &str| {
            select(&index, &Platform::parse(p).unwrap())
                .map(|d| d.digest().to_string()[7..8].to_string())
        };
        assert_eq!(pick("linux/amd64").as_deref(), Some("b"));
        assert_eq!(pick("linux/arm64").as_deref(), Some("a"));
        assert_eq!(pick("linux/arm64/v8").as_deref(), Some("a"));
        assert_eq!(pick("linux/arm64/v7"), None);
        assert_eq!(pick("linux/s390x"), None);
        assert!(platforms(&index).contains("linux/arm64/v8"));
    }
}
