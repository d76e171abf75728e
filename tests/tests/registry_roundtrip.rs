//! nook against a real registry (Debian's docker-registry on 127.0.0.1): push then pull with
//! equal digests, blobs skipped when present on either side, `-q`, and the pull that `run` and
//! `create` do for a missing image.

mod registry_support;

use nook_tests::{rootfs_tar, Nook};
use registry_support::{blob_names, field, Registry};

#[test]
fn push_then_pull_round_trips_with_equal_digests() {
    let registry = Registry::start();
    let host = registry.host();
    let src = Nook::new();
    src.default_image();
    let target = format!("{host}/nook/busybox:v1");
    src.ok(&["tag", "busybox", &target]);
    let out = src.ok(&["push", &target]);
    assert!(
        out.starts_with(&format!(
            "The push refers to repository [{host}/nook/busybox]\n"
        )),
        "{out}"
    );
    let last = out.lines().last().unwrap();
    let pushed_digest = last
        .strip_prefix("v1: digest: ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("push ends with the digest line: {out}"));
    let info = src.inspect("busybox");
    assert_eq!(
        info["Manifest"]["Digest"].as_str(),
        Some(pushed_digest),
        "the registry has the stored manifest byte for byte"
    );
    assert!(out.contains(": Pushed\n"), "{out}");

    // Pushing again uploads nothing.
    let again = src.ok(&["push", &target]);
    assert!(again.contains(": Layer already exists\n"), "{again}");
    assert!(!again.contains(": Pushed\n"), "{again}");

    let dst = Nook::new();
    let out = dst.ok(&["pull", &target]);
    assert!(out.starts_with("v1: Pulling from nook/busybox\n"), "{out}");
    assert!(out.contains(": Pull complete\n"), "{out}");
    assert_eq!(field(&out, "Digest:"), Some(pushed_digest), "{out}");
    assert_eq!(
        field(&out, "Status:"),
        Some(format!("Downloaded newer image for {target}").as_str())
    );
    assert_eq!(out.lines().last(), Some(target.as_str()));
    let pulled = dst.inspect(&target);
    assert_eq!(pulled["Id"], info["Id"], "same config, same image id");
    assert_eq!(pulled["Manifest"]["Digest"], info["Manifest"]["Digest"]);
    assert_eq!(blob_names(dst.root()), blob_names(src.root()));
    assert!(dst
        .ok(&["images"])
        .contains(&format!("{host}/nook/busybox")));
    // The pulled image is usable: its EROFS root filesystem builds from the pulled blobs.
    dst.ok(&["image", "rootfs", &target]);

    // Pulling again changes nothing and says so; -q prints the reference alone.
    let before = dst.snapshot();
    let out = dst.ok(&["pull", &target]);
    assert!(out.contains(": Already exists\n"), "{out}");
    assert_eq!(
        field(&out, "Status:"),
        Some(format!("Image is up to date for {target}").as_str())
    );
    assert_eq!(dst.snapshot(), before);
    assert_eq!(dst.ok(&["pull", "-q", &target]), format!("{target}\n"));

    // By digest: the image is recorded without a tag, as docker does.
    let other = Nook::new();
    let by_digest = format!("{host}/nook/busybox@{pushed_digest}");
    let out = other.ok(&["pull", &by_digest]);
    assert_eq!(field(&out, "Digest:"), Some(pushed_digest));
    assert_eq!(other.inspect(&by_digest)["Id"], info["Id"]);
}

#[test]
fn pull_skips_blobs_the_store_has() {
    let registry = Registry::start();
    let host = registry.host();
    let src = Nook::new();
    src.ok_with_input(
        &["import", "-", &format!("{host}/a:1")],
        &rootfs_tar("one\n"),
    );
    src.ok(&["push", &format!("{host}/a:1")]);
    // Same layer under another repository name and tag.
    src.ok(&["tag", &format!("{host}/a:1"), &format!("{host}/b:2")]);
    let out = src.ok(&["push", &format!("{host}/b:2")]);
    assert!(
        out.contains("Pushed") || out.contains("Layer already exists"),
        "{out}"
    );

    let dst = Nook::new();
    let first = dst.ok(&["pull", &format!("{host}/a:1")]);
    assert!(first.contains("Pull complete"), "{first}");
    let second = dst.ok(&["pull", &format!("{host}/b:2")]);
    assert!(second.contains(": Already exists\n"), "{second}");
    assert!(!second.contains("Pull complete"), "{second}");
    assert_eq!(
        dst.inspect(&format!("{host}/a:1"))["Id"],
        dst.inspect(&format!("{host}/b:2"))["Id"]
    );
}

#[test]
fn run_and_create_pull_a_missing_image() {
    let registry = Registry::start();
    let host = registry.host();
    let src = Nook::new();
    src.default_image();
    let target = format!("{host}/implicit/busybox:latest");
    src.ok(&["tag", "busybox", &target]);
    src.ok(&["push", "-q", &target]);

    let dst = Nook::new();
    let out = dst.run(&["create", &target, "true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("Unable to find image '{target}' locally")),
        "{stderr}"
    );
    assert!(
        stderr.contains("Status: Downloaded newer image"),
        "{stderr}"
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "create prints the id alone on stdout: {id:?}");
    assert_eq!(dst.inspect(&target)["Id"], src.inspect("busybox")["Id"]);
    // Present now: no second pull.
    let out = dst.run(&["create", &target, "true"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Unable to find"));
}

#[test]
fn pull_and_push_report_a_missing_image_or_tag() {
    let registry = Registry::start();
    let host = registry.host();
    let nook = Nook::new();
    nook.ok(&["images"]);
    let before = nook.snapshot();
    let err = nook.fails(&["pull", &format!("{host}/nothere:v9")]);
    assert!(err.contains("manifest unknown"), "{err}");
    assert!(err.contains(&host) && err.contains("nothere"), "{err}");
    assert_eq!(nook.snapshot(), before);
    let err = nook.fails(&["push", &format!("{host}/nothere:v9")]);
    assert!(
        err.contains(&format!(
            "An image does not exist locally with the tag: {host}/nothere:v9"
        )),
        "{err}"
    );
    let err = nook.fails(&["pull", "--platform", "linux//x", &format!("{host}/a")]);
    assert!(err.contains("invalid platform"), "{err}");
}
