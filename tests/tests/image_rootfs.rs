//! `nook image rootfs`: the image's EROFS root filesystem, built once per layer chain, checked by
//! erofs-utils (an independent reader), shared by concurrent callers.

use std::process::Stdio;

use nook_tests::{require_tool, rootfs_tar, sha256, tool, Nook};

#[test]
fn busybox_rootfs_is_built_once_and_fsck_clean() {
    require_tool("fsck.erofs");
    let nook = Nook::new();
    nook.default_image();
    let path = nook.ok(&["image", "rootfs", "busybox"]);
    let path = path.trim();
    let chain = nook.inspect("busybox")["ChainID"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        path.ends_with(&format!("rootfs/{}.erofs", &chain[7..])),
        "{path} is named after the chain id {chain}"
    );
    tool("fsck.erofs", &[path]);
    // Extracted by erofs-utils, the tree holds the host's busybox and the applet links.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    tool(
        "fsck.erofs",
        &[&format!("--extract={}", out.display()), path],
    );
    let ours = std::fs::read(out.join("bin/busybox")).unwrap();
    assert_eq!(
        sha256(&ours),
        sha256(&std::fs::read("/bin/busybox").unwrap())
    );
    assert!(out.join("bin/sh").is_file());
    assert!(out.join("etc/passwd").is_file());

    let before = std::fs::metadata(path).unwrap().modified().unwrap();
    assert_eq!(nook.ok(&["image", "rootfs", "busybox:latest"]).trim(), path);
    let after = std::fs::metadata(path).unwrap().modified().unwrap();
    assert_eq!(before, after, "the second call reuses the built image");
    // The same chain under another name shares the file.
    nook.ok(&["tag", "busybox", "other"]);
    assert_eq!(nook.ok(&["image", "rootfs", "other"]).trim(), path);
    // Prune keeps it while an image uses it, and removes it once none does.
    nook.ok(&["image", "prune", "-f"]);
    assert!(std::path::Path::new(path).exists());
    nook.ok(&["rmi", "busybox", "other"]);
    nook.ok(&["image", "prune", "-f"]);
    assert!(!std::path::Path::new(path).exists());
}

#[test]
fn concurrent_builders_agree_on_one_good_image() {
    require_tool("fsck.erofs");
    let nook = Nook::new();
    nook.ok_with_input(&["import", "-", "concurrent"], &rootfs_tar("shared\n"));
    let children: Vec<_> = (0..6)
        .map(|_| {
            nook.cmd(["image", "rootfs", "concurrent"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut paths = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        paths.push(String::from_utf8(out.stdout).unwrap());
    }
    paths.dedup();
    assert_eq!(paths.len(), 1, "{paths:?}");
    tool("fsck.erofs", &[paths[0].trim()]);
    assert_eq!(
        std::fs::read_dir(nook.root().join("tmp")).unwrap().count(),
        0,
        "no temp files left"
    );
}

#[test]
fn rootfs_of_a_missing_image_fails_clearly() {
    let nook = Nook::new();
    let err = nook.fails(&["image", "rootfs", "nothere"]);
    assert!(err.contains("No such image: nothere:latest"), "{err}");
}
