//! `nook import`: a root filesystem tarball (plain, gzip or zstd) becomes a one-layer image.
//!
//! The input streams once: every byte read is written to a temp blob (the layer, kept as it
//! came) while the decompressed stream is hashed (the diff id) and read the way the root
//! filesystem builder reads a layer ([`crate::layers::erofs::check_layer`]), so a corrupt, truncated
//! or non-tar input, or an entry no container could unpack (`..`, a whiteout naming no file, a
//! hard link to a missing file, an over-long path), fails before anything is referenced from
//! the index.

use std::io::{self, Read};

use oci_spec::image::{Config, Descriptor, MediaType};

use super::archive::stream::{printable, StoreWriteError, WriteFailure, WriteWatch};
use super::config::{imported_config, ConfigBuildError};
use super::digest::{Digest, HashingReader};
use super::layer::{self, Compression, LayerError};
use super::reference::Reference;
use super::store::{Image, Store, StoreError};
use crate::layers::erofs::{check_layer, Layer, RootfsError};
use crate::util::lock::LockMode;

/// Why an import failed; `source` names the input (a path, or `-` for stdin).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot import {source_name}")]
    Layer {
        source_name: String,
        #[source]
        source: LayerError,
    },
    #[error("cannot read {source_name} as a {compression} tar stream (corrupt or truncated data)")]
    Read {
        source_name: String,
        compression: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{source_name} is not a tar archive (or is cut short)")]
    NotATar {
        source_name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot import {source_name}: it holds an entry no container could unpack")]
    Entry {
        source_name: String,
        #[source]
        source: RootfsError,
    },
    #[error("cannot import {source_name}")]
    StoreWrite {
        source_name: String,
        #[source]
        source: StoreWriteError,
    },
    #[error("{source_name} is empty")]
    Empty { source_name: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] ConfigBuildError),
    #[error("cannot encode the image config")]
    Encode(#[source] oci_spec::OciSpecError),
}

/// What to record in the new image.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The runtime config (after `--change` instructions).
    pub config: Config,
    /// RFC 3339 creation time.
    pub created: String,
    /// The history comment (`Imported from -` unless `--message` says otherwise).
    pub comment: String,
    /// The history `created_by`, if any.
    pub created_by: Option<String>,
    /// Tags to point at the image (none: an untagged image).
    pub tags: Vec<Reference>,
}

impl ImportOptions {
    /// The compression name errors use.
    fn compression_name(c: Compression) -> &'static str {
        match c {
            Compression::None => "plain",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Imports the tarball read from `input` (named `source_name` in errors) as a new image.
pub fn import(
    store: &Store,
    input: impl Read,
    source_name: &str,
    options: ImportOptions,
) -> Result<Image, ImportError> {
    let _lock = store.lock_store(LockMode::Shared)?;
    let mut blob = store.blob_writer()?;
    let failure = WriteFailure::default();
    let tee = Tee {
        inner: input,
        out: WriteWatch {
            inner: &mut blob,
            failure: failure.clone(),
        },
    };
    let streamed = stream(tee, source_name);
    // A full disk shows up above as a read error: report the store, not the input.
    if let Some(source) = failure.take(store.tmp_dir()) {
        return Err(ImportError::StoreWrite {
            source_name: source_name.to_string(),
            source,
        });
    }
    let (compression, diff_id, tar_len) = streamed?;
    if blob.is_empty() || tar_len == 0 {
        return Err(ImportError::Empty {
            source_name: source_name.to_string(),
        });
    }
    let layer_size = blob.len();
    let layer_digest = blob.commit(None)?;

    let config = imported_config(
        options.config,
        &diff_id,
        &options.created,
        &options.comment,
        options.created_by.as_deref(),
    )?;
    let config_json = config.to_string().map_err(ImportError::Encode)?;
    let config_digest = store.put_blob(config_json.as_bytes())?;
    let config_desc = Descriptor::new(
        MediaType::ImageConfig,
        config_json.len() as u64,
        oci_spec::image::Digest::from(&config_digest),
    );
    let layer_desc = Descriptor::new(
        MediaType::from(compression.oci_media_type()),
        layer_size,
        oci_spec::image::Digest::from(&layer_digest),
    );
    let (manifest_digest, manifest_size) = store.put_manifest(&config_desc, vec![layer_desc])?;
    store.set_tags(&manifest_digest, manifest_size, &options.tags)?;
    Ok(store.load_image(&manifest_digest, manifest_size, options.tags)?)
}

/// Reads the whole input through `tee`: sniffs its compression, decompresses, hashes and
/// checks the tar stream; returns the compression, the diff id and the tar stream's length.
fn stream<R: Read>(tee: R, source_name: &str) -> Result<(Compression, Digest, u64), ImportError> {
    let (compression, mut raw) = layer::sniff_reader(tee).map_err(|source| ImportError::Layer {
        source_name: source_name.to_string(),
        source,
    })?;
    let compression_name = ImportOptions::compression_name(compression);
    let read_err = |source| ImportError::Read {
        source_name: source_name.to_string(),
        compression: compression_name,
        source: printable(source),
    };
    let (diff_id, tar_len) = {
        let decompressed =
            layer::decompress(&mut raw, compression).map_err(|source| ImportError::Layer {
                source_name: source_name.to_string(),
                source,
            })?;
        let hashing = walk_tar(
            HashingReader::new(decompressed),
            source_name,
            compression_name,
        )?;
        hashing.drain().map_err(read_err)?
    };
    // Whatever follows the compressed stream still belongs to the blob as given.
    io::copy(&mut raw, &mut io::sink()).map_err(read_err)?;
    Ok((compression, diff_id, tar_len))
}

/// Reads a tar stream to its end as the root filesystem builder would, writing nothing, so a
/// stream that is not tar, is cut short, or holds an entry the builder refuses fails here.
/// `failed` tells a decompression or input failure (a read error below tar) from a tar format
/// error.
pub(crate) fn walk_tar<R: Read>(
    reader: R,
    source_name: &str,
    compression: &'static str,
) -> Result<R, ImportError> {
    let failed = std::rc::Rc::new(std::cell::Cell::new(false));
    let mut flagged = FailFlag {
        inner: reader,
        failed: failed.clone(),
    };
    let checked = check_layer(Layer {
        name: source_name.to_string(),
        tar: Box::new(&mut flagged),
    });
    let Err(e) = checked else {
        return Ok(flagged.inner);
    };
    let source = match e {
        RootfsError::ReadTar { source, .. } | RootfsError::BadHeader { source, .. } => {
            printable(source)
        }
        RootfsError::Truncated { .. } => {
            io::Error::new(io::ErrorKind::UnexpectedEof, e.to_string())
        }
        other => {
            return Err(ImportError::Entry {
                source_name: source_name.to_string(),
                source: other,
            })
        }
    };
    Err(if failed.get() {
        ImportError::Read {
            source_name: source_name.to_string(),
            compression,
            source,
        }
    } else {
        ImportError::NotATar {
            source_name: source_name.to_string(),
            source,
        }
    })
}

/// Records whether the wrapped reader ever failed.
struct FailFlag<R> {
    inner: R,
    failed: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: Read> Read for FailFlag<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| self.failed.set(true))
    }
}

/// Copies every byte read from `inner` into `out`.
struct Tee<R, W> {
    inner: R,
    out: W,
}

impl<R: Read, W: io::Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::config::empty_config;
    use crate::image::digest::Digest;
    use std::io::Write;

    fn tarball() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let data = b"#!/bin/sh\necho hi\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, "bin/hello", &data[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn options(tag: &str) -> ImportOptions {
        ImportOptions {
            config: empty_config(),
            created: "2024-01-01T00:00:00Z".into(),
            comment: "Imported from -".into(),
            created_by: None,
            tags: vec![Reference::parse(tag).unwrap()],
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn imports_plain_gzip_and_zstd_with_the_same_diff_id() {
        let (_d, store) = store();
        let tar = tarball();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        let mut diff_ids = Vec::new();
        for (data, tag, media) in [
            (
                tar.clone(),
                "a:plain",
                "application/vnd.oci.image.layer.v1.tar",
            ),
            (gz, "a:gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
            (zst, "a:zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ] {
            let image = import(&store, &data[..], "-", options(tag)).unwrap();
            assert_eq!(image.manifest.layers()[0].media_type().to_string(), media);
            assert_eq!(image.manifest.layers()[0].size(), data.len() as u64);
            assert_eq!(image.layer_digests().unwrap()[0], Digest::of(&data));
            diff_ids.push(image.diff_ids().unwrap()[0].clone());
        }
        assert_eq!(diff_ids[0], Digest::of(&tar));
        assert!(diff_ids.iter().all(|d| d == &diff_ids[0]));
        assert_eq!(store.images().unwrap().len(), 3);
    }

    #[test]
    fn bad_inputs_fail_and_leave_the_store_unchanged() {
        let (_d, store) = store();
        let tar = tarball();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (gz[..gz.len() / 2].to_vec(), "gzip tar stream"),
            (zst[..zst.len() - 5].to_vec(), "zstd tar stream"),
            (
                b"this is not a tarball, just some text".repeat(20),
                "not a tar archive",
            ),
            (Vec::new(), "is empty"),
            (tar[..700].to_vec(), "tar"),
            (b"BZh91AY&SY".to_vec(), "bzip2"),
        ];
        for (data, needle) in cases {
            let err = import(&store, &data[..], "input.tar", options("bad:x")).unwrap_err();
            let chain = format!(
                "{err}: {}",
                std::error::Error::source(&err)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            );
            assert!(chain.contains(needle), "{needle}: {chain}");
            assert!(chain.contains("input.tar"), "{chain}");
            assert!(store.images().unwrap().is_empty());
            assert_eq!(std::fs::read_dir(store.blobs_dir()).unwrap().count(), 0);
            assert_eq!(std::fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
        }
    }
}
