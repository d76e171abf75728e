//! `nook cp` inside the guest: the container side of a copy, with the agent crate's one copy
//! implementation ([`crate::copy`]) scoped to the container's root exactly as the namespace
//! column's (every path resolved with `openat2(RESOLVE_IN_ROOT)`, read with `O_NOFOLLOW`
//! through the walker, written through a `Sink`).
//!
//! Each copy runs on its own thread, so the supervision loop keeps relaying stdio meanwhile. A
//! `CopyOut` tar goes out in `CopyData` frames (whole under the writer's lock, never
//! interleaved). A `CopyIn` tar comes in through a bounded queue the loop fills: when the
//! writing thread falls behind, the loop waits, and with it the channel (the host's writes
//! block): the guest never holds more than a few frames of a large copy in memory.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};

use super::{send, SharedWriter, SupervisorError};
use crate::copy::{self, CopyError, CopyInfo, Owners, Source};
use crate::layer::{ChunkSink, TarWriter};
use crate::protocol::{ErrorKind, GuestMessage};

/// Frames of a `CopyIn` queued for its writing thread.
const IN_QUEUE: usize = 16;

/// The `CopyIn` streams in progress: where their data goes (none once the copy failed: the
/// rest of its data is dropped until its `CopyEnd`).
#[derive(Default)]
pub(super) struct Inbound {
    streams: HashMap<u32, Option<SyncSender<Vec<u8>>>>,
}

impl Inbound {
    pub(super) fn has(&self, stream: u32) -> bool {
        self.streams.contains_key(&stream)
    }

    /// Hands a piece of the stream's tar to its writer (waiting while its queue is full).
    pub(super) fn data(&mut self, stream: u32, data: Vec<u8>) {
        if let Some(slot) = self.streams.get_mut(&stream) {
            if let Some(tx) = slot {
                if tx.send(data).is_err() {
                    *slot = None;
                }
            }
        }
    }

    /// The stream's tar is complete: its writer sees the end and answers.
    pub(super) fn end(&mut self, stream: u32) {
        self.streams.remove(&stream);
    }
}

fn fail(writer: &SharedWriter, stream: u32, e: &CopyError) {
    let _ = send(
        writer,
        stream,
        &GuestMessage::Error {
            kind: ErrorKind::Copy,
            message: crate::errors::chain(e),
        },
    );
}

fn open_root(root: &Path) -> Result<std::os::fd::OwnedFd, CopyError> {
    copy::fs::open_path(root, libc::O_PATH | libc::O_DIRECTORY).map_err(|source| CopyError::Open {
        path: root.to_string_lossy().into_owned(),
        place: "",
        source,
    })
}

/// `CopyOut`: sends the source's info, then its tar, then `CopyEnd` (or an `Error`).
pub(super) fn copy_out(
    writer: &SharedWriter,
    stream: u32,
    root: PathBuf,
    path: String,
    follow: bool,
    rebased: bool,
) -> Result<(), SupervisorError> {
    let writer = SharedWriter::clone(writer);
    std::thread::Builder::new()
        .name("copy-out".into())
        .spawn(move || {
            let result = (|| {
                let root = open_root(&root)?;
                let source = Source::open(Some(root.as_fd()), &path, follow)?;
                send(
                    &writer,
                    stream,
                    &GuestMessage::CopySource(source.info().clone()),
                )
                .map_err(|e| CopyError::Walk(channel_gone(e)))?;
                let mut out = ChunkSink::new(|chunk: &[u8]| {
                    send(&writer, stream, &GuestMessage::CopyData(chunk.to_vec()))
                        .map_err(|e| io::Error::other(e.to_string()))
                });
                let mut tar = TarWriter::new(&mut out);
                if rebased {
                    source.send_rebased(&mut tar)?;
                } else {
                    source.send(&mut tar)?;
                }
                tar.finish()?;
                out.finish().map_err(|source| {
                    CopyError::Walk(crate::layer::LayerError::Write { source })
                })?;
                Ok(out.total())
            })();
            match result {
                Ok(bytes) => {
                    let _ = send(&writer, stream, &GuestMessage::CopyEnd { bytes });
                }
                Err(e) => fail(&writer, stream, &e),
            }
        })
        .map_err(SupervisorError::Channel)?;
    Ok(())
}

fn channel_gone(e: SupervisorError) -> crate::layer::LayerError {
    crate::layer::LayerError::Write {
        source: io::Error::other(e.to_string()),
    }
}

/// `CopyIn`: starts the thread that writes the stream's tar into the container as its
/// `CopyData` arrive; it answers `CopyEnd` (or an `Error`) once the tar is written.
pub(super) fn copy_in(
    inbound: &mut Inbound,
    writer: &SharedWriter,
    stream: u32,
    root: PathBuf,
    dst: String,
    archive: bool,
    source: Option<CopyInfo>,
) -> Result<(), SupervisorError> {
    let (tx, rx) = mpsc::sync_channel(IN_QUEUE);
    let writer = SharedWriter::clone(writer);
    std::thread::Builder::new()
        .name("copy-in".into())
        .spawn(move || {
            let owners = if archive {
                Owners::Keep
            } else {
                Owners::Writer
            };
            let result = open_root(&root).and_then(|root| {
                let mut input = Queued::new(rx);
                let bytes =
                    copy::into_container(root.as_fd(), &dst, owners, source.as_ref(), &mut input)?;
                // What follows the archive's end (a tar's zero padding) is read and dropped, so
                // the answer comes once the host sent everything.
                let _ = io::copy(&mut input, &mut io::sink());
                Ok(bytes)
            });
            match result {
                Ok(bytes) => {
                    let _ = send(&writer, stream, &GuestMessage::CopyEnd { bytes });
                }
                Err(e) => fail(&writer, stream, &e),
            }
        })
        .map_err(SupervisorError::Channel)?;
    inbound.streams.insert(stream, Some(tx));
    Ok(())
}

/// The `CopyData` of one stream as a byte stream; it ends at the stream's `CopyEnd`.
struct Queued {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Queued {
    fn new(rx: Receiver<Vec<u8>>) -> Self {
        Queued {
            rx,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl Read for Queued {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = c;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
