//! Running nook as an unprivileged user, as the namespace column's tests must: as root, a test
//! user (with subordinate id ranges in /etc/subuid and /etc/subgid) is created and nook runs as
//! that user through `runuser`; as any other user, nook runs as that user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::{nook_bin, require_tool, EXIT_NOOK_ERROR};

/// The unprivileged user the tests create when run as root.
pub const TEST_USER: &str = "nooktest";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run_checked(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes sure the test user exists with subordinate ids; None when not root (run as self).
fn test_user() -> Option<&'static str> {
    static USER: OnceLock<Option<&'static str>> = OnceLock::new();
    *USER.get_or_init(|| {
        if !is_root() {
            return None;
        }
        require_tool("runuser");
        require_tool("newuidmap");
        require_tool("newgidmap");
        let exists = Command::new("id")
            .arg(TEST_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !exists {
            run_checked(
                "useradd",
                &["--create-home", "--shell", "/bin/sh", TEST_USER],
            );
        }
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if !text
                .lines()
                .any(|l| l.starts_with(&format!("{TEST_USER}:")))
            {
                let mut text = text;
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&format!("{TEST_USER}:400000:65536\n"));
                std::fs::write(file, text).unwrap_or_else(|e| panic!("cannot write {file}: {e}"));
            }
        }
        Some(TEST_USER)
    })
}

fn user_ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, user]).output().expect("id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}

/// A private store used by an unprivileged user, with nook's binary copied where that user
/// can run it.
pub struct Rootless {
    base: tempfile::TempDir,
    user: Option<&'static str>,
}

impl Default for Rootless {
    fn default() -> Self {
        Self::new()
    }
}

impl Rootless {
    pub fn new() -> Rootless {
        let user = test_user();
        let base = tempfile::Builder::new()
            .prefix("nook-rootless-")
            .tempdir_in("/tmp")
            .expect("cannot create a temp dir");
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = base.path().join("nook");
        std::fs::copy(nook_bin(), &bin).expect("cannot copy nook");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = base.path().join("root");
        std::fs::create_dir(&root).unwrap();
        if let Some(user) = user {
            let (uid, gid) = user_ids(user);
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).unwrap();
        }
        Rootless { base, user }
    }

    /// Another copy of the nook binary, named `name`, owned by the user who runs nook as a
    /// user's own installation is: a test may let a container attack it.
    pub fn own_copy(&self, name: &str) -> PathBuf {
        let bin = self.base.path().join(name);
        std::fs::copy(nook_bin(), &bin).expect("cannot copy nook");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        if let Some(user) = self.user {
            let (uid, gid) = user_ids(user);
            std::os::unix::fs::chown(&bin, Some(uid), Some(gid)).unwrap();
        }
        bin
    }

    /// A copy of the program `src`, named `name`, where the user can run it (beside nook).
    pub fn install(&self, src: &Path, name: &str) -> PathBuf {
        let bin = self.base.path().join(name);
        std::fs::copy(src, &bin).expect("cannot copy a program");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        bin
    }

    /// The store root (`NOOK_ROOT`).
    pub fn root(&self) -> PathBuf {
        self.base.path().join("root")
    }

    /// Who runs nook: the test user, or the current user when not root.
    pub fn user(&self) -> Option<&str> {
        self.user
    }

    /// A `nook` command run as the unprivileged user, cut off after two minutes.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_of(&self.base.path().join("nook"), args)
    }

    /// Like [`Rootless::cmd`], with another copy of the nook binary (see `own_copy`).
    pub fn cmd_of(&self, bin: &Path, args: &[&str]) -> Command {
        let mut c;
        if let Some(user) = self.user {
            c = Command::new("runuser");
            c.args(["-u", user, "--", "env", "-i"]);
            c.arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
            c.arg(format!("HOME={}", self.base.path().display()));
            c.arg(format!("NOOK_ROOT={}", self.root().display()));
            c.args(["timeout", "120"]);
        } else {
            c = Command::new("timeout");
            c.arg("120");
            c.env("NOOK_ROOT", self.root());
            // The test's own config.toml, as with HOME above: never the calling user's.
            c.env("XDG_CONFIG_HOME", self.base.path().join(".config"));
        }
        c.arg(bin).args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        // The binary was copied in by this process, whose other test threads fork: a child
        // forked while the copy's write descriptor was open holds it until its exec, and an
        // exec of the copy then fails with ETXTBSY ("Text file busy"). Retried, not ignored.
        let mut tries = 0;
        loop {
            let out = self
                .cmd(args)
                .stdin(Stdio::null())
                .output()
                .expect("cannot start nook");
            let busy = out.status.code() == Some(126)
                && String::from_utf8_lossy(&out.stderr).contains("Text file busy");
            tries += 1;
            if !busy || tries == 20 {
                return out;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Runs nook, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "nook {args:?} failed with {}:\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs nook, asserts it exited with `code`, returns (stdout, stderr).
    pub fn exits(&self, code: i32, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "nook {args:?} should exit with {code}; stdout:\n{stdout}\nstderr:\n{stderr}"
        );
        (stdout, stderr)
    }

    /// Runs nook, asserts it failed with nook's own error status, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        self.exits(EXIT_NOOK_ERROR, args).1
    }

    /// The built-in default image, `busybox:latest`.
    pub fn default_image(&self) {
        require_tool("busybox");
        self.ok(&["image", "default"]);
    }

    /// A container's full id from its name.
    pub fn id_of(&self, name: &str) -> String {
        let out = self.ok(&["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"]);
        out.lines()
            .find_map(|l| {
                let (id, n) = l.split_once(' ')?;
                (n == name).then(|| id.to_string())
            })
            .unwrap_or_else(|| panic!("no container named {name} in:\n{out}"))
    }

    /// The container's state as `ps -a --format {{.State}}` prints it.
    pub fn state_of(&self, name: &str) -> String {
        let out = self.ok(&["ps", "-a", "--format", "{{.Names}} {{.State}} {{.Status}}"]);
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_string))
            .unwrap_or_else(|| panic!("no container named {name} in:\n{out}"))
    }

    /// A file under the store.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Every file under `dir` with its contents, for byte-for-byte comparisons.
    pub fn tree_contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
                }
            }
        }
        out.sort();
        out
    }
}
