//! Output into a pipe whose reader is gone (`nook ps | head -1`, `nook-runtime state ID | grep
//! -q running`), as an unprivileged user: the command ends quietly, by SIGPIPE as any Unix tool
//! (runc and docker too) does, never with a panic. An attached `nook run` whose caller stopped
//! reading still waits for its container and records its exit, and a container's process starts
//! with SIGPIPE's default action, as under docker.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use nook_tests::nook_runtime_bin;
use nook_tests::rootless::Rootless;

/// The writing end of a pipe whose reading end is already closed.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array; both descriptors are ours.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: closing the reading end we own and never use.
    unsafe { libc::close(fds[0]) };
    // SAFETY: the writing end is open and owned by nothing else.
    Stdio::from(unsafe { OwnedFd::from_raw_fd(fds[1]) })
}

/// Runs `cmd` with its standard output into a closed pipe.
fn into_closed_pipe(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .expect("cannot start the command")
}

/// Ended by SIGPIPE: killed by it, or 128+13 from the wrappers (`runuser`, `timeout`) that
/// run it as the test user.
fn ended_by_sigpipe(out: &Output) -> bool {
    out.status.signal() == Some(libc::SIGPIPE) || out.status.code() == Some(128 + libc::SIGPIPE)
}

/// Rust's panic on a failed `println!` ("failed printing to stdout: Broken pipe"), or any
/// other. (`runuser` itself names the signal its command died of: that line is not nook's.)
fn panicked(out: &Output) -> bool {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr.contains("panicked") || stderr.contains("failed printing")
}

fn check_quiet(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !panicked(out),
        "{what} into a closed pipe panicked:\n{stderr}"
    );
    assert!(
        ended_by_sigpipe(out) || out.status.success(),
        "{what} into a closed pipe ended with {}; stderr:\n{stderr}",
        out.status
    );
}

#[test]
fn listing_commands_into_a_closed_pipe_end_quietly() {
    let nook = Rootless::new();
    nook.default_image();
    for args in [
        &["ps", "-a"][..],
        &["images"],
        &["version"],
        &["--help"],
        &["inspect", "busybox"],
    ] {
        check_quiet(&format!("nook {args:?}"), &into_closed_pipe(nook.cmd(args)));
    }
    let runtime = nook.install(&nook_runtime_bin(), "nook-runtime");
    let state = nook.root().join("oci-state");
    let state = state.to_string_lossy();
    for args in [
        &["--version"][..],
        &["--help"],
        &["features"],
        &["spec", "--rootless", "--bundle", "/"],
        &["--root", &state, "list"],
    ] {
        let out = into_closed_pipe(nook.cmd_of(Path::new(&runtime), args));
        // `spec` writes config.json, not to stdout; it fails for want of a writable bundle.
        if args[0] == "spec" {
            assert!(!panicked(&out), "{}", String::from_utf8_lossy(&out.stderr));
            continue;
        }
        check_quiet(&format!("nook-runtime {args:?}"), &out);
    }
    // Where nothing was read at all, these end by the signal rather than exit 0: the same
    // check, with the status itself.
    let out = into_closed_pipe(nook.cmd_of(Path::new(&runtime), &["--version"]));
    assert!(ended_by_sigpipe(&out), "{}", out.status);
}

#[test]
fn an_attached_run_outlives_its_reader_and_records_the_exit() {
    let nook = Rootless::new();
    nook.default_image();
    let out = into_closed_pipe(nook.cmd(&[
        "run",
        "--name",
        "piped",
        "busybox",
        "sh",
        "-c",
        "echo one; sleep 1; echo two; exit 3",
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{}: {stderr}", out.status);
    assert!(!panicked(&out), "{stderr}");
    let state = nook.state_of("piped");
    assert!(state.starts_with("exited Exited (3)"), "{state}");
    // Its output went to the log all the same.
    assert_eq!(nook.ok(&["logs", "piped"]), "one\ntwo\n");
}

#[test]
fn the_containers_process_has_sigpipes_default_action() {
    let nook = Rootless::new();
    nook.default_image();
    let out = nook.ok(&["run", "--rm", "busybox", "cat", "/proc/self/status"]);
    let ignored = out
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap_or_else(|| panic!("no SigIgn in {out}"));
    let sigpipe = 1u64 << (libc::SIGPIPE - 1);
    assert_eq!(
        ignored & sigpipe,
        0,
        "SIGPIPE is ignored: SigIgn {ignored:x}"
    );
    // The same program as a shell pipeline would run it: `yes` ends with the pipe.
    assert_eq!(
        nook.ok(&["run", "--rm", "busybox", "sh", "-c", "yes | head -n 2"]),
        "y\ny\n"
    );
}
