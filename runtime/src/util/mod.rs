//! Small pieces several parts of nook use: file locks, atomic file replacement,
//! descriptors, the start-up report of a child process and SIGPIPE's disposition.

pub mod atomic;
pub mod fd;
pub mod lock;
pub mod report;
pub mod sigpipe;

/// The 12-digit form of a container id that `ps` shows and socket names use.
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}
