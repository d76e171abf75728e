//! Errors of the layer-to-EROFS flattening. Each variant names the layer and the tar entry it was
//! reading, so a user can find the bad member of a bad image.

use std::io;

use thiserror::Error;

/// Why an image's layers could not be flattened into an EROFS image.
#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("layer {layer}: cannot read the tar stream at entry {entry}")]
    ReadTar {
        layer: String,
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("layer {layer}: entry {entry} is truncated: the stream ended {missing} bytes early")]
    Truncated {
        layer: String,
        entry: String,
        missing: u64,
    },
    #[error("layer {layer}: entry {entry} has a malformed header field {field}")]
    BadHeader {
        layer: String,
        entry: String,
        field: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("layer {layer}: entry {entry} has an invalid path: {reason}")]
    BadPath {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("layer {layer}: entry {entry} goes through the symbolic link {symlink}")]
    ThroughSymlink {
        layer: String,
        entry: String,
        symlink: String,
    },
    #[error("layer {layer}: entry {entry} needs {parent} to be a directory, but it is not")]
    NotADirectory {
        layer: String,
        entry: String,
        parent: String,
    },
    #[error("layer {layer}: hard link {entry} points to {target}, which {reason}")]
    BadHardLink {
        layer: String,
        entry: String,
        target: String,
        reason: &'static str,
    },
    #[error("layer {layer}: entry {entry} has an unsupported tar entry type {kind:?}")]
    UnsupportedType {
        layer: String,
        entry: String,
        kind: u8,
    },
    #[error("layer {layer}: entry {entry} has an absurd {field} ({value})")]
    OutOfRange {
        layer: String,
        entry: String,
        field: &'static str,
        value: u64,
    },
    #[error("layer {layer}: entry {entry} has an invalid extended attribute {name}: {reason}")]
    BadXattr {
        layer: String,
        entry: String,
        name: String,
        reason: &'static str,
    },
    #[error("layer {layer}: entry {entry}: {reason}")]
    BadEntry {
        layer: String,
        entry: String,
        reason: &'static str,
    },
    #[error("layer {layer}: cannot write the data of entry {entry} to the EROFS image")]
    WriteData {
        layer: String,
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the metadata of the EROFS image")]
    WriteMetadata {
        #[source]
        source: io::Error,
    },
    #[error("the EROFS image would exceed the format's limit of 2^32 blocks")]
    ImageTooLarge,
}
