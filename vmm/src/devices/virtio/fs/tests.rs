//! The device against a scripted vhost-user backend on a Unix socket: what the VMM sends, in
//! which order, with which descriptors, and what happens when the backend refuses, answers
//! garbage or goes away. No KVM needed.

use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use vhost::vhost_user::VhostUserVirtioFeatures;
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

use super::config::TAG_LEN;
use super::*;
use crate::devices::virtio::{Activation, Interrupt, VirtioDevice, F_VERSION_1};
use crate::exit::{ExitSignal, StopReason};
use crate::memory::{self, Backing};

const GET_FEATURES: u32 = 1;
const SET_FEATURES: u32 = 2;
const SET_OWNER: u32 = 3;
const SET_MEM_TABLE: u32 = 5;
const SET_VRING_NUM: u32 = 8;
const SET_VRING_ADDR: u32 = 9;
const SET_VRING_BASE: u32 = 10;
const SET_VRING_KICK: u32 = 12;
const SET_VRING_CALL: u32 = 13;
const GET_PROTOCOL_FEATURES: u32 = 15;
const SET_PROTOCOL_FEATURES: u32 = 16;
const SET_VRING_ENABLE: u32 = 18;

const VERSION: u32 = 0x1;
const REPLY: u32 = 0x4;
const NEED_REPLY: u32 = 0x8;
const REPLY_ACK: u64 = 0x8;
const PROTOCOL_FEATURES: u64 = VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
const EVENT_IDX: u64 = 1 << 29;

/// One message the backend received.
#[derive(Debug, Clone)]
struct Received {
    request: u32,
    flags: u32,
    body: Vec<u8>,
    fds: usize,
}

/// What the scripted backend does.
#[derive(Clone)]
struct Script {
    features: u64,
    protocol: u64,
    /// Answer this request with a reply for another request.
    garbage_at: Option<u32>,
    /// Refuse this request (a non-zero acknowledgement).
    refuse: Option<u32>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            features: F_VERSION_1 | EVENT_IDX | PROTOCOL_FEATURES | (1 << 40),
            protocol: REPLY_ACK | 0x1,
            garbage_at: None,
            refuse: None,
        }
    }
}

struct Mock {
    _dir: tempfile::TempDir,
    path: PathBuf,
    log: Arc<Mutex<Vec<Received>>>,
    /// Set once the backend thread ends; the test drops the stream through it.
    stream: Arc<Mutex<Option<UnixStream>>>,
    thread: Option<JoinHandle<()>>,
}

fn reply(stream: &mut UnixStream, request: u32, body: &[u8]) -> std::io::Result<()> {
    let mut msg = Vec::new();
    msg.extend_from_slice(&request.to_le_bytes());
    msg.extend_from_slice(&(VERSION | REPLY).to_le_bytes());
    msg.extend_from_slice(&(body.len() as u32).to_le_bytes());
    msg.extend_from_slice(body);
    stream.write_all(&msg)
}

fn serve(mut stream: UnixStream, script: &Script, log: &Mutex<Vec<Received>>) -> Option<()> {
    loop {
        let mut header = [0u8; 12];
        let mut fds: [RawFd; 8] = [-1; 8];
        let mut iov = [libc::iovec {
            iov_base: header.as_mut_ptr().cast(),
            iov_len: header.len(),
        }];
        // SAFETY: the iovec points at `header`, which outlives the call; received descriptors
        // are written into `fds`.
        let (n, nfds) = unsafe { stream.recv_with_fds(&mut iov, &mut fds) }.ok()?;
        if n == 0 {
            return None;
        }
        if n < header.len() {
            stream.read_exact(&mut header[n..]).ok()?;
        }
        for fd in fds.iter().take(nfds) {
            // SAFETY: descriptors this thread just received and owns.
            unsafe { libc::close(*fd) };
        }
        let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap());
        let (request, flags, size) = (word(0), word(4), word(8));
        let mut body = vec![0u8; size as usize];
        stream.read_exact(&mut body).ok()?;
        log.lock().unwrap().push(Received {
            request,
            flags,
            body,
            fds: nfds,
        });
        if script.garbage_at == Some(request) {
            reply(&mut stream, request.wrapping_add(7), &[0xff; 8]).ok()?;
            continue;
        }
        match request {
            GET_FEATURES => reply(&mut stream, request, &script.features.to_le_bytes()).ok()?,
            GET_PROTOCOL_FEATURES => {
                reply(&mut stream, request, &script.protocol.to_le_bytes()).ok()?
            }
            _ if flags & NEED_REPLY != 0 => {
                let status: u64 = u64::from(script.refuse == Some(request));
                reply(&mut stream, request, &status.to_le_bytes()).ok()?
            }
            _ => {}
        }
    }
}

impl Mock {
    fn start(script: Script) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("virtiofsd.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stream = Arc::new(Mutex::new(None));
        let (thread_log, thread_stream) = (log.clone(), stream.clone());
        let thread = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            *thread_stream.lock().unwrap() = Some(conn.try_clone().unwrap());
            serve(conn, &script, &thread_log);
        });
        Self {
            _dir: dir,
            path,
            log,
            stream,
            thread: Some(thread),
        }
    }

    /// The requests received so far, once there are at least `n` (SET_PROTOCOL_FEATURES is
    /// not acknowledged, so it may still be on its way when the handshake returns).
    fn requests(&self, n: usize) -> Vec<u32> {
        for _ in 0..1000 {
            let log = self.log.lock().unwrap();
            if log.len() >= n {
                return log.iter().map(|m| m.request).collect();
            }
            drop(log);
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the backend did not receive {n} requests");
    }

    fn received(&self, request: u32) -> Vec<Received> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|m| m.request == request)
            .cloned()
            .collect()
    }

    /// The backend dies: its socket closes.
    fn kill(&mut self) {
        if let Some(s) = self.stream.lock().unwrap().take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x9000;
const USED: u64 = 0xa000;

fn activation(backing: Backing, acked: u64) -> (Activation, Arc<Interrupt>, Arc<ExitSignal>) {
    let mem = memory::create(16, backing).unwrap();
    let queues = (0..NUM_QUEUES as u64)
        .map(|i| {
            let mut q = Queue::new(QUEUE_SIZE).unwrap();
            q.set_size(256);
            q.set_desc_table_address(Some((DESC + i * 0x10000) as u32), Some(0));
            q.set_avail_ring_address(Some((AVAIL + i * 0x10000) as u32), Some(0));
            q.set_used_ring_address(Some((USED + i * 0x10000) as u32), Some(0));
            q.set_ready(true);
            q
        })
        .collect();
    let interrupt = Arc::new(Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()));
    let exit = Arc::new(ExitSignal::new().unwrap());
    let a = Activation {
        mem,
        queues,
        queue_events: (0..NUM_QUEUES)
            .map(|_| EventFd::new(libc::EFD_NONBLOCK).unwrap())
            .collect(),
        acked_features: acked,
        interrupt: interrupt.clone(),
        exit: exit.clone(),
        filter: None,
        parking: Default::default(),
        restored: Default::default(),
    };
    (a, interrupt, exit)
}

fn u64_at(body: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(body[at..at + 8].try_into().unwrap())
}

#[test]
fn config_space_holds_the_tag_and_one_request_queue() {
    let mock = Mock::start(Script::default());
    let fs = Fs::connect("fs0".into(), "nook0", &mock.path).unwrap();
    let mut tag = [0xaa; TAG_LEN];
    fs.read_config(0, &mut tag);
    assert_eq!(&tag[..5], b"nook0");
    assert!(tag[5..].iter().all(|b| *b == 0));
    let mut queues = [0u8; 4];
    fs.read_config(TAG_LEN as u64, &mut queues);
    assert_eq!(u32::from_le_bytes(queues), 1);
    // Past the end, and far past it, reads as zero.
    let mut past = [0xaa; 8];
    fs.read_config(TAG_LEN as u64 + 4, &mut past);
    assert_eq!(past, [0; 8]);
    fs.read_config(u64::MAX, &mut past);
    assert_eq!(past, [0; 8]);
    assert_eq!(fs.device_type(), 26);
    assert_eq!(fs.queue_max_sizes(), &[QUEUE_SIZE; NUM_QUEUES]);
}

#[test]
fn the_driver_sees_only_the_ring_features_the_backend_offers() {
    let mock = Mock::start(Script::default());
    let fs = Fs::connect("fs0".into(), "t", &mock.path).unwrap();
    // PROTOCOL_FEATURES and the unknown bit 40 stay between the VMM and the backend.
    assert_eq!(fs.features(), F_VERSION_1 | EVENT_IDX);
    assert_eq!(
        mock.requests(4),
        [
            SET_OWNER,
            GET_FEATURES,
            GET_PROTOCOL_FEATURES,
            SET_PROTOCOL_FEATURES
        ]
    );
    // Only REPLY_ACK of what was offered (REPLY_ACK and MQ) is taken.
    let set = &mock.received(SET_PROTOCOL_FEATURES)[0];
    assert_eq!(u64_at(&set.body, 0), REPLY_ACK);
}

#[test]
fn activation_hands_over_memory_rings_and_eventfds() {
    let mut mock = Mock::start(Script::default());
    let mut fs = Fs::connect("fs0".into(), "nook0", &mock.path).unwrap();
    let (a, interrupt, exit) = activation(Backing::Shared, F_VERSION_1 | EVENT_IDX);
    let host_desc = a
        .mem
        .get_host_address(GuestAddress(DESC))
        .map(|p| p as u64)
        .unwrap();
    fs.activate(a).unwrap();

    let after_handshake: Vec<u32> = mock.requests(4).split_off(4);
    let mut expected = vec![SET_FEATURES, SET_MEM_TABLE];
    for _ in 0..NUM_QUEUES {
        expected.extend([
            SET_VRING_NUM,
            SET_VRING_ADDR,
            SET_VRING_BASE,
            SET_VRING_CALL,
            SET_VRING_KICK,
        ]);
    }
    expected.extend([SET_VRING_ENABLE; NUM_QUEUES]);
    assert_eq!(after_handshake, expected);
    // Every request after the negotiation asks for an acknowledgement.
    assert!(mock.log.lock().unwrap()[4..]
        .iter()
        .all(|m| m.flags & NEED_REPLY != 0));

    let features = u64_at(&mock.received(SET_FEATURES)[0].body, 0);
    assert_eq!(features, F_VERSION_1 | EVENT_IDX | PROTOCOL_FEATURES);
    // One region (16 MiB below the gap), with its memfd.
    let table = &mock.received(SET_MEM_TABLE)[0];
    assert_eq!(table.fds, 1);
    assert_eq!(u64_at(&table.body, 8), 0, "guest address");
    assert_eq!(u64_at(&table.body, 16), 16 << 20, "size");
    // Ring addresses are this process's addresses of the guest's rings.
    let addr = &mock.received(SET_VRING_ADDR)[0];
    assert_eq!(u64_at(&addr.body, 8), host_desc);
    assert_eq!(u64_at(&mock.received(SET_VRING_NUM)[1].body, 0) >> 32, 256);
    assert!(mock.received(SET_VRING_CALL).iter().all(|m| m.fds == 1));
    assert!(mock.received(SET_VRING_KICK).iter().all(|m| m.fds == 1));
    // The backend signals the irqfd itself: the driver must always look at the rings.
    interrupt.ack(u32::MAX);
    assert_eq!(interrupt.status() & crate::devices::virtio::INT_VRING, 1);

    // The backend dies: the watch thread stops the VM, naming the tag and the socket.
    mock.kill();
    match exit.wait(Some(Duration::from_secs(10))) {
        Some(StopReason::Failed(e)) => {
            let text = nook_agent::errors::chain(&*e);
            assert!(text.contains("virtiofsd serving tag nook0 ended"), "{text}");
            assert!(text.contains(&mock.path.display().to_string()), "{text}");
        }
        other => panic!("expected the VM to stop with the backend's end, got {other:?}"),
    }
}

#[test]
fn a_second_activation_is_refused() {
    let mock = Mock::start(Script::default());
    let mut fs = Fs::connect("fs0".into(), "t", &mock.path).unwrap();
    let (a, _, exit) = activation(Backing::Shared, F_VERSION_1);
    fs.activate(a).unwrap();
    let (again, _, _) = activation(Backing::Shared, F_VERSION_1);
    let e = fs.activate(again).unwrap_err();
    assert!(matches!(e, ActivateError::AlreadyActive { .. }), "{e:?}");
    exit.stop(StopReason::Exit(crate::VmExit::Reset));
}

#[test]
fn private_guest_memory_cannot_be_shared() {
    let mock = Mock::start(Script::default());
    let mut fs = Fs::connect("fs0".into(), "t", &mock.path).unwrap();
    let (a, _, _) = activation(Backing::Private, F_VERSION_1);
    let e = fs.activate(a).unwrap_err();
    assert!(
        matches!(e, ActivateError::Fs(FsError::PrivateMemory { .. })),
        "{e:?}"
    );
}

#[test]
fn a_refused_request_names_itself() {
    let mock = Mock::start(Script {
        refuse: Some(SET_MEM_TABLE),
        ..Script::default()
    });
    let mut fs = Fs::connect("fs0".into(), "data", &mock.path).unwrap();
    let (a, _, _) = activation(Backing::Shared, F_VERSION_1);
    let e = fs.activate(a).unwrap_err();
    let text = nook_agent::errors::chain(&e);
    assert!(
        text.contains("virtiofsd for tag data: SET_MEM_TABLE failed"),
        "{text}"
    );
}

#[test]
fn garbage_from_the_backend_is_an_error_not_a_crash() {
    for at in [GET_FEATURES, GET_PROTOCOL_FEATURES] {
        let mock = Mock::start(Script {
            garbage_at: Some(at),
            ..Script::default()
        });
        let Err(e) = Fs::connect("fs0".into(), "t", &mock.path) else {
            panic!("a garbage reply to {at} was accepted");
        };
        assert!(matches!(e, FsError::Protocol { .. }), "{e:?}");
    }
    // A garbage acknowledgement while the rings start.
    let mock = Mock::start(Script {
        garbage_at: Some(SET_VRING_ADDR),
        ..Script::default()
    });
    let mut fs = Fs::connect("fs0".into(), "t", &mock.path).unwrap();
    let (a, _, _) = activation(Backing::Shared, F_VERSION_1);
    let text = nook_agent::errors::chain(&fs.activate(a).unwrap_err());
    assert!(text.contains("SET_VRING_ADDR failed"), "{text}");
}

#[test]
fn a_backend_without_version_1_or_gone_is_refused_clearly() {
    let mock = Mock::start(Script {
        features: EVENT_IDX,
        ..Script::default()
    });
    let Err(e) = Fs::connect("fs0".into(), "t", &mock.path) else {
        panic!("a legacy backend was accepted");
    };
    assert!(e.to_string().contains("VIRTIO_F_VERSION_1"), "{e}");

    // Nobody listening.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.sock");
    let Err(e) = Fs::connect("fs0".into(), "t", &path) else {
        panic!("connected to nothing");
    };
    assert!(matches!(e, FsError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");

    // A backend that accepts and closes at once.
    let listener = UnixListener::bind(dir.path().join("closes.sock")).unwrap();
    let closer = std::thread::spawn(move || drop(listener.accept()));
    let Err(e) = Fs::connect("fs0".into(), "t", &dir.path().join("closes.sock")) else {
        panic!("a closed socket negotiated");
    };
    closer.join().unwrap();
    assert!(matches!(e, FsError::Protocol { .. }), "{e:?}");
}

#[test]
fn tags_are_checked() {
    use super::config::{check_tag, FsConfigSpace};
    for good in ["a", "nook0", &"x".repeat(TAG_LEN)] {
        check_tag(good).unwrap();
    }
    for bad in ["", "a b", "a,b", "a\0b", "a\nb", &"x".repeat(TAG_LEN + 1)] {
        assert!(check_tag(bad).is_err(), "{bad:?}");
    }
    let full = FsConfigSpace::new(&"x".repeat(TAG_LEN), 1).unwrap();
    assert_eq!(full.tag, [b'x'; TAG_LEN]);
}
