//! The monitor's side of the control channel: accepts connections on the container's control
//! socket and relays each one's request over the shared agent connection.
//!
//! Each connection has its own threads, so a slow or hostile client holds up only its own
//! request: its first frame must come within [`REQUEST_TIMEOUT`], frames are bounded by the
//! protocol's decoder, writes to it time out after [`WRITE_TIMEOUT`], and the agent's frames for
//! it wait in a bounded queue (see [`Mux`]).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nook_agent::protocol::{
    ErrorKind, ExitStatus, Frame, FrameReader, FrameWriter, GuestMessage, HostMessage,
};

use super::{MAX_CONNECTIONS, REQUEST_STREAM, REQUEST_TIMEOUT, WRITE_TIMEOUT};
use crate::isolation::vm::mux::Mux;
use crate::util::fd;

type Writer = Arc<Mutex<FrameWriter<UnixStream>>>;

/// How long the accept loop pauses after a failed accept or poll, rather than spin.
const ERROR_PAUSE: Duration = Duration::from_millis(20);

/// The accept loop of a container's control socket; ends (and removes the socket) on drop.
pub struct ControlServer {
    stop: Arc<AtomicBool>,
    /// Written on drop: wakes the accept loop, which waits for a connection or this.
    wake: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Closing the write end hangs the pipe up, which wakes the loop's poll.
        self.wake = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ControlServer {
    /// Serves `listener` (bound at `path`) until dropped.
    pub fn start(listener: UnixListener, path: PathBuf, mux: Arc<Mux>) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (woken, wake) = fd::pipe()?;
        let thread = std::thread::Builder::new()
            .name("vm-control".into())
            .spawn(move || accept_loop(&listener, &woken, &flag, &mux))?;
        Ok(ControlServer {
            stop,
            wake: Some(wake),
            thread: Some(thread),
            path,
        })
    }
}

/// Accepts connections until `stop` is set; sleeps in poll until a client connects or `woken`
/// (the read end of the server's wake pipe) hangs up.
fn accept_loop(listener: &UnixListener, woken: &OwnedFd, stop: &AtomicBool, mux: &Arc<Mux>) {
    let live = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        let conn = match listener.accept() {
            Ok((conn, _)) => conn,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if fd::wait_readable(&[listener.as_fd(), woken.as_fd()], None).is_err() {
                    std::thread::sleep(ERROR_PAUSE);
                }
                continue;
            }
            Err(_) => {
                // Out of descriptors, say: the client is dropped; look again after a moment.
                std::thread::sleep(ERROR_PAUSE);
                continue;
            }
        };
        if live.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            continue; // dropped: closed at once
        }
        live.fetch_add(1, Ordering::SeqCst);
        let (mux, live2) = (Arc::clone(mux), Arc::clone(&live));
        let spawned = std::thread::Builder::new()
            .name("vm-control-conn".into())
            .spawn(move || {
                let _ = serve(conn, &mux);
                live2.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            live.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn send(writer: &Writer, stream: u32, msg: &GuestMessage) -> io::Result<()> {
    writer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(stream, msg)
        .map_err(|e| io::Error::other(e.to_string()))
}

fn refuse(writer: &Writer, stream: u32, kind: ErrorKind, message: String) -> io::Result<()> {
    send(writer, stream, &GuestMessage::Error { kind, message })
}

/// Opens a stream of the agent connection for a client's request and sends it there; when that
/// fails the client is told why and there is nothing more to do (None).
fn open_request(
    mux: &Mux,
    writer: &Writer,
    request: HostMessage,
) -> io::Result<Option<(u32, Receiver<Frame<GuestMessage>>)>> {
    let (stream, frames) = match mux.open() {
        Ok(r) => r,
        Err(e) => {
            refuse(
                writer,
                REQUEST_STREAM,
                ErrorKind::InvalidState,
                crate::errors::chain(&e),
            )?;
            return Ok(None);
        }
    };
    if let Err(e) = mux.send(stream, &request) {
        mux.forget(stream);
        refuse(
            writer,
            REQUEST_STREAM,
            ErrorKind::Internal,
            crate::errors::chain(&e),
        )?;
        return Ok(None);
    }
    Ok(Some((stream, frames)))
}

/// Serves one connection: one request.
pub fn serve(conn: UnixStream, mux: &Mux) -> io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    conn.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let writer: Writer = Arc::new(Mutex::new(FrameWriter::new(conn.try_clone()?)));
    let mut reader = FrameReader::new(conn.try_clone()?);
    let first = match reader.read_frame::<HostMessage>() {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(()),
        Err(e) => return refuse(&writer, 0, ErrorKind::Protocol, e.to_string()),
    };
    match (first.stream, first.message) {
        (0, HostMessage::Signal(sig)) => {
            let result = match mux.main_stream() {
                Some(main) => mux
                    .send(main, &HostMessage::Signal(sig))
                    .map_err(|e| crate::errors::chain(&e)),
                None => Err("the container's process has not started".to_string()),
            };
            match result {
                Ok(()) => send(
                    &writer,
                    0,
                    &GuestMessage::Exit(ExitStatus {
                        code: 0,
                        signal: None,
                    }),
                ),
                Err(message) => refuse(&writer, 0, ErrorKind::Internal, message),
            }
        }
        (0, HostMessage::Checkpoint) => match mux.checkpoint(REQUEST_TIMEOUT) {
            Ok((main, next_stream)) => {
                send(&writer, 0, &GuestMessage::Paused { main, next_stream })
            }
            Err(message) => refuse(&writer, 0, ErrorKind::InvalidState, message),
        },
        (REQUEST_STREAM, HostMessage::Exec(spec)) => {
            let Some((stream, frames)) = open_request(mux, &writer, HostMessage::Exec(spec))?
            else {
                return Ok(());
            };
            let out = Arc::clone(&writer);
            let closer = conn.try_clone()?;
            let forward = std::thread::Builder::new()
                .name("vm-control-out".into())
                .spawn(move || {
                    forward(&frames, &out);
                    // The process ended (or the client stopped reading): end the connection,
                    // which also ends the input loop below.
                    let _ = closer.shutdown(std::net::Shutdown::Both);
                })?;
            // Input may be idle for as long as the process runs.
            conn.set_read_timeout(None)?;
            let mut stdin_open = true;
            loop {
                let frame = match reader.read_frame::<HostMessage>() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) if matches!(&e, nook_agent::protocol::ReadError::Frame(f) if !f.is_fatal()) =>
                    {
                        let _ = refuse(&writer, REQUEST_STREAM, ErrorKind::Protocol, e.to_string());
                        continue;
                    }
                    Err(_) => break,
                };
                let relayed = match (frame.stream, frame.message) {
                    (REQUEST_STREAM, m @ HostMessage::Stdin(_)) if stdin_open => Some(m),
                    (REQUEST_STREAM, HostMessage::StdinClose) if stdin_open => {
                        stdin_open = false;
                        Some(HostMessage::StdinClose)
                    }
                    (REQUEST_STREAM, m @ (HostMessage::Signal(_) | HostMessage::Resize { .. })) => {
                        Some(m)
                    }
                    (REQUEST_STREAM, HostMessage::Stdin(_) | HostMessage::StdinClose) => None,
                    (s, other) => {
                        let _ = refuse(
                            &writer,
                            s,
                            ErrorKind::InvalidState,
                            format!("{other:?} is not allowed on an exec connection"),
                        );
                        None
                    }
                };
                if let Some(m) = relayed {
                    if mux.send(stream, &m).is_err() {
                        break;
                    }
                }
            }
            // The client went away: the process keeps running (as with docker), its stdin ends.
            if stdin_open {
                let _ = mux.send(stream, &HostMessage::StdinClose);
            }
            let _ = forward.join();
            mux.forget(stream);
            Ok(())
        }
        (REQUEST_STREAM, HostMessage::StreamUpper) => {
            let Some((stream, frames)) = open_request(mux, &writer, HostMessage::StreamUpper)?
            else {
                return Ok(());
            };
            forward(&frames, &writer);
            mux.forget(stream);
            Ok(())
        }
        (REQUEST_STREAM, request @ HostMessage::CopyOut { .. }) => {
            let Some((stream, frames)) = open_request(mux, &writer, request)? else {
                return Ok(());
            };
            forward(&frames, &writer);
            mux.forget(stream);
            Ok(())
        }
        (REQUEST_STREAM, request @ (HostMessage::Stats | HostMessage::Top)) => {
            let Some((stream, frames)) = open_request(mux, &writer, request)? else {
                return Ok(());
            };
            // One frame answers; the agent reads its counters or lists the processes between
            // two of the container's frames, at once.
            let answer = frames.recv_timeout(REQUEST_TIMEOUT);
            mux.forget(stream);
            match answer {
                Ok(frame) => send(&writer, REQUEST_STREAM, &frame.message),
                Err(_) => refuse(
                    &writer,
                    REQUEST_STREAM,
                    ErrorKind::Internal,
                    "the guest agent did not answer the request".into(),
                ),
            }
        }
        (REQUEST_STREAM, request @ HostMessage::CopyIn { .. }) => {
            let Some((stream, frames)) = open_request(mux, &writer, request)? else {
                return Ok(());
            };
            let out = Arc::clone(&writer);
            let answer = std::thread::Builder::new()
                .name("vm-control-out".into())
                .spawn(move || forward(&frames, &out))?;
            // The tar comes as fast as the client reads its files: generous, but bounded.
            conn.set_read_timeout(Some(REQUEST_TIMEOUT * 30))?;
            loop {
                let message = match reader.read_frame::<HostMessage>() {
                    Ok(Some(f)) if f.stream == REQUEST_STREAM => f.message,
                    Ok(Some(_)) => continue,
                    // The client went away: the end of what it sent is the end of the tar
                    // (the guest refuses one cut inside an entry).
                    Ok(None) | Err(_) => HostMessage::CopyEnd,
                };
                let end = match &message {
                    HostMessage::CopyData(_) => false,
                    HostMessage::CopyEnd => true,
                    other => {
                        let _ = refuse(
                            &writer,
                            REQUEST_STREAM,
                            ErrorKind::InvalidState,
                            format!("{other:?} is not allowed on a copy connection"),
                        );
                        continue;
                    }
                };
                if mux.send(stream, &message).is_err() || end {
                    break;
                }
            }
            let _ = answer.join();
            mux.forget(stream);
            Ok(())
        }
        (stream, other) => refuse(
            &writer,
            stream,
            ErrorKind::Protocol,
            format!("{other:?} on stream {stream} does not open a control request"),
        ),
    }
}

/// Copies the agent's frames of one request to the client (as its stream 1) until the last.
fn forward(frames: &Receiver<Frame<GuestMessage>>, writer: &Writer) {
    loop {
        let Ok(frame) = frames.recv() else {
            let _ = refuse(
                writer,
                REQUEST_STREAM,
                ErrorKind::Internal,
                "the relay of this request ended: the container stopped, or this client read too slowly"
                    .into(),
            );
            return;
        };
        let last = matches!(
            frame.message,
            GuestMessage::Exit(_) | GuestMessage::LayerEnd { .. } | GuestMessage::CopyEnd { .. }
        ) || matches!(
            frame.message,
            GuestMessage::Error {
                kind: ErrorKind::Layer | ErrorKind::Copy,
                ..
            }
        );
        if send(writer, REQUEST_STREAM, &frame.message).is_err() || last {
            return;
        }
    }
}
