//! A container never gets the caller's terminal (issue 12, item 1): nook runs in a real pty
//! standing for the user's terminal, and a static probe in the container tries to push
//! keystrokes into it with `TIOCSTI`, through `/dev/tty` and through every descriptor that is
//! a terminal. Without `-t` the container has pipes only and no controlling terminal; with
//! `-t` it has a new pty of its own, so whatever it injects stays inside. Nothing may arrive
//! as input on the caller's terminal, and ordinary I/O, window size, raw mode and exit codes
//! keep working.

use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nook_tests::rootless::Rootless;

/// What the probe (`tests/fixtures/tiocsti-probe.c`) pushes into any terminal it can reach.
const MARKER: &str = "injected-by-the-container";

/// The report of a probe that reached no terminal at all.
const NO_TERMINAL: &str = "devtty:none";

/// Compiles the probe and makes the image `probe:1`: busybox plus `/probe`.
fn probe_image(nook: &Rootless) {
    nook.default_image();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("probe");
    nook_tests::compile_static_probe(
        &nook_tests::workspace_root().join("tests/fixtures/tiocsti-probe.c"),
        &bin,
    );
    let mut child = nook
        .cmd(&[
            "run",
            "-i",
            "--name",
            "probe-maker",
            "busybox",
            "sh",
            "-c",
            "cat > /probe && chmod 755 /probe",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("cannot start nook");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&bin).unwrap())
        .unwrap();
    assert!(child.wait().unwrap().success(), "cannot copy the probe in");
    nook.ok(&["commit", "probe-maker", "probe:1"]);
    nook.ok(&["rm", "probe-maker"]);
}

/// A pty standing for the user's terminal: (leader, follower), 33 rows by 101 columns.
fn user_terminal() -> (OwnedFd, OwnedFd) {
    let (mut leader, mut follower) = (0, 0);
    let size = libc::winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty fills the two ints and reads the valid winsize; name and termios null.
    let ret = unsafe {
        libc::openpty(
            &mut leader,
            &mut follower,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(ret, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two fresh descriptors that nobody else owns.
    unsafe { (OwnedFd::from_raw_fd(leader), OwnedFd::from_raw_fd(follower)) }
}

fn termios(fd: &OwnedFd) -> libc::termios {
    // SAFETY: an all-zero termios is a valid value for tcgetattr to fill.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr fills the valid pointer.
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0);
    t
}

/// How nook ended in the user's terminal.
struct Session {
    status: ExitStatus,
    /// Everything the terminal displayed.
    shown: String,
    /// What was waiting as input on the terminal afterwards: what the user's shell would read.
    typed_ahead: String,
    /// The terminal's settings afterwards were those from before.
    restored: bool,
}

/// Runs nook as the test user in a new session whose controlling terminal is a fresh pty, with
/// the terminal also open as descriptor 3 (as a shell's `3<>/dev/tty` would leave it). `keys`
/// are typed once the terminal has shown `after`.
fn in_terminal(nook: &Rootless, args: &[&str], keys: Option<(&str, &[u8])>) -> Session {
    let (leader, follower) = user_terminal();
    let before = termios(&follower);
    // Rootless keeps its copy of nook next to the store.
    let bin = nook.root().parent().unwrap().join("nook");
    let mut cmd;
    if let Some(user) = nook.user() {
        cmd = Command::new("runuser");
        cmd.args(["-u", user, "--", "env", "-i"]);
        cmd.arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
        cmd.arg(format!("HOME={}", nook.root().parent().unwrap().display()));
        cmd.arg(format!("NOOK_ROOT={}", nook.root().display()));
    } else {
        cmd = Command::new("env");
        cmd.arg(format!("NOOK_ROOT={}", nook.root().display()));
    }
    // --foreground: nook stays in the terminal's foreground process group, as from a shell.
    cmd.args(["timeout", "--foreground", "60"])
        .arg(bin)
        .args(args);
    let end = || Stdio::from(follower.try_clone().unwrap());
    cmd.stdin(end()).stdout(end()).stderr(end());
    // SAFETY: between fork and exec only async-signal-safe calls: setsid, ioctl, dup2.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 || libc::dup2(0, 3) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("cannot start nook in a terminal");
    drop(cmd);

    let mut shown = Vec::new();
    let mut keys = keys;
    let mut ended = false;
    let mut quiet_since = None;
    let start = Instant::now();
    loop {
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "nook {args:?} did not end; the terminal showed:\n{}",
                String::from_utf8_lossy(&shown)
            );
        }
        let mut pfd = libc::pollfd {
            fd: leader.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 50) };
        let mut got = 0;
        if n > 0 {
            let mut buf = [0u8; 4096];
            // SAFETY: reading into a valid buffer.
            let r = unsafe { libc::read(leader.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if r > 0 {
                got = r as usize;
                shown.extend_from_slice(&buf[..got]);
            }
        }
        if let Some((after, typed)) = keys {
            if String::from_utf8_lossy(&shown).contains(after) {
                // SAFETY: writing a valid buffer to the leader: the user types.
                unsafe { libc::write(leader.as_raw_fd(), typed.as_ptr().cast(), typed.len()) };
                keys = None;
            }
        }
        if !ended {
            ended = child.try_wait().unwrap().is_some();
        }
        if ended {
            // Ended: take what the terminal still shows, then stop.
            if got > 0 {
                quiet_since = None;
            } else if quiet_since.get_or_insert_with(Instant::now).elapsed()
                > Duration::from_millis(300)
            {
                break;
            }
        }
    }
    let status = child.wait().unwrap();
    let after = termios(&follower);
    let restored = (before.c_iflag, before.c_oflag, before.c_lflag)
        == (after.c_iflag, after.c_oflag, after.c_lflag);

    // What waits as input: readable at once in non-canonical mode, even without a newline.
    let mut raw = after;
    // SAFETY: cfmakeraw edits a valid termios; tcsetattr reads it.
    unsafe {
        libc::cfmakeraw(&mut raw);
        raw.c_cc[libc::VMIN] = 0;
        raw.c_cc[libc::VTIME] = 0;
        libc::tcsetattr(follower.as_raw_fd(), libc::TCSANOW, &raw);
    }
    let mut typed_ahead = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reading into a valid buffer; VMIN=0 VTIME=0 never blocks.
        let r = unsafe { libc::read(follower.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r <= 0 {
            break;
        }
        typed_ahead.extend_from_slice(&buf[..r as usize]);
    }
    Session {
        status,
        shown: String::from_utf8_lossy(&shown).into_owned(),
        typed_ahead: String::from_utf8_lossy(&typed_ahead).into_owned(),
        restored,
    }
}

/// The probe's report line in what the terminal showed.
fn report(session: &Session) -> String {
    session
        .shown
        .lines()
        .find(|l| l.contains("devtty:"))
        .unwrap_or_else(|| panic!("no probe report in:\n{}", session.shown))
        .trim_end_matches('\r')
        .to_string()
}

fn assert_nothing_injected(what: &str, session: &Session) {
    assert!(
        !session.typed_ahead.contains(MARKER),
        "{what}: the container pushed input into the user's terminal: {:?}\n(shown: {})",
        session.typed_ahead,
        session.shown
    );
    assert!(session.restored, "{what}: the terminal's settings changed");
}

#[test]
fn attached_containers_cannot_type_into_the_callers_terminal() {
    let nook = Rootless::new();
    probe_image(&nook);

    for args in [
        &["run", "--rm", "probe:1", "/probe"][..],
        &["run", "--rm", "-i", "probe:1", "/probe"],
    ] {
        let session = in_terminal(&nook, args, None);
        assert!(session.status.success(), "{args:?}: {}", session.shown);
        // No controlling terminal, no descriptor that is a terminal.
        assert_eq!(report(&session), NO_TERMINAL, "{args:?}");
        assert_nothing_injected(&format!("{args:?}"), &session);
    }

    // With -t the container has a pty of its own: what it injects, it reads itself.
    let session = in_terminal(&nook, &["run", "--rm", "-t", "probe:1", "/probe"], None);
    assert!(session.status.success(), "{}", session.shown);
    let line = report(&session);
    assert!(line.starts_with("devtty:INJECTED fd0:INJECTED"), "{line}");
    assert!(
        !line.contains("fd3"),
        "the caller's descriptor 3 reached it: {line}"
    );
    assert_nothing_injected("run -t", &session);

    nook.ok(&["run", "-d", "--name", "target", "probe:1", "sleep", "1000"]);
    for args in [
        &["exec", "target", "/probe"][..],
        &["exec", "-i", "target", "/probe"],
    ] {
        let session = in_terminal(&nook, args, None);
        assert!(session.status.success(), "{args:?}: {}", session.shown);
        assert_eq!(report(&session), NO_TERMINAL, "{args:?}");
        assert_nothing_injected(&format!("{args:?}"), &session);
    }
    let session = in_terminal(&nook, &["exec", "-it", "target", "/probe"], None);
    assert!(session.status.success(), "{}", session.shown);
    assert!(
        report(&session).starts_with("devtty:INJECTED"),
        "{}",
        session.shown
    );
    assert_nothing_injected("exec -it", &session);
    nook.ok(&["rm", "-f", "target"]);
}

#[test]
fn terminals_and_pipes_still_work() {
    let nook = Rootless::new();
    nook.default_image();

    // -i without -t: a pipe, and the end of the caller's input ends the container's.
    let mut child = nook
        .cmd(&["run", "--rm", "-i", "busybox", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    nook.exits(3, &["run", "--rm", "busybox", "sh", "-c", "exit 3"]);

    // -t: a pty of the container's own, sized like the caller's terminal.
    let session = in_terminal(
        &nook,
        &[
            "run",
            "--rm",
            "-t",
            "busybox",
            "sh",
            "-c",
            "tty; stty size; exit 7",
        ],
        None,
    );
    assert_eq!(session.status.code(), Some(7), "{}", session.shown);
    let mut lines = session.shown.lines().map(|l| l.trim_end_matches('\r'));
    let tty = lines.next().unwrap_or_default();
    assert!(tty.starts_with("/dev/pts/"), "{}", session.shown);
    assert_eq!(lines.next(), Some("33 101"), "{}", session.shown);
    assert!(session.restored);

    // -it: keys reach the container's pty through the raw caller's terminal; ^D ends cat.
    let session = in_terminal(
        &nook,
        &[
            "run",
            "--rm",
            "-it",
            "busybox",
            "sh",
            "-c",
            "echo ready; cat; echo done",
        ],
        Some(("ready", b"typed\n\x04")),
    );
    assert!(session.status.success(), "{}", session.shown);
    assert!(
        session.shown.contains("typed\r\ntyped\r\ndone"),
        "echo, cat's copy, then the end: {:?}",
        session.shown
    );
    assert!(session.restored, "raw mode was not undone");
    assert!(
        !session.typed_ahead.contains("typed"),
        "{:?}",
        session.typed_ahead
    );

    // ^C is a key for the container's own terminal, whose foreground processes it interrupts.
    let session = in_terminal(
        &nook,
        &[
            "run",
            "--rm",
            "-it",
            "busybox",
            "sh",
            "-c",
            "echo ready; sleep 100; echo after $?",
        ],
        Some(("ready", b"\x03")),
    );
    // Interrupted: it ended long before the sleep would have (in_terminal gives up after 90 s).
    assert!(!session.shown.contains("after 0"), "{}", session.shown);
    assert!(session.restored, "raw mode was not undone");

    nook.ok(&["run", "-d", "--name", "target", "busybox", "sleep", "1000"]);
    nook.exits(4, &["exec", "target", "sh", "-c", "exit 4"]);
    let mut child = nook
        .cmd(&["exec", "-i", "target", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"to exec\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to exec\n");
    let session = in_terminal(
        &nook,
        &["exec", "-t", "target", "sh", "-c", "tty; stty size; exit 5"],
        None,
    );
    assert_eq!(session.status.code(), Some(5), "{}", session.shown);
    assert!(session.shown.starts_with("/dev/pts/"), "{}", session.shown);
    assert!(session.shown.contains("33 101"), "{}", session.shown);
    nook.ok(&["rm", "-f", "target"]);
}
