//! The host's terminals, shared by both isolation columns: the caller's terminal is put in raw
//! mode while a container with a terminal of its own is attached (keys go through unchanged,
//! output is not translated twice), a container gets a new pty (never the caller's terminal),
//! and the container's terminal size follows the caller's.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
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

/// Gives the terminal `fd` (a pty leader or follower) the size (rows, cols).
pub fn set_size(fd: BorrowedFd<'_>, (rows, cols): (u16, u16)) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the valid pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new pty: (leader, follower), both close-on-exec. The follower becomes a container
/// process's stdio (and controlling terminal); the leader stays with nook.
pub fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    let (mut leader, mut follower) = (0, 0);
    // SAFETY: openpty fills the two ints; the name, termios and winsize pointers may be null.
    let ret = unsafe {
        libc::openpty(
            &mut leader,
            &mut follower,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openpty returned two fresh descriptors that nobody else owns.
    let pair = unsafe { (OwnedFd::from_raw_fd(leader), OwnedFd::from_raw_fd(follower)) };
    for fd in [&pair.0, &pair.1] {
        // SAFETY: fcntl on our own descriptor; the follower reaches a container process only
        // through dup2 onto its standard descriptors, never as an inherited extra one.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(pair)
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
        // From a background process group tcsetattr would stop us with SIGTTOU: leave the
        // terminal alone then (the container's pty still works, only echo and line editing
        // double). A terminal that is not ours to control (a pty nook made) has no foreground
        // group for us: tcgetpgrp fails, and raw mode is safe.
        // SAFETY: tcgetpgrp and getpgrp take no pointers.
        let foreground = unsafe { libc::tcgetpgrp(fd.as_raw_fd()) };
        // SAFETY: as above.
        if foreground >= 0 && foreground != unsafe { libc::getpgrp() } {
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

/// Sends the descriptor `fd` over the unix socket `socket` (SCM_RIGHTS), with one byte of data.
/// Async-signal-safe: it allocates nothing.
pub fn send_fd(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one control message with one int, aligned for cmsghdr.
    let mut space = [0u64; 4];
    // SAFETY: an all-zero msghdr is valid; the pointers set below point to live buffers of the
    // given lengths, and CMSG_FIRSTHDR of a msghdr with a large enough control buffer is a
    // valid header to fill.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), fd.as_raw_fd());
        if libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives a descriptor sent with [`send_fd`], without waiting: None when none is queued.
pub fn recv_fd(socket: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut space = [0u64; 4];
    // SAFETY: as in send_fd; the kernel fills at most msg_controllen bytes of `space`, and a
    // descriptor found in an SCM_RIGHTS message is a fresh one owned by nobody else.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&space);
        let flags = libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC;
        if libc::recvmsg(socket.as_raw_fd(), &mut msg, flags) < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                _ => Err(err),
            };
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Ok(None);
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
        Ok(Some(OwnedFd::from_raw_fd(fd)))
    }
}
