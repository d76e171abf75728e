//! Small pieces several parts of nook use: file locks, atomic file replacement,
//! descriptors and the start-up report of a child process.

pub mod atomic;
pub mod fd;
pub mod lock;
pub mod report;
