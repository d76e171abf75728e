//! The thread that notices the backend going away. virtiofsd ends when its socket closes and
//! the VMM ends... but when virtiofsd dies first, the guest's requests would wait forever: the
//! watch thread sees the socket hang up and stops the VM with an error naming the tag.
//!
//! It waits for the hang-up only (EPOLLRDHUP, never EPOLLIN), so it never takes a reply meant
//! for the frontend, and it runs under the VMM's seccomp filter like every device thread.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::FsError;
use crate::exit::ExitSignal;

const TOKEN_SOCKET: u64 = 1;
const TOKEN_EXIT: u64 = 2;

/// Watches one backend socket.
pub struct Watch {
    tag: String,
    path: PathBuf,
    socket: UnixStream,
}

impl Watch {
    /// Watches `socket` (a duplicate of the frontend's), connected to `path`, for tag `tag`.
    pub fn new(tag: String, path: PathBuf, socket: UnixStream) -> Self {
        Self { tag, path, socket }
    }

    /// Returns Ok when the VM stops, the backend's end as an error when the socket hangs up.
    pub fn run(self, exit: &ExitSignal) -> Result<(), FsError> {
        let io = |source| FsError::Watch {
            tag: self.tag.clone(),
            source,
        };
        let epoll = Epoll::new().map_err(io)?;
        epoll
            .ctl(
                ControlOperation::Add,
                self.socket.as_raw_fd(),
                EpollEvent::new(EventSet::READ_HANG_UP, TOKEN_SOCKET),
            )
            .map_err(io)?;
        epoll
            .ctl(
                ControlOperation::Add,
                exit.event().as_raw_fd(),
                EpollEvent::new(EventSet::IN, TOKEN_EXIT),
            )
            .map_err(io)?;
        let mut events = [EpollEvent::default(); 2];
        loop {
            let n = match epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(e)),
            };
            if exit.is_stopping() {
                return Ok(());
            }
            if events[..n].iter().any(|e| e.data() == TOKEN_SOCKET) {
                return Err(FsError::BackendGone {
                    tag: self.tag.clone(),
                    path: self.path.clone(),
                });
            }
        }
    }
}
