//! The host<->agent protocol: length-prefixed frames with stream ids over any byte stream.
//!
//! A frame is `len: u32 LE | kind: u8 | stream: u32 LE | body[len]`, `len` at most
//! [`MAX_BODY`]. Kinds `0x01..` go host to guest ([`HostMessage`]), kinds `0x81..` guest to host
//! ([`GuestMessage`]). Stream 0 is the connection itself; the host picks a fresh non-zero stream
//! id for each process it starts (and for each upper-layer stream), and every frame about that
//! process carries it.
//!
//! Before its first frame the guest writes [`SYNC`]; the host discards everything before it
//! ([`skip_to_sync`]). A console can carry bytes that are not ours before the agent runs (a
//! kernel that made the channel its console prints its boot log there); the marker makes the
//! start of the frame stream unambiguous.
//!
//! Conversation: the guest sends `Ready` (with [`PROTOCOL_VERSION`] and its boot timestamps) on
//! stream 0 as soon as the container root is ready. The host sends `Start` (the main process) and
//! any number of `Exec`; for each the guest answers `Started` or an `Error` + `Exit`, then
//! `Stdout`/`Stderr` data and finally `Exit`. When the main process has exited the guest syncs and
//! resets. A frame the guest cannot decode is answered with an `Error` of kind `Protocol` on the
//! frame's stream and dropped; an oversized frame ends the connection.

mod frame;
mod messages;
mod wire;

pub use frame::{
    encode_frame, EncodeError, Frame, FrameDecoder, FrameError, FrameReader, FrameWriter,
    ReadError, WriteError, HEADER_LEN,
};
pub use messages::{
    BootTimes, ErrorKind, ExitStatus, GuestLimits, GuestMessage, GuestMount, GuestProcess,
    GuestProcesses, GuestSecurity, GuestUsage, HostMessage, Message, ProcessSpec, Rlimit,
    StartSpec, SHARED_FILE,
};

/// The protocol version the guest announces in `Ready`; the host refuses any other.
/// 2: `Start` carries the container's /etc/hosts.
/// 3: `Start` carries the container's mounts (virtio-fs tags and tmpfs).
/// 4: `Oom` before the main process's `Exit` when the guest's OOM killer ran.
/// 5: `CopyOut`, `CopyIn` and `Mount` (`nook cp`, running or from a copy-only boot).
/// 6: `Start` carries the guest-side limits (`--pids-limit`, `--ulimit`).
/// 7: `Checkpoint`, `Paused` and `Resume` (`nook checkpoint create`, `nook start --checkpoint`).
/// 8: `Start` carries the security options (capabilities, no_new_privs, seccomp filters).
/// 9: a process carries supplementary groups and rlimits of its own (OCI's `additionalGids`
///    and an exec's `rlimits`).
/// 10: `Stats` and `Usage` (`nook stats` of a VM container: the guest's own counters).
/// 11: `Start` carries the user `--userns=keep-id` adds to /etc/passwd and /etc/group.
/// 12: `Top` and `Processes` (`nook top` of a VM container: the guest's process list).
/// 13: a virtio-fs mount may be a single file (`-v FILE:DST`), bound from its share.
pub const PROTOCOL_VERSION: u32 = 13;

/// Written by the guest once, right before `Ready`.
pub const SYNC: [u8; 8] = *b"\0\xffNOOK\xff\0";

/// How much foreign output the host skips looking for [`SYNC`] before giving up.
pub const MAX_SYNC_SKIP: u64 = 16 * 1024 * 1024;

/// Reads (byte by byte, so nothing after it is consumed) up to and including [`SYNC`];
/// returns how many foreign bytes came before it.
pub fn skip_to_sync<R: std::io::Read>(reader: &mut R) -> std::io::Result<u64> {
    let mut window = [0u8; SYNC.len()];
    let mut seen: u64 = 0;
    let mut byte = [0u8; 1];
    loop {
        match reader.read(&mut byte) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the agent channel closed before the agent's sync marker",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        window.copy_within(1.., 0);
        window[SYNC.len() - 1] = byte[0];
        seen += 1;
        if seen >= SYNC.len() as u64 && window == SYNC {
            return Ok(seen - SYNC.len() as u64);
        }
        if seen > MAX_SYNC_SKIP {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("no agent sync marker in the first {MAX_SYNC_SKIP} bytes of the channel"),
            ));
        }
    }
}

/// The largest frame body either side accepts.
pub const MAX_BODY: usize = 1024 * 1024;

/// The largest data payload senders put in one frame (stdio, layer data).
pub const MAX_DATA_CHUNK: usize = 64 * 1024;

/// Why a frame body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the frame announces {len} bytes, more than the {max}-byte limit")]
    Oversized { len: u64, max: usize },
    #[error("frame kind {kind:#04x} is unknown")]
    UnknownKind { kind: u8 },
    #[error("the body ends inside field `{field}`")]
    Truncated { field: &'static str },
    #[error("the body has {count} bytes after its last field")]
    TrailingBytes { count: usize },
    #[error("field `{field}` is not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    #[error("field `{field}` contains a NUL byte")]
    NulByte { field: &'static str },
    #[error("field `{field}` has the invalid value {value}")]
    InvalidValue { field: &'static str, value: u64 },
}

#[cfg(test)]
mod tests;

/// Feeds arbitrary bytes through the decoder of both directions, split into chunks whose sizes
/// come from the data itself, and checks that every frame it accepts encodes back to a frame
/// that decodes to the same message. Panics only when that invariant breaks; the fuzz target and
/// the hostile-seed regression test call it.
#[doc(hidden)]
pub fn exercise_decoder(data: &[u8]) {
    fn run<M: Message + PartialEq + std::fmt::Debug>(data: &[u8]) {
        let mut decoder = FrameDecoder::new();
        let split = data.first().map_or(1, |b| usize::from(*b % 17) + 1);
        for chunk in data.chunks(split) {
            decoder.push(chunk);
            loop {
                match decoder.next_frame::<M>() {
                    Ok(Some(frame)) => {
                        let bytes = encode_frame(frame.stream, &frame.message)
                            .expect("a decoded frame fits the size limit");
                        let mut again = FrameDecoder::new();
                        again.push(&bytes);
                        let back = again.next_frame::<M>().expect("re-encoded frame decodes");
                        assert_eq!(back.as_ref(), Some(&frame));
                    }
                    Ok(None) => break,
                    Err(err) if err.is_fatal() => return,
                    Err(_) => {}
                }
            }
        }
    }
    run::<HostMessage>(data);
    run::<GuestMessage>(data);
}
