//! The body encoding: little-endian integers, length-prefixed byte strings and lists.
//!
//! Every read is bounded by the body it reads from, so a hostile length can neither read past the
//! frame nor make the decoder allocate more than the frame's own size.

use super::DecodeError;

/// Appends fields to a frame body.
#[derive(Default)]
pub struct BodyWriter {
    pub(crate) buf: Vec<u8>,
}

impl BodyWriter {
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    /// A length-prefixed byte string. Lengths past `u32::MAX` cannot fit in a frame anyway: the
    /// frame size check rejects the body before it is sent.
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(v);
    }

    pub(crate) fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    pub(crate) fn str_list(&mut self, v: &[String]) {
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        for s in v {
            self.str(s);
        }
    }

    /// The rest of the body, unprefixed (data frames).
    pub(crate) fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
}

/// Reads fields from a frame body, naming the field in every error.
pub(crate) struct BodyReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BodyReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        BodyReader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let remaining = self.buf.len() - self.pos;
        if n > remaining {
            return Err(DecodeError::Truncated { field });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::InvalidValue {
                field,
                value: u64::from(value),
            }),
        }
    }

    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(field)? as usize;
        self.take(len, field)
    }

    pub(crate) fn str(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let raw = self.bytes(field)?;
        let s = std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 { field })?;
        if s.contains('\0') {
            return Err(DecodeError::NulByte { field });
        }
        Ok(s.to_owned())
    }

    pub(crate) fn str_list(&mut self, field: &'static str) -> Result<Vec<String>, DecodeError> {
        let count = self.u32(field)? as usize;
        // Each entry takes at least its 4-byte length, so a count the body cannot hold is a lie:
        // reject it before allocating anything for it.
        if count > (self.buf.len() - self.pos) / 4 {
            return Err(DecodeError::Truncated { field });
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(self.str(field)?);
        }
        Ok(out)
    }

    /// Everything left in the body (data frames).
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    /// Fails when the body holds bytes no field accounts for.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        let extra = self.buf.len() - self.pos;
        if extra != 0 {
            return Err(DecodeError::TrailingBytes { count: extra });
        }
        Ok(())
    }
}
