//! Image archives: `nook load` reads `docker save` archives (manifest.json) and OCI archives
//! (oci-layout + index.json); `nook save` writes OCI archives (with a docker manifest.json).

use std::io;
use std::path::PathBuf;

use crate::image::digest::Digest;
use crate::image::layer::LayerError;
use crate::image::store::StoreError;

pub mod load;
pub mod save;
pub mod stream;

/// Errors of reading or writing an image archive; each names the archive and the file, image or
/// layer concerned.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read the archive {archive}")]
    Read {
        archive: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the archive {archive}")]
    Compression {
        archive: String,
        #[source]
        source: LayerError,
    },
    #[error("archive {archive}: entry {entry:?} has an unsafe path (absolute, or with '..')")]
    UnsafePath { archive: String, entry: String },
    #[error("archive {archive}: entry {entry:?} has an unexpected type ({kind})")]
    EntryType {
        archive: String,
        entry: String,
        kind: String,
    },
    #[error("archive {archive}: link {entry:?} points outside the archive or in a loop")]
    BadLink { archive: String, entry: String },
    #[error("archive {archive} holds neither an OCI layout (oci-layout, index.json) nor a docker manifest.json")]
    UnknownFormat { archive: String },
    #[error("archive {archive}: {file} is missing")]
    Missing { archive: String, file: String },
    #[error("archive {archive}: {file} is malformed")]
    Malformed {
        archive: String,
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("archive {archive}: {file} is malformed")]
    MalformedOci {
        archive: String,
        file: String,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("archive {archive}: {file} is larger than {limit} bytes")]
    TooLarge {
        archive: String,
        file: String,
        limit: u64,
    },
    #[error("archive {archive}: {what} does not match its digest {expected} (the content hashes to {actual})")]
    DigestMismatch {
        archive: String,
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("archive {archive}: {what} is {actual} bytes, but its descriptor says {expected}")]
    SizeMismatch {
        archive: String,
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("archive {archive}: {what} has a bad digest")]
    BadDigest {
        archive: String,
        what: String,
        #[source]
        source: crate::image::digest::DigestError,
    },
    #[error("archive {archive}: {what}")]
    Layer {
        archive: String,
        what: String,
        #[source]
        source: LayerError,
    },
    #[error("archive {archive}: {what} cannot be decompressed (corrupt or truncated data)")]
    Decompress {
        archive: String,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("archive {archive}: {what}")]
    Invalid { archive: String, what: String },
    #[error("archive {archive}: tag {tag:?} of {image} is not a valid reference")]
    BadTag {
        archive: String,
        image: String,
        tag: String,
        #[source]
        source: Box<crate::image::reference::ReferenceError>,
    },
    #[error("cannot read {path} from the store")]
    ReadStore {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the archive")]
    Write {
        #[source]
        source: io::Error,
    },
    #[error("cannot encode the archive's index.json")]
    Encode(#[source] oci_spec::OciSpecError),
    #[error("cannot load the archive {archive}")]
    StoreWrite {
        archive: String,
        #[source]
        source: stream::StoreWriteError,
    },
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl From<StoreError> for ArchiveError {
    fn from(e: StoreError) -> Self {
        ArchiveError::Store(Box::new(e))
    }
}
