//! The caller's side of a container process's stdio: `run`, `start -a` and `exec`, and the log
//! of a detached container.
//!
//! A container process never gets the caller's own descriptors: with the caller's terminal, a
//! process in the container could read the user's keys or push keystrokes into the user's
//! shell (`TIOCSTI`). As docker and podman do, a process without `-t` gets pipes and one with
//! `-t` a new pty of its own; the nook process that started it (the monitor, or `nook exec`)
//! relays between those and its own stdio, with the caller's terminal in raw mode while a
//! terminal is attached, and the pty's size following the caller's.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use super::log::{LineSplitter, LogWriter, Stream};
use crate::isolation::Stdio;
use crate::terminal;
use crate::util::fd::{dev_null, pipe, set_nonblocking, socket_pair};

/// How long output may still arrive once the process has ended: a descendant that keeps its
/// stdio open does not hold the caller forever.
const LINGER: Duration = Duration::from_millis(200);

/// One of the container's output streams.
struct Output {
    fd: OwnedFd,
    stream: Stream,
    lines: LineSplitter,
    open: bool,
}

impl Output {
    fn new(fd: OwnedFd, stream: Stream) -> Output {
        Output {
            fd,
            stream,
            lines: LineSplitter::default(),
            open: true,
        }
    }
}

/// What nook keeps of a container process's stdio: the reading ends of its output, the
/// writing end of its input, and the pty leader when it has a terminal.
pub struct Wiring {
    outputs: Vec<Output>,
    /// Where the caller's stdin goes (`-i`): a pipe's writing end, or the pty leader.
    input: Option<OwnedFd>,
    /// The pty leader, whose size follows the caller's terminal.
    pty: Option<OwnedFd>,
    /// Where the namespace column sends the leader of the pty it opens inside the container,
    /// which then replaces the one made here (see [`Stdio::console`]).
    console: Option<OwnedFd>,
}

/// What the relay does with the container's output and when it ends.
pub struct Relay<'a> {
    /// Attached: the output is copied to this process's stdout and stderr.
    pub echo: bool,
    /// The container's log, which gets every line of output.
    pub log: Option<&'a mut LogWriter>,
    /// Becomes readable (or hangs up) once the container's process has ended: a pidfd (see
    /// [`exited`]), or a pipe whose writing end the waiting thread drops.
    pub done: Option<OwnedFd>,
}

/// The caller's terminal, when its stdin or stdout is one.
fn caller_terminal() -> Option<BorrowedFd<'static>> {
    [0, 1]
        .into_iter()
        // SAFETY: nook never closes its standard descriptors; they live as long as the process.
        .map(|fd| unsafe { BorrowedFd::borrow_raw(fd) })
        .find(|fd| terminal::is_tty(*fd))
}

/// Gives the pty the caller's terminal size, when the caller has a terminal.
fn copy_size(pty: &OwnedFd) {
    if let Some(size) = caller_terminal().and_then(terminal::size) {
        let _ = terminal::set_size(pty.as_fd(), size);
    }
}

impl Wiring {
    /// The stdio of a new container process, and nook's side of it: with `tty`, a new pty
    /// (sized like the caller's terminal), otherwise pipes; with `interactive`, the caller's
    /// stdin is relayed to it, otherwise its stdin is `/dev/null` (or the pty, with `tty`).
    pub fn new(tty: bool, interactive: bool) -> io::Result<(Wiring, Stdio)> {
        if tty {
            let (leader, follower) = terminal::open_pty()?;
            copy_size(&leader);
            let input = if interactive {
                let input = leader.try_clone()?;
                set_nonblocking(&input)?;
                Some(input)
            } else {
                None
            };
            let (console, console_peer) = socket_pair()?;
            let stdio = Stdio {
                stdin: follower.try_clone()?,
                stdout: follower.try_clone()?,
                stderr: follower,
                console: Some(console_peer),
            };
            let wiring = Wiring {
                pty: Some(leader.try_clone()?),
                outputs: vec![Output::new(leader, Stream::Stdout)],
                input,
                console: Some(console),
            };
            return Ok((wiring, stdio));
        }
        let (out_read, out_write) = pipe()?;
        let (err_read, err_write) = pipe()?;
        let (stdin, input) = if interactive {
            let (read, write) = pipe()?;
            set_nonblocking(&write)?;
            (read, Some(write))
        } else {
            (dev_null()?, None)
        };
        let wiring = Wiring {
            outputs: vec![
                Output::new(out_read, Stream::Stdout),
                Output::new(err_read, Stream::Stderr),
            ],
            input,
            pty: None,
            console: None,
        };
        let stdio = Stdio {
            stdin,
            stdout: out_write,
            stderr: err_write,
            console: None,
        };
        Ok((wiring, stdio))
    }

    /// Takes the pty the process opened inside the container, when its column sent one back:
    /// from now on that is the one relayed.
    fn adopt_console(&mut self) {
        let Some(socket) = self.console.take() else {
            return;
        };
        let Ok(Some(leader)) = terminal::recv_fd(socket.as_fd()) else {
            return;
        };
        if !terminal::is_tty(leader.as_fd()) {
            return;
        }
        let input = match &self.input {
            Some(_) => match leader.try_clone() {
                Ok(input) if set_nonblocking(&input).is_ok() => Some(input),
                _ => return,
            },
            None => None,
        };
        let Ok(pty) = leader.try_clone() else {
            return;
        };
        self.input = input;
        self.pty = Some(pty);
        self.outputs = vec![Output::new(leader, Stream::Stdout)];
    }

    /// Relays until the container's output ends, or stops arriving once `done` fired.
    /// Signals caught with [`catch`] meanwhile go to `on_signal` (SIGWINCH resizes the pty);
    /// when it returns false the relay stops early and returns that signal. The caller's
    /// terminal is in raw mode while an interactive terminal is attached, and restored on
    /// return.
    pub fn relay(mut self, opts: Relay<'_>, mut on_signal: impl FnMut(i32) -> bool) -> Option<i32> {
        let Relay {
            echo,
            mut log,
            mut done,
        } = opts;
        self.adopt_console();
        let _raw = (echo && self.pty.is_some() && self.input.is_some())
            .then(|| terminal::RawMode::enable(io::stdin().as_fd()))
            .flatten();
        let wake = WAKE.get().map(|(read, _)| read.as_raw_fd());
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        let mut ended = false;
        let mut stopped = None;
        while stopped.is_none() && self.outputs.iter().any(|o| o.open) {
            // Slots: wake, done, caller's stdin, container's stdin, then the outputs.
            let input = self.input.as_ref().map(|fd| fd.as_raw_fd());
            let mut fds = vec![
                pollfd(wake, libc::POLLIN),
                pollfd(done.as_ref().map(|fd| fd.as_raw_fd()), libc::POLLIN),
                pollfd(
                    input.filter(|_| pending.is_empty()).map(|_| 0),
                    libc::POLLIN,
                ),
                pollfd(input.filter(|_| !pending.is_empty()), libc::POLLOUT),
            ];
            fds.extend(
                self.outputs
                    .iter()
                    .map(|o| pollfd(o.open.then(|| o.fd.as_raw_fd()), libc::POLLIN)),
            );
            let timeout = if ended { LINGER.as_millis() as i32 } else { -1 };
            // SAFETY: fds is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            if n == 0 {
                break; // ended, and nothing more came within LINGER
            }
            if fds[0].revents != 0 {
                drain_wake();
                for sig in take_caught() {
                    if sig == libc::SIGWINCH {
                        if let Some(pty) = &self.pty {
                            copy_size(pty);
                        }
                    } else if !on_signal(sig) {
                        stopped = Some(sig);
                    }
                }
            }
            if fds[1].revents != 0 {
                // The process is gone: nobody reads its stdin any more.
                done = None;
                ended = true;
                self.input = None;
            }
            if fds[2].revents != 0 {
                match read(0, &mut buf) {
                    Read::Data(got) => pending.extend_from_slice(&buf[..got]),
                    Read::Again => {}
                    // End of the caller's input: the container's stdin ends too.
                    Read::End => self.input = None,
                }
            }
            if fds[3].revents != 0 {
                if let Some(fd) = &self.input {
                    // SAFETY: writing from a valid buffer to our own descriptor.
                    let put = unsafe {
                        libc::write(fd.as_raw_fd(), pending.as_ptr().cast(), pending.len())
                    };
                    if put > 0 {
                        pending.drain(..put as usize);
                    } else if put < 0 && !retry(&io::Error::last_os_error()) {
                        // The container closed its stdin.
                        self.input = None;
                        pending.clear();
                    }
                }
            }
            for (output, pfd) in self.outputs.iter_mut().zip(&fds[4..]) {
                if !output.open || pfd.revents == 0 {
                    continue;
                }
                match read(output.fd.as_raw_fd(), &mut buf) {
                    Read::Again => {}
                    Read::End => {
                        output.open = false;
                        if let Some(rest) = output.lines.finish() {
                            if let Some(log) = log.as_deref_mut() {
                                let _ = log.write(output.stream, &rest);
                            }
                        }
                    }
                    Read::Data(got) => {
                        let data = &buf[..got];
                        if echo {
                            let _ = match output.stream {
                                Stream::Stdout => io::stdout()
                                    .write_all(data)
                                    .and_then(|()| io::stdout().flush()),
                                Stream::Stderr => io::stderr().write_all(data),
                            };
                        }
                        if let Some(log) = log.as_deref_mut() {
                            for line in output.lines.feed(data) {
                                let _ = log.write(output.stream, &line);
                            }
                        }
                    }
                }
            }
        }
        // Partial last lines of streams still open when the relay stopped.
        if let Some(log) = log {
            for output in self.outputs.iter_mut().filter(|o| o.open) {
                if let Some(rest) = output.lines.finish() {
                    let _ = log.write(output.stream, &rest);
                }
            }
        }
        stopped
    }
}

fn pollfd(fd: Option<i32>, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd: fd.unwrap_or(-1),
        events,
        revents: 0,
    }
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

enum Read {
    Data(usize),
    Again,
    /// End of file, or an error that ends the stream (EIO: every holder of the pty's follower
    /// closed it).
    End,
}

fn read(fd: i32, buf: &mut [u8]) -> Read {
    // SAFETY: reading into a valid buffer of buf.len() bytes.
    let got = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    match got {
        0 => Read::End,
        n if n > 0 => Read::Data(n as usize),
        _ if retry(&io::Error::last_os_error()) => Read::Again,
        _ => Read::End,
    }
}

/// A descriptor that becomes readable once process `pid` has ended (a pidfd); None when the
/// process has no host pid or the kernel has no pidfds (the relay then ends with the output).
pub fn exited(pid: i32) -> Option<OwnedFd> {
    crate::util::fd::pidfd(pid)
}

/// The self-pipe that wakes the relay when a caught signal arrives: (read, write).
static WAKE: OnceLock<(OwnedFd, OwnedFd)> = OnceLock::new();
/// The writing end of WAKE, for the signal handler.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The signals caught and not yet handled, one bit each.
static CAUGHT: AtomicU64 = AtomicU64::new(0);

extern "C" fn remember_signal(sig: libc::c_int) {
    CAUGHT.fetch_or(1 << sig, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: errno is saved and restored around write, which is async-signal-safe and
        // writes one byte from a valid buffer to the non-blocking self-pipe.
        unsafe {
            let errno = *libc::__errno_location();
            libc::write(fd, [0u8].as_ptr().cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
}

/// Catches `signals` from now on, for [`Wiring::relay`] to handle (the monitor forwards them
/// to the container, docker's sig-proxy).
pub fn catch(signals: &[i32]) -> io::Result<()> {
    if WAKE.get().is_none() {
        let (read, write) = pipe()?;
        set_nonblocking(&read)?;
        set_nonblocking(&write)?;
        WAKE_FD.store(write.as_raw_fd(), Ordering::SeqCst);
        let _ = WAKE.set((read, write));
    }
    for &sig in signals {
        // SAFETY: sigaction with a handler that only touches atomics and writes to a pipe;
        // SA_RESTART keeps other blocking calls undisturbed (the relay's poll wakes through
        // the pipe).
        let ret = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = remember_signal as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut())
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn drain_wake() {
    if let Some((read, _)) = WAKE.get() {
        let mut buf = [0u8; 64];
        // SAFETY: reading into a valid buffer from the non-blocking self-pipe.
        while unsafe { libc::read(read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

fn take_caught() -> Vec<i32> {
    let bits = CAUGHT.swap(0, Ordering::SeqCst);
    (1..64).filter(|sig| bits & (1 << sig) != 0).collect()
}

/// Ends this process with the signal `sig`, as if it had not been caught (after the relay
/// has restored the caller's terminal).
pub fn die_of(sig: i32) -> ! {
    // SAFETY: restoring the default action and raising the signal; no pointers but the null
    // old-action.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
        // A signal whose default is not to end the process: end it anyway.
        libc::_exit(128 + sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn relay_all(wiring: Wiring, log: &mut LogWriter) {
        let opts = Relay {
            echo: false,
            log: Some(log),
            done: None,
        };
        assert_eq!(wiring.relay(opts, |_| true), None);
    }

    fn logged(path: &std::path::Path) -> Vec<(Stream, String)> {
        super::super::log::LogReader::read_all(path)
            .unwrap()
            .0
            .into_iter()
            .map(|r| (r.stream, r.log))
            .collect()
    }

    #[test]
    fn without_a_terminal_the_process_gets_pipes_only() {
        let (wiring, stdio) = Wiring::new(false, false).unwrap();
        for fd in [&stdio.stdin, &stdio.stdout, &stdio.stderr] {
            assert!(!terminal::is_tty(fd.as_fd()));
        }
        // Its stdin is /dev/null: it reads end of file at once.
        let mut stdin = std::fs::File::from(stdio.stdin);
        assert_eq!(stdin.read(&mut [0u8; 8]).unwrap(), 0);
        std::fs::File::from(stdio.stdout)
            .write_all(b"out\npartial")
            .unwrap();
        std::fs::File::from(stdio.stderr)
            .write_all(b"err\n")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        relay_all(
            wiring,
            &mut LogWriter::open(&path, Default::default()).unwrap(),
        );
        let mut lines = logged(&path);
        lines.sort_by_key(|(s, _)| *s == Stream::Stderr);
        assert_eq!(
            lines,
            [
                (Stream::Stdout, "out\n".to_string()),
                (Stream::Stdout, "partial".to_string()),
                (Stream::Stderr, "err\n".to_string()),
            ]
        );
    }

    #[test]
    fn with_a_terminal_the_process_gets_a_new_pty() {
        let (wiring, stdio) = Wiring::new(true, false).unwrap();
        for fd in [&stdio.stdin, &stdio.stdout, &stdio.stderr] {
            assert!(terminal::is_tty(fd.as_fd()));
        }
        // SAFETY: ttyname on an open descriptor; the result is copied at once.
        let name = unsafe { std::ffi::CStr::from_ptr(libc::ttyname(stdio.stdout.as_raw_fd())) }
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with("/dev/pts/"), "{name}");
        std::fs::File::from(stdio.stdout)
            .write_all(b"hi\n")
            .unwrap();
        drop((stdio.stdin, stdio.stderr));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        relay_all(
            wiring,
            &mut LogWriter::open(&path, Default::default()).unwrap(),
        );
        // The pty turns "\n" into "\r\n", as a terminal does.
        assert_eq!(logged(&path), [(Stream::Stdout, "hi\r\n".to_string())]);
    }

    #[test]
    fn a_pty_sent_back_by_the_column_replaces_the_one_made_here() {
        let (wiring, stdio) = Wiring::new(true, false).unwrap();
        // What the namespace column does inside the container: a pty of its own.
        let (leader, follower) = terminal::open_pty().unwrap();
        let console = stdio.console.as_ref().unwrap();
        terminal::send_fd(console.as_fd(), leader.as_fd()).unwrap();
        drop((leader, stdio));
        std::fs::File::from(follower)
            .write_all(b"from inside\n")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        relay_all(
            wiring,
            &mut LogWriter::open(&path, Default::default()).unwrap(),
        );
        assert_eq!(
            logged(&path),
            [(Stream::Stdout, "from inside\r\n".to_string())]
        );
    }

    #[test]
    fn the_relay_stops_soon_after_the_process_ended_even_if_its_output_stays_open() {
        let (wiring, stdio) = Wiring::new(false, false).unwrap();
        let (done_read, done_write) = pipe().unwrap();
        drop(done_write);
        let start = std::time::Instant::now();
        let opts = Relay {
            echo: false,
            log: None,
            done: Some(done_read),
        };
        assert_eq!(wiring.relay(opts, |_| true), None);
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(stdio);
    }
}
