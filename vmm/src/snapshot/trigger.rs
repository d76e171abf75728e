//! When a VMM told to write a snapshot writes it: when its caller says so, by a byte on the
//! trigger socket (a Unix stream socket the caller listens on and the VMM connects to before the
//! guest runs, like the agent socket). The caller picks the moment, for a template when the
//! guest's agent has said it waits for its container. Nothing the guest does can trigger it.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use crate::devices::virtio::WorkerError;
use crate::exit::{ExitSignal, StopReason, VmExit};
use crate::VmmError;

/// Connects to the caller's trigger socket.
pub fn connect(path: &Path) -> Result<UnixStream, VmmError> {
    UnixStream::connect(path).map_err(|source| VmmError::SnapshotTrigger {
        path: path.to_path_buf(),
        source,
    })
}

/// Waits for the trigger (or the VM's end): a byte stops the VM for its snapshot; the caller
/// closing the socket (or failing to read) changes nothing.
pub fn watch(mut socket: UnixStream, exit: Arc<ExitSignal>) -> Result<(), WorkerError> {
    let epoll = Epoll::new().map_err(WorkerError::EpollCreate)?;
    for (fd, token) in [(socket.as_raw_fd(), 0), (exit.event().as_raw_fd(), 1)] {
        epoll
            .ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, token),
            )
            .map_err(|source| WorkerError::EpollCtl { op: "add", source })?;
    }
    let mut events = [EpollEvent::default(); 2];
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(WorkerError::EpollWait(e)),
        };
        if exit.is_stopping() {
            return Ok(());
        }
        for ev in &events[..n] {
            if ev.data() == 0 {
                let mut byte = [0u8; 1];
                match socket.read(&mut byte) {
                    Ok(1) => {
                        exit.stop(StopReason::Exit(VmExit::Snapshotted));
                        return Ok(());
                    }
                    // Closed, or broken: no snapshot will be asked for.
                    _ => return Ok(()),
                }
            }
        }
    }
}
