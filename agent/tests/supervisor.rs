//! The agent's supervision core, run natively over a socketpair exactly as PID 1 runs it over
//! the guest's virtio console: real processes, real pipes and ptys, the real host client.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nook_agent::client::{Client, ProcessResult};
use nook_agent::protocol::{
    encode_frame, skip_to_sync, BootTimes, ErrorKind, FrameReader, GuestLimits, GuestMessage,
    HostMessage, ProcessSpec, Rlimit, StartSpec, PROTOCOL_VERSION,
};
use nook_agent::supervisor::{self, Config, NoSetup, Outcome, SupervisorError};
use nook_agent::testing::{privileged, Needs};

const TIMEOUT: Duration = Duration::from_secs(10);

fn config(upper: Option<PathBuf>) -> Config {
    Config {
        root: "/".into(),
        reap_all: false,
        pid_namespace: false,
        upper_dir: upper,
        boot: BootTimes {
            kernel_start_realtime_ns: 1,
            agent_start_ns: 2,
            root_ready_ns: 3,
        },
    }
}

fn agent_with(upper: Option<PathBuf>) -> (Client, JoinHandle<Result<Outcome, SupervisorError>>) {
    agent_config(config(upper))
}

fn agent_config(cfg: Config) -> (Client, JoinHandle<Result<Outcome, SupervisorError>>) {
    let (host, guest) = UnixStream::pair().unwrap();
    let handle = std::thread::spawn(move || supervisor::run(guest.into(), &cfg, &mut NoSetup));
    let client = Client::from_unix(host).unwrap();
    let ready = client.wait_ready(TIMEOUT).unwrap();
    assert_eq!(ready.boot.root_ready_ns, 3);
    (client, handle)
}

fn agent() -> (Client, JoinHandle<Result<Outcome, SupervisorError>>) {
    agent_with(None)
}

fn sh(script: &str) -> ProcessSpec {
    ProcessSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec!["PATH=/usr/bin:/bin".into()],
        ..Default::default()
    }
}

fn start(spec: ProcessSpec) -> StartSpec {
    StartSpec {
        process: spec,
        ..Default::default()
    }
}

fn wait(client: &Client, stream: u32) -> (ProcessResult, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let res = client.wait_process(stream, &mut out, &mut err).unwrap();
    (
        res,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// The agent runs its processes as root (uid 0 of the image), as it does in the guest: every
/// test runs as root of a user namespace (re-running itself in one when not root).
fn in_user_namespace(test: &str) -> bool {
    privileged(Needs::UserNamespace, test)
}

fn outcome(handle: JoinHandle<Result<Outcome, SupervisorError>>) -> Outcome {
    handle.join().unwrap().unwrap()
}

#[test]
fn main_process_streams_and_exit_code() {
    if !in_user_namespace("main_process_streams_and_exit_code") {
        return;
    }
    let (client, handle) = agent();
    let s = client
        .start(start(sh("echo hello; echo err >&2; exit 3")))
        .unwrap();
    let (res, out, err) = wait(&client, s);
    assert_eq!(out, "hello\n");
    assert_eq!(err, "err\n");
    assert_eq!(res.status.code, 3);
    assert_eq!(res.status.signal, None);
    assert!(res.started.is_some());
    match outcome(handle) {
        Outcome::MainExited(st) => assert_eq!(st.code, 3),
        other => panic!("unexpected outcome {other:?}"),
    }
}

#[test]
fn command_not_found_is_127_and_not_executable_is_126() {
    if !in_user_namespace("command_not_found_is_127_and_not_executable_is_126") {
        return;
    }
    let (client, handle) = agent();
    let s = client
        .exec(ProcessSpec {
            argv: vec!["no-such-command-anywhere".into()],
            ..Default::default()
        })
        .unwrap();
    let (res, _, _) = wait(&client, s);
    assert_eq!(res.status.code, 127);
    assert!(res.started.is_none());
    assert!(
        res.errors[0].contains("executable file not found"),
        "{:?}",
        res.errors
    );

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-exec");
    std::fs::write(&script, "#!/bin/sh\necho no\n").unwrap();
    let s = client
        .exec(ProcessSpec {
            argv: vec![script.to_string_lossy().into_owned()],
            ..Default::default()
        })
        .unwrap();
    let (res, out, _) = wait(&client, s);
    assert_eq!(res.status.code, 126, "{:?}", res.errors);
    assert_eq!(out, "");

    let s = client.start(start(sh("exit 0"))).unwrap();
    assert_eq!(wait(&client, s).0.status.code, 0);
    outcome(handle);
}

#[test]
fn signal_death_is_128_plus_the_signal() {
    if !in_user_namespace("signal_death_is_128_plus_the_signal") {
        return;
    }
    let (client, handle) = agent();
    let s = client.exec(sh("kill -TERM $$")).unwrap();
    let (res, _, _) = wait(&client, s);
    assert_eq!(res.status.code, 143);
    assert_eq!(res.status.signal, Some(15));

    // A signal forwarded from the host.
    let s = client.start(start(sh("echo up; exec sleep 30"))).unwrap();
    let mut seen = Vec::new();
    let started = Instant::now();
    loop {
        let f = client.next_event(Some(TIMEOUT)).unwrap().unwrap();
        assert_eq!(f.stream, s);
        match f.message {
            GuestMessage::Started { .. } => {}
            GuestMessage::Stdout(d) => {
                seen.extend(d);
                if seen == b"up\n" {
                    client.signal(s, 9).unwrap();
                }
            }
            GuestMessage::Exit(st) => {
                assert_eq!(st.code, 137);
                assert_eq!(st.signal, Some(9));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    outcome(handle);
}

#[test]
fn a_process_sets_its_own_rlimits_after_the_containers() {
    if !in_user_namespace("a_process_sets_its_own_rlimits_after_the_containers") {
        return;
    }
    let (client, handle) = agent();
    let limit = |soft, hard| Rlimit {
        resource: libc::RLIMIT_NOFILE,
        soft,
        hard,
    };
    let report = "echo $(ulimit -n) $(ulimit -Hn)";
    let main = client
        .start(StartSpec {
            limits: GuestLimits {
                pids_max: None,
                rlimits: vec![limit(64, 128)],
            },
            ..start(sh(&format!("read x; {report}")))
        })
        .unwrap();
    // An exec's own rlimits win over the container's for the resources they name.
    let own = client
        .exec(ProcessSpec {
            rlimits: vec![limit(32, 48)],
            ..sh(report)
        })
        .unwrap();
    let (res, out, _) = wait(&client, own);
    assert_eq!((res.status.code, out.as_str()), (0, "32 48\n"));
    // Without any, it gets the container's, as the main process does.
    let plain = client.exec(sh(report)).unwrap();
    assert_eq!(wait(&client, plain).1, "64 128\n");
    client.close_stdin(main).unwrap();
    assert_eq!(wait(&client, main).1, "64 128\n");
    outcome(handle);
}

#[test]
fn stdin_is_relayed_and_closed() {
    if !in_user_namespace("stdin_is_relayed_and_closed") {
        return;
    }
    let (client, handle) = agent();
    let s = client.start(start(sh("cat; echo end"))).unwrap();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    client.pump_stdin(s, std::io::Cursor::new(payload.clone()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let res = client.wait_process(s, &mut out, &mut err).unwrap();
    assert_eq!(res.status.code, 0);
    assert_eq!(&out[..payload.len()], &payload[..]);
    assert_eq!(&out[payload.len()..], b"end\n");
    outcome(handle);
}

#[test]
fn large_output_arrives_whole_and_in_order() {
    if !in_user_namespace("large_output_arrives_whole_and_in_order") {
        return;
    }
    let (client, handle) = agent();
    let s = client
        .start(start(sh("head -c 3000000 /dev/zero; echo tail")))
        .unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    client.wait_process(s, &mut out, &mut err).unwrap();
    assert_eq!(out.len(), 3_000_005);
    assert!(out.ends_with(b"tail\n"));
    outcome(handle);
}

#[test]
fn terminal_process_gets_a_pty_with_size_and_resize() {
    if !in_user_namespace("terminal_process_gets_a_pty_with_size_and_resize") {
        return;
    }
    let (client, handle) = agent();
    let mut spec = sh("tty; stty size; read x; stty size");
    spec.terminal = true;
    spec.rows = 24;
    spec.cols = 80;
    let s = client.start(start(spec)).unwrap();
    let mut out = Vec::new();
    let mut resized = false;
    let code = loop {
        let f = client.next_event(Some(TIMEOUT)).unwrap().unwrap();
        match f.message {
            GuestMessage::Started { .. } => {}
            GuestMessage::Stdout(d) => {
                out.extend(d);
                if !resized && String::from_utf8_lossy(&out).contains("24 80") {
                    resized = true;
                    client.resize(s, 50, 132).unwrap();
                    client.write_stdin(s, b"go\n").unwrap();
                }
            }
            GuestMessage::Stderr(_) => panic!("a terminal has no separate stderr"),
            GuestMessage::Exit(st) => break st.code,
            other => panic!("unexpected {other:?}"),
        }
    };
    let text = String::from_utf8_lossy(&out);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("24 80"), "{text}");
    assert!(text.contains("50 132"), "{text}");
    outcome(handle);
}

#[test]
fn exec_runs_beside_the_main_process() {
    if !in_user_namespace("exec_runs_beside_the_main_process") {
        return;
    }
    let (client, handle) = agent();
    let main = client.start(start(sh("read x; echo main-$x"))).unwrap();
    let e = client.exec(sh("echo exec-ok; exit 7")).unwrap();
    let (res, out, _) = wait(&client, e);
    assert_eq!((res.status.code, out.as_str()), (7, "exec-ok\n"));
    client.write_stdin(main, b"done\n").unwrap();
    let (res, out, _) = wait(&client, main);
    assert_eq!((res.status.code, out.as_str()), (0, "main-done\n"));
    outcome(handle);
}

#[test]
fn user_env_and_working_directory_are_applied() {
    // Switching to another user needs root: root of a user namespace with the user's
    // subordinate ids (65534 among them) is enough.
    if !privileged(
        Needs::UserNamespace,
        "user_env_and_working_directory_are_applied",
    ) {
        return;
    }
    let (client, handle) = agent();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("new/work");
    let mut spec = sh("id -u; id -g; pwd; echo $FOO; echo $HOME; echo $PATH");
    spec.user = "65534:65534".into();
    spec.cwd = cwd.to_string_lossy().into_owned();
    spec.env = vec!["FOO=bar".into(), "IGNORED".into()];
    let s = client.start(start(spec)).unwrap();
    let (res, out, err) = wait(&client, s);
    assert_eq!(res.status.code, 0, "{err} {:?}", res.errors);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0..2], ["65534", "65534"]);
    assert_eq!(lines[2], cwd.to_str().unwrap());
    assert_eq!(lines[3], "bar");
    assert_eq!(lines[5], supervisor::DEFAULT_PATH);
    outcome(handle);
}

#[test]
fn unknown_user_fails_the_start_with_125() {
    if !in_user_namespace("unknown_user_fails_the_start_with_125") {
        return;
    }
    let (client, handle) = agent();
    let mut spec = sh("true");
    spec.user = "no-such-user-here".into();
    let s = client.start(start(spec)).unwrap();
    let (res, _, _) = wait(&client, s);
    assert_eq!(res.status.code, 125);
    assert!(res.errors[0].contains("unable to find user no-such-user-here"));
    assert!(matches!(outcome(handle), Outcome::MainExited(st) if st.code == 125));
}

#[test]
fn background_children_do_not_hold_the_exit_back() {
    if !in_user_namespace("background_children_do_not_hold_the_exit_back") {
        return;
    }
    let (client, handle) = agent();
    let t = Instant::now();
    let s = client.start(start(sh("sleep 20 & echo done"))).unwrap();
    let (res, out, _) = wait(&client, s);
    assert_eq!((res.status.code, out.as_str()), (0, "done\n"));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    outcome(handle);
}

#[test]
fn bad_frames_get_error_frames_and_the_agent_goes_on() {
    if !in_user_namespace("bad_frames_get_error_frames_and_the_agent_goes_on") {
        return;
    }
    let (mut host, guest) = UnixStream::pair().unwrap();
    let cfg = config(None);
    let handle = std::thread::spawn(move || supervisor::run(guest.into(), &cfg, &mut NoSetup));
    let mut raw = host.try_clone().unwrap();
    assert_eq!(skip_to_sync(&mut raw).unwrap(), 0);
    let mut reader = FrameReader::new(raw);
    let ready = reader.read_frame::<GuestMessage>().unwrap().unwrap();
    assert!(matches!(
        ready.message,
        GuestMessage::Ready {
            version: PROTOCOL_VERSION,
            ..
        }
    ));

    // Unknown kind, then a truncated exec body, then stdin for a stream that has no process.
    host.write_all(&[2, 0, 0, 0, 0x70, 4, 0, 0, 0, 9, 9])
        .unwrap();
    host.write_all(&[1, 0, 0, 0, 0x02, 5, 0, 0, 0, 7]).unwrap();
    host.write_all(&encode_frame(6, &HostMessage::Stdin(b"x".to_vec())).unwrap())
        .unwrap();
    host.write_all(&encode_frame(7, &HostMessage::Start(start(sh("true")))).unwrap())
        .unwrap();
    host.write_all(&encode_frame(8, &HostMessage::Start(start(sh("true")))).unwrap())
        .unwrap();
    let mut errors = Vec::new();
    loop {
        let f = reader.read_frame::<GuestMessage>().unwrap().unwrap();
        match f.message {
            GuestMessage::Error { kind, .. } => errors.push((f.stream, kind)),
            GuestMessage::Exit(_) => break,
            _ => {}
        }
    }
    assert_eq!(
        errors,
        vec![
            (4, ErrorKind::Protocol),
            (5, ErrorKind::Protocol),
            (6, ErrorKind::UnknownStream),
            (8, ErrorKind::InvalidState),
        ]
    );
    outcome(handle);

    // An oversized length ends the connection with an error.
    let (mut host, guest) = UnixStream::pair().unwrap();
    let cfg = config(None);
    let handle = std::thread::spawn(move || supervisor::run(guest.into(), &cfg, &mut NoSetup));
    host.write_all(&[0xff, 0xff, 0xff, 0x7f, 0x03, 1, 0, 0, 0])
        .unwrap();
    assert!(matches!(
        handle.join().unwrap(),
        Err(SupervisorError::Fatal(_))
    ));
    let mut rest = Vec::new();
    host.read_to_end(&mut rest).unwrap();
    let mut rest = &rest[..];
    skip_to_sync(&mut rest).unwrap();
    let mut r = FrameReader::new(rest);
    let _ready = r.read_frame::<GuestMessage>().unwrap();
    let err = r.read_frame::<GuestMessage>().unwrap().unwrap();
    assert!(matches!(
        err.message,
        GuestMessage::Error {
            kind: ErrorKind::Protocol,
            ..
        }
    ));
}

#[test]
fn shutdown_and_closed_channel_end_the_loop_and_kill_processes() {
    if !in_user_namespace("shutdown_and_closed_channel_end_the_loop_and_kill_processes") {
        return;
    }
    let (client, handle) = agent();
    let s = client.exec(sh("exec sleep 30")).unwrap();
    let pid = match client.next_event(Some(TIMEOUT)).unwrap().unwrap().message {
        GuestMessage::Started { pid, .. } => pid,
        other => panic!("unexpected {other:?}"),
    };
    let _ = s;
    client.shutdown().unwrap();
    assert_eq!(outcome(handle), Outcome::Shutdown);
    // The sleep was killed and reaped: the pid no longer exists.
    // SAFETY: signal 0 only checks for existence.
    assert_eq!(unsafe { libc::kill(pid as i32, 0) }, -1);

    let (client, handle) = agent();
    drop(client);
    assert_eq!(outcome(handle), Outcome::ChannelClosed);
}

#[test]
fn upper_layer_streams_as_a_tar() {
    if !in_user_namespace("upper_layer_streams_as_a_tar") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/motd"), b"hi\n").unwrap();
    let (client, handle) = agent_with(Some(dir.path().to_owned()));
    let mut tar_bytes = Vec::new();
    let n = client.stream_upper(&mut tar_bytes).unwrap();
    assert_eq!(n as usize, tar_bytes.len());
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["etc", "etc/motd"]);
    client.shutdown().unwrap();
    assert_eq!(outcome(handle), Outcome::Shutdown);

    // Without a writable layer the request is refused with a message.
    let (client, handle) = agent();
    let err = client.stream_upper(&mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("no writable layer"), "{err}");
    client.shutdown().unwrap();
    outcome(handle);
}

#[test]
fn a_bare_command_is_looked_up_in_the_process_path() {
    if !in_user_namespace("a_bare_command_is_looked_up_in_the_process_path") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let tool = dir.path().join("nook-test-tool");
    std::fs::write(&tool, "#!/bin/sh\necho found \"$@\"\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (client, handle) = agent();
    let s = client
        .start(start(ProcessSpec {
            argv: vec!["nook-test-tool".into(), "arg".into()],
            env: vec![format!("PATH=/nonexistent:{}", dir.path().display())],
            ..Default::default()
        }))
        .unwrap();
    let (res, out, _) = wait(&client, s);
    assert_eq!((res.status.code, out.as_str()), (0, "found arg\n"));
    outcome(handle);
}

/// PID namespaces need root, as the agent is in the guest: root of a user namespace is enough.
/// None: the test re-ran itself in one and passed there.
fn namespaced_agent(test: &str) -> Option<(Client, JoinHandle<Result<Outcome, SupervisorError>>)> {
    if !privileged(Needs::UserNamespace, test) {
        return None;
    }
    Some(agent_config(Config {
        pid_namespace: true,
        ..config(None)
    }))
}

/// The main process's stdout until `want` arrived.
fn read_until(client: &Client, stream: u32, want: &str) {
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(want) {
        let f = client.next_event(Some(TIMEOUT)).unwrap().unwrap();
        match f.message {
            GuestMessage::Started { .. } => {}
            GuestMessage::Stdout(d) if f.stream == stream => seen.extend(d),
            other => panic!("unexpected {other:?} before {want:?}"),
        }
    }
}

#[test]
fn main_process_is_pid_1_and_ignores_sigterm_without_a_handler() {
    let Some((client, handle)) =
        namespaced_agent("main_process_is_pid_1_and_ignores_sigterm_without_a_handler")
    else {
        return;
    };
    let main = client
        .start(start(sh("echo pid=$$; exec sleep 1000")))
        .unwrap();
    read_until(&client, main, "pid=1\n");

    // exec joins the namespace and sees its /proc: the entrypoint is PID 1 there.
    let e = client
        .exec(sh(
            "echo $$; tr '\\0' ' ' </proc/1/cmdline; echo; ls /proc | grep -c '^[0-9]*$'",
        ))
        .unwrap();
    let (res, out, err) = wait(&client, e);
    assert_eq!(res.status.code, 0, "{err} {:?}", res.errors);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let exec_pid: u32 = lines[0].parse().unwrap();
    assert!(exec_pid > 1, "{out}");
    assert_eq!(lines[1], "sleep 1000 ", "{out}");
    // sleep, the shell, ls and grep: nothing of the host's.
    let count: u32 = lines[2].parse().unwrap();
    assert!(count <= 4, "the container's /proc shows {count} processes");
    // The namespace's /proc was mounted in its own mount namespace, not over ours.
    assert_eq!(
        std::fs::read_link("/proc/self").unwrap(),
        PathBuf::from(std::process::id().to_string())
    );

    // Joining the mount namespace moves to its root: the working directory is set after it.
    // A terminal works across the namespaces too.
    let e = client
        .exec(ProcessSpec {
            cwd: "/tmp".into(),
            terminal: true,
            ..sh("pwd; test -t 0 && echo tty")
        })
        .unwrap();
    let (res, out, _) = wait(&client, e);
    assert_eq!(
        (res.status.code, out.replace('\r', "").as_str()),
        (0, "/tmp\ntty\n")
    );

    // PID 1 has no SIGTERM handler: the kernel drops SIGTERM, as under docker.
    client.signal(main, libc::SIGTERM).unwrap();
    match client.next_event(Some(Duration::from_millis(700))) {
        Err(nook_agent::client::ClientError::Timeout { .. }) => {}
        other => panic!("SIGTERM ended PID 1 without a handler: {other:?}"),
    }
    // SIGKILL from outside the namespace always gets through.
    client.signal(main, libc::SIGKILL).unwrap();
    let (res, _, _) = wait(&client, main);
    assert_eq!((res.status.code, res.status.signal), (137, Some(9)));
    assert_eq!(
        outcome(handle),
        Outcome::MainExited(nook_agent::protocol::ExitStatus {
            code: 137,
            signal: Some(9)
        })
    );
}

#[test]
fn pid_1_with_a_sigterm_handler_gets_it() {
    let Some((client, handle)) = namespaced_agent("pid_1_with_a_sigterm_handler_gets_it") else {
        return;
    };
    let main = client
        .start(start(sh(
            "trap 'echo got-term; exit 4' TERM; echo ready; while :; do sleep 0.05; done",
        )))
        .unwrap();
    read_until(&client, main, "ready\n");
    client.signal(main, libc::SIGTERM).unwrap();
    let (res, out, _) = wait(&client, main);
    assert_eq!((res.status.code, out.as_str()), (4, "got-term\n"));
    outcome(handle);
}

#[test]
fn when_pid_1_exits_the_namespace_goes_and_its_status_is_reported() {
    let Some((client, handle)) =
        namespaced_agent("when_pid_1_exits_the_namespace_goes_and_its_status_is_reported")
    else {
        return;
    };
    let main = client.start(start(sh("read x; exit 5"))).unwrap();
    let e = client.exec(sh("echo in; exec sleep 1000")).unwrap();
    read_until(&client, e, "in\n");
    client.write_stdin(main, b"go\n").unwrap();
    // The kernel kills the rest of the namespace; the agent still reaps and reports both.
    let (res, _, _) = wait(&client, e);
    assert_eq!((res.status.code, res.status.signal), (137, Some(9)));
    let (res, _, _) = wait(&client, main);
    assert_eq!((res.status.code, res.status.signal), (5, None));
    match outcome(handle) {
        Outcome::MainExited(st) => assert_eq!(st.code, 5),
        other => panic!("unexpected outcome {other:?}"),
    }
}
