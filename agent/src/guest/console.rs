//! The agent channel (a virtio console) and the kernel log.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens the channel device and puts it in raw mode: no echo, no line discipline, no CR/LF
/// translation, so frames pass byte for byte.
pub fn open_raw(path: &Path) -> io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    // SAFETY: an all-zero termios is a valid value to be filled by tcgetattr.
    let mut tio: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `tio` is a valid out-pointer and the descriptor is open.
    if unsafe { libc::tcgetattr(file.as_raw_fd(), &mut tio) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: cfmakeraw only edits the struct we own.
    unsafe { libc::cfmakeraw(&mut tio) };
    // SAFETY: `tio` is a valid termios read by the call.
    if unsafe { libc::tcsetattr(file.as_raw_fd(), libc::TCSANOW, &tio) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file.into())
}

/// Writes lines to the kernel log (/dev/kmsg), which the serial console shows when the guest
/// boots with `console=ttyS0`. Silently does nothing when the log cannot be opened.
pub struct KernelLog {
    file: Option<File>,
    pub debug: bool,
}

impl KernelLog {
    pub fn open() -> KernelLog {
        KernelLog {
            file: OpenOptions::new().write(true).open("/dev/kmsg").ok(),
            debug: false,
        }
    }

    /// Always logged.
    pub fn error(&mut self, msg: &str) {
        self.line(3, msg);
    }

    /// Logged with `nook.debug`.
    pub fn debug(&mut self, msg: &str) {
        if self.debug {
            self.line(6, msg);
        }
    }

    fn line(&mut self, level: u8, msg: &str) {
        if let Some(f) = &mut self.file {
            // One write per record: /dev/kmsg takes each write as one log line.
            let _ = f.write_all(format!("<{level}>nook-agent: {msg}\n").as_bytes());
        }
    }
}

/// Lowers the kernel's console log level to emergencies only, so that a console shared with
/// something else (or, misconfigured, the channel itself) stays quiet after boot.
pub fn quiet_kernel_console() -> io::Result<()> {
    const SYSLOG_ACTION_CONSOLE_LEVEL: libc::c_int = 8;
    // SAFETY: this klogctl action takes no buffer (NULL) and a level in the length argument.
    if unsafe { libc::klogctl(SYSLOG_ACTION_CONSOLE_LEVEL, std::ptr::null_mut(), 1) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Points fd 0 at /dev/null and fds 1 and 2 at /dev/kmsg.
pub fn redirect_stdio() -> io::Result<()> {
    let null = File::open("/dev/null")?;
    let kmsg = OpenOptions::new().write(true).open("/dev/kmsg")?;
    for (from, to) in [
        (null.as_raw_fd(), 0),
        (kmsg.as_raw_fd(), 1),
        (kmsg.as_raw_fd(), 2),
    ] {
        // SAFETY: dup2 between descriptors we own (the targets are our standard streams).
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
