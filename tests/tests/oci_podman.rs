//! podman (Debian's 4.3, through conmon) with `--runtime` pointing at nook-runtime, run by an
//! unprivileged user and by root: podman's own store, busybox loaded into it from the tar
//! `nook save` writes (no network pull), and the lifecycle podman users rely on.
//!
//! As root, podman asks for RLIMIT_NOFILE and RLIMIT_NPROC of 1048576 unless told otherwise,
//! which a root without CAP_SYS_RESOURCE cannot set above its own hard limits (runc fails the
//! same way): the root test gives podman `default_ulimits` every host allows.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use nook_tests::rootless::Rootless;
use nook_tests::{nook_runtime_bin, require_tool, Nook};

struct Podman {
    user: Rootless,
    runtime: PathBuf,
}

/// podman run by root (through `sudo -n` when the tests are not), with a store, run directory
/// and containers.conf of its own in a temporary directory.
struct RootPodman {
    dir: tempfile::TempDir,
    runtime: PathBuf,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn as_root(program: &str, args: &[&str]) -> Command {
    let mut c;
    if is_root() {
        c = Command::new(program);
    } else {
        c = Command::new("sudo");
        c.args(["-n", program]);
    }
    c.args(args);
    c
}

/// What both podman tests drive.
trait Drive {
    fn run(&self, args: &[&str]) -> Output;

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn exits(&self, code: i32, args: &[&str]) {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "podman {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Podman {
    fn new() -> Podman {
        require_tool("podman");
        require_tool("conmon");
        let user = Rootless::new();
        user.default_image();
        let tar = user.root().join("busybox.tar");
        user.ok(&["save", "-o", &tar.to_string_lossy(), "busybox"]);
        let runtime = user.install(&nook_runtime_bin(), "nook-runtime");
        let podman = Podman { user, runtime };
        let out = podman.run(&["load", "-i", &tar.to_string_lossy()]);
        assert!(out.status.success(), "podman load: {}", text(&out.stderr));
        podman
    }

    /// `podman` as the user, with a store of its own and nook-runtime as its runtime.
    fn cmd(&self, args: &[&str]) -> Command {
        let root = self.user.root();
        let storage = root.join("podman");
        let run = root.join("podman-run");
        // podman keeps its configuration and locks under HOME: the user's own directory.
        let home = format!("HOME={}", root.display());
        let mut all: Vec<String> = [
            home.as_str(),
            "/usr/bin/podman",
            "--root",
            storage.to_str().unwrap(),
            "--runroot",
            run.to_str().unwrap(),
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--runtime",
            self.runtime.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        all.extend(args.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut c = self.user.cmd_of(std::path::Path::new("/usr/bin/env"), &all);
        c.stdin(Stdio::null());
        c
    }
}

impl Drive for Podman {
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
}

impl Drop for Podman {
    /// Ends the pause process rootless podman leaves holding its user namespace.
    fn drop(&mut self) {
        let _ = self.run(&["system", "migrate"]);
    }
}

/// The lifecycle podman users rely on.
fn lifecycle(podman: &dyn Drive) {
    assert_eq!(podman.ok(&["run", "--rm", "busybox", "echo", "hi"]), "hi\n");
    podman.exits(3, &["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    // The pid podman tracks is the container's first process: killing it ends the container.
    podman.ok(&["run", "-d", "--name", "killed", "busybox", "sleep", "100"]);
    podman.ok(&["kill", "killed"]);
    podman.ok(&["wait", "killed"]);
    let code = podman.ok(&["inspect", "killed", "--format", "{{.State.ExitCode}}"]);
    assert_eq!(code.trim(), "137");
    podman.ok(&["rm", "killed"]);

    // run -d, exec, logs, stop, rm.
    podman.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "echo up; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    let exec = podman.ok(&["exec", "web", "sh", "-c", "echo in $(hostname) as $(id -u)"]);
    assert!(
        exec.starts_with("in ") && exec.ends_with(" as 0\n"),
        "{exec}"
    );
    podman.exits(5, &["exec", "web", "sh", "-c", "exit 5"]);
    podman.ok(&["stop", "-t", "10", "web"]);
    let logs = podman.ok(&["logs", "web"]);
    assert_eq!(logs, "up\nbye\n", "only the container's output is logged");
    let code = podman.ok(&["inspect", "web", "--format", "{{.State.ExitCode}}"]);
    assert_eq!(code.trim(), "0");
    podman.ok(&["rm", "web"]);

    // A terminal, through the console socket conmon gives the runtime.
    let tty = podman.ok(&["run", "--rm", "-t", "busybox", "tty"]);
    assert_eq!(tty.trim(), "/dev/pts/0");
    assert_eq!(podman.ok(&["ps", "-aq"]), "", "nothing is left");
}

#[test]
fn podman_runs_containers_on_nook_runtime() {
    lifecycle(&Podman::new());
}

impl RootPodman {
    fn new() -> RootPodman {
        require_tool("podman");
        require_tool("conmon");
        let nook = Nook::new();
        nook.default_image();
        let dir = tempfile::Builder::new()
            .prefix("nook-podman-")
            .tempdir_in("/tmp")
            .unwrap();
        let tar = dir.path().join("busybox.tar");
        nook.ok(&["save", "-o", tar.to_str().unwrap(), "busybox"]);
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:4096\", \"nproc=4096:4096\"]\n",
        )
        .unwrap();
        let podman = RootPodman {
            dir,
            runtime: nook_runtime_bin(),
        };
        podman.ok(&["load", "-i", tar.to_str().unwrap()]);
        podman
    }
}

impl Drive for RootPodman {
    fn run(&self, args: &[&str]) -> Output {
        let d = self.dir.path();
        let conf = format!("CONTAINERS_CONF={}", d.join("containers.conf").display());
        let (store, run) = (d.join("store"), d.join("run"));
        let mut all = vec![
            conf.as_str(),
            "timeout",
            "120",
            "/usr/bin/podman",
            "--root",
            store.to_str().unwrap(),
            "--runroot",
            run.to_str().unwrap(),
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--runtime",
            self.runtime.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        as_root("env", &all).stdin(Stdio::null()).output().unwrap()
    }
}

impl Drop for RootPodman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-af"]);
        let _ = as_root("rm", &["-rf", &self.dir.path().to_string_lossy()]).status();
    }
}

#[test]
fn podman_as_root_runs_containers_on_nook_runtime() {
    lifecycle(&RootPodman::new());
}
