//! SIGPIPE as docker and runc (Go programs) have it: a write to a closed standard output or
//! error (`nook ps | head -1`) ends the process by the signal, silently, as it ends any Unix
//! tool; a write to any other closed pipe or socket (an agent's channel, a console socket, the
//! ready pipe of a monitor's caller) fails with EPIPE for the code to handle, as under Rust's
//! default of ignoring the signal. Modes that relay a container's output to the caller's
//! streams and must outlive their reader (an attached monitor, a monitor of a VM) ignore it
//! again with [`ignore`]. A container's process starts with the default action either way: a
//! caught signal is reset by `execve`, and the namespace column resets an ignored one.

/// The handler: the signal came from a write to a descriptor whose reader is gone. When that is
/// standard output or error, end the process with the signal; else return, and the write fails
/// with EPIPE.
extern "C" fn on_sigpipe(_: libc::c_int) {
    // SAFETY: errno is saved and restored around poll, signal and raise, which are all
    // async-signal-safe; poll reads and writes a valid array of two pollfd.
    unsafe {
        let errno = *libc::__errno_location();
        let mut fds = [1, 2].map(|fd| libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        });
        let broken = libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) > 0
            && fds
                .iter()
                .any(|p| p.revents & (libc::POLLERR | libc::POLLHUP) != 0);
        if broken {
            // Delivered, with the default action, as soon as the handler returns.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::raise(libc::SIGPIPE);
        }
        *libc::__errno_location() = errno;
    }
}

/// Installs the handler: called first thing by `nook` and `nook-runtime`.
pub fn end_on_closed_output() {
    // SAFETY: sigaction with a handler that only calls async-signal-safe functions.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigpipe as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGPIPE, &action, std::ptr::null_mut());
    }
}

/// Ignores SIGPIPE altogether: for a process that writes a container's output to the caller's
/// streams and goes on (logging, waiting for the container) once the caller stopped reading.
pub fn ignore() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Restores the default action: for a container's process before `execve`, which would keep an
/// ignored disposition.
pub fn restore_default() {
    // SAFETY: setting a signal's disposition to SIG_DFL has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}
