//! Privileges for tests, the way rootless runtimes test themselves: a test that needs to create
//! namespaces or switch users re-runs itself (only itself) as root of a new user namespace
//! (`unshare --user --map-root-user --map-auto --mount --pid --fork --mount-proc`), and a test that needs real
//! root (loop devices, mounting a disk image) re-runs itself through `sudo -n`. As root the body
//! simply runs. Nothing is skipped: a re-run that cannot start, or that did not run and pass
//! exactly one test, fails the calling test with the re-run's output.
//!
//! Used by this crate's tests and by the runtime's; the agent binary never calls it.

use std::process::Command;

/// What a test body needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Root of a user namespace (with the user's subordinate ids mapped from 1): enough for
    /// namespaces, overlay mounts, chroot and switching users.
    UserNamespace,
    /// Real root on the host: loop devices, mounting disk images.
    Root,
}

/// Set in the re-run, so that a re-run that still lacks privileges fails instead of looping.
const RERUN_VAR: &str = "NOOK_TEST_RERUN";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The running test's name as libtest knows it (`module::tests::name`); libtest names the thread
/// after the test, or `name` (the same path) is used when tests run on the main thread.
fn test_name(name: &str) -> String {
    match std::thread::current().name() {
        Some(n) if n != "main" => n.to_string(),
        _ => name.to_string(),
    }
}

/// Call first in a test that needs privileges. True: run the body here (already root, or root
/// of the namespace this test re-ran itself in). False: the test was re-run with `needs`, in a
/// child process, and passed there; the caller returns at once. `name` is the test's path in its
/// test binary (`tests::foo`, or `foo` at an integration test's top level), used when libtest
/// does not name the thread.
pub fn privileged(needs: Needs, name: &str) -> bool {
    if is_root() {
        return true;
    }
    let name = test_name(name);
    assert!(
        std::env::var_os(RERUN_VAR).is_none(),
        "{name}: re-ran with {needs:?} but is still not root"
    );
    let exe = std::env::current_exe().expect("cannot find the test binary");
    let mut cmd = match needs {
        Needs::UserNamespace => {
            let mut c = Command::new("unshare");
            c.args([
                "--user",
                "--map-root-user",
                "--map-auto",
                "--mount",
                "--pid",
                "--fork",
                // /proc of the new PID namespace: pids the test finds there are its own.
                "--mount-proc",
                "--kill-child",
            ]);
            c.arg(&exe);
            c
        }
        Needs::Root => {
            let mut c = Command::new("sudo");
            c.args(["-n", "--preserve-env", "--"]).arg(&exe);
            c
        }
    };
    cmd.args([&name, "--exact", "--nocapture", "--test-threads=1"])
        .env(RERUN_VAR, "1");
    let how = match needs {
        Needs::UserNamespace => {
            "in a user namespace (unshare from util-linux; --map-auto needs the user's \
             subordinate ids in /etc/subuid and /etc/subgid, which tests/setup.sh adds)"
        }
        Needs::Root => "as root through sudo -n (it needs passwordless sudo)",
    };
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{name}: cannot re-run {how}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name}: the re-run {how} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    // The body's own output, for --nocapture readers.
    print!("{stdout}");
    eprint!("{stderr}");
    false
}
