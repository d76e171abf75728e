//! Reading a container's files from the host (`export`, `commit`) while the container is
//! running and changing them: nothing outside the container is read, hard links stay links,
//! and a changing tree neither breaks nor steers the reading.

use std::path::{Path, PathBuf};
use std::process::Command;

use nook_tests::rootless::Rootless;

/// Runs `script` with `sh` as the user nook runs as, so what it creates is that user's.
fn as_user(nook: &Rootless, script: &str) {
    let mut cmd = match nook.user() {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--", "sh", "-c", script]);
            c
        }
        None => {
            let mut c = Command::new("sh");
            c.args(["-c", script]);
            c
        }
    };
    let out = cmd.output().expect("cannot run sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The entries of a tar file: (path, type, link target, data size); panics unless the whole
/// file is a valid tar.
fn tar_entries(path: &Path) -> Vec<(String, tar::EntryType, Option<String>, u64)> {
    let file = std::fs::File::open(path).unwrap();
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut out = Vec::new();
    for entry in archive
        .entries()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    {
        let mut entry = entry.unwrap_or_else(|e| panic!("{} is no valid tar: {e}", path.display()));
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let kind = entry.header().entry_type();
        let size = std::io::copy(&mut entry, &mut std::io::sink())
            .unwrap_or_else(|e| panic!("{}: {name} is cut short: {e}", path.display()));
        out.push((name, kind, link, size));
    }
    out
}

fn export(nook: &Rootless, container: &str, file: &str) -> PathBuf {
    let target = nook.root().join(file);
    nook.ok(&["export", "-o", target.to_str().unwrap(), container]);
    target
}

/// A container swapping a directory and a symlink to a host directory (holding a 0600 file
/// of the user) while it is exported: no export holds the host file, every one is a whole,
/// valid tar of about the image's size.
#[test]
fn export_of_a_container_swapping_a_directory_for_a_host_symlink_stays_inside() {
    let nook = Rootless::new();
    nook.default_image();
    // A directory of the user outside every container (the store root is the user's).
    let host_dir = nook.root().join("host-private");
    let secret = "host-only-marker-7f3a9c";
    as_user(
        &nook,
        &format!(
            "mkdir -m 700 {dir} && echo {secret} > {dir}/marker && chmod 600 {dir}/marker",
            dir = host_dir.display()
        ),
    );
    // Several names swapped at once, each a directory with entries most of the time and a
    // symlink to the host directory in between.
    let script = format!(
        "for n in 1 2 3 4 5 6; do mkdir -p /x$n/a /x$n/b && touch /x$n/a/f /x$n/b/f && \
         ln -s {dir} /x$n.link; done; \
         while :; do for n in 1 2 3 4 5 6; do \
         mv /x$n /x$n.dir; mv /x$n.link /x$n; mv /x$n /x$n.link; mv /x$n.dir /x$n; \
         done; done",
        dir = host_dir.display()
    );
    nook.ok(&[
        "run", "-d", "--name", "swapper", "busybox", "sh", "-c", &script,
    ]);
    // Let it set up its names.
    std::thread::sleep(std::time::Duration::from_millis(500));

    for i in 0..4 {
        let file = export(&nook, "swapper", &format!("swap-{i}.tar"));
        let entries = tar_entries(&file);
        for (path, ..) in &entries {
            assert!(!path.contains("marker"), "export {i} holds {path}");
        }
        assert!(
            entries.iter().any(|(p, ..)| p == "bin/busybox"),
            "export {i} is not the container's filesystem"
        );
        let size = std::fs::metadata(&file).unwrap().len();
        assert!(
            size < 16 << 20,
            "export {i} is {size} bytes: it went outside the container"
        );
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "export {i} holds the content of the user's 0600 host file"
        );
        std::fs::remove_file(&file).unwrap();
    }
    nook.ok(&["rm", "-f", "swapper"]);
}

/// busybox's hundreds of names for one file are tar hard links in an export, not copies: the
/// export is about the size of the image's unpacked tree.
#[test]
fn export_writes_hard_links_as_link_entries() {
    let nook = Rootless::new();
    nook.default_image();
    nook.ok(&["run", "--name", "linked", "busybox", "true"]);
    let file = export(&nook, "linked", "linked.tar");
    let entries = tar_entries(&file);
    let links: Vec<_> = entries
        .iter()
        .filter(|(_, kind, ..)| *kind == tar::EntryType::Link)
        .collect();
    assert!(
        links.len() >= 100,
        "{} hard-link entries; busybox has hundreds of links",
        links.len()
    );
    for (path, _, target, size) in &links {
        let target = target.as_deref().unwrap_or_default();
        assert_eq!(*size, 0, "{path} carries data");
        assert!(
            entries
                .iter()
                .position(|(p, ..)| p == target)
                .is_some_and(|t| entries.iter().position(|(p, ..)| p == path) > Some(t)),
            "{path} links to {target}, which is not written before it"
        );
    }
    // The unpacked tree, each file counted once.
    let tree = nook_tests::tool("du", &["-sb", nook.path("rootfs").to_str().unwrap()]);
    let tree_bytes: u64 = tree
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("du printed {tree:?}"));
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(
        size < 2 * tree_bytes + (1 << 20),
        "the export is {size} bytes for an unpacked tree of {tree_bytes}"
    );
}

/// `commit` of a container that keeps creating, renaming and deleting files while it is read
/// succeeds each time (entries gone meanwhile are skipped, not an error).
#[test]
fn commit_while_the_container_rewrites_its_files_succeeds() {
    let nook = Rootless::new();
    nook.default_image();
    let script = "mkdir -p /work; while :; do for i in 1 2 3 4 5 6 7 8 9; do \
                  echo $i > /work/f$i.tmp; mv /work/f$i.tmp /work/f$i; \
                  rm -f /work/l$i; ln -s f$i /work/l$i; \
                  rm -rf /work/d$i; mkdir /work/d$i; echo $i > /work/d$i/x; \
                  done; done";
    nook.ok(&[
        "run", "-d", "--name", "churn", "busybox", "sh", "-c", script,
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    for i in 0..5 {
        let out = nook.run(&["commit", "churn", &format!("churned:{i}")]);
        assert!(
            out.status.success(),
            "commit {i} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let diff = nook.run(&["diff", "churn"]);
        assert!(
            diff.status.success(),
            "diff {i} failed: {}",
            String::from_utf8_lossy(&diff.stderr)
        );
    }
    nook.ok(&["rm", "-f", "churn"]);
    // The last commit is an image whose container sees the work directory.
    nook.ok(&["run", "--rm", "churned:4", "test", "-d", "/work"]);
}
