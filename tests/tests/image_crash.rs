//! Crash and concurrency safety of the store: a killed import or load leaves the store as it
//! was and usable; concurrent tag writers lose no update; garbage collection waits for writers.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nook_tests::{require_tool, tool, Nook};

/// A plain tar of `size` bytes of incompressible-looking data in one file.
fn big_tar(size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    let mut x: u32 = 0x1234_5678;
    for b in data.iter_mut() {
        // xorshift: cheap bytes that are not all the same.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(size as u64);
    h.set_mode(0o644);
    builder.append_data(&mut h, "big.bin", &data[..]).unwrap();
    builder.into_inner().unwrap()
}

/// Waits until some entry of `dir` whose name starts with `prefix` exists (and, for files,
/// is not empty): the writer is mid-way.
fn wait_for_temp(dir: &Path, prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = std::fs::read_dir(dir).unwrap().any(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = e.metadata().unwrap();
            name.starts_with(prefix) && (meta.is_dir() || meta.len() > 0)
        });
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {prefix}* appeared in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(child: &mut Child) {
    // SAFETY: kill(2) on the pid of a child we started and have not reaped.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    assert_eq!(rc, 0, "cannot kill nook");
    let status = child.wait().unwrap();
    assert!(!status.success());
}

/// The store still works for every reader: nook, skopeo and umoci.
fn assert_usable(nook: &Nook) {
    assert!(nook.ok(&["images"]).contains("busybox"));
    nook.inspect("busybox");
    let root = nook.root().to_str().unwrap();
    require_tool("skopeo");
    tool(
        "skopeo",
        &["inspect", &format!("oci:{root}:busybox:latest")],
    );
    require_tool("umoci");
    tool("umoci", &["ls", "--layout", root]);
}

#[test]
fn a_killed_import_leaves_the_store_unchanged_and_usable() {
    let nook = Nook::new();
    nook.default_image();
    let before = nook.snapshot();
    let tar = big_tar(8 << 20);
    let mut child = nook
        .cmd(["import", "-", "killed:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&tar[..tar.len() / 2]).unwrap();
    wait_for_temp(&nook.root().join("tmp"), "blob-");
    kill(&mut child);
    drop(stdin);

    assert_eq!(
        nook.snapshot(),
        before,
        "the kill left index.json and blobs as they were"
    );
    assert_usable(&nook);
    assert!(nook
        .fails(&["inspect", "killed:1"])
        .contains("No such image"));
    // Prune clears what the killed writer left in tmp/; the import then works.
    nook.ok(&["image", "prune", "-f"]);
    assert_eq!(
        std::fs::read_dir(nook.root().join("tmp")).unwrap().count(),
        0
    );
    nook.ok_with_input(&["import", "-", "killed:1"], &tar);
    nook.inspect("killed:1");
}

#[test]
fn a_killed_load_leaves_the_store_unchanged_and_usable() {
    let src = Nook::new();
    src.ok_with_input(&["import", "-", "payload:1"], &big_tar(8 << 20));
    let archive = src.cmd(["save", "payload:1"]).output().unwrap();
    assert!(archive.status.success());

    let nook = Nook::new();
    nook.default_image();
    let before = nook.snapshot();
    let mut child = nook
        .cmd(["load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(&archive.stdout[..archive.stdout.len() / 2])
        .unwrap();
    wait_for_temp(&nook.root().join("tmp"), "load-");
    kill(&mut child);
    drop(stdin);

    assert_eq!(nook.snapshot(), before);
    assert_usable(&nook);
    nook.ok_with_input(&["load"], &archive.stdout);
    assert_eq!(
        nook.inspect("payload:1")["Id"],
        src.inspect("payload:1")["Id"]
    );
}

#[test]
fn concurrent_tags_are_all_kept() {
    let nook = Nook::new();
    nook.default_image();
    let children: Vec<Child> = (0..12)
        .map(|i| {
            nook.cmd(["tag", "busybox", &format!("parallel:{i}")])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let tags = nook.inspect("busybox")["RepoTags"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(tags, 13, "every concurrent index.json update survived");
}

#[test]
fn prune_waits_for_an_import_in_flight() {
    let nook = Nook::new();
    nook.default_image();
    let tar = big_tar(4 << 20);
    let mut import = nook
        .cmd(["import", "-", "inflight:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = import.stdin.take().unwrap();
    stdin.write_all(&tar[..tar.len() / 2]).unwrap();
    wait_for_temp(&nook.root().join("tmp"), "blob-");
    let mut prune = nook
        .cmd(["image", "prune", "-f"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        prune.try_wait().unwrap().is_none(),
        "prune must wait while an import holds the store"
    );
    stdin.write_all(&tar[tar.len() / 2..]).unwrap();
    drop(stdin);
    let out = import.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(prune.wait().unwrap().success());
    // Nothing of the new image was collected: every blob it names is there and valid.
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("s.tar");
    nook.ok(&["save", "-o", saved.to_str().unwrap(), "inflight:1"]);
    let other = Nook::new();
    other.ok(&["load", "-i", saved.to_str().unwrap()]);
}
