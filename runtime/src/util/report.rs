//! The report a child process sends its parent over a close-on-exec pipe before it runs its
//! workload: end of file with no message means it got as far as `execve`; otherwise a
//! docker-style exit code and a sentence say why it gave up. The namespace column's children
//! and the detached monitor use it.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

/// Why a child gave up before running its workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildFailure {
    /// 125 (set-up), 126 (not executable) or 127 (not found), as docker.
    pub code: i32,
    pub message: String,
}

impl ChildFailure {
    pub fn setup(message: impl Into<String>) -> Self {
        ChildFailure {
            code: 125,
            message: message.into(),
        }
    }
}

/// Writes `failure` to the report pipe and ends the child without running any Rust exit
/// handlers (they belong to the parent's copy of the program).
pub fn fail_child(report: &OwnedFd, failure: &ChildFailure) -> ! {
    write_report(report, failure.code, &failure.message);
    // SAFETY: ends the child without the parent's exit handlers.
    unsafe { libc::_exit(failure.code) }
}

/// Writes a report (a docker-style code, then a sentence) to `fd`. One write, so that it is
/// async-signal-safe; a short or failed write only loses the message.
pub fn write_report(fd: &OwnedFd, code: i32, message: &str) {
    let mut msg = code.to_le_bytes().to_vec();
    msg.extend_from_slice(message.as_bytes());
    // SAFETY: msg is a valid buffer of msg.len() bytes.
    unsafe { libc::write(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len()) };
}

/// Reads a child's report: None when the pipe closed without one.
pub fn read_report(report: OwnedFd) -> Option<ChildFailure> {
    let mut buf = Vec::new();
    let _ = std::fs::File::from(report).read_to_end(&mut buf);
    if buf.len() < 4 {
        return None;
    }
    let code = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    Some(ChildFailure {
        code,
        message: String::from_utf8_lossy(&buf[4..]).into_owned(),
    })
}
