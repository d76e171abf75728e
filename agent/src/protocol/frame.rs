//! Framing: `len: u32 LE | kind: u8 | stream: u32 LE | body[len]`.
//!
//! The decoder is incremental (bytes go in as they arrive, frames come out) and never trusts a
//! length: a body larger than [`MAX_BODY`] poisons the connection, because nothing after it can be
//! framed with confidence; a well-framed body of an unknown kind or with a malformed layout is
//! dropped on its own and reported, and decoding goes on with the next frame.

use std::io::{self, Read, Write};

use super::messages::Message;
use super::wire::BodyWriter;
use super::{DecodeError, MAX_BODY};

/// Bytes before the body.
pub const HEADER_LEN: usize = 9;

/// A decoded frame: the stream it belongs to and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<M> {
    pub stream: u32,
    pub message: M,
}

/// A frame that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("frame on stream {stream} was rejected: {error}")]
pub struct FrameError {
    /// The stream named in the rejected frame's header (0 when the header itself was bad).
    pub stream: u32,
    pub error: DecodeError,
}

impl FrameError {
    /// Whether the connection can go on after this error.
    pub fn is_fatal(&self) -> bool {
        matches!(self.error, DecodeError::Oversized { .. })
    }
}

/// Encodes one frame.
pub fn encode_frame<M: Message>(stream: u32, message: &M) -> Result<Vec<u8>, EncodeError> {
    let mut body = BodyWriter {
        buf: vec![0; HEADER_LEN],
    };
    message.encode_body(&mut body);
    let mut buf = body.buf;
    let len = buf.len() - HEADER_LEN;
    if len > MAX_BODY {
        return Err(EncodeError::TooLarge {
            kind: message.kind(),
            len,
        });
    }
    buf[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[4] = message.kind();
    buf[5..9].copy_from_slice(&stream.to_le_bytes());
    Ok(buf)
}

/// A message that cannot be framed.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(
        "a frame of kind {kind:#04x} would carry {len} bytes, more than the {MAX_BODY}-byte limit"
    )]
    TooLarge { kind: u8, len: usize },
}

/// Turns a byte stream into frames, incrementally.
#[derive(Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    poisoned: Option<FrameError>,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes received from the peer.
    pub fn push(&mut self, data: &[u8]) {
        if self.poisoned.is_some() {
            return;
        }
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet part of a complete frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed. After a fatal error every
    /// call returns that error again.
    pub fn next_frame<M: Message>(&mut self) -> Result<Option<Frame<M>>, FrameError> {
        if let Some(err) = &self.poisoned {
            return Err(err.clone());
        }
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_le_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        let kind = avail[4];
        let stream = u32::from_le_bytes([avail[5], avail[6], avail[7], avail[8]]);
        if len > MAX_BODY {
            let err = FrameError {
                stream,
                error: DecodeError::Oversized {
                    len: len as u64,
                    max: MAX_BODY,
                },
            };
            self.poisoned = Some(err.clone());
            self.buf = Vec::new();
            self.start = 0;
            return Err(err);
        }
        if avail.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let body = &avail[HEADER_LEN..HEADER_LEN + len];
        let result = M::decode_body(kind, body);
        self.start += HEADER_LEN + len;
        match result {
            Ok(message) => Ok(Some(Frame { stream, message })),
            Err(error) => Err(FrameError { stream, error }),
        }
    }
}

/// An error reading frames from a byte stream.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading from the agent channel failed")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the agent channel closed in the middle of a frame ({pending} bytes pending)")]
    TruncatedStream { pending: usize },
}

/// Reads frames from a blocking byte stream.
pub struct FrameReader<R> {
    inner: R,
    decoder: FrameDecoder,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            decoder: FrameDecoder::new(),
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream (between frames). A rejected frame is
    /// returned as an error; unless it is fatal ([`FrameError::is_fatal`]), reading may go on.
    pub fn read_frame<M: Message>(&mut self) -> Result<Option<Frame<M>>, ReadError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            let n = match self.inner.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                let pending = self.decoder.pending();
                if pending == 0 {
                    return Ok(None);
                }
                return Err(ReadError::TruncatedStream { pending });
            }
            self.decoder.push(&chunk[..n]);
        }
    }
}

/// An error writing a frame.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("writing to the agent channel failed")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Writes whole frames to a byte stream.
pub struct FrameWriter<W> {
    inner: W,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        FrameWriter { inner }
    }

    /// Writes bytes outside any frame (the sync marker).
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.inner.write_all(bytes)?;
        self.inner.flush()?;
        Ok(())
    }

    /// Writes one frame in full.
    pub fn send<M: Message>(&mut self, stream: u32, message: &M) -> Result<(), WriteError> {
        let buf = encode_frame(stream, message)?;
        self.inner.write_all(&buf)?;
        self.inner.flush()?;
        Ok(())
    }
}
