//! SHA-256 content digests (`sha256:<64 hex>`), the only algorithm the store writes, and the
//! readers/writers that compute them while data streams through.

use std::fmt;
use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

/// Why a string is not a `sha256:<hex>` digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest {0:?} has no algorithm prefix (expected sha256:<64 hex digits>)")]
    MissingAlgorithm(String),
    #[error(
        "digest {digest:?} uses the unsupported algorithm {algorithm:?} (only sha256 is supported)"
    )]
    UnsupportedAlgorithm { digest: String, algorithm: String },
    #[error("digest {0:?} is not 64 lowercase hexadecimal digits")]
    BadHex(String),
}

/// A SHA-256 digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let (algorithm, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::MissingAlgorithm(s.to_string()))?;
        if algorithm != "sha256" {
            return Err(DigestError::UnsupportedAlgorithm {
                digest: s.to_string(),
                algorithm: algorithm.to_string(),
            });
        }
        Self::from_hex(hex).map_err(|_| DigestError::BadHex(s.to_string()))
    }

    /// Accepts the bare 64-digit hex form.
    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::BadHex(hex.to_string()));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        let mut hasher = Hasher::default();
        hasher.update(data);
        hasher.finish()
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, as docker shows image ids.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl From<&Digest> for oci_spec::image::Digest {
    fn from(d: &Digest) -> Self {
        // A valid sha256 digest is always a valid OCI digest.
        oci_spec::image::Digest::try_from(d.to_string()).expect("sha256 digests are valid")
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = DigestError;
    fn try_from(d: &oci_spec::image::Digest) -> Result<Self, Self::Error> {
        Digest::parse(d.as_ref())
    }
}

/// An incremental SHA-256.
#[derive(Default, Clone)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }

    /// Number of bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        let bytes = self.inner.finalize();
        let mut hex = String::with_capacity(64);
        for b in bytes {
            hex.push_str(&format!("{b:02x}"));
        }
        Digest { hex }
    }
}

/// A reader that hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::default(),
        }
    }

    /// Reads the rest of the stream, then returns the digest and size of all of it.
    pub fn drain(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        let len = self.hasher.len();
        Ok((self.hasher.finish(), len))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that hashes everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::default(),
        }
    }

    pub fn finish(self) -> (W, Digest, u64) {
        let len = self.hasher.len();
        (self.inner, self.hasher.finish(), len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The OCI chain id of a stack of layers given by their diff ids: the identity of the applied
/// filesystem, independent of how the layers were compressed.
pub fn chain_id(diff_ids: &[Digest]) -> Option<Digest> {
    let mut iter = diff_ids.iter();
    let mut chain = iter.next()?.clone();
    for diff in iter {
        chain = Digest::of(format!("{chain} {diff}").as_bytes());
    }
    Some(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_known_input() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // The OCI empty JSON blob `{}`.
        assert_eq!(
            Digest::of(b"{}").hex(),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn parse_rejects_bad_digests() {
        let hex = "a".repeat(64);
        assert_eq!(Digest::parse(&format!("sha256:{hex}")).unwrap().hex(), hex);
        assert!(matches!(
            Digest::parse(&hex),
            Err(DigestError::MissingAlgorithm(_))
        ));
        assert!(matches!(
            Digest::parse(&format!("sha512:{hex}")),
            Err(DigestError::UnsupportedAlgorithm { .. })
        ));
        assert!(matches!(
            Digest::parse("sha256:abc"),
            Err(DigestError::BadHex(_))
        ));
        assert!(matches!(
            Digest::parse(&format!("sha256:{}", "A".repeat(64))),
            Err(DigestError::BadHex(_))
        ));
    }

    #[test]
    fn hashing_reader_and_writer_agree() {
        let data = vec![7u8; 100_000];
        let (digest, len) = HashingReader::new(&data[..]).drain().unwrap();
        assert_eq!(len, 100_000);
        assert_eq!(digest, Digest::of(&data));
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(&data).unwrap();
        let (out, d2, n2) = w.finish();
        assert_eq!((out, d2, n2), (data.clone(), digest, 100_000));
    }

    #[test]
    fn chain_id_follows_the_oci_definition() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        assert_eq!(chain_id(&[]), None);
        assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a.clone()));
        let expected = Digest::of(format!("{a} {b}").as_bytes());
        assert_eq!(chain_id(&[a, b]), Some(expected));
    }

    #[test]
    fn converts_to_and_from_oci_spec() {
        let d = Digest::of(b"x");
        let oci: oci_spec::image::Digest = (&d).into();
        assert_eq!(Digest::try_from(&oci).unwrap(), d);
    }
}
