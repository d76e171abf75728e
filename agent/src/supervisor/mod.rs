//! The process-supervision core of the agent: one `poll` loop that reads host frames from the
//! channel, starts processes, relays their stdio, forwards signals and resizes, reaps children
//! and reports exit statuses.
//!
//! It is the same code as PID 1 in the guest and as a plain function in host tests (over a
//! socketpair); the differences are in [`Config`]: PID 1 reaps every orphan, the host reaps only
//! its own children.

mod copy;
mod limits;
mod namespace;
mod oom;
mod process;
mod pty;
mod security;
pub(crate) mod sys;
mod top;
mod usage;
pub use usage::parse_net_dev;

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use process::{SpawnError, DEFAULT_PATH};
pub use sys::{boottime_ns, realtime_ns};

use crate::layer;
use crate::protocol::{
    BootTimes, ErrorKind, ExitStatus, FrameDecoder, FrameError, FrameWriter, GuestMessage,
    GuestMount, HostMessage, ProcessSpec, StartSpec, WriteError, MAX_DATA_CHUNK, PROTOCOL_VERSION,
    SYNC,
};
use namespace::PidNamespace;

/// How long a terminal process's output is still relayed after it exited: the pty hands data
/// to the master asynchronously, so the last bytes may arrive after the exit.
const PTY_GRACE: Duration = Duration::from_millis(300);

/// How the supervisor behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the container's /etc/passwd and /etc/group are read (`/` in the guest).
    pub root: PathBuf,
    /// Reap every child that exits, not only our own (PID 1 inherits orphans).
    pub reap_all: bool,
    /// Start the main process as PID 1 of a new PID namespace (with a mount namespace holding
    /// its /proc) and exec'd processes in it, as docker does; needs root.
    pub pid_namespace: bool,
    /// The overlay upper directory, streamed on `StreamUpper`; `None` refuses the request.
    pub upper_dir: Option<PathBuf>,
    /// Sent to the host in `Ready`.
    pub boot: BootTimes,
}

/// Container-wide settings applied before the main process starts (hostname, resolv.conf).
pub trait ContainerSetup {
    fn apply(&mut self, spec: &StartSpec) -> Result<(), String>;

    /// Mounts `mounts` without starting anything (a copy-only boot's volumes).
    fn mount(&mut self, _mounts: &[GuestMount]) -> Result<(), String> {
        Ok(())
    }

    /// The guest was restored from a checkpoint: no longer the guest that was saved, it takes
    /// fresh randomness and the host's time before anything runs on.
    fn resumed(&mut self, _seed: &[u8], _realtime_ns: u64) -> Result<(), String> {
        Ok(())
    }
}

/// For the host side, where there is no container to configure.
pub struct NoSetup;

impl ContainerSetup for NoSetup {
    fn apply(&mut self, _spec: &StartSpec) -> Result<(), String> {
        Ok(())
    }
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The main process ended (or could not start) with this status, already reported.
    MainExited(ExitStatus),
    /// The host asked for a shutdown.
    Shutdown,
    /// The host closed the channel.
    ChannelClosed,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot send a frame to the host")]
    Send(#[from] WriteError),
    #[error("cannot read from the agent channel")]
    Read(#[source] io::Error),
    #[error("cannot duplicate the agent channel")]
    Channel(#[source] io::Error),
    #[error("waiting for events failed")]
    Poll(#[source] io::Error),
    #[error("the host sent a frame that ends the connection")]
    Fatal(#[source] FrameError),
}

type SharedWriter = Arc<Mutex<FrameWriter<File>>>;

fn send(writer: &SharedWriter, stream: u32, msg: &GuestMessage) -> Result<(), SupervisorError> {
    let mut w = writer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    w.send(stream, msg)?;
    Ok(())
}

/// One supervised process.
struct Proc {
    stream: u32,
    main: bool,
    pid: u32,
    pidfd: Option<OwnedFd>,
    terminal: bool,
    stdin: Option<OwnedFd>,
    stdin_buf: Vec<u8>,
    stdin_close: bool,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    pty: Option<OwnedFd>,
    status: Option<ExitStatus>,
    exited_at: Option<Instant>,
}

#[derive(PartialEq, Eq)]
enum Relay {
    Data,
    WouldBlock,
    Closed,
}

enum Slot {
    Channel,
    ChildSignal,
    Stdout(usize),
    Stderr(usize),
    Stdin(usize),
    Pid(usize),
}

struct Supervisor<'a> {
    config: &'a Config,
    setup: &'a mut dyn ContainerSetup,
    writer: SharedWriter,
    procs: Vec<Proc>,
    main_started: bool,
    /// Where the guest's OOM kills stood when the main process started.
    oom_mark: oom::Mark,
    inbound: copy::Inbound,
    /// The container's limits, from `Start`, for its main process and every `Exec`.
    limits: limits::Limits,
    /// The container's capabilities, no_new_privs and seccomp filters, likewise.
    security: security::Security,
}

/// Runs the loop over `channel` until the main process exits, the host shuts the guest down or
/// closes the channel. Sends `Ready` first. Processes still running when it returns are killed.
pub fn run(
    channel: OwnedFd,
    config: &Config,
    setup: &mut dyn ContainerSetup,
) -> Result<Outcome, SupervisorError> {
    let writer = File::from(channel.try_clone().map_err(SupervisorError::Channel)?);
    let mut sup = Supervisor {
        config,
        setup,
        writer: Arc::new(Mutex::new(FrameWriter::new(writer))),
        procs: Vec::new(),
        main_started: false,
        oom_mark: oom::Mark::default(),
        inbound: copy::Inbound::default(),
        limits: limits::Limits::default(),
        security: security::Security::default(),
    };
    let result = sup.run(channel.as_fd());
    sup.kill_all();
    result
}

impl Supervisor<'_> {
    fn send(&self, stream: u32, msg: &GuestMessage) -> Result<(), SupervisorError> {
        send(&self.writer, stream, msg)
    }

    fn send_error(
        &self,
        stream: u32,
        kind: ErrorKind,
        message: String,
    ) -> Result<(), SupervisorError> {
        self.send(stream, &GuestMessage::Error { kind, message })
    }

    fn run(&mut self, channel: BorrowedFd<'_>) -> Result<Outcome, SupervisorError> {
        {
            let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            w.write_raw(&SYNC)?;
        }
        self.send(
            0,
            &GuestMessage::Ready {
                version: PROTOCOL_VERSION,
                boot: self.config.boot,
            },
        )?;
        // PID 1 inherits orphans; SIGCHLD tells when one is ready to be reaped.
        let sigchld = if self.config.reap_all {
            Some(sys::sigchld_fd().map_err(SupervisorError::Poll)?)
        } else {
            None
        };
        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; MAX_DATA_CHUNK];
        loop {
            if let Some(outcome) = self.finish_exited()? {
                return Ok(outcome);
            }

            let mut fds = Vec::new();
            let mut slots = Vec::new();
            let mut add = |fd: BorrowedFd<'_>, events: i16, slot: Slot| {
                fds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events,
                    revents: 0,
                });
                slots.push(slot);
            };
            add(channel, libc::POLLIN, Slot::Channel);
            if let Some(fd) = &sigchld {
                add(fd.as_fd(), libc::POLLIN, Slot::ChildSignal);
            }
            let mut timeout: i32 = -1;
            for (i, p) in self.procs.iter().enumerate() {
                if let Some(fd) = &p.stdout {
                    add(fd.as_fd(), libc::POLLIN, Slot::Stdout(i));
                }
                if let Some(fd) = &p.stderr {
                    add(fd.as_fd(), libc::POLLIN, Slot::Stderr(i));
                }
                if let (Some(fd), false) = (&p.stdin, p.stdin_buf.is_empty()) {
                    add(fd.as_fd(), libc::POLLOUT, Slot::Stdin(i));
                }
                if let Some(fd) = &p.pidfd {
                    add(fd.as_fd(), libc::POLLIN, Slot::Pid(i));
                }
                if let Some(at) = p.exited_at {
                    let left = PTY_GRACE.saturating_sub(at.elapsed()).as_millis() as i32 + 1;
                    timeout = if timeout < 0 { left } else { timeout.min(left) };
                }
            }
            sys::poll(&mut fds, timeout).map_err(SupervisorError::Poll)?;

            for (pfd, slot) in fds.iter().zip(slots) {
                if pfd.revents == 0 {
                    continue;
                }
                match slot {
                    Slot::Channel => {
                        match sys::read(channel, &mut buf).map_err(SupervisorError::Read)? {
                            Some(0) => return Ok(Outcome::ChannelClosed),
                            Some(n) => decoder.push(&buf[..n]),
                            None => {}
                        }
                    }
                    Slot::Stdout(i) => {
                        self.relay_output(i, false, &mut buf)?;
                    }
                    Slot::Stderr(i) => {
                        self.relay_output(i, true, &mut buf)?;
                    }
                    Slot::ChildSignal => {
                        if let Some(fd) = &sigchld {
                            sys::drain_signalfd(fd.as_fd());
                        }
                    }
                    Slot::Stdin(i) => self.flush_stdin(i),
                    Slot::Pid(i) => self.collect(i),
                }
            }
            if self.config.reap_all {
                self.reap_orphans();
            }

            loop {
                match decoder.next_frame::<HostMessage>() {
                    Ok(Some(frame)) if frame.message == HostMessage::Checkpoint => {
                        if let Some(outcome) = self.pause(channel, &mut decoder, &mut buf)? {
                            return Ok(outcome);
                        }
                    }
                    Ok(Some(frame)) => {
                        if let Some(outcome) = self.handle(frame.stream, frame.message)? {
                            return Ok(outcome);
                        }
                    }
                    Ok(None) => break,
                    Err(err) => {
                        self.send_error(err.stream, ErrorKind::Protocol, err.to_string())?;
                        if err.is_fatal() {
                            return Err(SupervisorError::Fatal(err));
                        }
                    }
                }
            }
        }
    }

    /// `Checkpoint`: answers `Paused` and sends nothing more (the writer stays locked, so no
    /// other thread does either) until the host, maybe another host after a restore, sends
    /// `Resume`; then answers as at boot, [`SYNC`] and `Ready`. The processes run on meanwhile;
    /// their output waits in their pipes.
    fn pause(
        &mut self,
        channel: BorrowedFd<'_>,
        decoder: &mut FrameDecoder,
        buf: &mut [u8],
    ) -> Result<Option<Outcome>, SupervisorError> {
        let writer = Arc::clone(&self.writer);
        let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
        let main = self.procs.iter().find(|p| p.main).map_or(0, |p| p.stream);
        let highest = self.procs.iter().map(|p| p.stream).max().unwrap_or(0);
        w.send(
            0,
            &GuestMessage::Paused {
                main,
                next_stream: highest.saturating_add(1),
            },
        )?;
        loop {
            match decoder.next_frame::<HostMessage>() {
                Ok(Some(frame)) => match frame.message {
                    HostMessage::Resume { seed, realtime_ns } => {
                        let failed = self.setup.resumed(&seed, realtime_ns).err();
                        w.write_raw(&SYNC)?;
                        w.send(
                            0,
                            &GuestMessage::Ready {
                                version: PROTOCOL_VERSION,
                                boot: self.config.boot,
                            },
                        )?;
                        if let Some(message) = failed {
                            w.send(
                                0,
                                &GuestMessage::Error {
                                    kind: ErrorKind::Internal,
                                    message,
                                },
                            )?;
                        }
                        return Ok(None);
                    }
                    HostMessage::Shutdown => return Ok(Some(Outcome::Shutdown)),
                    // Nothing else is answered while paused: the host sends nothing else.
                    _ => {}
                },
                Ok(None) => {
                    let mut fds = [libc::pollfd {
                        fd: channel.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    }];
                    sys::poll(&mut fds, -1).map_err(SupervisorError::Poll)?;
                    match sys::read(channel, buf).map_err(SupervisorError::Read)? {
                        Some(0) => return Ok(Some(Outcome::ChannelClosed)),
                        Some(n) => decoder.push(&buf[..n]),
                        None => {}
                    }
                }
                Err(err) if err.is_fatal() => return Err(SupervisorError::Fatal(err)),
                Err(_) => {}
            }
        }
    }

    fn find(&self, stream: u32) -> Option<usize> {
        self.procs.iter().position(|p| p.stream == stream)
    }

    fn handle(
        &mut self,
        stream: u32,
        msg: HostMessage,
    ) -> Result<Option<Outcome>, SupervisorError> {
        match msg {
            HostMessage::Start(spec) => {
                if self.main_started {
                    self.send_error(
                        stream,
                        ErrorKind::InvalidState,
                        "the main process was already started".into(),
                    )?;
                    return Ok(None);
                }
                if !self.check_new_stream(stream)? {
                    return Ok(None);
                }
                self.main_started = true;
                self.oom_mark = oom::Mark::now();
                let prepared = self.setup.apply(&spec).and_then(|()| {
                    let cgroup_root = self.config.root.join("sys/fs/cgroup");
                    let limits = limits::Limits::prepare(&cgroup_root, &spec.limits)
                        .map_err(|e| crate::errors::chain(&e))?;
                    Ok((limits, security::Security::prepare(&spec.security)?))
                });
                if let Err(message) = prepared.map(|(l, s)| (self.limits, self.security) = (l, s)) {
                    self.send_error(stream, ErrorKind::Spawn, message)?;
                    let status = ExitStatus {
                        code: 125,
                        signal: None,
                    };
                    self.send(stream, &GuestMessage::Exit(status))?;
                    return Ok(Some(Outcome::MainExited(status)));
                }
                self.start(stream, &spec.process, true)
            }
            HostMessage::Exec(spec) => {
                if !self.check_new_stream(stream)? {
                    return Ok(None);
                }
                self.start(stream, &spec, false)
            }
            HostMessage::Stdin(data) => {
                match self.find(stream) {
                    Some(i) if self.procs[i].stdin.is_some() && !self.procs[i].stdin_close => {
                        self.procs[i].stdin_buf.extend_from_slice(&data);
                        self.flush_stdin(i);
                    }
                    Some(_) => {}
                    None => self.unknown_stream(stream)?,
                }
                Ok(None)
            }
            HostMessage::StdinClose => {
                match self.find(stream) {
                    Some(i) => {
                        let p = &mut self.procs[i];
                        if p.stdin.is_some() && !p.stdin_close {
                            p.stdin_close = true;
                            if p.terminal {
                                // A terminal has no "close": end-of-file is the EOF character.
                                p.stdin_buf.push(0x04);
                            }
                            self.flush_stdin(i);
                        }
                    }
                    None => self.unknown_stream(stream)?,
                }
                Ok(None)
            }
            HostMessage::Signal(sig) => {
                match self.find(stream) {
                    Some(i) if self.procs[i].status.is_none() => {
                        // ESRCH: it died meanwhile; its exit is on the way.
                        let _ = sys::kill(self.procs[i].pid, sig);
                    }
                    Some(_) => {}
                    None => self.unknown_stream(stream)?,
                }
                Ok(None)
            }
            HostMessage::Resize { rows, cols } => {
                match self.find(stream) {
                    Some(i) => {
                        if let Some(pty) = &self.procs[i].pty {
                            if let Err(e) = pty::resize(pty.as_fd(), rows, cols) {
                                self.send_error(
                                    stream,
                                    ErrorKind::Internal,
                                    format!("cannot resize the terminal: {e}"),
                                )?;
                            }
                        }
                    }
                    None => self.unknown_stream(stream)?,
                }
                Ok(None)
            }
            HostMessage::StreamUpper => {
                self.stream_upper(stream)?;
                Ok(None)
            }
            HostMessage::Shutdown => Ok(Some(Outcome::Shutdown)),
            HostMessage::CopyOut {
                path,
                follow,
                rebased,
            } => {
                if self.check_new_stream(stream)? {
                    let root = self.config.root.clone();
                    copy::copy_out(&self.writer, stream, root, path, follow, rebased)?;
                }
                Ok(None)
            }
            HostMessage::CopyIn {
                path,
                archive,
                source,
            } => {
                if self.check_new_stream(stream)? {
                    let root = self.config.root.clone();
                    copy::copy_in(
                        &mut self.inbound,
                        &self.writer,
                        stream,
                        root,
                        path,
                        archive,
                        source,
                    )?;
                }
                Ok(None)
            }
            HostMessage::CopyData(data) => {
                if self.inbound.has(stream) {
                    self.inbound.data(stream, data);
                } else {
                    self.unknown_stream(stream)?;
                }
                Ok(None)
            }
            HostMessage::CopyEnd => {
                if self.inbound.has(stream) {
                    self.inbound.end(stream);
                } else {
                    self.unknown_stream(stream)?;
                }
                Ok(None)
            }
            HostMessage::Checkpoint | HostMessage::Resume { .. } => {
                self.send_error(
                    stream,
                    ErrorKind::InvalidState,
                    "Resume is only answered after Checkpoint".into(),
                )?;
                Ok(None)
            }
            HostMessage::Stats => {
                self.send(stream, &GuestMessage::Usage(usage::now()))?;
                Ok(None)
            }
            HostMessage::Top => {
                self.send(stream, &GuestMessage::Processes(top::now()))?;
                Ok(None)
            }
            HostMessage::Mount(mounts) => {
                let status = match self.setup.mount(&mounts) {
                    Ok(()) => 0,
                    Err(message) => {
                        self.send_error(stream, ErrorKind::Internal, message)?;
                        125
                    }
                };
                self.send(
                    stream,
                    &GuestMessage::Exit(ExitStatus {
                        code: status,
                        signal: None,
                    }),
                )?;
                Ok(None)
            }
        }
    }

    fn unknown_stream(&self, stream: u32) -> Result<(), SupervisorError> {
        self.send_error(
            stream,
            ErrorKind::UnknownStream,
            format!("stream {stream} has no process"),
        )
    }

    fn check_new_stream(&self, stream: u32) -> Result<bool, SupervisorError> {
        if stream == 0 || self.find(stream).is_some() || self.inbound.has(stream) {
            self.send_error(
                stream,
                ErrorKind::InvalidState,
                format!("stream {stream} is reserved or already in use"),
            )?;
            return Ok(false);
        }
        Ok(true)
    }

    fn start(
        &mut self,
        stream: u32,
        spec: &ProcessSpec,
        main: bool,
    ) -> Result<Option<Outcome>, SupervisorError> {
        let ns = if !self.config.pid_namespace {
            PidNamespace::Inherit
        } else if main {
            PidNamespace::New
        } else {
            match self.procs.iter().find(|p| p.main && p.status.is_none()) {
                Some(p) => PidNamespace::Join { pid: p.pid },
                None => return self.spawn_failed(stream, main, SpawnError::MainExited),
            }
        };
        let confinement = process::Confinement {
            limits: self.limits.child_side(),
            security: self.security.clone(),
        };
        match process::spawn(spec, &self.config.root, ns, confinement) {
            Ok(s) => {
                self.send(
                    stream,
                    &GuestMessage::Started {
                        pid: s.pid,
                        exec_ns: s.exec_ns,
                    },
                )?;
                self.procs.push(Proc {
                    stream,
                    main,
                    pid: s.pid,
                    pidfd: Some(s.pidfd),
                    terminal: spec.terminal,
                    stdin: s.stdin,
                    stdin_buf: Vec::new(),
                    stdin_close: false,
                    stdout: s.stdout,
                    stderr: s.stderr,
                    pty: s.pty,
                    status: None,
                    exited_at: None,
                });
                Ok(None)
            }
            Err(err) => self.spawn_failed(stream, main, err),
        }
    }

    fn spawn_failed(
        &mut self,
        stream: u32,
        main: bool,
        err: SpawnError,
    ) -> Result<Option<Outcome>, SupervisorError> {
        self.send_error(stream, ErrorKind::Spawn, crate::errors::chain(&err))?;
        let status = ExitStatus {
            code: err.exit_code(),
            signal: None,
        };
        self.send(stream, &GuestMessage::Exit(status))?;
        Ok(main.then_some(Outcome::MainExited(status)))
    }

    fn relay_output(
        &mut self,
        i: usize,
        err: bool,
        buf: &mut [u8],
    ) -> Result<Relay, SupervisorError> {
        let p = &mut self.procs[i];
        let slot = if err { &mut p.stderr } else { &mut p.stdout };
        let Some(fd) = slot else {
            return Ok(Relay::Closed);
        };
        // EIO is how a pty master reports that every slave is closed.
        match sys::read(fd.as_fd(), buf) {
            Ok(Some(0)) | Err(_) => {
                *slot = None;
                Ok(Relay::Closed)
            }
            Ok(Some(n)) => {
                let data = buf[..n].to_vec();
                let msg = if err {
                    GuestMessage::Stderr(data)
                } else {
                    GuestMessage::Stdout(data)
                };
                let stream = p.stream;
                self.send(stream, &msg)?;
                Ok(Relay::Data)
            }
            Ok(None) => Ok(Relay::WouldBlock),
        }
    }

    fn flush_stdin(&mut self, i: usize) {
        let p = &mut self.procs[i];
        let Some(fd) = &p.stdin else { return };
        while !p.stdin_buf.is_empty() {
            match sys::write(fd.as_fd(), &p.stdin_buf) {
                Ok(Some(n)) => {
                    p.stdin_buf.drain(..n);
                }
                Ok(None) => return,
                Err(_) => {
                    // EPIPE: the process closed its stdin; what it did not read is dropped.
                    p.stdin_buf.clear();
                    p.stdin = None;
                    return;
                }
            }
        }
        if p.stdin_close && !p.terminal {
            p.stdin = None;
        }
    }

    /// Collects the exit status of process `i` if it has exited.
    fn collect(&mut self, i: usize) {
        let p = &mut self.procs[i];
        if p.status.is_some() {
            return;
        }
        match sys::try_wait(p.pid as libc::pid_t) {
            Ok(Some((_, raw))) => Self::record(p, process::exit_status(raw)),
            Ok(None) => {}
            // ECHILD: someone else reaped it; the status is lost.
            Err(_) => Self::record(
                p,
                ExitStatus {
                    code: 255,
                    signal: None,
                },
            ),
        }
    }

    fn record(p: &mut Proc, status: ExitStatus) {
        p.status = Some(status);
        p.exited_at = Some(Instant::now());
        p.pidfd = None;
    }

    /// PID 1: reaps every exited child, recording the ones we track.
    fn reap_orphans(&mut self) {
        while let Ok(Some((pid, raw))) = sys::try_wait(-1) {
            if let Some(p) = self.procs.iter_mut().find(|p| p.pid as i32 == pid) {
                Self::record(p, process::exit_status(raw));
            }
        }
    }

    /// Reports the processes that exited and whose output is relayed; returns when the main
    /// process is among them.
    fn finish_exited(&mut self) -> Result<Option<Outcome>, SupervisorError> {
        let mut buf = vec![0u8; MAX_DATA_CHUNK];
        let mut i = 0;
        while i < self.procs.len() {
            let Some(status) = self.procs[i].status else {
                i += 1;
                continue;
            };
            // A pipe holds everything the process wrote before it exited: drain it now, and do
            // not wait for descendants that may keep the pipe open.
            if !self.procs[i].terminal {
                for err in [false, true] {
                    while self.relay_output(i, err, &mut buf)? == Relay::Data {}
                    let p = &mut self.procs[i];
                    *(if err { &mut p.stderr } else { &mut p.stdout }) = None;
                }
            } else if self.procs[i]
                .exited_at
                .is_some_and(|at| at.elapsed() >= PTY_GRACE)
            {
                self.procs[i].stdout = None;
            }
            if self.procs[i].stdout.is_some() || self.procs[i].stderr.is_some() {
                i += 1;
                continue;
            }
            let p = self.procs.remove(i);
            if p.main {
                // The guest is the container: any OOM kill while it ran is its own.
                let kills = self.oom_mark.kills_since();
                if kills > 0 {
                    self.send(p.stream, &GuestMessage::Oom { kills })?;
                }
            }
            self.send(p.stream, &GuestMessage::Exit(status))?;
            if p.main {
                return Ok(Some(Outcome::MainExited(status)));
            }
        }
        Ok(None)
    }

    fn stream_upper(&self, stream: u32) -> Result<(), SupervisorError> {
        let Some(upper) = self.config.upper_dir.clone() else {
            return self.send_error(
                stream,
                ErrorKind::Layer,
                "this guest has no writable layer to stream".into(),
            );
        };
        let writer = Arc::clone(&self.writer);
        // The tar is written from its own thread so stdio keeps flowing meanwhile; frames are
        // whole under the writer's lock, so the two never interleave inside a frame.
        std::thread::Builder::new()
            .name("upper-layer".into())
            .spawn(move || {
                let mut out = layer::ChunkSink::new(|chunk: &[u8]| {
                    send(&writer, stream, &GuestMessage::LayerData(chunk.to_vec()))
                        .map_err(|e| io::Error::other(e.to_string()))
                });
                let result = layer::write_upper_tar(&upper, &mut out).and_then(|()| {
                    out.finish()
                        .map_err(|source| layer::LayerError::Write { source })
                });
                let msg = match result {
                    Ok(()) => GuestMessage::LayerEnd { bytes: out.total() },
                    Err(e) => GuestMessage::Error {
                        kind: ErrorKind::Layer,
                        message: crate::errors::chain(&e),
                    },
                };
                let _ = send(&writer, stream, &msg);
            })
            .map_err(SupervisorError::Channel)?;
        Ok(())
    }

    /// Kills what is still running (the whole session of each process) and reaps it.
    fn kill_all(&mut self) {
        for p in &self.procs {
            if p.status.is_none() {
                let _ = sys::kill_group(p.pid, libc::SIGKILL);
                let _ = sys::kill(p.pid, libc::SIGKILL);
            }
        }
        for p in self.procs.drain(..) {
            if p.status.is_none() {
                let _ = sys::wait_blocking(p.pid as libc::pid_t);
            }
        }
    }
}
