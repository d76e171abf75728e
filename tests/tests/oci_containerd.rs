//! containerd (Debian's 1.6, its runc shim) with `ctr run --runc-binary` pointing at
//! nook-runtime: a containerd of the test's own (root, state and socket in a temporary
//! directory), busybox imported from the tar `nook save` writes. containerd runs as root (with
//! `sudo -n` when the tests do not), as it does on a Kubernetes node.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nook_tests::{nook_runtime_bin, require_tool, Nook};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program args` as root.
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

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Containerd {
    dir: tempfile::TempDir,
    daemon: Child,
    runtime: PathBuf,
}

impl Containerd {
    fn start() -> Containerd {
        require_tool("containerd");
        require_tool("ctr");
        require_tool("containerd-shim-runc-v2");
        let dir = tempfile::Builder::new()
            .prefix("nook-containerd-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path().display();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{d}/containerd.sock\"\n\
                 [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let daemon = as_root(
            "timeout",
            &["600", "containerd", "--config", config.to_str().unwrap()],
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("cannot start containerd");
        let ctd = Containerd {
            dir,
            daemon,
            runtime: nook_runtime_bin(),
        };
        let began = Instant::now();
        while !ctd.run(&["version"]).status.success() {
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "containerd did not come up: {}",
                std::fs::read_to_string(ctd.dir.path().join("containerd.log")).unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        ctd
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn run(&self, args: &[&str]) -> Output {
        let socket = self.socket();
        let mut all = vec!["60", "ctr", "-a", socket.to_str().unwrap()];
        all.extend_from_slice(args);
        as_root("timeout", &all)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `ctr run` of busybox on nook-runtime.
    fn ctr_run(&self, flags: &[&str], id: &str, cmd: &[&str]) -> Output {
        let runtime = self.runtime.to_str().unwrap();
        let mut args = vec!["run", "--runc-binary", runtime];
        args.extend_from_slice(flags);
        args.push("docker.io/library/busybox:latest");
        args.push(id);
        args.extend_from_slice(cmd);
        self.run(&args)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Ends the daemon this test started (through sudo, which passes the signal on).
        let _ = as_root("kill", &[&self.daemon.id().to_string()]).status();
        let _ = self.daemon.wait();
        let _ = as_root("rm", &["-rf", &self.dir.path().to_string_lossy()]).status();
    }
}

fn busybox_tar(nook: &Nook, dir: &Path) -> PathBuf {
    nook.default_image();
    let tar = dir.join("busybox.tar");
    nook.ok(&["save", "-o", tar.to_str().unwrap(), "busybox"]);
    let mut perms = std::fs::metadata(&tar).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&tar, perms).unwrap();
    tar
}

#[test]
fn containerd_runs_tasks_on_nook_runtime() {
    let nook = Nook::new();
    let ctd = Containerd::start();
    let tar = busybox_tar(&nook, nook.root());
    ctd.ok(&["images", "import", tar.to_str().unwrap()]);

    let out = ctd.ctr_run(&["--rm"], "hi", &["echo", "hi"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    let out = ctd.ctr_run(&["--rm"], "three", &["sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    // A task: exec into it, list its processes, kill it, delete it.
    let out = ctd.ctr_run(&["-d"], "task", &["sleep", "100"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tasks = ctd.ok(&["task", "ls"]);
    assert!(tasks.contains("RUNNING"), "{tasks}");
    let exec = ctd.run(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "task",
        "sh",
        "-c",
        "echo in the task; exit 4",
    ]);
    assert_eq!(exec.status.code(), Some(4), "{}", text(&exec.stderr));
    assert_eq!(text(&exec.stdout), "in the task\n");
    let ps = ctd.ok(&["task", "ps", "task"]);
    assert_eq!(ps.lines().count(), 2, "the first process alone: {ps}");
    ctd.ok(&["task", "kill", "-s", "SIGKILL", "task"]);
    let began = Instant::now();
    while !ctd.ok(&["task", "ls"]).contains("STOPPED") {
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "the task did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ctd.ok(&["task", "delete", "task"]);
    ctd.ok(&["container", "rm", "task"]);
    assert_eq!(ctd.ok(&["task", "ls", "-q"]), "");
}
