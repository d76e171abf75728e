//! `nook-runtime`, nook's OCI runtime with runc's command line, driven as containerd and
//! conmon drive runc, by an unprivileged user: bundles made of nook's built-in busybox image
//! (exported by nook), `spec --rootless` edited per test.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nook_tests::rootless::Rootless;
use nook_tests::{nook_runtime_bin, require_tool};
use serde_json::{json, Value};

/// An unprivileged user's nook store, its copy of nook-runtime and a rootfs tar of busybox.
struct Oci {
    user: Rootless,
    runtime: PathBuf,
    tar: PathBuf,
}

fn uid_of(user: Option<&str>) -> Option<(u32, u32)> {
    let user = user?;
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, user]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Oci {
    fn new() -> Oci {
        require_tool("tar");
        let user = Rootless::new();
        user.default_image();
        let id = user.ok(&["create", "busybox"]).trim().to_string();
        let tar = user.root().join("busybox.tar");
        user.ok(&["export", "-o", &tar.to_string_lossy(), &id]);
        user.ok(&["rm", &id]);
        let runtime = user.install(&nook_runtime_bin(), "nook-runtime");
        let oci = Oci { user, runtime, tar };
        oci.mkdir(&oci.state());
        oci
    }

    /// The runtime's `--root`.
    fn state(&self) -> PathBuf {
        self.user.root().join("oci-state")
    }

    /// A directory (or file) made by the test, handed to the user.
    fn give(&self, path: &Path) {
        if let Some((uid, gid)) = uid_of(self.user.user()) {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
        }
    }

    /// Makes `path` and its missing parents, all the user's.
    fn mkdir(&self, path: &Path) {
        let missing: Vec<&Path> = path.ancestors().take_while(|p| !p.exists()).collect();
        for dir in missing.into_iter().rev() {
            std::fs::create_dir(dir).unwrap();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            self.give(dir);
        }
    }

    fn write(&self, path: &Path, content: &str) {
        std::fs::write(path, content).unwrap();
        self.give(path);
    }

    /// A bundle named `name`: busybox's tree as its rootfs and `spec --rootless`, changed by
    /// `edit`.
    fn bundle(&self, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let dir = self.user.root().join("bundles").join(name);
        self.mkdir(&dir.join("rootfs"));
        let out = self
            .user
            .cmd_of(
                Path::new("/bin/tar"),
                &[
                    "-xf",
                    &self.tar.to_string_lossy(),
                    "-C",
                    &dir.join("rootfs").to_string_lossy(),
                ],
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "tar: {}", text(&out.stderr));
        self.ok(&["spec", "--rootless", "--bundle", &dir.to_string_lossy()]);
        let path = dir.join("config.json");
        let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .expect("spec writes JSON");
        config["process"]["terminal"] = json!(false);
        edit(&mut config);
        self.write(&path, &serde_json::to_string_pretty(&config).unwrap());
        dir
    }

    /// `nook-runtime --root STATE ARGS` as the user.
    fn cmd(&self, args: &[&str]) -> Command {
        let state = self.state();
        let mut all = vec!["--root", state.to_str().unwrap()];
        all.extend_from_slice(args);
        let mut c = self.user.cmd_of(&self.runtime, &all);
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
            "nook-runtime {args:?}: {}\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs a command that fails as runc does (status 1); returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "nook-runtime {args:?} should fail with 1:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stderr)
    }

    /// `create` with the container's stdout and stderr going to `out` (the first process
    /// keeps them open after `create` returns, as under conmon).
    fn create(&self, bundle: &Path, id: &str, out: &Path, extra: &[&str]) -> Output {
        self.write(out, "");
        let file = File::options().append(true).open(out).unwrap();
        let mut args = vec!["create", "--bundle", bundle.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(id);
        self.cmd(&args)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .output()
            .unwrap()
    }

    fn state_of(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state prints JSON")
    }

    fn left(&self) -> Vec<String> {
        std::fs::read_dir(self.state())
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Oci {
    /// A test that failed half way leaves no container behind.
    fn drop(&mut self) {
        for id in self.left() {
            let _ = self.run(&["delete", "--force", &id]);
        }
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let began = Instant::now();
    while !done() {
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn args(v: &[&str]) -> Value {
    json!(v)
}

#[test]
fn create_start_state_exec_kill_delete() {
    let oci = Oci::new();
    let bundle = oci.bundle("life", |c| {
        c["process"]["args"] = args(&["sh", "-c", "echo started; exec sleep 100"]);
    });
    let out = oci.user.root().join("life.out");
    let pid_file = oci.user.root().join("life.pid");
    let created = oci.create(
        &bundle,
        "life",
        &out,
        &["--pid-file", pid_file.to_str().unwrap()],
    );
    assert!(
        created.status.success(),
        "{}",
        std::fs::read_to_string(&out).unwrap()
    );
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let state = oci.state_of("life");
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"], pid, "the pid file names the first process");
    assert_eq!(state["id"], "life");
    assert_eq!(state["bundle"], bundle.to_str().unwrap());
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "",
        "nothing runs before start"
    );
    let list = oci.ok(&["list", "--format", "json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["id"], "life");
    assert_eq!(list[0]["status"], "created");

    oci.ok(&["start", "life"]);
    wait_for("the workload's output", || {
        std::fs::read_to_string(&out).unwrap() == "started\n"
    });
    assert_eq!(oci.state_of("life")["status"], "running");
    // /proc/PID/exe of the first process is now the workload's, the pid the caller tracks.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.starts_with("/bin/"), "{}", exe.display());
    let e = oci.fails(&["start", "life"]);
    assert!(
        e.contains("cannot start a container that is running"),
        "{e}"
    );

    // exec: the container's namespaces, the exit status passed on.
    let exec = oci.run(&[
        "exec",
        "life",
        "sh",
        "-c",
        "echo in $(hostname); ps -o pid,args; exit 3",
    ]);
    assert_eq!(exec.status.code(), Some(3), "{}", text(&exec.stderr));
    let printed = text(&exec.stdout);
    assert!(printed.starts_with("in nook\n"), "{printed}");
    assert!(
        printed.contains("1 sleep 100"),
        "the pid namespace is the container's: {printed}"
    );
    // exec --process, detached, with a pid file: what containerd and conmon do.
    let process = oci.user.root().join("process.json");
    let marker = "/dev/shm/exec-ran";
    oci.write(
        &process,
        &json!({"cwd": "/", "user": {"uid": 0, "gid": 0},
                "args": ["sh", "-c", format!("echo yes > {marker}")],
                "env": ["PATH=/bin"]})
        .to_string(),
    );
    let exec_pid = oci.user.root().join("exec.pid");
    oci.ok(&[
        "exec",
        "--detach",
        "--process",
        process.to_str().unwrap(),
        "--pid-file",
        exec_pid.to_str().unwrap(),
        "life",
    ]);
    assert!(
        std::fs::read_to_string(&exec_pid)
            .unwrap()
            .parse::<i32>()
            .unwrap()
            > 0
    );
    wait_for("the detached exec", || {
        oci.run(&["exec", "life", "cat", marker]).stdout == b"yes\n"
    });
    let ps: Value = serde_json::from_str(&oci.ok(&["ps", "--format", "json", "life"])).unwrap();
    assert!(ps.as_array().unwrap().contains(&json!(pid)), "{ps}");

    let e = oci.fails(&["delete", "life"]);
    assert!(
        e.contains("cannot delete container life that is not stopped: running"),
        "{e}"
    );
    // SIGTERM to a pid namespace's init without a handler is ignored, as under runc.
    oci.ok(&["kill", "life", "KILL"]);
    wait_for("the container to stop", || {
        oci.state_of("life")["status"] == "stopped"
    });
    let e = oci.fails(&["kill", "life", "TERM"]);
    assert!(e.contains("container not running"), "{e}");
    oci.ok(&["delete", "life"]);
    let e = oci.fails(&["state", "life"]);
    assert!(e.contains("container \"life\" does not exist"), "{e}");
    assert!(oci.left().is_empty(), "{:?}", oci.left());
    // delete --force of a container that is gone is no error (containerd retries it).
    oci.ok(&["delete", "--force", "life"]);

    // A created container that is never started: kill --all and delete --force end it.
    let created = oci.create(&bundle, "idle", &out, &[]);
    assert!(created.status.success());
    oci.ok(&["kill", "--all", "idle", "9"]);
    oci.ok(&["delete", "--force", "idle"]);
    assert!(oci.left().is_empty());
}

#[test]
fn run_honours_the_process_root_mounts_and_seccomp() {
    let oci = Oci::new();
    let shared = oci.user.root().join("shared");
    oci.mkdir(&shared);
    oci.write(&shared.join("from-host"), "host file\n");
    let script = [
        "echo host=$(hostname) cwd=$(pwd) uid=$(id -u) gid=$(id -g)",
        "echo env=$GREETING",
        "echo nofile=$(ulimit -n)",
        "touch /root-is-writable 2>/dev/null || echo root read-only",
        "cat /data/from-host; echo back > /data/from-container",
        "echo tmp > /scratch/f && grep -c ' /scratch tmpfs' /proc/mounts",
        "echo keys=$(wc -c < /proc/keys)",
        "mkdir /scratch/d 2>/dev/null || echo mkdir refused",
        "grep CapBnd /proc/self/status",
        "exit 7",
    ]
    .join("; ");
    let bundle = oci.bundle("run", |c| {
        c["process"]["args"] = args(&["sh", "-c", &script]);
        c["process"]["env"] = json!(["PATH=/bin:/usr/bin", "GREETING=hello"]);
        c["process"]["cwd"] = json!("/tmp");
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]);
        c["process"]["capabilities"] = json!({"bounding": ["CAP_KILL", "CAP_CHOWN"],
            "effective": ["CAP_KILL", "CAP_CHOWN"], "permitted": ["CAP_KILL", "CAP_CHOWN"]});
        c["hostname"] = json!("oci-test");
        c["root"]["readonly"] = json!(true);
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/data", "type": "bind",
                           "source": shared, "options": ["rbind", "rw"]}));
        mounts.push(
            json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "size=1m"]}),
        );
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 1}]
        });
    });
    let out = oci.run(&["run", "--bundle", bundle.to_str().unwrap(), "r1"]);
    let printed = text(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{printed}{}", text(&out.stderr));
    let expected = [
        "host=oci-test cwd=/tmp uid=0 gid=0",
        "env=hello",
        "nofile=123",
        "root read-only",
        "host file",
        "1",
        "keys=0",
        "mkdir refused",
        "CapBnd:\t0000000000000021",
    ];
    assert_eq!(printed.lines().collect::<Vec<_>>(), expected, "{printed}");
    assert_eq!(
        std::fs::read_to_string(shared.join("from-container")).unwrap(),
        "back\n"
    );
    assert!(oci.left().is_empty(), "run deletes what it made");
}

#[test]
fn hooks_get_the_state_on_stdin() {
    let oci = Oci::new();
    let dir = oci.user.root().join("hooks");
    oci.mkdir(&dir);
    let hook = |name: &str| {
        json!({"path": "/bin/sh",
               "args": ["sh", "-c", format!("cat > {}/{name}.json", dir.display())]})
    };
    let bundle = oci.bundle("hooks", |c| {
        // The workload sees what the startContainer hook, run in its root, wrote before it.
        c["process"]["args"] = args(&[
            "sh",
            "-c",
            "test -s /hooks/startContainer.json && echo found",
        ]);
        c["hooks"] = json!({
            "createRuntime": [hook("createRuntime")],
            "prestart": [hook("prestart")],
            "createContainer": [hook("createContainer")],
            "startContainer": [{"path": "/bin/sh",
                                "args": ["sh", "-c", "cat > /hooks/startContainer.json"]}],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        });
        c["annotations"] = json!({"org.example": "yes"});
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/hooks", "type": "bind", "source": dir, "options": ["rbind"]}));
    });
    let out = oci.user.root().join("hooks.out");
    assert!(oci.create(&bundle, "h", &out, &[]).status.success());
    let read = |name: &str| -> Value {
        let text = std::fs::read_to_string(dir.join(format!("{name}.json")))
            .unwrap_or_else(|e| panic!("the {name} hook did not run: {e}"));
        serde_json::from_str(&text).unwrap()
    };
    let state = oci.state_of("h");
    for name in ["createRuntime", "prestart", "createContainer"] {
        let s = read(name);
        assert_eq!(s["status"], "creating", "{name}");
        assert_eq!(s["pid"], state["pid"], "{name}");
        assert_eq!(s["id"], "h");
        assert_eq!(s["annotations"]["org.example"], "yes");
    }
    assert!(!dir.join("poststart.json").exists());
    assert!(!dir.join("startContainer.json").exists());
    oci.ok(&["start", "h"]);
    assert_eq!(read("poststart")["status"], "running");
    wait_for("the container to stop", || {
        oci.state_of("h")["status"] == "stopped"
    });
    let started = read("startContainer");
    assert_eq!(started["pid"], state["pid"]);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "found\n",
        "the workload found the hook's file"
    );
    assert!(!dir.join("poststop.json").exists());
    oci.ok(&["delete", "h"]);
    assert_eq!(read("poststop")["status"], "stopped");

    // A failing createRuntime hook fails create, and leaves no state.
    let bad = oci.bundle("bad-hook", |c| {
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    });
    let created = oci.create(&bad, "bad", &out, &[]);
    assert_eq!(created.status.code(), Some(1));
    let printed = std::fs::read_to_string(&out).unwrap();
    assert!(
        printed.contains("createRuntime hook /bin/false failed"),
        "{printed}"
    );
    assert!(oci.left().is_empty(), "{:?}", oci.left());
}

#[test]
fn bad_input_fails_as_runc_does_and_leaves_no_state() {
    let oci = Oci::new();
    let good = oci.bundle("good", |c| {
        c["process"]["args"] = args(&["sleep", "100"]);
    });
    let root = oci.user.root();
    let log = root.join("runtime.log");
    let empty = root.join("empty");
    oci.mkdir(&empty);
    let mut cases: Vec<(PathBuf, &str)> = vec![(empty.clone(), "config.json not found")];
    let invalid = root.join("invalid");
    oci.mkdir(&invalid);
    oci.write(&invalid.join("config.json"), "{\"ociVersion\": ");
    cases.push((invalid, "invalid config.json"));
    let version = oci.bundle("version", |c| c["ociVersion"] = json!("2.0.0"));
    cases.push((version, "unsupported spec version \"2.0.0\""));
    let no_root = oci.bundle("no-root", |c| c["root"]["path"] = json!("missing"));
    cases.push((no_root, "invalid rootfs: "));
    for (bundle, message) in &cases {
        let out = oci.run(&[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            bundle.to_str().unwrap(),
            "x",
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", bundle.display());
        let stderr = text(&out.stderr);
        assert!(stderr.contains(message), "{}: {stderr}", bundle.display());
        assert!(
            oci.left().is_empty(),
            "{}: {:?}",
            bundle.display(),
            oci.left()
        );
    }
    // The log holds each error as a JSON line, as conmon and containerd read it.
    let logged: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &Value| v["level"] == "error")
        .collect();
    assert_eq!(logged.len(), cases.len());
    assert!(logged[0]["msg"]
        .as_str()
        .unwrap()
        .contains("config.json not found"));

    let out = root.join("good.out");
    assert!(oci.create(&good, "taken", &out, &[]).status.success());
    let created = oci.create(&good, "taken", &out, &[]);
    assert_eq!(created.status.code(), Some(1));
    assert_eq!(
        oci.state_of("taken")["status"],
        "created",
        "the container that has the ID is untouched"
    );
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("container with given ID already exists: taken"));
    let e = oci.fails(&["start", "nothing"]);
    assert!(e.contains("container \"nothing\" does not exist"), "{e}");
    oci.ok(&["kill", "taken", "KILL"]);
    wait_for("the container to stop", || {
        oci.state_of("taken")["status"] == "stopped"
    });
    let e = oci.fails(&["start", "taken"]);
    assert!(
        e.contains("cannot start a container that has stopped"),
        "{e}"
    );
    assert!(oci
        .fails(&["kill", "taken"])
        .contains("container not running"));
    assert!(oci.fails(&["pause", "taken"]).contains("cgroup freezer"));
    oci.ok(&["delete", "taken"]);
    assert!(oci
        .fails(&["create", "--bundle", ".", "a/b"])
        .contains("invalid container id"));
    assert!(oci.left().is_empty());
}

#[test]
fn version_features_and_spec() {
    let oci = Oci::new();
    let v = oci.ok(&["--version"]);
    assert!(v.starts_with("nook-runtime version "), "{v}");
    assert!(v.contains("\nspec: 1.2.0"), "{v}");
    let f: Value = serde_json::from_str(&oci.ok(&["features"])).unwrap();
    assert_eq!(f["ociVersionMax"], "1.2.0");
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    let dir = oci.user.root().join("spec");
    oci.mkdir(&dir);
    oci.ok(&["spec", "--bundle", dir.to_str().unwrap()]);
    let e = oci.fails(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(e.contains("config.json exists"), "{e}");
    // Accepted and logged as not honoured, as callers pass it.
    let log = oci.user.root().join("cg.log");
    oci.ok(&["--systemd-cgroup", "--log", log.to_str().unwrap(), "list"]);
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("--systemd-cgroup is not honoured"));
}

#[test]
fn a_terminal_goes_to_the_console_socket() {
    use std::io::Read;
    use std::os::fd::AsFd;
    let oci = Oci::new();
    let bundle = oci.bundle("tty", |c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({"height": 24, "width": 100});
        c["process"]["args"] = args(&["sh", "-c", "echo tty=$(tty) size=$(stty size)"]);
    });
    let path = oci.user.root().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    // Without a console socket, a terminal cannot be given: runc's error.
    let e = oci.fails(&["run", "--bundle", bundle.to_str().unwrap(), "no-socket"]);
    assert!(e.contains("--console-socket"), "{e}");
    let run = oci
        .cmd(&[
            "run",
            "--console-socket",
            path.to_str().unwrap(),
            "--bundle",
            bundle.to_str().unwrap(),
            "tty",
        ])
        .spawn()
        .unwrap();
    let (stream, _) = listener.accept().unwrap();
    let began = Instant::now();
    let leader = loop {
        if let Some(fd) = nook::terminal::recv_fd(stream.as_fd()).unwrap() {
            break fd;
        }
        assert!(began.elapsed() < Duration::from_secs(20), "no pty came");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut leader = File::from(leader);
    let mut seen = Vec::new();
    // The follower's last holder ends with the container: then the leader reads EIO.
    let mut buf = [0u8; 256];
    while let Ok(n) = leader.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&seen).trim(), "tty=/dev/pts/0 size=24 100");
}

#[test]
fn preserved_descriptors_reach_the_workload() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let oci = Oci::new();
    let bundle = oci.bundle("fds", |c| {
        c["process"]["args"] = args(&["sh", "-c", "echo through fd 3 >&3; ls /proc/self/fd"]);
    });
    let target = oci.user.root().join("fd3");
    oci.write(&target, "");
    let file = File::options().append(true).open(&target).unwrap();
    let raw = file.as_raw_fd();
    let mut cmd = oci.cmd(&[
        "run",
        "--preserve-fds",
        "1",
        "--bundle",
        bundle.to_str().unwrap(),
        "fds",
    ]);
    // SAFETY: descriptor calls in the child before exec: fd 3 becomes the file, open across
    // exec (a dup2 onto itself would leave it close-on-exec).
    unsafe {
        cmd.pre_exec(move || {
            let ret = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            if ret < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "through fd 3\n");
    // The workload holds its three streams and fd 3 (and ls's own directory), nothing of
    // nook-runtime's.
    let fds: Vec<String> = text(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(fds, ["0", "1", "2", "3", "4"], "{fds:?}");
}

/// The first subordinate uid and gid of the user the runtime runs as.
fn subordinate(user: &str) -> (u32, u32) {
    let first = |file: &str| -> u32 {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() == 3 && f[0] == user).then(|| f[1].parse().unwrap())
            })
            .unwrap_or_else(|| panic!("{user} has no range in {file}"))
    };
    (first("/etc/subuid"), first("/etc/subgid"))
}

#[test]
fn capability_sets_sysctls_and_a_joined_mount_namespace() {
    let oci = Oci::new();
    let name = oci.user.user().map(str::to_string).unwrap_or_else(|| {
        String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string()
    });
    let (uid, gid) = uid_of(Some(&name)).unwrap();
    let (subuid, subgid) = subordinate(&name);
    let bundle = oci.bundle("caps", |c| {
        // A user of its own in the container (mapped through newuidmap): its capability sets
        // survive the switch to it, and the ambient ones its execve.
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1},
                                           {"containerID": 1, "hostID": subuid, "size": 1000}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1},
                                           {"containerID": 1, "hostID": subgid, "size": 1000}]);
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
            "permitted": ["CAP_CHOWN", "CAP_KILL"],
            "effective": ["CAP_KILL"],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL"]});
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "network"}));
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        c["process"]["args"] = args(&[
            "sh",
            "-c",
            "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status; \
             echo forward=$(cat /proc/sys/net/ipv4/ip_forward)",
        ]);
    });
    let out = oci.run(&["run", "--bundle", bundle.to_str().unwrap(), "caps"]);
    let printed = text(&out.stdout);
    assert!(out.status.success(), "{printed}{}", text(&out.stderr));
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        [
            "CapInh:\t0000000000000020",
            "CapPrm:\t0000000000000020",
            "CapEff:\t0000000000000020",
            "CapBnd:\t0000000000002021",
            "CapAmb:\t0000000000000020",
            "forward=1",
        ],
        "{printed}"
    );
    // A sysctl of a namespace the container does not have of its own is refused.
    let host_net = oci.bundle("host-net", |c| {
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    });
    let e = oci.fails(&["run", "--bundle", host_net.to_str().unwrap(), "host-net"]);
    assert!(
        e.contains("without a network namespace of the container's own"),
        "{e}"
    );

    // A second container in the first one's user, pid and mount namespaces sees its root.
    let first = oci.bundle("first", |c| {
        c["process"]["args"] = args(&["sleep", "100"]);
    });
    oci.write(&first.join("rootfs/marker"), "the first one's root\n");
    let out = oci.user.root().join("first.out");
    assert!(oci.create(&first, "first", &out, &[]).status.success());
    // Started: until its execve its /proc files are root's.
    oci.ok(&["start", "first"]);
    let pid = oci.state_of("first")["pid"].as_i64().unwrap();
    let joiner = oci.bundle("joiner", |c| {
        c["root"]["path"] = json!("/");
        c.as_object_mut().unwrap().remove("hostname");
        c["linux"]["namespaces"] = json!([
            {"type": "pid", "path": format!("/proc/{pid}/ns/pid")},
            {"type": "user", "path": format!("/proc/{pid}/ns/user")},
            {"type": "mount", "path": format!("/proc/{pid}/ns/mnt")}]);
        c["process"]["args"] = args(&["cat", "/marker"]);
    });
    let out = oci.run(&["run", "--bundle", joiner.to_str().unwrap(), "joiner"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "the first one's root\n");
    oci.ok(&["delete", "--force", "first"]);
    assert!(oci.left().is_empty(), "{:?}", oci.left());
}
