//! The host side of the agent channel: waits for `Ready`, starts processes, pumps their stdio and
//! collects their exit status. Works over any byte stream; a reader thread turns incoming frames
//! into events, so sending never waits on receiving.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::protocol::{
    skip_to_sync, BootTimes, ErrorKind, ExitStatus, Frame, FrameReader, FrameWriter, GuestMessage,
    HostMessage, ProcessSpec, ReadError, StartSpec, WriteError, MAX_DATA_CHUNK, PROTOCOL_VERSION,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot set up the agent channel")]
    Setup(#[source] io::Error),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("the agent speaks protocol version {got}, this host speaks {want}")]
    Version { got: u32, want: u32 },
    #[error("the agent channel closed before {what}")]
    Closed { what: &'static str },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: &'static str, after: Duration },
    #[error("the agent sent {got} before its ready message")]
    NotReady { got: String },
    #[error("the agent reported an error on the connection: {message}")]
    Agent { kind: ErrorKind, message: String },
    #[error("the agent sent {got} on stream {stream}, which was not expected")]
    Unexpected { stream: u32, got: String },
    #[error("copying process output to its destination failed")]
    Output(#[source] io::Error),
}

/// What the agent announced in its ready message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub version: u32,
    pub boot: BootTimes,
}

/// How a process went, as seen by [`Client::wait_process`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessResult {
    pub status: ExitStatus,
    /// Pid and `CLOCK_BOOTTIME` exec time, when the process started at all.
    pub started: Option<(u32, u64)>,
    /// Error messages the agent sent for this process (e.g. why it could not start).
    pub errors: Vec<String>,
    /// The guest's OOM killer ended a process while it ran (the main process only).
    pub oom_killed: bool,
}

/// One process's output relay: the frames of its stream go in, its output goes to the caller's
/// writers, its result comes out at its exit. The unshared client and a shared connection's
/// router (the runtime's) both feed it.
#[derive(Default)]
pub struct ProcessRelay {
    started: Option<(u32, u64)>,
    errors: Vec<String>,
    oom_killed: bool,
}

impl ProcessRelay {
    /// Takes one message of the process's `stream`; returns its result once it exited.
    pub fn take(
        &mut self,
        stream: u32,
        message: GuestMessage,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<Option<ProcessResult>, ClientError> {
        match message {
            GuestMessage::Started { pid, exec_ns } => self.started = Some((pid, exec_ns)),
            GuestMessage::Stdout(d) => stdout.write_all(&d).map_err(ClientError::Output)?,
            GuestMessage::Stderr(d) => stderr.write_all(&d).map_err(ClientError::Output)?,
            GuestMessage::Error { message, .. } => self.errors.push(message),
            GuestMessage::Oom { kills } => self.oom_killed |= kills > 0,
            GuestMessage::Exit(status) => {
                return Ok(Some(ProcessResult {
                    status,
                    started: self.started,
                    errors: std::mem::take(&mut self.errors),
                    oom_killed: self.oom_killed,
                }))
            }
            other => {
                return Err(ClientError::Unexpected {
                    stream,
                    got: format!("{other:?}"),
                })
            }
        }
        Ok(None)
    }
}

type Event = Result<Frame<GuestMessage>, ReadError>;

/// A connection to an agent.
pub struct Client {
    writer: Arc<Mutex<FrameWriter<Box<dyn Write + Send>>>>,
    /// Behind a lock so that a client can be shared between threads (one of them reads).
    events: Mutex<Receiver<Event>>,
    pending: Mutex<VecDeque<Frame<GuestMessage>>>,
    next_stream: AtomicU32,
    closed: Mutex<bool>,
    /// For a socket: shut down on drop, so the reader thread's blocking read ends and the agent
    /// sees the host go away.
    socket: Option<UnixStream>,
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(s) = &self.socket {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Client {
    /// Wraps both halves of a byte stream. Spawns the reader thread.
    pub fn new<R, W>(reader: R, writer: W) -> Result<Client, ClientError>
    where
        R: Read + Send + 'static,
        W: Write + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("agent-reader".into())
            .spawn(move || {
                let mut reader = reader;
                if let Err(e) = skip_to_sync(&mut reader) {
                    let _ = tx.send(Err(ReadError::Io(e)));
                    return;
                }
                let mut reader = FrameReader::new(reader);
                loop {
                    let event = reader.read_frame::<GuestMessage>();
                    let stop = match &event {
                        Ok(None) => true,
                        Ok(Some(_)) => false,
                        Err(ReadError::Frame(e)) => e.is_fatal(),
                        Err(_) => true,
                    };
                    let event = match event {
                        Ok(None) => break,
                        Ok(Some(f)) => Ok(f),
                        Err(e) => Err(e),
                    };
                    if tx.send(event).is_err() || stop {
                        break;
                    }
                }
            })
            .map_err(ClientError::Setup)?;
        Ok(Client {
            writer: Arc::new(Mutex::new(FrameWriter::new(Box::new(writer)))),
            events: Mutex::new(rx),
            pending: Mutex::new(VecDeque::new()),
            next_stream: AtomicU32::new(1),
            closed: Mutex::new(false),
            socket: None,
        })
    }

    /// Uses a connected Unix stream socket (the VMM's end of the virtio console).
    pub fn from_unix(stream: UnixStream) -> Result<Client, ClientError> {
        let reader = stream.try_clone().map_err(ClientError::Setup)?;
        let closer = stream.try_clone().map_err(ClientError::Setup)?;
        let mut client = Client::new(reader, stream)?;
        client.socket = Some(closer);
        Ok(client)
    }

    /// Sends one frame on `stream` (a stream from [`Client::new_stream`], or 0).
    pub fn send(&self, stream: u32, msg: &HostMessage) -> Result<(), ClientError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        w.send(stream, msg)?;
        Ok(())
    }

    /// The next frame from the agent; `Ok(None)` when the channel closed.
    pub fn next_event(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<Frame<GuestMessage>>, ClientError> {
        if let Some(f) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
        {
            return Ok(Some(f));
        }
        if *self.closed.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(None);
        }
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let event = match timeout {
            Some(t) => match events.recv_timeout(t) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(ClientError::Timeout {
                        what: "the agent",
                        after: t,
                    })
                }
                Err(RecvTimeoutError::Disconnected) => {
                    *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = true;
                    return Ok(None);
                }
            },
            None => match events.recv() {
                Ok(e) => e,
                Err(_) => {
                    *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = true;
                    return Ok(None);
                }
            },
        };
        Ok(Some(event?))
    }

    /// Waits for the agent's ready message and checks its protocol version.
    pub fn wait_ready(&self, timeout: Duration) -> Result<Ready, ClientError> {
        let deadline = Instant::now() + timeout;
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = self
            .next_event(Some(left))
            .map_err(|e| match e {
                ClientError::Timeout { after, .. } => ClientError::Timeout {
                    what: "the agent's ready message",
                    after,
                },
                e => e,
            })?
            .ok_or(ClientError::Closed {
                what: "the agent was ready",
            })?;
        match frame.message {
            GuestMessage::Ready { version, boot } => {
                if version != PROTOCOL_VERSION {
                    return Err(ClientError::Version {
                        got: version,
                        want: PROTOCOL_VERSION,
                    });
                }
                Ok(Ready { version, boot })
            }
            GuestMessage::Error { kind, message } => Err(ClientError::Agent { kind, message }),
            other => Err(ClientError::NotReady {
                got: format!("{other:?}"),
            }),
        }
    }

    /// A fresh stream id, for a caller that routes the stream's frames before it sends the
    /// request that opens it.
    pub fn new_stream(&self) -> u32 {
        self.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    /// The stream [`Client::new_stream`] gives next.
    pub fn peek_stream(&self) -> u32 {
        self.next_stream.load(Ordering::Relaxed)
    }

    /// Gives out no stream below `first` (a resumed guest's processes still hold those).
    pub fn skip_streams(&self, first: u32) {
        self.next_stream.fetch_max(first, Ordering::Relaxed);
    }

    /// Starts the container's main process; returns its stream id.
    pub fn start(&self, spec: StartSpec) -> Result<u32, ClientError> {
        let stream = self.new_stream();
        self.send(stream, &HostMessage::Start(spec))?;
        Ok(stream)
    }

    /// Runs another process in the running guest; returns its stream id.
    pub fn exec(&self, spec: ProcessSpec) -> Result<u32, ClientError> {
        let stream = self.new_stream();
        self.send(stream, &HostMessage::Exec(spec))?;
        Ok(stream)
    }

    /// Sends stdin bytes, in frames of at most [`MAX_DATA_CHUNK`].
    pub fn write_stdin(&self, stream: u32, data: &[u8]) -> Result<(), ClientError> {
        for chunk in data.chunks(MAX_DATA_CHUNK) {
            self.send(stream, &HostMessage::Stdin(chunk.to_vec()))?;
        }
        Ok(())
    }

    pub fn close_stdin(&self, stream: u32) -> Result<(), ClientError> {
        self.send(stream, &HostMessage::StdinClose)
    }

    pub fn signal(&self, stream: u32, signal: i32) -> Result<(), ClientError> {
        self.send(stream, &HostMessage::Signal(signal))
    }

    pub fn resize(&self, stream: u32, rows: u16, cols: u16) -> Result<(), ClientError> {
        self.send(stream, &HostMessage::Resize { rows, cols })
    }

    pub fn shutdown(&self) -> Result<(), ClientError> {
        self.send(0, &HostMessage::Shutdown)
    }

    /// Copies `input` to the stream's stdin from a thread, then closes it. The thread ends with
    /// `input` or with the connection.
    pub fn pump_stdin<R: Read + Send + 'static>(&self, stream: u32, mut input: R) {
        let writer = Arc::clone(&self.writer);
        let _ = std::thread::Builder::new()
            .name("agent-stdin".into())
            .spawn(move || {
                let mut buf = vec![0u8; MAX_DATA_CHUNK];
                loop {
                    let n = match input.read(&mut buf) {
                        Ok(0) | Err(_) => 0,
                        Ok(n) => n,
                    };
                    let msg = if n == 0 {
                        HostMessage::StdinClose
                    } else {
                        HostMessage::Stdin(buf[..n].to_vec())
                    };
                    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
                    if w.send(stream, &msg).is_err() || n == 0 {
                        return;
                    }
                }
            });
    }

    /// Relays the stream's output into `stdout` and `stderr` until its exit. Frames for other
    /// streams are kept for later [`Client::next_event`] calls.
    pub fn wait_process(
        &self,
        stream: u32,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<ProcessResult, ClientError> {
        let mut relay = ProcessRelay::default();
        let mut others = Vec::new();
        let result = loop {
            let Some(frame) = self.next_event(None)? else {
                break Err(ClientError::Closed {
                    what: "the process exited",
                });
            };
            if frame.stream != stream {
                if let (0, GuestMessage::Error { kind, message }) = (frame.stream, &frame.message) {
                    break Err(ClientError::Agent {
                        kind: *kind,
                        message: message.clone(),
                    });
                }
                others.push(frame);
                continue;
            }
            match relay.take(stream, frame.message, stdout, stderr) {
                Ok(None) => {}
                Ok(Some(result)) => break Ok(result),
                Err(e) => break Err(e),
            }
        };
        let _ = stdout.flush();
        let _ = stderr.flush();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(others);
        result
    }

    /// Asks for the writable layer as an OCI layer tar and copies it into `out`; returns its
    /// size in bytes.
    pub fn stream_upper(&self, out: &mut dyn Write) -> Result<u64, ClientError> {
        let stream = self.new_stream();
        self.send(stream, &HostMessage::StreamUpper)?;
        let mut others = Vec::new();
        let result = loop {
            let Some(frame) = self.next_event(None)? else {
                break Err(ClientError::Closed {
                    what: "the layer was complete",
                });
            };
            if frame.stream != stream {
                others.push(frame);
                continue;
            }
            match frame.message {
                GuestMessage::LayerData(d) => out.write_all(&d).map_err(ClientError::Output)?,
                GuestMessage::LayerEnd { bytes } => break Ok(bytes),
                GuestMessage::Error { kind, message } => {
                    break Err(ClientError::Agent { kind, message })
                }
                other => {
                    break Err(ClientError::Unexpected {
                        stream,
                        got: format!("{other:?}"),
                    })
                }
            }
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(others);
        result
    }
}
