//! A container's writable layer as data: `diff` lists its changes, `commit` turns it into a new
//! image (leaving the original image's blobs untouched), `export` writes the whole filesystem.

use nook_tests::rootless::Rootless;

#[test]
fn commit_makes_an_image_whose_containers_see_the_changes() {
    let nook = Rootless::new();
    nook.default_image();
    let blobs_before = Rootless::tree_contents(&nook.path("blobs"));
    let busybox_before = nook.ok(&["inspect", "--format", "{{json .}}", "busybox"]);

    nook.ok(&[
        "run",
        "--name",
        "maker",
        "busybox",
        "sh",
        "-c",
        "echo committed > /made.txt && rm /etc/group && mkdir -p /private && echo s > /private/s \
         && chown 1234:1234 /private/s && chmod 600 /private/s && chmod 700 /private",
    ]);
    let diff = nook.ok(&["diff", "maker"]);
    assert_eq!(
        diff, "C /etc\nD /etc/group\nA /made.txt\nA /private\nA /private/s\n",
        "docker diff lines"
    );

    let id = nook.ok(&[
        "commit",
        "-m",
        "made",
        "-c",
        "CMD [\"cat\", \"/made.txt\"]",
        "maker",
        "made:v1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    // The new image runs with its new default command and sees every change, owners included.
    assert_eq!(nook.ok(&["run", "--rm", "made:v1"]), "committed\n");
    nook.exits(1, &["run", "--rm", "made:v1", "test", "-e", "/etc/group"]);
    let owner = nook.ok(&[
        "run",
        "--rm",
        "made:v1",
        "stat",
        "-c",
        "%u:%g %a",
        "/private/s",
    ]);
    assert_eq!(owner, "1234:1234 600\n");
    // The base image is unchanged: its containers do not see the file.
    nook.exits(1, &["run", "--rm", "busybox", "test", "-e", "/made.txt"]);
    let history = nook.ok(&["history", "--format", "{{.Comment}}", "made:v1"]);
    assert!(history.lines().next() == Some("made"), "{history}");

    // Every blob the base image had is still there, byte for byte; commit only added blobs.
    let blobs_after = Rootless::tree_contents(&nook.path("blobs"));
    for (path, data) in &blobs_before {
        let after = blobs_after.iter().find(|(p, _)| p == path);
        assert_eq!(
            after.map(|(_, d)| d),
            Some(data),
            "{} changed",
            path.display()
        );
    }
    assert_eq!(
        nook.ok(&["inspect", "--format", "{{json .}}", "busybox"]),
        busybox_before
    );
}

#[test]
fn export_writes_the_whole_filesystem_with_the_changes() {
    let nook = Rootless::new();
    nook.default_image();
    nook.ok(&[
        "run",
        "--name",
        "src",
        "busybox",
        "sh",
        "-c",
        "echo x > /exported && rm /etc/group",
    ]);
    // Written by the unprivileged user, into a directory it owns.
    let target = nook.root().join("export.tar");
    nook.ok(&["export", "-o", target.to_str().unwrap(), "src"]);
    let listing = nook_tests::tool("tar", &["-tf", target.to_str().unwrap()]);
    let has = |name: &str| listing.lines().any(|l| l.trim_start_matches("./") == name);
    assert!(has("exported"), "{listing}");
    assert!(has("bin/busybox"), "{listing}");
    assert!(has("etc/passwd"), "{listing}");
    assert!(
        !has("etc/group"),
        "deleted files are not exported: {listing}"
    );
    assert!(!listing.contains(".wh."), "{listing}");
}
