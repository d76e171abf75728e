//! The client side of the control channel, used by the `nook` commands that act on a running
//! VM container (see the protocol table in [`super`]).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use nook_agent::copy::CopyInfo;
use nook_agent::protocol::{
    ExitStatus, FrameReader, FrameWriter, GuestMessage, GuestProcesses, GuestUsage, HostMessage,
    ProcessSpec, MAX_DATA_CHUNK,
};

use super::{ControlError, REQUEST_STREAM, REQUEST_TIMEOUT, WRITE_TIMEOUT};

type Writer = Arc<Mutex<FrameWriter<UnixStream>>>;

struct Conn {
    stream: UnixStream,
    reader: FrameReader<UnixStream>,
    writer: Writer,
}

impl Conn {
    fn open(path: &Path) -> Result<Conn, ControlError> {
        let stream = UnixStream::connect(path).map_err(|source| ControlError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        Conn::over(stream)
    }

    fn over(stream: UnixStream) -> Result<Conn, ControlError> {
        stream
            .set_write_timeout(Some(WRITE_TIMEOUT))
            .map_err(ControlError::Io)?;
        let reader = FrameReader::new(stream.try_clone().map_err(ControlError::Io)?);
        let writer = FrameWriter::new(stream.try_clone().map_err(ControlError::Io)?);
        Ok(Conn {
            stream,
            reader,
            writer: Arc::new(Mutex::new(writer)),
        })
    }

    fn send(&self, stream: u32, msg: &HostMessage) -> Result<(), ControlError> {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(stream, msg)?;
        Ok(())
    }

    fn next(&mut self, what: &'static str) -> Result<GuestMessage, ControlError> {
        match self.reader.read_frame::<GuestMessage>()? {
            Some(f) => Ok(f.message),
            None => Err(ControlError::Closed { what }),
        }
    }
}

/// Sends `signal` to the container's main process; returns once the agent has it.
pub fn signal(path: &Path, signal: i32) -> Result<(), ControlError> {
    signal_over(Conn::open(path)?, signal)
}

fn signal_over(mut conn: Conn, signal: i32) -> Result<(), ControlError> {
    conn.stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(ControlError::Io)?;
    conn.send(0, &HostMessage::Signal(signal))?;
    match conn.next("the signal was delivered")? {
        GuestMessage::Exit(ExitStatus { code: 0, .. }) => Ok(()),
        GuestMessage::Error { message, .. } => Err(ControlError::Agent { message }),
        other => Err(ControlError::Unexpected {
            got: format!("{other:?}"),
        }),
    }
}

/// Checkpoints the VM: its agent pauses, its VMM writes `checkpoint.pending/` and ends.
/// Returns the main process's agent stream and the first stream free.
pub fn checkpoint(path: &Path) -> Result<(u32, u32), ControlError> {
    let mut conn = Conn::open(path)?;
    // The agent answers between two frames; a busy guest may take a moment.
    conn.stream
        .set_read_timeout(Some(REQUEST_TIMEOUT * 2))
        .map_err(ControlError::Io)?;
    conn.send(0, &HostMessage::Checkpoint)?;
    match conn.next("the VM was paused for the checkpoint")? {
        GuestMessage::Paused { main, next_stream } => Ok((main, next_stream)),
        GuestMessage::Error { message, .. } => Err(ControlError::Agent { message }),
        other => Err(ControlError::Unexpected {
            got: format!("{other:?}"),
        }),
    }
}

/// The guest's counters (`nook stats`), read by its agent now.
pub fn stats(path: &Path) -> Result<GuestUsage, ControlError> {
    stats_over(Conn::open(path)?)
}

fn stats_over(mut conn: Conn) -> Result<GuestUsage, ControlError> {
    conn.stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(ControlError::Io)?;
    conn.send(REQUEST_STREAM, &HostMessage::Stats)?;
    match conn.next("the guest's counters were sent")? {
        GuestMessage::Usage(usage) => Ok(usage),
        GuestMessage::Error { message, .. } => Err(ControlError::Agent { message }),
        other => Err(ControlError::Unexpected {
            got: format!("{other:?}"),
        }),
    }
}

/// The container's processes (`nook top`), listed by its agent now.
pub fn top(path: &Path) -> Result<GuestProcesses, ControlError> {
    top_over(Conn::open(path)?)
}

fn top_over(mut conn: Conn) -> Result<GuestProcesses, ControlError> {
    conn.stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(ControlError::Io)?;
    conn.send(REQUEST_STREAM, &HostMessage::Top)?;
    match conn.next("the container's processes were listed")? {
        GuestMessage::Processes(list) => Ok(list),
        GuestMessage::Error { message, .. } => Err(ControlError::Agent { message }),
        other => Err(ControlError::Unexpected {
            got: format!("{other:?}"),
        }),
    }
}

/// Copies the container's writable layer, as an OCI layer tar, into `out`; returns its size.
pub fn stream_upper(path: &Path, out: &mut dyn Write) -> Result<u64, ControlError> {
    stream_upper_over(Conn::open(path)?, out)
}

fn stream_upper_over(mut conn: Conn, out: &mut dyn Write) -> Result<u64, ControlError> {
    // Between two frames of a layer the guest may read a large file: generous, but bounded.
    conn.stream
        .set_read_timeout(Some(REQUEST_TIMEOUT * 30))
        .map_err(ControlError::Io)?;
    conn.send(REQUEST_STREAM, &HostMessage::StreamUpper)?;
    let mut written = 0u64;
    loop {
        match conn.next("the layer was complete")? {
            GuestMessage::LayerData(d) => {
                out.write_all(&d).map_err(ControlError::Output)?;
                written += d.len() as u64;
            }
            GuestMessage::LayerEnd { bytes } => {
                if bytes != written {
                    return Err(ControlError::Unexpected {
                        got: format!("a layer of {bytes} bytes after {written} bytes of data"),
                    });
                }
                out.flush().map_err(ControlError::Output)?;
                return Ok(bytes);
            }
            GuestMessage::Error { message, .. } => return Err(ControlError::Agent { message }),
            other => {
                return Err(ControlError::Unexpected {
                    got: format!("{other:?}"),
                })
            }
        }
    }
}

/// How long the guest may take between two frames of a copy (it may be reading or writing a
/// large file meanwhile): generous, but bounded.
const COPY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// `nook cp CONTAINER:SRC`: the tar of the container's `src` as the agent sends it (rebased,
/// or named as docker names it), read through [`Read`] after [`CopyOut::info`].
pub struct CopyOut {
    conn: Conn,
    info: CopyInfo,
    chunk: Vec<u8>,
    at: usize,
    got: u64,
    done: bool,
}

/// Asks the monitor for the tar of `src` (resolved inside the container; a symlink at `src`
/// followed only with `follow`).
pub fn copy_out(
    path: &Path,
    src: &str,
    follow: bool,
    rebased: bool,
) -> Result<CopyOut, ControlError> {
    copy_out_over(Conn::open(path)?, src, follow, rebased)
}

fn copy_out_over(
    mut conn: Conn,
    src: &str,
    follow: bool,
    rebased: bool,
) -> Result<CopyOut, ControlError> {
    conn.stream
        .set_read_timeout(Some(COPY_TIMEOUT))
        .map_err(ControlError::Io)?;
    conn.send(
        REQUEST_STREAM,
        &HostMessage::CopyOut {
            path: src.into(),
            follow,
            rebased,
        },
    )?;
    let info = match conn.next("the copy started")? {
        GuestMessage::CopySource(info) => info,
        GuestMessage::Error { message, .. } => return Err(ControlError::Copy { message }),
        other => {
            return Err(ControlError::Unexpected {
                got: format!("{other:?}"),
            })
        }
    };
    Ok(CopyOut {
        conn,
        info,
        chunk: Vec::new(),
        at: 0,
        got: 0,
        done: false,
    })
}

impl CopyOut {
    /// What the source is, as the guest found it.
    pub fn info(&self) -> &CopyInfo {
        &self.info
    }

    /// Reads to the end of the stream: the guest's error, if it failed after the tar's last
    /// entry was read.
    pub fn finish(mut self) -> std::io::Result<u64> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok(self.got)
    }
}

impl Read for CopyOut {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            let fail = |e: ControlError| std::io::Error::other(crate::errors::chain(&e));
            match self.conn.next("the copy was complete").map_err(fail)? {
                GuestMessage::CopyData(d) => {
                    self.got += d.len() as u64;
                    self.chunk = d;
                    self.at = 0;
                }
                GuestMessage::CopyEnd { bytes } if bytes == self.got => self.done = true,
                GuestMessage::CopyEnd { bytes } => {
                    return Err(fail(ControlError::Unexpected {
                        got: format!("a copy of {bytes} bytes after {} bytes of data", self.got),
                    }))
                }
                GuestMessage::Error { message, .. } => {
                    return Err(fail(ControlError::Copy { message }))
                }
                other => {
                    return Err(fail(ControlError::Unexpected {
                        got: format!("{other:?}"),
                    }))
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// `nook cp ... CONTAINER:DST`: a tar written into the container through [`Write`], then
/// [`CopyIn::finish`].
pub struct CopyIn {
    conn: Conn,
    buf: Vec<u8>,
}

/// Asks the monitor to write a tar at `dst` in the container: the rebased tree of `source`
/// placed by docker's rules, or a user's stream into the directory `dst`.
pub fn copy_in(
    path: &Path,
    dst: &str,
    archive: bool,
    source: Option<CopyInfo>,
) -> Result<CopyIn, ControlError> {
    copy_in_over(Conn::open(path)?, dst, archive, source)
}

fn copy_in_over(
    conn: Conn,
    dst: &str,
    archive: bool,
    source: Option<CopyInfo>,
) -> Result<CopyIn, ControlError> {
    conn.stream
        .set_read_timeout(Some(COPY_TIMEOUT))
        .map_err(ControlError::Io)?;
    conn.send(
        REQUEST_STREAM,
        &HostMessage::CopyIn {
            path: dst.into(),
            archive,
            source,
        },
    )?;
    Ok(CopyIn {
        conn,
        buf: Vec::with_capacity(MAX_DATA_CHUNK),
    })
}

impl CopyIn {
    fn flush_chunk(&mut self) -> Result<(), ControlError> {
        if !self.buf.is_empty() {
            let data = std::mem::take(&mut self.buf);
            self.conn
                .send(REQUEST_STREAM, &HostMessage::CopyData(data))?;
            self.buf.reserve(MAX_DATA_CHUNK);
        }
        Ok(())
    }

    /// Ends the tar and waits for the guest to have written it; returns the bytes of file
    /// data written.
    pub fn finish(mut self) -> Result<u64, ControlError> {
        self.flush_chunk()?;
        self.conn.send(REQUEST_STREAM, &HostMessage::CopyEnd)?;
        match self.conn.next("the copy was written")? {
            GuestMessage::CopyEnd { bytes } => Ok(bytes),
            GuestMessage::Error { message, .. } => Err(ControlError::Copy { message }),
            other => Err(ControlError::Unexpected {
                got: format!("{other:?}"),
            }),
        }
    }
}

impl Write for CopyIn {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(MAX_DATA_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == MAX_DATA_CHUNK {
            self.flush_chunk()
                .map_err(|e| std::io::Error::other(crate::errors::chain(&e)))?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How an exec'd process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    pub status: ExitStatus,
    /// Whether the agent reported the process started (false: it could not be spawned).
    pub started: bool,
    /// The agent's error messages about the process.
    pub errors: Vec<String>,
}

/// A process started in the guest through the control channel.
pub struct ExecSession {
    conn: Conn,
}

/// Asks the monitor to run `spec` in the guest.
pub fn exec(path: &Path, spec: ProcessSpec) -> Result<ExecSession, ControlError> {
    exec_over(Conn::open(path)?, spec)
}

fn exec_over(conn: Conn, spec: ProcessSpec) -> Result<ExecSession, ControlError> {
    conn.send(REQUEST_STREAM, &HostMessage::Exec(spec))?;
    Ok(ExecSession { conn })
}

impl ExecSession {
    /// Copies `input` to the process's stdin from a thread, then closes it.
    pub fn pump_stdin<R: Read + Send + 'static>(&self, mut input: R) {
        let writer = Arc::clone(&self.conn.writer);
        let _ = std::thread::Builder::new()
            .name("exec-stdin".into())
            .spawn(move || {
                let mut buf = vec![0u8; MAX_DATA_CHUNK];
                loop {
                    let n = match input.read(&mut buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => 0,
                    };
                    let msg = if n == 0 {
                        HostMessage::StdinClose
                    } else {
                        HostMessage::Stdin(buf[..n].to_vec())
                    };
                    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
                    if w.send(REQUEST_STREAM, &msg).is_err() || n == 0 {
                        return;
                    }
                }
            });
    }

    /// A handle that resizes the process's terminal or signals it from another thread.
    pub fn controller(&self) -> ExecControl {
        ExecControl {
            writer: Arc::clone(&self.conn.writer),
        }
    }

    /// Relays the process's output until it exits.
    pub fn wait(
        mut self,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<ExecOutcome, ControlError> {
        let mut started = false;
        let mut errors = Vec::new();
        loop {
            match self.conn.next("the process exited")? {
                GuestMessage::Started { .. } => started = true,
                GuestMessage::Stdout(d) => {
                    stdout.write_all(&d).map_err(ControlError::Output)?;
                    stdout.flush().map_err(ControlError::Output)?;
                }
                GuestMessage::Stderr(d) => stderr.write_all(&d).map_err(ControlError::Output)?,
                GuestMessage::Error { message, .. } => errors.push(message),
                GuestMessage::Exit(status) => {
                    let _ = self.conn.stream.shutdown(std::net::Shutdown::Both);
                    return Ok(ExecOutcome {
                        status,
                        started,
                        errors,
                    });
                }
                other => {
                    return Err(ControlError::Unexpected {
                        got: format!("{other:?}"),
                    })
                }
            }
        }
    }
}

/// Sends resizes and signals to an exec'd process.
#[derive(Clone)]
pub struct ExecControl {
    writer: Writer,
}

impl ExecControl {
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), ControlError> {
        self.send(&HostMessage::Resize { rows, cols })
    }

    pub fn signal(&self, signal: i32) -> Result<(), ControlError> {
        self.send(&HostMessage::Signal(signal))
    }

    fn send(&self, msg: &HostMessage) -> Result<(), ControlError> {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(REQUEST_STREAM, msg)?;
        Ok(())
    }
}

/// For tests: the same requests over an already connected socket.
#[cfg(test)]
pub(super) mod over {
    use super::*;

    pub fn signal(s: UnixStream, sig: i32) -> Result<(), ControlError> {
        signal_over(Conn::over(s)?, sig)
    }

    pub fn stream_upper(s: UnixStream, out: &mut dyn Write) -> Result<u64, ControlError> {
        stream_upper_over(Conn::over(s)?, out)
    }

    pub fn exec(s: UnixStream, spec: ProcessSpec) -> Result<ExecSession, ControlError> {
        exec_over(Conn::over(s)?, spec)
    }

    pub fn stats(s: UnixStream) -> Result<GuestUsage, ControlError> {
        stats_over(Conn::over(s)?)
    }

    pub fn top(s: UnixStream) -> Result<GuestProcesses, ControlError> {
        top_over(Conn::over(s)?)
    }
}
