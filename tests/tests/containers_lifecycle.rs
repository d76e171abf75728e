//! Whole-program tests of the container lifecycle in the namespace column, run as an
//! unprivileged user: the writable layer across stop/start and rm, logs, stop's escalation,
//! exit codes, and a killed monitor.

use std::time::{Duration, Instant};

use nook_tests::rootless::Rootless;

/// A container whose PID 1 ignores SIGTERM (no handler), like most programs run as PID 1.
const SLEEPER: &[&str] = &["busybox", "sleep", "1000"];

fn run_detached(nook: &Rootless, name: &str, cmd: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(cmd);
    nook.ok(&args).trim().to_string()
}

#[test]
fn writable_layer_survives_stop_start_and_dies_with_rm() {
    let nook = Rootless::new();
    nook.default_image();
    let blobs_before = Rootless::tree_contents(&nook.path("blobs"));

    let id = run_detached(&nook, "keeper", SLEEPER);
    assert_eq!(id.len(), 64, "run -d prints the full id: {id}");
    nook.ok(&["exec", "keeper", "sh", "-c", "echo kept > /data.txt"]);
    nook.ok(&["stop", "-t", "1", "keeper"]);
    assert!(nook.state_of("keeper").starts_with("exited"));
    nook.ok(&["start", "keeper"]);
    assert_eq!(nook.ok(&["exec", "keeper", "cat", "/data.txt"]), "kept\n");

    // Another container of the same image does not see it.
    let (_, err) = nook.exits(1, &["run", "--rm", "busybox", "cat", "/data.txt"]);
    assert!(err.contains("No such file"), "{err}");

    let dir = nook.path(&format!("containers/{id}"));
    assert!(
        dir.join("upper/data.txt").exists(),
        "the file lives in the writable layer"
    );
    nook.ok(&["rm", "-f", "keeper"]);
    assert!(!dir.exists(), "rm deletes the container's directory");
    assert!(!nook.ok(&["ps", "-a"]).contains("keeper"));
    assert!(
        std::fs::read_dir(nook.path("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "nothing left behind in tmp/"
    );

    assert_eq!(
        Rootless::tree_contents(&nook.path("blobs")),
        blobs_before,
        "the image's blobs are byte-identical"
    );
}

#[test]
fn exit_codes_follow_docker() {
    let nook = Rootless::new();
    nook.default_image();
    assert_eq!(
        nook.ok(&["run", "--rm", "busybox", "echo", "hello"]),
        "hello\n"
    );
    nook.exits(7, &["run", "--rm", "busybox", "sh", "-c", "exit 7"]);
    let (_, err) = nook.exits(127, &["run", "--rm", "busybox", "no-such-command"]);
    assert!(err.contains("no-such-command"), "{err}");
    let (_, err) = nook.exits(126, &["run", "--rm", "busybox", "/etc/passwd"]);
    assert!(err.contains("/etc/passwd"), "{err}");
    assert_eq!(nook.ok(&["ps", "-aq"]), "", "--rm removed every container");
}

#[test]
fn logs_keep_both_streams_after_exit() {
    let nook = Rootless::new();
    nook.default_image();
    run_detached(
        &nook,
        "talker",
        &[
            "busybox",
            "sh",
            "-c",
            "echo to-out; echo to-err >&2; echo more-out",
        ],
    );
    assert_eq!(nook.ok(&["wait", "talker"]), "0\n");
    let out = nook.run(&["logs", "talker"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-out\nmore-out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-err\n");
    // --tail counts records of both streams; the order between streams is the order the
    // monitor read them, so the tail is checked on one stream.
    run_detached(
        &nook,
        "counter",
        &["busybox", "sh", "-c", "echo 1; echo 2; echo 3"],
    );
    nook.ok(&["wait", "counter"]);
    assert_eq!(nook.ok(&["logs", "--tail", "2", "counter"]), "2\n3\n");
    let id = nook.id_of("talker");
    let log = std::fs::read_to_string(nook.path(&format!("containers/{id}/log.json"))).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["log"], "to-out\n");
    assert_eq!(first["stream"], "stdout");
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn stop_sends_sigterm_then_sigkill_after_the_timeout() {
    let nook = Rootless::new();
    nook.default_image();
    // PID 1 with a TERM handler exits at once with its own status.
    run_detached(
        &nook,
        "polite",
        &[
            "busybox",
            "sh",
            "-c",
            "trap 'exit 3' TERM; while :; do sleep 0.1; done",
        ],
    );
    let t = Instant::now();
    nook.ok(&["stop", "-t", "20", "polite"]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        nook.state_of("polite").contains("Exited (3)"),
        "{}",
        nook.state_of("polite")
    );

    // PID 1 without a handler ignores SIGTERM: SIGKILL comes after -t seconds.
    run_detached(&nook, "stubborn", SLEEPER);
    let t = Instant::now();
    nook.ok(&["stop", "-t", "2", "stubborn"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "killed before the timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        nook.state_of("stubborn").contains("Exited (137)"),
        "{}",
        nook.state_of("stubborn")
    );
    // stop of a stopped container is a no-op, as docker.
    nook.ok(&["stop", "stubborn"]);
}

#[test]
fn killed_monitor_leaves_an_exited_container_that_rm_removes() {
    let nook = Rootless::new();
    nook.default_image();
    let id = run_detached(&nook, "orphan", SLEEPER);
    assert!(nook.state_of("orphan").starts_with("running"));
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(nook.path(&format!("containers/{id}/state.json"))).unwrap(),
    )
    .unwrap();
    let monitor = state["monitor"]["pid"].as_i64().unwrap() as i32;
    let init = state["init"]["pid"].as_i64().unwrap() as i32;
    // SAFETY: kill takes a pid and a signal.
    assert_eq!(unsafe { libc::kill(monitor, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nook.state_of("orphan").starts_with("exited") {
        assert!(
            Instant::now() < deadline,
            "still {}",
            nook.state_of("orphan")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The container's processes died with their monitor.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{init}")).exists()
        && !std::fs::read_to_string(format!("/proc/{init}/stat"))
            .unwrap_or_default()
            .contains(") Z")
    {
        assert!(
            Instant::now() < deadline,
            "the container's init {init} outlived its monitor"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let inspected = nook.ok(&[
        "inspect",
        "--format",
        "{{.Name}} {{.State.Status}} {{.State.Running}} {{.State.ExitCode}}",
        "orphan",
    ]);
    assert_eq!(inspected, "/orphan exited false 137\n");
    nook.ok(&["rm", "orphan"]);
    assert!(!nook.path(&format!("containers/{id}")).exists());
}

#[test]
fn restart_and_kill_with_a_signal() {
    let nook = Rootless::new();
    nook.default_image();
    run_detached(
        &nook,
        "usr1",
        &[
            "busybox",
            "sh",
            "-c",
            "trap 'exit 42' USR1; while :; do sleep 0.1; done",
        ],
    );
    nook.ok(&["kill", "-s", "USR1", "usr1"]);
    assert_eq!(nook.ok(&["wait", "usr1"]), "42\n");
    nook.ok(&["restart", "-t", "1", "usr1"]);
    assert!(nook.state_of("usr1").starts_with("running"));
    nook.ok(&["kill", "usr1"]);
    assert_eq!(nook.ok(&["wait", "usr1"]), "137\n");
}

#[test]
fn detached_tty_is_a_terminal_whose_output_is_logged() {
    let nook = Rootless::new();
    nook.default_image();
    run_detached(
        &nook,
        "tty",
        &[
            "-t",
            "busybox",
            "sh",
            "-c",
            "test -t 0 && test -t 1 && echo on-a-tty",
        ],
    );
    assert_eq!(nook.ok(&["wait", "tty"]), "0\n");
    // A terminal turns \n into \r\n.
    assert_eq!(nook.ok(&["logs", "tty"]), "on-a-tty\r\n");
    // Without -t the same streams are pipes.
    nook.exits(1, &["run", "--rm", "busybox", "test", "-t", "1"]);
}

#[test]
fn logs_follow_until_exit_and_exec_takes_its_flags() {
    let nook = Rootless::new();
    nook.default_image();
    run_detached(
        &nook,
        "slow",
        &[
            "busybox",
            "sh",
            "-c",
            "for i in 1 2 3; do echo line $i; sleep 0.3; done; sleep 1000",
        ],
    );
    let out = nook.ok(&[
        "exec",
        "-e",
        "GREETING=hi",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "slow",
        "sh",
        "-c",
        "echo $GREETING $(pwd) $(id -u):$(id -g)",
    ]);
    assert_eq!(out, "hi /tmp 1000:1000\n");
    // -f returns once the container stops, with every line.
    let follower = nook
        .cmd(&["logs", "-f", "slow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    nook.ok(&["kill", "slow"]);
    let out = follower.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "line 1\nline 2\nline 3\n"
    );
}
