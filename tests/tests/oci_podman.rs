//! podman (Debian's 4.3, through conmon) with `--runtime` pointing at nook-runtime, run by an
//! unprivileged user: podman's own store, busybox loaded into it from the tar `nook save`
//! writes (no network pull), and the lifecycle podman users rely on.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use nook_tests::rootless::Rootless;
use nook_tests::{nook_runtime_bin, require_tool};

struct Podman {
    user: Rootless,
    runtime: PathBuf,
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

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

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

impl Drop for Podman {
    /// Ends the pause process rootless podman leaves holding its user namespace.
    fn drop(&mut self) {
        let _ = self.run(&["system", "migrate"]);
    }
}

#[test]
fn podman_runs_containers_on_nook_runtime() {
    let podman = Podman::new();
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
