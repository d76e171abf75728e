//! A buffered, append-only writer over the output file that knows its own position.
//!
//! Positioned writes (`pwrite`) keep the image independent of the file's cursor, and the
//! superblock, known only at the end, is written in place into block 0.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::format::BLOCK;

const BUFFER: usize = 1 << 20;

pub struct Output<'f> {
    /// None: nothing is written, positions are only counted (see [`Output::discard`]).
    file: Option<&'f File>,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    start: u64,
}

impl<'f> Output<'f> {
    /// Starts after block 0, which is reserved for the superblock.
    pub fn new(file: &'f File) -> Self {
        Self::with(Some(file))
    }

    /// An output that keeps nothing, for reading layers only to check them.
    pub fn discard() -> Self {
        Self::with(None)
    }

    fn with(file: Option<&'f File>) -> Self {
        let mut out = Output {
            file,
            buf: Vec::with_capacity(BUFFER),
            start: 0,
        };
        out.buf.resize(BLOCK as usize, 0);
        out
    }

    pub fn pos(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    /// Current position as a block number; callers only ask at block boundaries.
    pub fn block(&self) -> u64 {
        debug_assert_eq!(self.pos() % BLOCK, 0);
        self.pos() / BLOCK
    }

    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room = BUFFER - self.buf.len();
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == BUFFER {
                self.flush()?;
            }
        }
        Ok(())
    }

    pub fn zeros(&mut self, mut n: u64) -> io::Result<()> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            self.write(&ZEROS[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    pub fn pad_to(&mut self, align: u64) -> io::Result<()> {
        let pos = self.pos();
        self.zeros(pos.next_multiple_of(align) - pos)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(file) = self.file {
            file.write_all_at(&self.buf, self.start)?;
        }
        self.start += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Flushes, then writes `data` at `offset`, which must be before the current position.
    pub fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        self.flush()?;
        match self.file {
            Some(file) => file.write_all_at(data, offset),
            None => Ok(()),
        }
    }
}
