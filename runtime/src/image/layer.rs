//! Layer media types and their decompression: what a manifest may name, what the store writes,
//! and how a layer blob becomes the tar stream its diff id is computed over. What the tar's
//! entries mean (whiteouts, opaque directories) is decided in [`crate::layers::rules`].

use std::io::{self, BufRead, BufReader, Read};

/// Docker's manifest and config media types, accepted on load next to the OCI ones.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Errors of layer media types and decompression.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("unknown layer media type {media_type:?}")]
    UnknownMediaType { media_type: String },
    #[error("the data is {format}-compressed, which nook does not support (use plain tar, gzip or zstd)")]
    UnsupportedCompression { format: &'static str },
    #[error("cannot start the zstd decoder")]
    Zstd(#[source] io::Error),
    #[error("cannot read the start of the data")]
    Read(#[source] io::Error),
}

/// How a layer's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Recognizes a layer media type (OCI or docker, distributable or not).
    pub fn from_media_type(media_type: &str) -> Result<Compression, LayerError> {
        let known = |c| Ok(c);
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => known(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                known(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => known(Compression::Zstd),
            other => Err(LayerError::UnknownMediaType {
                media_type: other.to_string(),
            }),
        }
    }

    /// The OCI media type nook writes for a layer compressed this way.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// Guesses the compression of a stream from its first bytes (for `import` and docker
    /// archives, which carry no media type). Anything unrecognized is taken as plain tar, which
    /// the tar reader then checks.
    pub fn sniff(head: &[u8]) -> Result<Compression, LayerError> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Ok(Compression::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Ok(Compression::Zstd)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Err(LayerError::UnsupportedCompression { format: "xz" })
        } else if head.starts_with(b"BZh") {
            Err(LayerError::UnsupportedCompression { format: "bzip2" })
        } else {
            Ok(Compression::None)
        }
    }
}

/// Wraps `reader` in the decompressor for `compression`. Corrupt or truncated data surfaces as
/// an `io::Error` from `read` (an unexpected end of file for truncation).
pub fn decompress<'a, R: Read + 'a>(
    reader: R,
    compression: Compression,
) -> Result<Box<dyn Read + 'a>, LayerError> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        // zstd's decoder reads concatenated frames, like the `zstd` command does.
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(reader).map_err(LayerError::Zstd)?)
        }
    })
}

/// Sniffs the compression of `reader` and returns it with the reader, nothing consumed.
pub fn sniff_reader<R: Read>(reader: R) -> Result<(Compression, BufReader<R>), LayerError> {
    let mut buffered = BufReader::with_capacity(64 * 1024, reader);
    let head = buffered.fill_buf().map_err(LayerError::Read)?;
    let compression = Compression::sniff(head)?;
    Ok((compression, buffered))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn media_types_map_to_compression() {
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+gzip").unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip")
                .unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd").unwrap(),
            Compression::Zstd
        );
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(Compression::from_media_type(c.oci_media_type()).unwrap(), c);
        }
        let err = Compression::from_media_type("application/x-foo").unwrap_err();
        assert!(err.to_string().contains("application/x-foo"));
    }

    #[test]
    fn sniffing_recognizes_formats() {
        assert_eq!(Compression::sniff(&gzip(b"x")).unwrap(), Compression::Gzip);
        let z = zstd::encode_all(&b"hello"[..], 1).unwrap();
        assert_eq!(Compression::sniff(&z).unwrap(), Compression::Zstd);
        assert_eq!(Compression::sniff(b"plain").unwrap(), Compression::None);
        assert!(Compression::sniff(b"BZh91AY").is_err());
        assert!(Compression::sniff(&[0xfd, b'7', b'z', b'X', b'Z', 0]).is_err());
    }

    #[test]
    fn decompression_round_trips_and_reports_truncation() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let gz = gzip(&data);
        let mut out = Vec::new();
        decompress(&gz[..], Compression::Gzip)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let mut out = Vec::new();
        let err = decompress(&gz[..gz.len() / 2], Compression::Gzip)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

        let z = zstd::encode_all(&data[..], 3).unwrap();
        let mut out = Vec::new();
        decompress(&z[..], Compression::Zstd)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let mut out = Vec::new();
        assert!(decompress(&z[..z.len() / 2], Compression::Zstd)
            .unwrap()
            .read_to_end(&mut out)
            .is_err());
        let mut corrupt = z.clone();
        let mid = corrupt.len() / 2;
        corrupt[mid] ^= 0xff;
        // Without a frame checksum a flipped byte may decode to other bytes instead of failing:
        // the diff id check after decompression is what catches that.
        let mut out = Vec::new();
        let result = decompress(&corrupt[..], Compression::Zstd)
            .unwrap()
            .read_to_end(&mut out);
        assert!(result.is_err() || out != data);
    }
}
