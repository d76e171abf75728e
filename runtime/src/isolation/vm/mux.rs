//! The one agent connection of a running VM, shared: a dispatcher thread routes every frame the
//! agent sends to the stream it belongs to, so the container's main process and the requests of
//! the control channel (exec, upper-layer streaming) run side by side on that one connection.
//!
//! The dispatcher must keep reading: while it waits, the agent's writes to the channel block, and
//! with them the guest's whole supervision loop. So a route of a control client (another `nook`
//! process, maybe slow or stuck) gets a bounded queue and a bounded wait; when it stays full the
//! route is dropped and that client's request fails, the container goes on.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nook_agent::client::{Client, ClientError, ProcessRelay, ProcessResult};
use nook_agent::protocol::{Frame, GuestMessage, HostMessage, StartSpec};

/// Frames queued for the monitor's own consumer of the main process's output.
const MAIN_QUEUE: usize = 256;
/// Frames queued for one control client (64 KiB each at most).
pub const CLIENT_QUEUE: usize = 64;
/// How long the dispatcher waits for a control client's full queue before dropping the route.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);

enum Route {
    /// The monitor's own consumer: delivery waits for it (it only writes into local pipes).
    Owned(SyncSender<Frame<GuestMessage>>),
    /// A control client's request: delivery waits at most [`DELIVERY_TIMEOUT`].
    Bounded(SyncSender<Frame<GuestMessage>>),
}

#[derive(Default)]
struct Routes {
    map: HashMap<u32, Route>,
    /// The stream of the container's main process: frames on stream 0 (errors about the whole
    /// connection) go to it too.
    main: Option<u32>,
    /// Who waits for the agent's `Paused` (a checkpoint being taken).
    paused: Option<SyncSender<(u32, u32)>>,
    closed: bool,
}

/// The shared agent connection.
pub struct Mux {
    client: Arc<Client>,
    routes: Arc<Mutex<Routes>>,
    /// The VMM's snapshot trigger, when the VM can be checkpointed.
    trigger: Mutex<Option<UnixStream>>,
    /// A checkpoint was triggered: the VM's end is that, not a failure.
    checkpointed: AtomicBool,
}

fn lock(routes: &Mutex<Routes>) -> std::sync::MutexGuard<'_, Routes> {
    routes.lock().unwrap_or_else(|p| p.into_inner())
}

impl Mux {
    /// Takes over `client` (already past the agent's ready message) and starts routing.
    pub fn new(client: Client) -> std::io::Result<Mux> {
        let client = Arc::new(client);
        let routes = Arc::new(Mutex::new(Routes::default()));
        let (c, r) = (Arc::clone(&client), Arc::clone(&routes));
        std::thread::Builder::new()
            .name("agent-mux".into())
            .spawn(move || dispatch(&c, &r))?;
        Ok(Mux {
            client,
            routes,
            trigger: Mutex::new(None),
            checkpointed: AtomicBool::new(false),
        })
    }

    /// Makes the VM checkpointable through the VMM's snapshot `trigger`.
    pub fn arm(&self, trigger: UnixStream) {
        *self.trigger.lock().unwrap_or_else(|p| p.into_inner()) = Some(trigger);
    }

    /// Whether the VM ended for a checkpoint.
    pub fn checkpointed(&self) -> bool {
        self.checkpointed.load(Ordering::SeqCst)
    }

    /// Takes a checkpoint: pauses the agent's channel between two frames, then has the VMM
    /// write its snapshot and end. Returns what [`Mux::pause`] does.
    pub fn checkpoint(&self, timeout: Duration) -> Result<(u32, u32), String> {
        let mut trigger = self.trigger.lock().unwrap_or_else(|p| p.into_inner());
        let Some(socket) = trigger.as_mut() else {
            return Err(
                "this VM cannot be checkpointed: it shares host directories \
                        (volumes or bind mounts), whose state virtiofsd holds"
                    .into(),
            );
        };
        let paused = self.pause(timeout).map_err(|e| crate::errors::chain(&e))?;
        self.checkpointed.store(true, Ordering::SeqCst);
        if let Err(e) = socket.write_all(&[1]) {
            // The VMM is gone or broken: the VM cannot go on paused either.
            self.checkpointed.store(false, Ordering::SeqCst);
            return Err(format!("cannot tell the VMM to write the snapshot: {e}"));
        }
        *trigger = None;
        Ok(paused)
    }

    /// Sends a frame on an agent stream.
    pub fn send(&self, stream: u32, msg: &HostMessage) -> Result<(), ClientError> {
        self.client.send(stream, msg)
    }

    /// Starts the container's main process; its frames (and stream 0's) come out of the
    /// receiver until its `Exit`.
    pub fn start_main(
        &self,
        spec: StartSpec,
    ) -> Result<(u32, Receiver<Frame<GuestMessage>>), ClientError> {
        let stream = self.client.new_stream();
        let (tx, rx) = mpsc::sync_channel(MAIN_QUEUE);
        {
            let mut routes = lock(&self.routes);
            if routes.closed {
                return Err(ClientError::Closed {
                    what: "the main process was started",
                });
            }
            routes.map.insert(stream, Route::Owned(tx));
            routes.main = Some(stream);
        }
        self.client.send(stream, &HostMessage::Start(spec))?;
        Ok((stream, rx))
    }

    /// Routes the frames of the main process of a guest resumed from a checkpoint, which runs
    /// on `main` already; no stream below `next_stream` is given out.
    pub fn adopt_main(
        &self,
        main: u32,
        next_stream: u32,
    ) -> Result<Receiver<Frame<GuestMessage>>, ClientError> {
        self.client
            .skip_streams(next_stream.max(main.saturating_add(1)));
        let (tx, rx) = mpsc::sync_channel(MAIN_QUEUE);
        let mut routes = lock(&self.routes);
        if routes.closed {
            return Err(ClientError::Closed {
                what: "the main process was adopted",
            });
        }
        routes.map.insert(main, Route::Owned(tx));
        routes.main = Some(main);
        Ok(rx)
    }

    /// Asks the agent to pause its channel for a checkpoint and waits (at most `timeout`) for
    /// its `Paused`: then it sends nothing until resumed. Returns the main process's stream and
    /// the first stream free on both sides.
    pub fn pause(&self, timeout: Duration) -> Result<(u32, u32), ClientError> {
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut routes = lock(&self.routes);
            if routes.closed {
                return Err(ClientError::Closed {
                    what: "the checkpoint was asked for",
                });
            }
            routes.paused = Some(tx);
        }
        self.client.send(0, &HostMessage::Checkpoint)?;
        let (main, next) = rx.recv_timeout(timeout).map_err(|_| ClientError::Closed {
            what: "the agent paused for the checkpoint",
        })?;
        Ok((main, next.max(self.client.peek_stream())))
    }

    /// A new stream for a control client's request, routed before the request is sent.
    pub fn open(&self) -> Result<(u32, Receiver<Frame<GuestMessage>>), ClientError> {
        let stream = self.client.new_stream();
        let (tx, rx) = mpsc::sync_channel(CLIENT_QUEUE);
        let mut routes = lock(&self.routes);
        if routes.closed {
            return Err(ClientError::Closed {
                what: "the request was sent",
            });
        }
        routes.map.insert(stream, Route::Bounded(tx));
        Ok((stream, rx))
    }

    /// Stops routing `stream` (its frames are dropped from now on).
    pub fn forget(&self, stream: u32) {
        lock(&self.routes).map.remove(&stream);
    }

    /// The main process's stream, once started.
    pub fn main_stream(&self) -> Option<u32> {
        lock(&self.routes).main
    }

    /// Copies `input` to the stream's stdin from a thread, then closes it.
    pub fn pump_stdin<R: std::io::Read + Send + 'static>(&self, stream: u32, input: R) {
        self.client.pump_stdin(stream, input);
    }

    /// Asks the agent to end the VM.
    pub fn shutdown(&self) -> Result<(), ClientError> {
        self.client.shutdown()
    }
}

/// Whether `msg` is the last frame of its stream.
fn is_last(msg: &GuestMessage) -> bool {
    matches!(
        msg,
        GuestMessage::Exit(_)
            | GuestMessage::LayerEnd { .. }
            | GuestMessage::CopyEnd { .. }
            | GuestMessage::Usage(_)
            | GuestMessage::Processes(_)
    )
}

fn dispatch(client: &Client, routes: &Mutex<Routes>) {
    loop {
        let frame = match client.next_event(None) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            // A frame this host could not decode: dropped; a dead channel ends in Ok(None).
            Err(_) => continue,
        };
        if let (0, GuestMessage::Paused { main, next_stream }) = (frame.stream, &frame.message) {
            if let Some(tx) = lock(routes).paused.take() {
                let _ = tx.try_send((*main, *next_stream));
            }
            continue;
        }
        let stream = match frame.stream {
            0 => match lock(routes).main {
                Some(m) => m,
                None => continue,
            },
            s => s,
        };
        let last = is_last(&frame.message);
        let route = {
            let r = lock(routes);
            match r.map.get(&stream) {
                Some(Route::Owned(tx)) => Some((tx.clone(), false)),
                Some(Route::Bounded(tx)) => Some((tx.clone(), true)),
                None => None,
            }
        };
        let Some((tx, bounded)) = route else { continue };
        let delivered = if bounded {
            deliver_bounded(&tx, frame)
        } else {
            tx.send(frame).is_ok()
        };
        if !delivered || last {
            lock(routes).map.remove(&stream);
        }
    }
    let mut r = lock(routes);
    r.closed = true;
    // Dropping the senders tells every waiting consumer that the channel is gone.
    r.map.clear();
}

/// Queues `frame` for a control client, waiting at most [`DELIVERY_TIMEOUT`] for room.
fn deliver_bounded(tx: &SyncSender<Frame<GuestMessage>>, mut frame: Frame<GuestMessage>) -> bool {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        match tx.try_send(frame) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(f)) => {
                if Instant::now() >= deadline {
                    return false;
                }
                frame = f;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// Relays the main process's frames into `stdout` and `stderr` until its exit (as
/// [`Client::wait_process`] does for an unshared connection).
pub fn wait_main(
    main: u32,
    frames: &Receiver<Frame<GuestMessage>>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<ProcessResult, ClientError> {
    let mut relay = ProcessRelay::default();
    let result = loop {
        let Ok(frame) = frames.recv() else {
            break Err(ClientError::Closed {
                what: "the process exited",
            });
        };
        if frame.stream != main {
            if let GuestMessage::Error { kind, message } = frame.message {
                break Err(ClientError::Agent { kind, message });
            }
            continue;
        }
        match relay.take(main, frame.message, stdout, stderr) {
            Ok(None) => {}
            Ok(Some(result)) => break Ok(result),
            Err(e) => break Err(e),
        }
    };
    let _ = stdout.flush();
    let _ = stderr.flush();
    result
}
