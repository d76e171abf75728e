//! The backend's wire format (passt's and qemu's `-netdev stream`): every Ethernet frame is a
//! 4-byte big-endian length followed by the frame, without a virtio-net header.
//!
//! [`FrameReader`] takes frames out of a non-blocking stream socket with one fixed buffer: a
//! frame may arrive in pieces, a frame longer than [`MAX_FRAME`] is skipped as it streams by
//! rather than buffered, and nothing is read while the buffered frame waits for the guest.

use std::io::{self, Read};

/// Largest Ethernet frame carried (the 16-bit length passt uses; MTU 65520 plus the header
/// fits).
pub const MAX_FRAME: usize = 65535;
/// An Ethernet header: no shorter frame is real.
pub const ETH_HLEN: usize = 14;
/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;
/// Size of the reader's buffer: two largest frames, so one can complete behind another.
const BUF_BYTES: usize = 2 * (LEN_BYTES + MAX_FRAME);

/// What the reader found at the head of its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole frame, available through [`FrameReader::frame`] until [`FrameReader::consume`].
    Frame,
    /// A frame longer than [`MAX_FRAME`] (its length): being skipped.
    Oversized(u32),
    /// A frame shorter than an Ethernet header (its length): being skipped.
    Runt(u32),
    /// No whole frame buffered: read more.
    NeedMore,
}

/// Splits a byte stream into frames.
pub struct FrameReader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Bytes of a dropped frame still to skip.
    skip: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self {
            buf: vec![0u8; BUF_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            skip: 0,
        }
    }

    /// Looks at the next frame; drops (and reports) frames the guest must never see.
    pub fn parse(&mut self) -> Parsed {
        if self.skip > 0 {
            let n = self.skip.min(self.end - self.start);
            self.start += n;
            self.skip -= n;
            if self.skip > 0 {
                self.start = 0;
                self.end = 0;
                return Parsed::NeedMore;
            }
        }
        let avail = self.end - self.start;
        if avail < LEN_BYTES {
            return Parsed::NeedMore;
        }
        let mut len = [0u8; LEN_BYTES];
        len.copy_from_slice(&self.buf[self.start..self.start + LEN_BYTES]);
        let len = u32::from_be_bytes(len);
        let n = len as usize;
        if !(ETH_HLEN..=MAX_FRAME).contains(&n) {
            self.start += LEN_BYTES;
            self.skip = n;
            return if n > MAX_FRAME {
                Parsed::Oversized(len)
            } else {
                Parsed::Runt(len)
            };
        }
        if avail < LEN_BYTES + n {
            return Parsed::NeedMore;
        }
        Parsed::Frame
    }

    fn frame_len(&self) -> usize {
        let mut len = [0u8; LEN_BYTES];
        len.copy_from_slice(&self.buf[self.start..self.start + LEN_BYTES]);
        u32::from_be_bytes(len) as usize
    }

    /// The frame [`Self::parse`] returned [`Parsed::Frame`] for.
    pub fn frame(&self) -> &[u8] {
        let at = self.start + LEN_BYTES;
        &self.buf[at..at + self.frame_len()]
    }

    /// Drops the frame [`Self::parse`] returned [`Parsed::Frame`] for.
    pub fn consume(&mut self) {
        self.start += LEN_BYTES + self.frame_len();
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Bytes buffered and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Reads once from `source` into the free space (after [`Parsed::NeedMore`]). `Ok(0)` is
    /// the end of the stream; WouldBlock passes through.
    pub fn fill(&mut self, source: &mut impl Read) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // After NeedMore the partial frame is shorter than the buffer: there is room.
        let n = source.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }
}

/// Appends the length prefix of a frame of `len` bytes (at most [`MAX_FRAME`]).
pub fn push_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u32).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            push_len(&mut out, f.len());
            out.extend_from_slice(f);
        }
        out
    }

    /// A reader that hands out `chunk` bytes per read, then WouldBlock.
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.chunk.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn drain(reader: &mut FrameReader, source: &mut impl Read) -> Vec<Result<Vec<u8>, Parsed>> {
        let mut got = Vec::new();
        loop {
            match reader.parse() {
                Parsed::Frame => {
                    got.push(Ok(reader.frame().to_vec()));
                    reader.consume();
                }
                Parsed::NeedMore => match reader.fill(source) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                },
                dropped => got.push(Err(dropped)),
            }
        }
        got
    }

    #[test]
    fn frames_arriving_byte_by_byte_come_out_whole() {
        let a = [0xaa; 60];
        let b: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        let wire = framed(&[&a, &b]);
        for chunk in [1, 3, 7, 64, 1 << 20] {
            let mut r = FrameReader::new();
            let got = drain(&mut r, &mut Trickle { data: &wire, chunk });
            assert_eq!(got, vec![Ok(a.to_vec()), Ok(b.clone())], "chunk {chunk}");
            assert_eq!(r.buffered(), 0);
        }
    }

    #[test]
    fn oversized_and_runt_frames_are_skipped_without_buffering() {
        let big = vec![7u8; MAX_FRAME + 1];
        let max = vec![8u8; MAX_FRAME];
        let ok = [9u8; 64];
        let mut wire = framed(&[&big, &[1, 2, 3], &max, &ok]);
        // A length claiming 4 GiB at the very end: skipping it must not allocate anything.
        wire.extend_from_slice(&u32::MAX.to_be_bytes());
        wire.extend_from_slice(&[0u8; 100]);
        let mut r = FrameReader::new();
        let got = drain(
            &mut r,
            &mut Trickle {
                data: &wire,
                chunk: 5000,
            },
        );
        assert_eq!(
            got,
            vec![
                Err(Parsed::Oversized(MAX_FRAME as u32 + 1)),
                Err(Parsed::Runt(3)),
                Ok(max),
                Ok(ok.to_vec()),
                Err(Parsed::Oversized(u32::MAX)),
            ]
        );
        assert_eq!(r.buffered(), 0);
        assert_eq!(r.skip, u32::MAX as usize - 100);
    }
}
