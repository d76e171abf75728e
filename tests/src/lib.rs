//! Helpers shared by nook's whole-program tests: find (or build) the `nook` binary, run it
//! against a private store, and build small image fixtures.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The exit status nook uses for its own errors (docker's convention).
pub const EXIT_NOOK_ERROR: i32 = 125;

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// The `nook` binary under test: `$NOOK_BIN` if set, else the debug build `cargo test --workspace`
/// makes (built now if needed: cargo does not hold its build lock while tests run).
pub fn nook_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("nook", "NOOK_BIN"))
        .clone()
}

/// The `nook-runtime` binary under test (the OCI runtime): `$NOOK_RUNTIME_BIN` if set, else the
/// debug build beside `nook`.
pub fn nook_runtime_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("nook-runtime", "NOOK_RUNTIME_BIN"))
        .clone()
}

/// `$VAR` if set, else the workspace's debug binary NAME. It is built by `cargo test --workspace
/// --no-run`, the selection the test run itself made: a narrower one (`-p nook --bin nook`) makes
/// cargo resolve other features of shared dependencies and compile most of the workspace again.
fn workspace_bin(name: &str, var: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(var).filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "{var}={} does not exist", bin.display());
        return bin;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["test", "--quiet", "--workspace", "--no-run"])
        .current_dir(workspace_root())
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
    assert!(status.success(), "building {name} failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let bin = target.join("debug").join(name);
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

/// Fails the test loudly when a tool it needs is missing (tests never pass silently).
pub fn require_tool(name: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{name} is required by this test but is not installed (tests/setup.sh installs it)"
    );
}

/// A private nook store for one test.
pub struct Nook {
    root: tempfile::TempDir,
}

impl Default for Nook {
    fn default() -> Self {
        Self::new()
    }
}

impl Nook {
    pub fn new() -> Nook {
        Nook {
            root: tempfile::tempdir().expect("cannot create a temp dir"),
        }
    }

    /// The store root (`NOOK_ROOT`).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A `nook` command against this store.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = Command::new(nook_bin());
        // The user's own defaults must not leak into a test: its configuration lives in the
        // store's temp dir (see `config_file`).
        c.args(args)
            .env("NOOK_ROOT", self.root())
            .env("XDG_CONFIG_HOME", self.root().join("config"))
            .env_remove("NOOK_ISOLATION");
        c
    }

    /// The `config.toml` this store's commands read.
    pub fn config_file(&self) -> std::path::PathBuf {
        self.root().join("config/nook/config.toml")
    }

    /// Runs nook with `stdin` as input.
    pub fn run_with_input(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start nook");
        let mut input = child.stdin.take().expect("stdin is piped");
        // A failing command may stop reading early; its error is what the test checks.
        let _ = input.write_all(stdin);
        drop(input);
        child.wait_with_output().expect("cannot wait for nook")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("cannot start nook")
    }

    /// Runs nook, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        check_ok(args, self.run(args))
    }

    /// Runs nook with input, asserts success, returns stdout.
    pub fn ok_with_input(&self, args: &[&str], stdin: &[u8]) -> String {
        check_ok(args, self.run_with_input(args, stdin))
    }

    /// Runs nook, asserts it failed with nook's error status, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        check_fails(args, self.run(args))
    }

    pub fn fails_with_input(&self, args: &[&str], stdin: &[u8]) -> String {
        check_fails(args, self.run_with_input(args, stdin))
    }

    /// The built-in default image, `busybox:latest`.
    pub fn default_image(&self) {
        self.ok(&["image", "default"]);
    }

    /// `nook inspect REF` parsed.
    pub fn inspect(&self, reference: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", reference]);
        let mut list: Vec<serde_json::Value> =
            serde_json::from_str(&out).expect("inspect prints a JSON array");
        assert_eq!(list.len(), 1);
        list.remove(0)
    }

    /// A snapshot of the store's image part, to show a failed command changed nothing.
    pub fn snapshot(&self) -> StoreSnapshot {
        let index = std::fs::read(self.root().join("index.json")).unwrap_or_default();
        let mut blobs: Vec<String> = std::fs::read_dir(self.root().join("blobs/sha256"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        blobs.sort();
        StoreSnapshot { index, blobs }
    }
}

/// `index.json` and the blob names of a store.
#[derive(Debug, PartialEq, Eq)]
pub struct StoreSnapshot {
    pub index: Vec<u8>,
    pub blobs: Vec<String>,
}

fn check_ok(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "nook {args:?} failed with {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("nook prints UTF-8")
}

fn check_fails(args: &[&str], out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(EXIT_NOOK_ERROR),
        "nook {args:?} should fail with {EXIT_NOOK_ERROR}; stdout:\n{}\nstderr:\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// Runs an external tool, asserting success; returns stdout.
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed with {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Compiles the C program `source` into a static executable at `out` (`cc -static`), for the
/// probes the security tests run inside containers.
pub fn compile_static_probe(source: &Path, out: &Path) {
    require_tool("cc");
    let result = Command::new("cc")
        .args(["-static", "-O0", "-o"])
        .arg(out)
        .arg(source)
        .output()
        .expect("cannot run cc");
    assert!(
        result.status.success(),
        "cc -static {} failed (is libc's static library installed?):\n{}",
        source.display(),
        String::from_utf8_lossy(&result.stderr)
    );
}

/// `program args` as root: directly when the tests run as root, else through `sudo -n` (the
/// test user of CI has passwordless sudo, as a developer running the suite has sudo). Panics
/// with the tool's error when it fails.
pub fn tool_as_root(program: &str, args: &[&str]) -> String {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return tool(program, args);
    }
    let mut sudo_args = vec!["-n", program];
    sudo_args.extend_from_slice(args);
    tool("sudo", &sudo_args)
}

/// A tmpfs of `size` (mount's syntax: `1m`, `8m`) mounted over `dir` and owned by `owner`
/// (a user name; None: the calling user), for tests that need a small disk to fill. Mounting
/// needs root: see [`tool_as_root`]. Unmounted when dropped.
pub struct SmallTmpfs {
    dir: PathBuf,
}

impl SmallTmpfs {
    pub fn mount(dir: &Path, size: &str, owner: Option<&str>) -> SmallTmpfs {
        let id = |flag: &str| {
            let mut args = vec![flag];
            args.extend(owner);
            tool("id", &args).trim().to_string()
        };
        let options = format!("size={size},mode=0755,uid={},gid={}", id("-u"), id("-g"));
        let dir_str = dir.to_str().expect("a UTF-8 test directory");
        tool_as_root("mount", &["-t", "tmpfs", "-o", &options, "tmpfs", dir_str]);
        SmallTmpfs {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let dir = self.dir.to_string_lossy().into_owned();
        // SAFETY: geteuid has no preconditions.
        let mut cmd = if unsafe { libc::geteuid() } == 0 {
            Command::new("umount")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "umount"]);
            c
        };
        let _ = cmd.args(["-l", &dir]).status();
    }
}

/// A ustar header owned by root, with a fixed time.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// A small root filesystem tarball: a directory, a file with `content`, and a symlink.
pub fn rootfs_tar(content: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut dir, "etc/", std::io::empty()).unwrap();
    let mut file = header(tar::EntryType::Regular, 0o644, content.len() as u64);
    b.append_data(&mut file, "etc/message", content.as_bytes())
        .unwrap();
    let mut link = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut link, "message", "etc/message").unwrap();
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(data);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
pub mod rootless;
pub mod tour;
