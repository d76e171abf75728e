//! Checks a layer's uncompressed content against its diff id while it downloads: the
//! compressed chunks go through a channel to a thread that decompresses and hashes them, so the
//! check runs beside the transfer instead of after it. The store keeps its rule that a
//! recorded image's layers match their diff ids (the EROFS cache is keyed by them).

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::image::digest::{Digest, Hasher};
use crate::image::layer::{self, Compression};

/// How many chunks may wait for the decompressing thread.
const QUEUE: usize = 16;

/// A running diff id check.
pub struct DiffCheck {
    tx: Option<SyncSender<Vec<u8>>>,
    handle: Option<JoinHandle<io::Result<Digest>>>,
}

impl DiffCheck {
    pub fn start(compression: Compression) -> DiffCheck {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let handle = std::thread::Builder::new()
            .name("nook-diff-id".into())
            .spawn(move || {
                let reader = ChannelReader {
                    rx,
                    chunk: Vec::new(),
                    pos: 0,
                };
                let decompressed = layer::decompress(
                    io::BufReader::with_capacity(256 * 1024, reader),
                    compression,
                )
                .map_err(io::Error::other)?;
                // Large reads: the decoder's per-call cost matters at hundreds of MB/s.
                let mut decompressed = decompressed;
                let mut hasher = Hasher::default();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    match decompressed.read(&mut buf) {
                        Ok(0) => return Ok(hasher.finish()),
                        Ok(n) => hasher.update(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            })
            .expect("cannot start the diff id thread");
        DiffCheck {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    /// Feeds the next compressed bytes (ignored once the decompressor has failed: `finish`
    /// reports why).
    pub fn feed(&self, data: &[u8]) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(data.to_vec());
        }
    }

    /// Ends the stream and returns the uncompressed content's digest.
    pub fn finish(mut self) -> io::Result<Digest> {
        drop(self.tx.take());
        let handle = self.handle.take().expect("finish is called once");
        handle
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the decompressing thread panicked")))
    }
}

impl Drop for DiffCheck {
    fn drop(&mut self) {
        // Abandoned: close the stream and let the thread end.
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn digests_the_uncompressed_stream_fed_in_pieces() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&data).unwrap();
        let gz = e.finish().unwrap();
        let check = DiffCheck::start(Compression::Gzip);
        for piece in gz.chunks(1000) {
            check.feed(piece);
        }
        assert_eq!(check.finish().unwrap(), Digest::of(&data));
        let check = DiffCheck::start(Compression::Gzip);
        check.feed(&gz[..gz.len() / 2]);
        assert!(check.finish().is_err(), "a cut stream fails");
        let check = DiffCheck::start(Compression::None);
        check.feed(b"abc");
        assert_eq!(check.finish().unwrap(), Digest::of(b"abc"));
        drop(DiffCheck::start(Compression::Zstd));
    }
}
