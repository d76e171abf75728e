//! The control channel of a running VM container: how `nook stop`, `kill`, `exec`, `diff`,
//! `commit`, `export`, `stats` and `top` reach the guest agent, whose one connection the container's monitor
//! holds.
//!
//! The monitor listens on a per-container Unix socket (next to where the agent socket was, see
//! [`super::socket_dir`]) and relays each request over the shared agent connection
//! ([`super::mux::Mux`]). The control socket speaks the agent's own framing (the same bounded,
//! fuzzed decoder): the client sends [`HostMessage`] frames, the monitor answers with
//! [`GuestMessage`] frames. One connection carries one request, named by its first frame:
//!
//! | first frame | meaning | answers |
//! |---|---|---|
//! | `Signal(n)` on stream 0 | signal the container's main process | `Exit(0)` on stream 0 once sent to the agent, or `Error` |
//! | `Checkpoint` on stream 0 | pause the agent's channel, then have the VMM write its snapshot and end | `Paused` on stream 0, or `Error` |
//! | `Exec(spec)` on stream 1 | run another process; then `Stdin`, `StdinClose`, `Resize`, `Signal` on stream 1 | `Started`, `Stdout`, `Stderr`, `Error`, `Exit` on stream 1 |
//! | `StreamUpper` on stream 1 | the writable layer as an OCI layer tar | `LayerData`..., `LayerEnd` or `Error` on stream 1 |
//! | `CopyOut` on stream 1 | `nook cp CONTAINER:SRC`: the source as a tar | `CopySource`, `CopyData`..., `CopyEnd` or `Error` on stream 1 |
//! | `CopyIn` on stream 1; then `CopyData`..., `CopyEnd` on stream 1 | `nook cp ... CONTAINER:DST`: a tar into the container | `CopyEnd` or `Error` on stream 1 |
//! | `Stats` on stream 1 | `nook stats`: the guest's counters | `Usage` or `Error` on stream 1 |
//! | `Top` on stream 1 | `nook top`: the container's processes in the guest | `Processes` or `Error` on stream 1 |
//!
//! Anything else is answered with an `Error` and the connection is closed. The monitor maps
//! stream 1 of each connection to a fresh stream of the agent connection.
//!
//! [`HostMessage`]: nook_agent::protocol::HostMessage
//! [`GuestMessage`]: nook_agent::protocol::GuestMessage

pub mod client;
pub mod server;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use nook_agent::client::ClientError;
use nook_agent::protocol::{ReadError, WriteError};

/// The stream of a connection's process or layer.
pub const REQUEST_STREAM: u32 = 1;
/// How long the monitor waits for a connection's first frame, and a client for the answer to
/// a signal or for an exec to start.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write to the peer may block before the peer counts as dead.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Control connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 32;

/// Errors of the control channel.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot reach the container's monitor at {}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot talk to the container's monitor")]
    Io(#[source] std::io::Error),
    #[error("cannot read the monitor's answer")]
    Read(#[from] ReadError),
    #[error("cannot send the request to the monitor")]
    Write(#[from] WriteError),
    #[error("the monitor closed the control connection before {what}")]
    Closed { what: &'static str },
    #[error("the guest agent refused the request: {message}")]
    Agent { message: String },
    #[error("the monitor sent {got}, which was not expected")]
    Unexpected { got: String },
    #[error("the agent connection failed")]
    Client(#[from] ClientError),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
    /// A copy the guest agent could not make: its message says why, as the namespace
    /// column's would.
    #[error("{message}")]
    Copy { message: String },
}
