//! Whole-program tests of what a container run must never lose or leak, in the namespace column
//! as an unprivileged user: the exit status and `--rm` on a full disk (the store on a small
//! tmpfs that a container fills), no half-created container `ps -a` cannot show, `image prune`
//! reclaiming unpacked trees and the leftovers of killed commands with a true count, and logs
//! rotated by `--log-opt` and read back in order, followed across rotations.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nook_tests::rootless::Rootless;

/// A tmpfs of `size` mounted as the store, owned by the user nook runs as; unmounted on drop.
/// Declare it after the `Rootless` it serves, so that it goes first.
struct SmallStore {
    root: PathBuf,
    _mount: nook_tests::SmallTmpfs,
}

impl SmallStore {
    fn mount(nook: &Rootless, size: &str) -> SmallStore {
        let root = nook.root();
        let mount = nook_tests::SmallTmpfs::mount(&root, size, nook.user());
        SmallStore {
            root,
            _mount: mount,
        }
    }

    /// Bytes in use on the tmpfs.
    fn used(&self) -> u64 {
        let path = std::ffi::CString::new(self.root.to_str().unwrap()).unwrap();
        // SAFETY: statvfs is plain data, valid when zeroed.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: statvfs fills the struct; path is NUL-terminated and outlives the call.
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
        assert_eq!(rc, 0, "statvfs {}", self.root.display());
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }

    /// Fills the tmpfs until it is full (as the tests' user: the store's owner or root).
    fn fill(&self) -> PathBuf {
        let filler = self.root.join("filler");
        let out = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", filler.display()))
            .arg("bs=64k")
            .output()
            .expect("dd");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("No space left"), "dd should fill it: {err}");
        filler
    }
}

/// A container that fills the disk, goes on talking (more than the log's last page holds),
/// and exits with 3.
const FILL_AND_EXIT_3: &str = "echo before; dd if=/dev/zero of=/big bs=64k; seq 1 300; \
                               echo after the full disk; exit 3";

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The bytes of docker's human sizes as `human_size` prints them ("2.35MB", "0B").
fn parse_human(text: &str) -> u64 {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: f64 = n.parse().unwrap_or_else(|_| panic!("a size: {text:?}"));
    let mult = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => panic!("unit of {text:?}"),
    };
    (n * mult) as u64
}

fn reclaimed(prune_output: &str) -> u64 {
    let line = prune_output
        .lines()
        .find_map(|l| l.strip_prefix("Total reclaimed space: "))
        .unwrap_or_else(|| panic!("no total in:\n{prune_output}"));
    parse_human(line.trim())
}

#[test]
fn a_full_disk_keeps_the_exit_status_and_rm_still_removes() {
    let nook = Rootless::new();
    let store = SmallStore::mount(&nook, "24m");
    nook.default_image();
    nook.ok(&["run", "--rm", "busybox", "true"]);
    let before = store.used();

    let (out, _) = nook.exits(3, &["run", "--rm", "busybox", "sh", "-c", FILL_AND_EXIT_3]);
    assert!(
        out.contains("before") && out.contains("after the full disk"),
        "{out}"
    );
    assert_eq!(nook.ok(&["ps", "-aq"]), "", "--rm removed the container");
    assert!(entries(&nook.path("containers")).is_empty());
    assert!(
        entries(&nook.path("tmp")).is_empty(),
        "{:?}",
        entries(&nook.path("tmp"))
    );
    let after = store.used();
    assert!(
        after <= before + (256 << 10),
        "the writable layer went with it: {before} bytes used before, {after} after"
    );

    // Kept (no --rm): the exit is recorded, the log has what was said before the disk filled,
    // and the caller hears about the lines that could not be logged.
    let (_, err) = nook.exits(
        3,
        &[
            "run",
            "--name",
            "full",
            "busybox",
            "sh",
            "-c",
            FILL_AND_EXIT_3,
        ],
    );
    assert!(err.contains("could not be logged"), "{err}");
    let state = nook.state_of("full");
    assert!(state.starts_with("exited Exited (3)"), "{state}");
    let logs = nook.ok(&["logs", "full"]);
    assert!(logs.contains("before"), "{logs}");
    nook.ok(&["rm", "full"]);
    assert!(store.used() <= before + (256 << 10));
    drop(store);
}

#[test]
fn run_d_on_a_full_disk_leaves_nothing_ps_cannot_show() {
    let nook = Rootless::new();
    let store = SmallStore::mount(&nook, "24m");
    nook.default_image();
    nook.ok(&["run", "--rm", "busybox", "true"]);
    let filler = store.fill();

    for args in [
        &["run", "-d", "--name", "late", "busybox", "true"][..],
        &["run", "-d", "--rm", "busybox", "true"][..],
        &["create", "--name", "made", "busybox", "true"][..],
    ] {
        let out = nook.run(args);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("No space left on device"), "{args:?}: {err}");
        }
        let shown = nook.ok(&["ps", "-aq", "--no-trunc"]);
        for dir in entries(&nook.path("containers")) {
            assert!(
                shown.lines().any(|id| id == dir),
                "{args:?} left containers/{dir}, which ps -a does not show:\n{shown}"
            );
        }
    }
    std::fs::remove_file(filler).unwrap();
    let all = nook.ok(&["ps", "-aq"]);
    for id in all.lines() {
        nook.ok(&["rm", "-f", id]);
    }
    nook.ok(&["image", "prune", "-f"]);
    assert!(entries(&nook.path("containers")).is_empty());
    drop(store);
}

#[test]
fn image_prune_reclaims_trees_and_leftovers_and_counts_them() {
    let nook = Rootless::new();
    let store = SmallStore::mount(&nook, "64m");
    nook.default_image();
    nook.ok(&[
        "run",
        "--name",
        "base",
        "busybox",
        "sh",
        "-c",
        "echo x > /x",
    ]);
    nook.ok(&["commit", "base", "other:1"]);
    nook.ok(&["rm", "base"]);
    nook.ok(&["create", "--name", "user", "other:1", "true"]);
    nook.ok(&["image", "rootfs", "busybox"]);
    let trees = || {
        entries(&nook.path("rootfs"))
            .into_iter()
            .filter(|n| n.ends_with(".tree"))
            .collect::<Vec<_>>()
    };
    assert_eq!(trees().len(), 2, "{:?}", entries(&nook.path("rootfs")));

    // What killed commands leave in tmp/, owned by the user, as they would be.
    let dead = {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let mut live = Command::new("sleep")
        .arg("300")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let user_id = nook.id_of("user");
    let tmp = nook.path("tmp");
    let killed_export = tmp.join(format!("export-{user_id}-{dead}"));
    let running_export = tmp.join(format!("export-{user_id}-{}", live.id()));
    let killed_unpack = tmp.join(format!("tree-0123abcd-{dead}"));
    let killed_layer = tmp.join(format!("layer-{dead}-0-1f"));
    let cut_removal = tmp.join("removing-0123abcd");
    let killed_create = nook.path(&format!("containers/{}", "ab".repeat(32)));
    for dir in [
        &killed_export,
        &running_export,
        &killed_unpack,
        &cut_removal,
        &killed_create,
    ] {
        std::fs::create_dir_all(dir.join("upper")).unwrap();
    }
    std::fs::write(killed_unpack.join("upper/data"), vec![1u8; 3 << 20]).unwrap();
    std::fs::write(&killed_layer, vec![2u8; 2 << 20]).unwrap();
    std::fs::write(cut_removal.join("lock"), b"").unwrap();
    std::fs::write(cut_removal.join("upper/data"), vec![3u8; 1 << 20]).unwrap();
    std::fs::write(killed_create.join("config.json"), b"{}").unwrap();
    // As root, the leftovers belong to the user nook runs as, like the ones it leaves itself.
    if let Some(user) = nook.user() {
        nook_tests::tool(
            "chown",
            &[
                "-R",
                &format!("{user}:{user}"),
                tmp.to_str().unwrap(),
                killed_create.to_str().unwrap(),
            ],
        );
    }

    // rmi of an unused image drops its tree (and EROFS image) with it.
    nook.ok(&["rmi", "busybox"]);
    assert_eq!(trees().len(), 1, "busybox's tree went with it");
    assert!(!entries(&nook.path("rootfs"))
        .iter()
        .any(|n| n.ends_with(".erofs")));

    // other:1 is untagged but used: its tree stays, the leftovers go, and the count is true.
    nook.ok(&["rmi", "-f", "other:1"]);
    let before = store.used();
    let out = nook.ok(&["image", "prune", "-f"]);
    let freed = before - store.used();
    let said = reclaimed(&out);
    assert!(
        said.abs_diff(freed) <= freed / 10 + (64 << 10),
        "prune said {said} bytes, {freed} were freed:\n{out}"
    );
    assert!(freed >= 6 << 20, "the leftovers took 6 MiB: {freed}");
    assert_eq!(trees().len(), 1, "the tree of a used image stays");
    assert_eq!(
        entries(&tmp),
        [running_export.file_name().unwrap().to_string_lossy()],
        "only a running export's directory stays"
    );
    assert!(!killed_create.exists());
    assert_eq!(nook.ok(&["ps", "-a", "--format", "{{.Names}}"]), "user\n");

    // Once its container is gone, the image and its tree go too.
    nook.ok(&["rm", "user"]);
    let before = store.used();
    let out = nook.ok(&["image", "prune", "-f"]);
    let freed = before - store.used();
    let said = reclaimed(&out);
    assert!(trees().is_empty(), "{:?}", entries(&nook.path("rootfs")));
    assert!(freed > 1 << 20, "a busybox tree and blobs: {freed}");
    assert!(
        said.abs_diff(freed) <= freed / 10 + (64 << 10),
        "prune said {said} bytes, {freed} were freed:\n{out}"
    );
    let _ = live.kill();
    let _ = live.wait();
    drop(store);
}

/// `line-N` numbers of `text`, asserted consecutive.
fn consecutive(text: &str) -> Vec<u32> {
    let numbers: Vec<u32> = text
        .lines()
        .map(|l| {
            l.strip_prefix("line-")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a line-N: {l:?}"))
        })
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "lines lost or out of order: {numbers:?}"
    );
    numbers
}

#[test]
fn logs_rotate_by_log_opt_and_read_back_in_order() {
    let nook = Rootless::new();
    nook.default_image();
    let script = "i=1; while [ $i -le 1500 ]; do echo line-$i; \
                  if [ $((i % 50)) = 0 ]; then sleep 0.2; fi; i=$((i+1)); done";
    nook.ok(&[
        "run",
        "-d",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=16k",
        "--log-opt",
        "max-file=4",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    let follower = nook
        .cmd(&["logs", "-f", "chatty"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(nook.ok(&["wait", "chatty"]), "0\n");
    let followed = follower.wait_with_output().unwrap();
    assert!(followed.status.success());
    let followed = consecutive(&String::from_utf8_lossy(&followed.stdout));
    assert_eq!(followed.last(), Some(&1500), "-f read to the end");

    let id = nook.id_of("chatty");
    let dir = nook.path(&format!("containers/{id}"));
    let logs: Vec<String> = entries(&dir)
        .into_iter()
        .filter(|n| n.starts_with("log.json"))
        .collect();
    assert_eq!(logs, ["log.json", "log.json.1", "log.json.2", "log.json.3"]);
    for name in &logs {
        let size = std::fs::metadata(dir.join(name)).unwrap().len();
        assert!(size <= 16 << 10, "{name} is {size} bytes");
    }
    let all = consecutive(&nook.ok(&["logs", "chatty"]));
    assert_eq!(all.last(), Some(&1500));
    assert!(
        all.len() > 400 && all.len() < 1500,
        "rotation kept the newest 4 files: {} lines",
        all.len()
    );
    assert_eq!(
        nook.ok(&["logs", "--tail", "3", "chatty"]),
        "line-1498\nline-1499\nline-1500\n"
    );

    // The default cap, recorded in the container's config.
    nook.ok(&["create", "--name", "quiet", "busybox", "true"]);
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(nook.path(&format!("containers/{}/config.json", nook.id_of("quiet"))))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(config["log"]["max_size"], 20 << 20);
    assert_eq!(config["log"]["max_file"], 5);

    let err = nook.fails(&["run", "--log-opt", "max-size=lots", "busybox", "true"]);
    assert!(err.contains("max-size=\"lots\""), "{err}");
    let err = nook.fails(&["run", "--log-opt", "colour=blue", "busybox", "true"]);
    assert!(err.contains("unknown log opt \"colour\""), "{err}");
    assert_eq!(
        nook.ok(&["ps", "-a", "--format", "{{.Names}}"])
            .lines()
            .count(),
        2
    );
}
