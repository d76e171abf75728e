//! Errors of registry transfers. Each names the registry and repository (as [`Repo`]), and the
//! blob or manifest concerned, so a failed pull says what to look at.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::image::digest::Digest;
use crate::image::layer::LayerError;
use crate::image::StoreError;

use super::credentials::CredentialsError;

/// A repository on a registry, e.g. `127.0.0.1:5000` + `library/app`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub registry: String,
    pub repository: String,
}

impl fmt::Display for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.repository.is_empty() {
            write!(f, "registry {}", self.registry)
        } else {
            write!(
                f,
                "repository {} on registry {}",
                self.repository, self.registry
            )
        }
    }
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry {registry} ({what})")]
    Connect {
        registry: String,
        what: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("{what} of {repo} failed: the registry answered {status}{}", detail(.message))]
    Status {
        repo: Repo,
        what: String,
        status: u16,
        message: String,
    },
    #[error("{what} of {repo} failed: the registry kept answering {status} after {attempts} attempts{}", detail(.message))]
    ServerError {
        repo: Repo,
        what: String,
        status: u16,
        attempts: u32,
        message: String,
    },
    #[error("{what} of {repo} failed after {attempts} attempts")]
    Transport {
        repo: Repo,
        what: String,
        attempts: u32,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("access to {repo} was denied (unauthorized: authentication required or insufficient){}", detail(.message))]
    Unauthorized { repo: Repo, message: String },
    #[error("cannot get a token for {repo} from {realm}")]
    Token {
        repo: Repo,
        realm: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("the token server {realm} for {repo} answered something that is not a token")]
    BadToken { repo: Repo, realm: String },
    #[error("manifest unknown: {reference} is not in {repo}")]
    ManifestUnknown { repo: Repo, reference: String },
    #[error("the manifest {reference} of {repo} is larger than the {limit} bytes nook accepts")]
    ManifestTooLarge {
        repo: Repo,
        reference: String,
        limit: u64,
    },
    #[error("the manifest {reference} of {repo} has the unsupported content type {media_type:?}")]
    ManifestMediaType {
        repo: Repo,
        reference: String,
        media_type: String,
    },
    #[error("the manifest {reference} of {repo} is malformed: {reason}")]
    MalformedManifest {
        repo: Repo,
        reference: String,
        reason: String,
    },
    #[error("the manifest {reference} of {repo} hashes to {actual}, not to the {expected} the registry named")]
    ManifestDigest {
        repo: Repo,
        reference: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{reference} of {repo} has no image for platform {platform} (it has: {available})")]
    NoPlatform {
        repo: Repo,
        reference: String,
        platform: String,
        available: String,
    },
    #[error("blob {digest} of {repo} is unknown to the registry (the manifest references a missing blob)")]
    BlobUnknown { repo: Repo, digest: Digest },
    #[error("blob {digest} of {repo} does not match its digest: its content hashes to {actual}; it was discarded")]
    BlobDigest {
        repo: Repo,
        digest: Digest,
        actual: Digest,
    },
    #[error("blob {digest} of {repo} is cut short: {got} of {expected} bytes arrived (the partial download is kept, and a new pull resumes it)")]
    BlobTruncated {
        repo: Repo,
        digest: Digest,
        got: u64,
        expected: u64,
    },
    #[error("blob {digest} of {repo} is longer than the {expected} bytes its manifest says; it was discarded")]
    BlobTooLong {
        repo: Repo,
        digest: Digest,
        expected: u64,
    },
    #[error("layer {digest} of {repo} does not decompress to its diff id {diff_id} (it decompresses to {actual}); it was discarded")]
    DiffId {
        repo: Repo,
        digest: Digest,
        diff_id: Digest,
        actual: Digest,
    },
    #[error("layer {digest} of {repo} cannot be decompressed; it was discarded")]
    Decompress {
        repo: Repo,
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("reading blob {digest} of {repo} failed after {attempts} attempts (the partial download is kept, and a new pull resumes it)")]
    BlobRead {
        repo: Repo,
        digest: Digest,
        attempts: u32,
        #[source]
        source: io::Error,
    },
    #[error("layer {digest} of {reference} in {repo}")]
    Layer {
        repo: Repo,
        reference: String,
        digest: String,
        #[source]
        source: LayerError,
    },
    #[error("the registry {registry} gave an upload location nook cannot use: {location:?}")]
    BadLocation { registry: String, location: String },
    #[error("An image does not exist locally with the tag: {0}")]
    NotLocal(String),
    #[error("cannot access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

fn detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}
