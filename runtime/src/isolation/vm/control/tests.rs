//! The control channel natively: the agent's real supervision loop over a socketpair (as PID 1
//! runs it over the guest's console), the monitor's relay over another, and hand-made agents
//! for the hostile cases. No KVM needed.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nook_agent::client::{Client, ProcessResult};
use nook_agent::protocol::{
    encode_frame, BootTimes, ErrorKind, FrameReader, GuestMessage, HostMessage, ProcessSpec,
    StartSpec, SYNC,
};
use nook_agent::supervisor::{self, Config, NoSetup};

use super::client::over;
use super::server::serve;
use super::ControlError;
use crate::isolation::vm::mux::{self, Mux};

const TIMEOUT: Duration = Duration::from_secs(10);

fn sh(script: &str) -> ProcessSpec {
    ProcessSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec!["PATH=/usr/bin:/bin".into()],
        ..Default::default()
    }
}

/// The real agent runs its processes as root (uid 0), as in the guest: those tests run as root
/// of a user namespace, re-running themselves in one when not root.
fn in_user_namespace(test: &str) -> bool {
    nook_agent::testing::privileged(nook_agent::testing::Needs::UserNamespace, test)
}

/// A running "container": the real agent loop with `main` as its main process, the shared
/// connection, and the main process's relay (stdout, result).
struct Guest {
    mux: Arc<Mux>,
    main: JoinHandle<(ProcessResult, String)>,
}

fn guest(main: &str, upper: Option<std::path::PathBuf>) -> Guest {
    let (host, agent_end) = UnixStream::pair().unwrap();
    let config = Config {
        root: "/".into(),
        reap_all: false,
        pid_namespace: false,
        upper_dir: upper,
        boot: BootTimes::default(),
    };
    std::thread::spawn(move || supervisor::run(agent_end.into(), &config, &mut NoSetup));
    let client = Client::from_unix(host).unwrap();
    client.wait_ready(TIMEOUT).unwrap();
    let mux = Arc::new(Mux::new(client).unwrap());
    let (stream, frames) = mux
        .start_main(StartSpec {
            process: sh(main),
            ..Default::default()
        })
        .unwrap();
    let main = std::thread::spawn(move || {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let r = mux::wait_main(stream, &frames, &mut out, &mut err).unwrap();
        (r, String::from_utf8_lossy(&out).into_owned())
    });
    Guest { mux, main }
}

/// A control connection served by the monitor's relay; returns the client's end.
fn connect(mux: &Arc<Mux>) -> UnixStream {
    let (client, server) = UnixStream::pair().unwrap();
    let mux = Arc::clone(mux);
    std::thread::spawn(move || serve(server, &mux));
    client
}

#[test]
fn stop_signal_reaches_the_main_process() {
    if !in_user_namespace("isolation::vm::control::tests::stop_signal_reaches_the_main_process") {
        return;
    }
    let g = guest(
        "trap 'echo got-term; exit 7' TERM; echo up; while :; do sleep 0.05; done",
        None,
    );
    // Give the shell time to set its trap.
    std::thread::sleep(Duration::from_millis(300));
    over::signal(connect(&g.mux), libc::SIGTERM).unwrap();
    let (result, out) = g.main.join().unwrap();
    assert_eq!(result.status.code, 7, "{out}");
    assert!(out.contains("got-term"), "{out}");
}

#[test]
fn exec_relays_stdin_stdout_stderr_and_exit_code() {
    if !in_user_namespace(
        "isolation::vm::control::tests::exec_relays_stdin_stdout_stderr_and_exit_code",
    ) {
        return;
    }
    let g = guest("sleep 30", None);
    let session = over::exec(
        connect(&g.mux),
        sh("read line; echo \"got $line\"; echo oops >&2; exit 5"),
    )
    .unwrap();
    session.pump_stdin(std::io::Cursor::new(b"abc\n".to_vec()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = session.wait(&mut out, &mut err).unwrap();
    assert_eq!(outcome.status.code, 5);
    assert!(outcome.started);
    assert_eq!(String::from_utf8_lossy(&out), "got abc\n");
    assert_eq!(String::from_utf8_lossy(&err), "oops\n");
    // The main process is untouched; end it through the channel.
    over::signal(connect(&g.mux), libc::SIGKILL).unwrap();
    assert_eq!(g.main.join().unwrap().0.status.signal, Some(9));
}

#[test]
fn exec_of_a_missing_command_reports_127_and_the_reason() {
    if !in_user_namespace(
        "isolation::vm::control::tests::exec_of_a_missing_command_reports_127_and_the_reason",
    ) {
        return;
    }
    let g = guest("sleep 30", None);
    let session = over::exec(
        connect(&g.mux),
        ProcessSpec {
            argv: vec!["/no/such/command".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let outcome = session.wait(&mut Vec::new(), &mut Vec::new()).unwrap();
    assert_eq!(outcome.status.code, 127);
    assert!(!outcome.started);
    assert!(
        outcome
            .errors
            .iter()
            .any(|e| e.contains("/no/such/command")),
        "{:?}",
        outcome.errors
    );
    over::signal(connect(&g.mux), libc::SIGKILL).unwrap();
    g.main.join().unwrap();
}

#[test]
fn two_execs_run_side_by_side_on_one_agent_connection() {
    if !in_user_namespace(
        "isolation::vm::control::tests::two_execs_run_side_by_side_on_one_agent_connection",
    ) {
        return;
    }
    let g = guest("sleep 30", None);
    let slow = over::exec(connect(&g.mux), sh("sleep 0.5; echo slow")).unwrap();
    let fast = over::exec(connect(&g.mux), sh("echo fast")).unwrap();
    let mut out = Vec::new();
    fast.wait(&mut out, &mut Vec::new()).unwrap();
    assert_eq!(out, b"fast\n");
    let mut out = Vec::new();
    slow.wait(&mut out, &mut Vec::new()).unwrap();
    assert_eq!(out, b"slow\n");
    over::signal(connect(&g.mux), libc::SIGKILL).unwrap();
    g.main.join().unwrap();
}

#[test]
fn upper_layer_streams_as_a_tar() {
    if !in_user_namespace("isolation::vm::control::tests::upper_layer_streams_as_a_tar") {
        return;
    }
    let upper = tempfile::tempdir().unwrap();
    std::fs::create_dir(upper.path().join("data")).unwrap();
    std::fs::write(upper.path().join("data/file"), "kept").unwrap();
    let g = guest("sleep 30", Some(upper.path().to_path_buf()));
    let mut tar = Vec::new();
    let bytes = over::stream_upper(connect(&g.mux), &mut tar).unwrap();
    assert_eq!(bytes as usize, tar.len());
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["data", "data/file"]);
    over::signal(connect(&g.mux), libc::SIGKILL).unwrap();
    g.main.join().unwrap();
}

#[test]
fn stats_are_answered_while_the_main_process_streams() {
    if !in_user_namespace(
        "isolation::vm::control::tests::stats_are_answered_while_the_main_process_streams",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stop = dir.path().join("stop");
    // Output streams until the requests are done.
    let g = guest(
        &format!(
            "i=0; while [ ! -e {} ]; do echo $i; i=$((i+1)); done; exit 3",
            stop.display()
        ),
        None,
    );
    let mut samples = Vec::new();
    for _ in 0..5 {
        samples.push(over::stats(connect(&g.mux)).unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(&stop, "").unwrap();
    let (result, out) = g.main.join().unwrap();
    // Every line arrived, in order, around the stats requests.
    assert_eq!(result.status.code, 3);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() > 10, "{}", lines.len());
    assert!(lines.iter().enumerate().all(|(i, l)| *l == i.to_string()));
    for pair in samples.windows(2) {
        assert!(pair[1].clock_ns > pair[0].clock_ns);
        assert!(pair[1].cpu_ns >= pair[0].cpu_ns);
    }
    let last = samples.last().unwrap();
    assert!(
        last.memory > 0 && last.memory <= last.memory_total,
        "{last:?}"
    );
    assert!(last.pids >= 1, "{last:?}");
}

#[test]
fn top_lists_the_containers_processes_with_their_parents() {
    if !in_user_namespace(
        "isolation::vm::control::tests::top_lists_the_containers_processes_with_their_parents",
    ) {
        return;
    }
    let g = guest(
        "trap 'kill $!; exit 5' TERM; sleep 613.5 & echo up; wait",
        None,
    );
    let deadline = Instant::now() + TIMEOUT;
    let (sh, sleep) = loop {
        let list = over::top(connect(&g.mux)).unwrap();
        let find = |args: &str| list.processes.iter().find(|p| p.args == args).cloned();
        let sleep = find("sleep 613.5");
        if let Some(sleep) = sleep {
            let sh = list.processes.iter().find(|p| p.pid == sleep.ppid).cloned();
            break (sh.expect("the sleep's parent is listed"), sleep);
        }
        assert!(Instant::now() < deadline, "no sleep in {list:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    // The main process's parent is the agent, outside the container: 0.
    assert!(sh.args.starts_with("/bin/sh -c trap"), "{sh:?}");
    assert_eq!(sh.ppid, 0, "{sh:?}");
    assert_eq!(sleep.comm, "sleep");
    assert_eq!((sleep.uid, sleep.user.as_str()), (0, "root"), "{sleep:?}");
    assert!(sleep.start_ns >= sh.start_ns && sleep.rss > 0, "{sleep:?}");
    over::signal(connect(&g.mux), libc::SIGTERM).unwrap();
    let (result, out) = g.main.join().unwrap();
    assert_eq!(result.status.code, 5, "{out}");
}

#[test]
fn a_request_that_opens_nothing_is_refused() {
    if !in_user_namespace("isolation::vm::control::tests::a_request_that_opens_nothing_is_refused")
    {
        return;
    }
    let g = guest("sleep 30", None);
    let mut c = connect(&g.mux);
    c.write_all(&encode_frame(7, &HostMessage::Stdin(b"x".to_vec())).unwrap())
        .unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut reader = FrameReader::new(c);
    let frame = reader.read_frame::<GuestMessage>().unwrap().unwrap();
    assert!(
        matches!(
            frame.message,
            GuestMessage::Error {
                kind: ErrorKind::Protocol,
                ..
            }
        ),
        "{frame:?}"
    );
    assert!(reader.read_frame::<GuestMessage>().unwrap().is_none());
    over::signal(connect(&g.mux), libc::SIGKILL).unwrap();
    g.main.join().unwrap();
}

#[test]
fn an_oversized_frame_ends_only_that_connection() {
    if !in_user_namespace(
        "isolation::vm::control::tests::an_oversized_frame_ends_only_that_connection",
    ) {
        return;
    }
    let g = guest("sleep 30", None);
    let mut c = connect(&g.mux);
    // A header announcing 1 GiB: rejected before anything is allocated for it.
    let mut header = (1u32 << 30).to_le_bytes().to_vec();
    header.push(0x02);
    header.extend_from_slice(&1u32.to_le_bytes());
    c.write_all(&header).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    // The container still answers.
    let mut out = Vec::new();
    over::exec(connect(&g.mux), sh("echo alive"))
        .unwrap()
        .wait(&mut out, &mut Vec::new())
        .unwrap();
    assert_eq!(out, b"alive\n");
    over::signal(connect(&g.mux), libc::SIGKILL).unwrap();
    g.main.join().unwrap();
}

#[test]
fn a_client_that_stops_reading_does_not_stall_the_container() {
    if !in_user_namespace(
        "isolation::vm::control::tests::a_client_that_stops_reading_does_not_stall_the_container",
    ) {
        return;
    }
    let g = guest("sleep 1.5; echo main-done", None);
    // Lots of output for a client that never reads it.
    let stuck = connect(&g.mux);
    let clone = stuck.try_clone().unwrap();
    let _session = over::exec(clone, sh("head -c 50000000 /dev/zero")).unwrap();
    let start = Instant::now();
    let (result, out) = g.main.join().unwrap();
    assert_eq!(result.status.code, 0);
    assert_eq!(out, "main-done\n");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the main process's exit took {:?}",
        start.elapsed()
    );
    drop(stuck);
}

/// An agent that says ready, then dies.
fn dead_agent() -> Arc<Mux> {
    let (host, mut agent_end) = UnixStream::pair().unwrap();
    agent_end.write_all(&SYNC).unwrap();
    let ready = GuestMessage::Ready {
        version: nook_agent::protocol::PROTOCOL_VERSION,
        boot: BootTimes::default(),
    };
    agent_end
        .write_all(&encode_frame(0, &ready).unwrap())
        .unwrap();
    let client = Client::from_unix(host).unwrap();
    client.wait_ready(TIMEOUT).unwrap();
    let mux = Arc::new(Mux::new(client).unwrap());
    mux.start_main(StartSpec {
        process: sh("true"),
        ..Default::default()
    })
    .unwrap();
    drop(agent_end);
    mux
}

#[test]
fn a_dead_agent_fails_requests_with_an_error_instead_of_hanging() {
    let mux = dead_agent();
    // Let the dispatcher see the end of the channel.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match over::exec(connect(&mux), sh("true"))
            .and_then(|s| s.wait(&mut Vec::new(), &mut Vec::new()))
        {
            Err(ControlError::Agent { message }) => {
                assert!(!message.is_empty());
                break;
            }
            Err(ControlError::Closed { .. }) => break,
            other => assert!(Instant::now() < deadline, "{other:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = over::stream_upper(connect(&mux), &mut Vec::new()).unwrap_err();
    assert!(
        matches!(
            err,
            ControlError::Agent { .. } | ControlError::Closed { .. }
        ),
        "{err:?}"
    );
}
