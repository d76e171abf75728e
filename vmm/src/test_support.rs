//! What the VMM's KVM tests share: the check that /dev/kvm is there (a loud message when it is
//! not), and running one test in a process of its own (for a seccomp filter, which cannot be
//! taken off a thread again).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

/// Whether this machine has /dev/kvm; when not, says loudly that `what` did not run.
pub(crate) fn have_kvm(what: &str) -> bool {
    let ok = Path::new("/dev/kvm").exists();
    if !ok {
        eprintln!("!!!! SKIPPED: /dev/kvm is absent, {what} did NOT run !!!!");
    }
    ok
}

/// Runs the ignored test `test` (its full path) alone in a new process of this test binary,
/// with `var` set to `dir`; fails unless it passed, and names a SIGSYS from a filter.
pub(crate) fn run_in_child(test: &str, var: &str, dir: &Path) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--ignored", "--test-threads=1"])
        .env(var, dir)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.signal(), None, "{log}");
    assert!(out.status.success(), "{log}");
    assert!(log.contains("1 passed"), "{log}");
}
