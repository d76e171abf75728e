//! Signals sent to a VM container's monitor go to the container's process, through the
//! agent: a handler writes the signal's number to a pipe, a thread sends it on the monitor's
//! own control socket (as `nook kill` does). SIGKILL and SIGSTOP cannot be caught: SIGKILL
//! ends the monitor and so the VM; SIGSTOP stops the monitor alone.

use std::io::Read;
use std::os::fd::IntoRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::isolation::vm::control;

/// The signals forwarded: those a process is sent to end, stop or wake it.
pub const FORWARDED: [i32; 10] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGABRT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGCONT,
    libc::SIGTSTP,
];

static WAKE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn remember(sig: libc::c_int) {
    let fd = WAKE.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: write is async-signal-safe; one byte from a valid local.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

/// Catches [`FORWARDED`] and sends each one caught to the container's process through the
/// control socket `control`.
pub fn forward(control: PathBuf) -> std::io::Result<()> {
    let (read, write) = crate::util::fd::pipe()?;
    WAKE.store(write.into_raw_fd(), Ordering::SeqCst);
    let mut read = std::fs::File::from(read);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            while read.read_exact(&mut byte).is_ok() {
                let _ = control::client::signal(&control, i32::from(byte[0]));
            }
        })?;
    for &sig in &FORWARDED {
        // SAFETY: sigaction with a handler that only reads an atomic and writes to a pipe.
        let ret = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = remember as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut())
        };
        if ret < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
