//! The host's side of a guest terminal (`run -t`, `exec -t` in a VM): the guest has its own
//! pty, so the host terminal is put in raw mode (keys go through unchanged, output is not
//! translated twice) and its size follows the host terminal's.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the host terminal's size is checked (no SIGWINCH handler: nook's signal
/// handling belongs to the monitor).
const SIZE_POLL: Duration = Duration::from_millis(250);

pub fn is_tty(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: isatty takes any descriptor number.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// The terminal's (rows, cols), when `fd` is a terminal with a size.
pub fn size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    // SAFETY: an all-zero winsize is a valid value for TIOCGWINSZ to fill.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into the valid pointer.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// A terminal in raw mode; its settings come back on drop.
pub struct RawMode {
    fd: OwnedFd,
    saved: libc::termios,
}

impl RawMode {
    /// Puts the terminal `fd` in raw mode; None when it is not a terminal.
    pub fn enable(fd: BorrowedFd<'_>) -> Option<RawMode> {
        if !is_tty(fd) {
            return None;
        }
        let fd = fd.try_clone_to_owned().ok()?;
        // SAFETY: an all-zero termios is a valid value for tcgetattr to fill.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr fills the valid termios pointer.
        if unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut saved) } < 0 {
            return None;
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the valid termios value in place.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: tcsetattr reads the valid termios pointer.
        if unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &raw) } < 0 {
            return None;
        }
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: tcsetattr reads the valid termios saved at enable.
        unsafe { libc::tcsetattr(self.fd.as_raw_fd(), libc::TCSADRAIN, &self.saved) };
    }
}

/// Calls `resize` whenever the terminal `fd` changes size, until dropped.
pub struct SizeWatch {
    stop: Arc<AtomicBool>,
}

impl Drop for SizeWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl SizeWatch {
    pub fn start(
        fd: BorrowedFd<'_>,
        resize: impl Fn(u16, u16) -> bool + Send + 'static,
    ) -> Option<SizeWatch> {
        let fd = fd.try_clone_to_owned().ok()?;
        let mut last = size(fd.as_fd());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("tty-size".into())
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    std::thread::sleep(SIZE_POLL);
                    let now = size(fd.as_fd());
                    if now != last {
                        if let Some((rows, cols)) = now {
                            if !resize(rows, cols) {
                                return;
                            }
                        }
                        last = now;
                    }
                }
            })
            .ok()?;
        Some(SizeWatch { stop })
    }
}
