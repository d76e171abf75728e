//! The agent channel (a virtio-serial port, or a console) and the kernel log.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where udev links virtio-serial ports by name; the agent resolves such paths itself.
pub const PORTS_BY_NAME: &str = "/dev/virtio-ports";
/// Where the kernel lists virtio-serial ports, each with its `name`.
pub const PORTS_SYSFS: &str = "/sys/class/virtio-ports";
/// How long the port may take to appear and the host to connect to it.
pub const CHANNEL_WAIT: Duration = Duration::from_secs(60);

/// Opens the agent channel at `path`.
///
/// A path under [`PORTS_BY_NAME`] names a virtio-serial port: the driver creates it after the
/// device's control messages, so it may appear only after the agent starts, and until the host
/// opens its end a read returns end-of-file at once. Both are waited for, up to `wait`.
/// Any other path is opened as it is, a tty put in raw mode.
pub fn open_channel(path: &Path, wait: Duration) -> io::Result<OwnedFd> {
    let Ok(name) = path.strip_prefix(PORTS_BY_NAME) else {
        return open_raw(path);
    };
    let deadline = Instant::now() + wait;
    let device = loop {
        if let Some(device) = port_device(Path::new(PORTS_SYSFS), &name.to_string_lossy()) {
            if device.exists() {
                break device;
            }
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no virtio-serial port named {} appeared in {PORTS_SYSFS} within {} s",
                    name.display(),
                    wait.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let fd: OwnedFd = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&device)?
        .into();
    // The driver reports the host's end as closed with POLLHUP.
    loop {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if pfd.revents & libc::POLLHUP == 0 {
            return Ok(fd);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the host did not open its end of {} within {} s",
                    device.display(),
                    wait.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The device node of the port named `name`, from the port list in `sysfs`.
pub fn port_device(sysfs: &Path, name: &str) -> Option<PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(sysfs).ok()?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    entries.into_iter().find_map(|e| {
        let named = std::fs::read_to_string(e.path().join("name")).ok()?;
        (named.trim_end_matches(['\n', '\0']) == name)
            .then(|| Path::new("/dev").join(e.file_name()))
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_found_by_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let port = |entry: &str, name: Option<&str>| {
            std::fs::create_dir(dir.path().join(entry)).unwrap();
            if let Some(name) = name {
                std::fs::write(dir.path().join(entry).join("name"), name).unwrap();
            }
        };
        port("vport0p0", None);
        port("vport1p1", Some("org.example.other\n"));
        port("vport2p0", Some("nook.agent\n"));
        assert_eq!(
            port_device(dir.path(), "nook.agent"),
            Some(PathBuf::from("/dev/vport2p0"))
        );
        assert_eq!(port_device(dir.path(), "nook"), None);
        assert_eq!(port_device(&dir.path().join("missing"), "nook.agent"), None);
    }

    #[test]
    fn a_missing_port_times_out_with_its_name() {
        let err = open_channel(
            Path::new("/dev/virtio-ports/nook.test-missing"),
            Duration::from_millis(20),
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("nook.test-missing"), "{err}");
    }
}
