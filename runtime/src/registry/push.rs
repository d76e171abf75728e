//! `nook push`: the image's layers and config (each skipped if the registry has it, checked
//! with `HEAD`), then its manifest, byte for byte as stored, so the registry's digest is the
//! store's.

use std::io::{self, Read};

use ureq::http::Method;
use ureq::SendBody;

use crate::image::digest::Digest;
use crate::image::layer::OCI_MANIFEST;
use crate::image::reference::Reference;
use crate::image::store::descriptor_digest;
use crate::image::Store;
use crate::util::lock::LockMode;

use super::auth::query_escape;
use super::client::{self, Client, Request};
use super::credentials::AuthFiles;
use super::download::BlobRef;
use super::endpoint::Endpoint;
use super::error::RegistryError;
use super::progress::{Progress, Task};
use super::session::Session;
use super::workers;

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub tls_verify: Option<bool>,
    pub auth: AuthFiles,
}

/// What a push did.
#[derive(Debug)]
pub struct Pushed {
    pub tag: String,
    pub digest: Digest,
    pub size: u64,
}

/// Pushes the local image tagged `reference` to its registry.
pub fn push(
    store: &Store,
    client: &Client,
    reference: &Reference,
    options: &PushOptions,
    progress: &Progress,
) -> Result<Pushed, RegistryError> {
    let _lock = store.lock_store(LockMode::Shared)?;
    let image = store
        .images()?
        .into_iter()
        .find(|i| i.tags.contains(reference))
        .ok_or_else(|| RegistryError::NotLocal(reference.familiar()))?;
    let endpoint = Endpoint::new(reference.domain(), options.tls_verify);
    let cred = options
        .auth
        .lookup(reference.domain(), reference.path())?
        .map(|(c, _)| c);
    progress.line(&format!(
        "The push refers to repository [{}]",
        reference.familiar_name()
    ));
    let session = Session::open(client, &endpoint, reference.path(), Some("pull,push"), cred)?;
    let name = image.display_name();
    let mut blobs = Vec::new();
    // Top layer first, as docker lists them; the config last.
    for d in image.manifest.layers().iter().rev() {
        blobs.push(BlobRef {
            digest: descriptor_digest(d, &format!("the layers of image {name}"))?,
            size: d.size(),
            layer: None,
        });
    }
    let tasks: Vec<(BlobRef, Task)> = blobs
        .into_iter()
        .map(|b| {
            let t = progress.task(&b.digest, b.size);
            t.status("Preparing");
            (b, t)
        })
        .collect();
    workers::for_each(&tasks, workers::PARALLEL, |(blob, task)| {
        if blob_exists(&session, &blob.digest)? {
            task.finish("Layer already exists");
        } else {
            upload(&session, store, blob, task)?;
            task.finish("Pushed");
        }
        Ok::<(), RegistryError>(())
    })?;
    drop(tasks);
    let config = BlobRef {
        digest: image.config_digest.clone(),
        size: image.manifest.config().size(),
        layer: None,
    };
    if !blob_exists(&session, &config.digest)? {
        let quiet = Progress::new(super::progress::Mode::Quiet, Box::new(io::sink()));
        upload(
            &session,
            store,
            &config,
            &quiet.task(&config.digest, config.size),
        )?;
    }

    let bytes = store.read_blob(&image.manifest_digest)?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_string))
        .unwrap_or_else(|| OCI_MANIFEST.to_string());
    let tag = reference
        .tag()
        .unwrap_or(crate::image::reference::DEFAULT_TAG)
        .to_string();
    let what = format!("PUT manifest {tag}");
    let req = Request::new(Method::PUT, session.repo_url(&format!("manifests/{tag}")))
        .header("Content-Type", media_type)
        .body(&bytes);
    let resp = session.send(req, &what)?;
    if !resp.status().is_success() {
        return Err(session.status_error(resp, &what));
    }
    Ok(Pushed {
        tag,
        digest: image.manifest_digest.clone(),
        size: bytes.len() as u64,
    })
}

/// Whether the repository already has the blob.
fn blob_exists(session: &Session, digest: &Digest) -> Result<bool, RegistryError> {
    let what = format!("HEAD blob {digest}");
    let req = Request::new(Method::HEAD, session.repo_url(&format!("blobs/{digest}")));
    let resp = session.send(req, &what)?;
    match resp.status().as_u16() {
        200 => Ok(true),
        404 => Ok(false),
        _ => Err(session.status_error(resp, &what)),
    }
}

/// Uploads one blob monolithically (`POST` an upload session, `PUT` the bytes with the digest);
/// a failed attempt starts a new session, up to the client's attempts.
fn upload(
    session: &Session,
    store: &Store,
    blob: &BlobRef,
    task: &Task,
) -> Result<(), RegistryError> {
    let attempts = session.client.attempts();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match upload_once(session, store, blob, task) {
            Ok(()) => return Ok(()),
            Err(Retry::No(e)) => return Err(*e),
            Err(Retry::Yes(e)) if attempt >= attempts => return Err(*e),
            Err(Retry::Yes(_)) => std::thread::sleep(session.client.backoff(attempt)),
        }
    }
}

/// A failed attempt, and whether a new one may succeed.
enum Retry {
    Yes(Box<RegistryError>),
    No(Box<RegistryError>),
}

fn upload_once(session: &Session, store: &Store, blob: &BlobRef, task: &Task) -> Result<(), Retry> {
    let repo = &session.repo;
    let what = format!("upload of blob {}", blob.digest);
    let start = Request::new(Method::POST, session.repo_url("blobs/uploads/"))
        .header("Content-Length", "0");
    let resp = session.send(start, &what).map_err(|e| match e {
        RegistryError::ServerError { .. } | RegistryError::Transport { .. } => {
            Retry::Yes(Box::new(e))
        }
        e => Retry::No(Box::new(e)),
    })?;
    if resp.status().as_u16() != 202 {
        return Err(Retry::No(Box::new(session.status_error(resp, &what))));
    }
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| {
            Retry::No(Box::new(RegistryError::BadLocation {
                registry: repo.registry.clone(),
                location: String::new(),
            }))
        })?;
    let mut url = session.absolute(&location);
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(&format!(
        "digest={}",
        query_escape(&blob.digest.to_string())
    ));

    let file = store
        .open_blob(&blob.digest)
        .map_err(|e| Retry::No(Box::new(e.into())))?;
    task.status("Pushing");
    task.set_position(0);
    let mut reader = Counting { inner: file, task };
    let mut put = session
        .client
        .agent(session.insecure())
        .put(&url)
        .header("Content-Type", "application/octet-stream")
        .header("Content-Length", blob.size.to_string());
    if let Some(a) = session.authorization() {
        put = put.header("Authorization", a);
    }
    let resp = put.send(SendBody::from_reader(&mut reader)).map_err(|e| {
        let retry = client::retryable_error(&e);
        let err = RegistryError::Transport {
            repo: repo.clone(),
            what: what.clone(),
            attempts: 1,
            source: Box::new(e),
        };
        if retry {
            Retry::Yes(Box::new(err))
        } else {
            Retry::No(Box::new(err))
        }
    })?;
    let status = resp.status().as_u16();
    if status == 201 {
        return Ok(());
    }
    let err = session.status_error(resp, &what);
    if client::retryable_status(status) {
        Err(Retry::Yes(Box::new(err)))
    } else {
        Err(Retry::No(Box::new(err)))
    }
}

/// Reports the bytes read through it to a progress task.
struct Counting<'a, 'b, R> {
    inner: R,
    task: &'a Task<'b>,
}

impl<R: Read> Read for Counting<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.task.inc(n as u64);
        Ok(n)
    }
}
