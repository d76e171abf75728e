//! Telling a bad input from a failing store while `import` and `load` stream an archive into
//! the store, and keeping raw input bytes out of error messages.
//!
//! A write error (a full disk, say) surfaces in a read pipeline as a read error of the tar or
//! decompression layer above it, which would then be reported as "corrupt or truncated data";
//! [`WriteWatch`] records it so the caller reports the store instead. Errors of the tar reader
//! quote header fields of the input, which for random bytes are raw binary; [`printable`]
//! escapes them.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::rc::Rc;

/// Why writing into the store failed.
#[derive(Debug, thiserror::Error)]
pub struct StoreWriteError {
    /// The store directory being written.
    pub dir: PathBuf,
    #[source]
    pub source: io::Error,
}

impl fmt::Display for StoreWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_disk_full(&self.source) {
            write!(
                f,
                "the disk holding {} is full (free some space, then retry)",
                self.dir.display()
            )
        } else {
            write!(f, "cannot write into {}", self.dir.display())
        }
    }
}

/// Whether `e` says the file system (or the user's quota on it) has no room left.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(
            e.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
}

/// The first write error seen by a [`WriteWatch`], shared with whoever reports it.
#[derive(Clone, Default)]
pub struct WriteFailure(Rc<RefCell<Option<io::Error>>>);

impl WriteFailure {
    /// The recorded failure, as an error naming `dir`, if a write failed.
    pub fn take(&self, dir: impl Into<PathBuf>) -> Option<StoreWriteError> {
        self.0.borrow_mut().take().map(|source| StoreWriteError {
            dir: dir.into(),
            source,
        })
    }

    /// Records `e` (the first one is kept) and returns an error to pass up the pipeline.
    pub fn record(&self, e: io::Error) -> io::Error {
        let passed = io::Error::new(e.kind(), format!("writing into the store failed: {e}"));
        self.0.borrow_mut().get_or_insert(e);
        passed
    }
}

/// A writer whose failures are recorded in a [`WriteFailure`].
pub struct WriteWatch<W> {
    pub inner: W,
    pub failure: WriteFailure,
}

impl<W: Write> Write for WriteWatch<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).map_err(|e| self.failure.record(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|e| self.failure.record(e))
    }
}

/// The longest message [`printable`] keeps of an error that quotes binary input.
const QUOTE_MAX: usize = 200;

/// `e`, or when its message (or a cause's) quotes binary input (control characters, or bytes
/// that were not UTF-8), that message with each such character as `?`, cut at 200 characters,
/// so it prints as one short readable line.
pub fn printable(e: io::Error) -> io::Error {
    let binary = |c: char| c.is_control() || c == char::REPLACEMENT_CHARACTER;
    let text = crate::errors::chain(&e);
    if !text.chars().any(binary) {
        return e;
    }
    let mut clean: String = text
        .chars()
        .take(QUOTE_MAX)
        .map(|c| if binary(c) { '?' } else { c })
        .collect();
    if text.chars().count() > QUOTE_MAX {
        clean.push_str("...");
    }
    io::Error::new(e.kind(), clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_clean_errors_kept() {
        let e = printable(io::Error::other(
            "bad field \u{1b}[2J\u{0}\u{fffd}x when reading y",
        ));
        assert_eq!(e.to_string(), "bad field ?[2J??x when reading y");
        let long = printable(io::Error::other(format!("\u{1}{}", "x".repeat(500))));
        assert_eq!(long.to_string().len(), QUOTE_MAX + 3);
        let clean = printable(io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(clean.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn a_failed_write_is_recorded_and_named_as_a_full_disk() {
        let failure = WriteFailure::default();
        let mut w = WriteWatch {
            inner: Full,
            failure: failure.clone(),
        };
        let passed = w.write(b"x").unwrap_err();
        assert!(passed.to_string().contains("writing into the store failed"));
        let err = failure.take("/store/tmp").unwrap();
        assert_eq!(
            err.to_string(),
            "the disk holding /store/tmp is full (free some space, then retry)"
        );
        assert!(failure.take("/store/tmp").is_none());
    }

    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
