//! The real `nook-agent` binary as PID 1, booted on the host inside fresh PID, mount, UTS and IPC
//! namespaces: a tmpfs root holding only the agent (like the initramfs), an EROFS image and an
//! ext4 writable disk on loop devices (like virtio-blk vda/vdb), and a pty in raw mode as the
//! channel (like /dev/hvc0). It exercises the whole boot sequence of main.rs (mounts, overlay,
//! switch root, raw channel, supervision, kill + sync + reset: `reboot` in a PID namespace ends
//! only that namespace), the persistence of the writable disk and real overlay whiteouts.
//!
//! Needs real root (loop devices, mounting the disks): not run as root, each test re-runs itself
//! through `sudo -n` (see `nook_agent::testing`). Needs busybox-static, erofs-utils and e2fsprogs.

use std::fs::{self, File};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nook_agent::client::{Client, ProcessResult};
use nook_agent::protocol::{ProcessSpec, StartSpec};
use nook_agent::testing::{privileged, Needs};

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A loop device, detached on drop.
struct Loop(String);

impl Loop {
    fn attach(file: &Path, read_only: bool) -> Loop {
        let mut cmd = Command::new("losetup");
        cmd.args(["--find", "--show"]);
        if read_only {
            cmd.arg("--read-only");
        }
        Loop(run(cmd.arg(file)))
    }

    fn name(&self) -> &str {
        self.0.trim_start_matches("/dev/")
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// The image: busybox, a passwd file and a file for the container to delete.
fn build_image(dir: &Path) -> PathBuf {
    let root = dir.join("image");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    for applet in [
        "sh", "cat", "echo", "rm", "ls", "hostname", "id", "grep", "sleep",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    fs::write(root.join("etc/motd"), "from the image\n").unwrap();
    let img = dir.join("image.erofs");
    run(Command::new("mkfs.erofs").arg(&img).arg(&root));
    img
}

fn build_disk(dir: &Path) -> PathBuf {
    let disk = dir.join("upper.ext4");
    File::create(&disk).unwrap().set_len(32 << 20).unwrap();
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&disk));
    disk
}

/// A pty: the agent gets the slave as its fd 3, the test keeps the master.
fn pty() -> (OwnedFd, OwnedFd) {
    // SAFETY: posix_openpt returns a new descriptor or -1.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    assert!(master >= 0);
    // SAFETY: fresh descriptor owned by nobody else.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    // SAFETY: unlockpt on our master.
    assert_eq!(unsafe { libc::unlockpt(master.as_raw_fd()) }, 0);
    // SAFETY: the ioctl returns a new descriptor or -1.
    let slave = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR) };
    assert!(slave >= 0);
    // SAFETY: fresh descriptor owned by nobody else.
    (master, unsafe { OwnedFd::from_raw_fd(slave) })
}

/// Copies the agent and its shared libraries (a test build is dynamic) into the new root.
const BOOT_SCRIPT: &str = r#"set -e
root=$1; agent=$2
mount -t tmpfs -o mode=0755 initramfs "$root"
mkdir -p "$root/dev" "$root/proc" "$root/sys" "$root/run"
for lib in $(ldd "$agent" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"; cp "$lib" "$root$lib"
done
cp "$agent" "$root/init"
exec chroot "$root" /init
"#;

/// The test build of the agent, or the binary named by `NOOK_TEST_AGENT` (e.g. the static one
/// from agent/build-static.sh, which is what the initramfs holds).
fn agent_binary() -> PathBuf {
    std::env::var_os("NOOK_TEST_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nook-agent")))
}

struct Guest {
    child: Child,
    client: Client,
}

fn boot(dir: &Path, image: &Loop, disk: Option<&Loop>) -> Guest {
    boot_with(dir, image.name(), disk)
}

fn boot_with(dir: &Path, root_device: &str, disk: Option<&Loop>) -> Guest {
    let (master, slave) = pty();
    // nook.debug: without it the agent lowers the console log level, and the kernel log is
    // the host's here (its debug lines land in the host's kernel log instead).
    let mut params = format!("nook.root={root_device} nook.channel=/proc/self/fd/3 nook.debug");
    // Always explicit: `auto` would take the host's /dev/vdb if it has one.
    match disk {
        Some(d) => params.push_str(&format!(" nook.upper={}", d.name())),
        None => params.push_str(" nook.upper=tmpfs"),
    }
    let root = dir.join("initramfs");
    fs::create_dir_all(&root).unwrap();
    let slave_fd = slave.as_raw_fd();
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--mount", "--uts", "--ipc", "--fork"])
        .args([
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            BOOT_SCRIPT,
            "sh",
        ])
        .arg(&root)
        .arg(agent_binary())
        .env("NOOK_AGENT_CMDLINE", params)
        .stdin(Stdio::null());
    // SAFETY: only dup2 (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(slave_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("running unshare (util-linux)");
    drop(slave);
    let reader = File::from(master.try_clone().unwrap());
    let client = Client::new(reader, File::from(master)).unwrap();
    Guest { child, client }
}

impl Guest {
    fn run(&self, script: &str, hostname: &str) -> (ProcessResult, String, String) {
        let stream = self
            .client
            .start(StartSpec {
                process: ProcessSpec {
                    argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                    env: vec!["PATH=/bin".into()],
                    ..Default::default()
                },
                hostname: hostname.into(),
                resolv_conf: String::new(),
                hosts: String::new(),
                mounts: Vec::new(),
                limits: Default::default(),
                security: Default::default(),
                keep_id: None,
            })
            .unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let res = self
            .client
            .wait_process(stream, &mut out, &mut err)
            .unwrap();
        (
            res,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    fn end(mut self) {
        let status = self.child.wait().unwrap();
        // The namespace's init dies by the reset; unshare reports it as a signal or an exit.
        assert!(status.code() != Some(0) || status.success(), "{status:?}");
    }
}

#[test]
fn agent_boots_as_pid_1_and_keeps_the_writable_disk() {
    if !privileged(
        Needs::Root,
        "agent_boots_as_pid_1_and_keeps_the_writable_disk",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = Loop::attach(&build_image(dir.path()), true);
    let disk = Loop::attach(&build_disk(dir.path()), false);

    // First boot: the workload's streams, exit code, hostname and changes to the disk.
    let guest = boot(dir.path(), &image, Some(&disk));
    let ready = guest.client.wait_ready(Duration::from_secs(20)).unwrap();
    assert!(ready.boot.root_ready_ns >= ready.boot.agent_start_ns);
    let (res, out, err) = guest.run(
        "echo hello; echo err >&2; echo persisted > /data; rm /etc/motd; hostname; \
         cat /etc/hostname; exit 3",
        "box",
    );
    assert_eq!(res.status.code, 3, "{err} {:?}", res.errors);
    assert_eq!(out, "hello\nbox\nbox\n");
    assert_eq!(err, "err\n");
    let (_, exec_ns) = res.started.unwrap();
    assert!(exec_ns >= ready.boot.root_ready_ns);
    eprintln!(
        "agent start -> root ready: {} us; root ready -> entrypoint exec: {} us",
        (ready.boot.root_ready_ns - ready.boot.agent_start_ns) / 1000,
        (exec_ns - ready.boot.root_ready_ns) / 1000
    );
    guest.end();

    // Second boot with the same disk: the file is there, the deletion too, and the upper layer
    // streams with a real overlay whiteout.
    let guest = boot(dir.path(), &image, Some(&disk));
    guest.client.wait_ready(Duration::from_secs(20)).unwrap();
    let mut tar_bytes = Vec::new();
    guest.client.stream_upper(&mut tar_bytes).unwrap();
    let mut names: Vec<String> = tar::Archive::new(&tar_bytes[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.retain(|n| n != "proc" && n != "sys" && n != "dev" && n != "etc/hosts");
    assert!(names.contains(&"data".to_owned()), "{names:?}");
    assert!(names.contains(&"etc/.wh.motd".to_owned()), "{names:?}");
    // The entrypoint is PID 1 of its own PID namespace, whose /proc shows no agent; an orphan
    // (the subshell's sleep) is reparented to it, and the shell reaps it.
    let (res, out, _) = guest.run(
        "cat /data; ls /etc/motd 2>&1; echo pid=$$; cat /proc/1/comm; (sleep 0.1 &); sleep 0.4; \
         echo zombies: $(cat /proc/[0-9]*/stat | grep -c ') Z ')",
        "",
    );
    assert_eq!(res.status.code, 0);
    assert!(out.starts_with("persisted\n"), "{out}");
    assert!(out.contains("No such file"), "{out}");
    assert!(out.contains("\npid=1\nsh\n"), "{out}");
    assert!(out.ends_with("zombies: 0\n"), "{out}");
    guest.end();

    // A tmpfs upper starts from the image alone.
    let guest = boot(dir.path(), &image, None);
    guest.client.wait_ready(Duration::from_secs(20)).unwrap();
    let (res, out, _) = guest.run("cat /data 2>/dev/null; cat /etc/motd", "");
    assert_eq!((res.status.code, out.as_str()), (0, "from the image\n"));
    guest.end();
}

#[test]
fn a_boot_failure_reaches_the_host_and_still_ends_the_guest() {
    if !privileged(
        Needs::Root,
        "a_boot_failure_reaches_the_host_and_still_ends_the_guest",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let guest = boot_with(dir.path(), "no-such-disk", None);
    let err = guest
        .client
        .wait_ready(Duration::from_secs(20))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("building the container root") && err.contains("/dev/no-such-disk"),
        "{err}"
    );
    guest.end();
}
