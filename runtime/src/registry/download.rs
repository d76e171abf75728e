//! One blob from a registry into the store: streamed to `tmp/partial-<hex>` with its sha256
//! computed on the way, renamed into `blobs/` only once the size and digest match. A cut
//! connection resumes from the partial file with a `Range` request, in this pull or the next;
//! a blob with the wrong content is deleted, never used.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ureq::http::Method;

use crate::image::digest::{Digest, Hasher};
use crate::image::layer::Compression;
use crate::image::Store;
use crate::util::lock::{FileLock, LockMode};

use super::client::Request;
use super::error::RegistryError;
use super::progress::Task;
use super::session::Session;
use super::verify::DiffCheck;

/// A blob a manifest names.
#[derive(Debug, Clone)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
    /// For a layer: its compression and the diff id its uncompressed content must have.
    pub layer: Option<(Compression, Digest)>,
}

/// What happened to a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The store had it.
    Existed,
    /// Fetched; `resumed_from` bytes came from an earlier partial download.
    Downloaded { resumed_from: u64 },
}

/// Where the partial download of `digest` lives.
pub fn partial_path(store: &Store, digest: &Digest) -> PathBuf {
    store.tmp_dir().join(format!("partial-{}", digest.hex()))
}

/// Fetches `blob` into the store (the caller holds the store lock, shared).
pub fn download(
    session: &Session,
    store: &Store,
    blob: &BlobRef,
    task: &Task,
) -> Result<Outcome, RegistryError> {
    if store.has_blob(&blob.digest) {
        return Ok(Outcome::Existed);
    }
    // One writer per partial file, across processes.
    let _lock = FileLock::acquire(
        &store
            .locks_dir()
            .join(format!("blob-{}.lock", blob.digest.hex())),
        LockMode::Exclusive,
    )
    .map_err(crate::image::StoreError::from)?;
    if store.has_blob(&blob.digest) {
        return Ok(Outcome::Existed);
    }
    let path = partial_path(store, &blob.digest);
    let mut partial = Partial::open(&path, blob.size)?;
    let start_check = || blob.layer.as_ref().map(|(c, _)| DiffCheck::start(*c));
    let mut check = start_check();
    if let Some(check) = &check {
        feed_existing(&path, partial.len, check)?;
    }
    let resumed_from = partial.len;
    if resumed_from > 0 {
        task.status(&format!("Resuming at {resumed_from}"));
    } else {
        task.status("Downloading");
    }
    task.set_position(partial.len);
    let repo = &session.repo;
    let attempts = session.client.attempts();
    let mut last_io: Option<io::Error> = None;
    let mut attempt = 0;
    while partial.len < blob.size && attempt < attempts {
        attempt += 1;
        if attempt > 1 {
            std::thread::sleep(session.client.backoff(attempt - 1));
        }
        let what = format!("GET blob {}", blob.digest);
        let mut req = Request::new(
            Method::GET,
            session.repo_url(&format!("blobs/{}", blob.digest)),
        );
        if partial.len > 0 {
            req = req.header("Range", format!("bytes={}-", partial.len));
        }
        let resp = session.send(req, &what)?;
        match resp.status().as_u16() {
            200 => {
                partial.restart()?;
                check = start_check();
            }
            206 if content_range_start(&resp) == Some(partial.len) => {}
            // A range the server cannot serve, or one it answered wrong: start over.
            206 | 416 => {
                partial.restart()?;
                check = start_check();
                continue;
            }
            404 => {
                return Err(RegistryError::BlobUnknown {
                    repo: repo.clone(),
                    digest: blob.digest.clone(),
                })
            }
            _ => return Err(session.status_error(resp, &what)),
        }
        let mut body = resp.into_body().into_with_config().limit(u64::MAX).reader();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    last_io = Some(e);
                    break;
                }
            };
            if partial.len + n as u64 > blob.size {
                drop(partial);
                let _ = fs::remove_file(&path);
                return Err(RegistryError::BlobTooLong {
                    repo: repo.clone(),
                    digest: blob.digest.clone(),
                    expected: blob.size,
                });
            }
            partial.append(&buf[..n])?;
            if let Some(check) = &check {
                check.feed(&buf[..n]);
            }
            task.set_position(partial.len);
        }
    }
    if partial.len < blob.size {
        task.abandon("Download incomplete");
        return Err(match last_io {
            Some(source) => RegistryError::BlobRead {
                repo: repo.clone(),
                digest: blob.digest.clone(),
                attempts: attempt,
                source,
            },
            None => RegistryError::BlobTruncated {
                repo: repo.clone(),
                digest: blob.digest.clone(),
                got: partial.len,
                expected: blob.size,
            },
        });
    }
    task.status("Verifying Checksum");
    let actual = partial.hasher.clone().finish();
    drop(partial);
    if actual != blob.digest {
        let _ = fs::remove_file(&path);
        task.abandon("Checksum mismatch");
        return Err(RegistryError::BlobDigest {
            repo: repo.clone(),
            digest: blob.digest.clone(),
            actual,
        });
    }
    if let (Some(check), Some((_, diff_id))) = (check, &blob.layer) {
        let discard = |e: RegistryError| {
            let _ = fs::remove_file(&path);
            task.abandon("Layer corrupt");
            e
        };
        let actual = check.finish().map_err(|source| {
            discard(RegistryError::Decompress {
                repo: repo.clone(),
                digest: blob.digest.clone(),
                source,
            })
        })?;
        if &actual != diff_id {
            return Err(discard(RegistryError::DiffId {
                repo: repo.clone(),
                digest: blob.digest.clone(),
                diff_id: diff_id.clone(),
                actual,
            }));
        }
    }
    store.adopt_blob(&path, &blob.digest)?;
    Ok(Outcome::Downloaded { resumed_from })
}

/// Feeds the first `len` bytes of a kept partial file to a new diff id check.
fn feed_existing(path: &Path, len: u64, check: &DiffCheck) -> Result<(), RegistryError> {
    let mut file = File::open(path).map_err(io_err(path))?.take(len);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            return Ok(());
        }
        check.feed(&buf[..n]);
    }
}

/// The start of a `Content-Range: bytes START-END/TOTAL` header.
fn content_range_start(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let v = resp.headers().get("content-range")?.to_str().ok()?;
    let range = v.trim().strip_prefix("bytes")?.trim();
    range.split('-').next()?.trim().parse().ok()
}

/// The partial file of a download and the hash of its content so far.
struct Partial {
    path: PathBuf,
    file: File,
    hasher: Hasher,
    len: u64,
}

impl Partial {
    /// Opens (creating) the partial file and hashes what an earlier attempt left in it.
    fn open(path: &Path, size: u64) -> Result<Partial, RegistryError> {
        let err = io_err(path);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(err)?;
        let mut hasher = Hasher::default();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(io_err(path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let mut partial = Partial {
            path: path.to_path_buf(),
            file,
            len: hasher.len(),
            hasher,
        };
        if partial.len > size {
            partial.restart()?;
        }
        Ok(partial)
    }

    fn restart(&mut self) -> Result<(), RegistryError> {
        self.file.set_len(0).map_err(io_err(&self.path))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(io_err(&self.path))?;
        self.hasher = Hasher::default();
        self.len = 0;
        Ok(())
    }

    fn append(&mut self, data: &[u8]) -> Result<(), RegistryError> {
        self.file.write_all(data).map_err(io_err(&self.path))?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    }
}
