//! Copies of file trees between the host and a container's root (`nook cp` in both columns,
//! and a volume's first fill from the image, docker's copy-up), descriptor-based on both sides.
//! One implementation: the namespace column runs it on the host inside the container's user
//! namespace, the VM column in the guest agent (the container side) and on the host (the host
//! side), with a tar stream over the agent channel between the two.
//!
//! - [`Source`]: what is read, opened once (inside a container with `openat2(RESOLVE_IN_ROOT)`,
//!   `O_NOFOLLOW` unless `-L`) and then read only through descriptors and the agent's walker
//!   ([`crate::layer::walk`]), into a [`Sink`] or as a tar;
//! - [`Sink`]: what is written, every entry below its root, never through a symlink;
//! - [`untar`] / [`untar_rebased`]: a tar stream into a sink, `..` refused;
//! - [`dest`]: docker's rules for where a copy lands.

pub mod dest;
mod extract;
pub mod fs;
mod sink;
mod source;

use std::io::{self, Read};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use crate::layer::LayerError;
pub use extract::{untar, untar_rebased, IntoSink};
pub use fs::{clean_relative, fd_path, open_in_root, read_link_fd, reopen, stat_fd};
pub use sink::{Content, Meta, Owners, Sink};
pub use source::Source;

/// What a destination needs to know of a copy's source (sent over the agent channel).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CopyInfo {
    /// The source is a directory.
    pub dir: bool,
    /// Its name: the last component of the path it was given as.
    pub name: String,
    /// Only its entries go (`SRC/.`).
    pub contents_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("Could not find the file {path} in container")]
    NotFound { path: String },
    #[error("cannot open {path}{place}")]
    Open {
        path: String,
        /// `" in the container"`, or empty for a host path.
        place: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot copy {path}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot copy a directory to a file: {dst}")]
    DirOntoFile { dst: String },
    #[error("destination directory {dst} does not exist")]
    NoDirectory { dst: String },
    #[error("destination {dst} must be a directory in the container")]
    NotADirectory {
        dst: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid destination {dst}")]
    InvalidDestination { dst: String },
    #[error("cannot extract the tar stream into {dst}")]
    Extract {
        dst: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Walk(#[from] LayerError),
}

/// Writes the tar stream `input` into the container whose root is `root`: a stream of the user
/// (`nook cp - CONTAINER:DST`, `source` none) into the directory `dst`, or the rebased stream
/// of the source `source` where docker's rules place it. Returns the bytes of file data.
pub fn into_container(
    root: BorrowedFd<'_>,
    dst: &str,
    owners: Owners,
    source: Option<&CopyInfo>,
    input: impl Read,
) -> Result<u64, CopyError> {
    let extract = |source| CopyError::Extract {
        dst: dst.into(),
        source,
    };
    match source {
        None => {
            let dir = dest::open_dir_in(root, Path::new(dst)).map_err(|source| {
                CopyError::NotADirectory {
                    dst: dst.into(),
                    source,
                }
            })?;
            let mut sink = Sink::new(dir, owners);
            untar(input, &mut sink, Path::new("")).map_err(extract)?;
            sink.finish().map_err(extract)
        }
        Some(info) => {
            let (dir, base) = dest::container_destination(root, dst, info)?;
            let mut sink = Sink::new(dir, owners);
            untar_rebased(input, &mut sink, &base).map_err(extract)?;
            sink.finish().map_err(extract)
        }
    }
}

/// Writes the rebased stream `input` of the container's `source` onto the host at `dst`, by
/// docker's rules. Returns the bytes of file data.
pub fn onto_host(
    dst: &Path,
    owners: Owners,
    source: &CopyInfo,
    input: impl Read,
) -> Result<u64, CopyError> {
    let (dir, base): (_, PathBuf) = dest::host_destination(dst, source)?;
    let extract = |e| CopyError::Extract {
        dst: dst.to_string_lossy().into_owned(),
        source: e,
    };
    let mut sink = Sink::new(dir, owners);
    untar_rebased(input, &mut sink, &base).map_err(extract)?;
    sink.finish().map_err(extract)
}

#[cfg(test)]
mod tests;
