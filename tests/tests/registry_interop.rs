//! Interop with skopeo through a real registry, both ways: an image skopeo pushed is pulled and
//! run by nook, an image nook pushed is read by skopeo with the same digest; and a
//! multi-platform index (pushed by skopeo) with gzip, zstd and plain layers, pulled per
//! platform.

mod registry_support;

use nook_tests::rootless::Rootless;
use nook_tests::{require_tool, tool, Nook};
use registry_support::{field, fixture, write_layout, Registry};

fn skopeo_digest(reference: &str) -> String {
    let out = tool("skopeo", &["inspect", "--tls-verify=false", reference]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

#[test]
fn an_image_skopeo_pushed_is_pulled_and_run_by_nook() {
    require_tool("skopeo");
    let registry = Registry::start();
    let host = registry.host();
    let src = Nook::new();
    src.default_image();
    let target = format!("{host}/skopeo/busybox:v1");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:busybox:latest", src.root().display()),
            &format!("docker://{target}"),
        ],
    );
    let digest = skopeo_digest(&format!("docker://{target}"));

    // `run` of the missing image pulls it, then runs it (namespace column, unprivileged).
    let nook = Rootless::new();
    let out = nook.ok(&["run", "--rm", &target, "echo", "hello from the registry"]);
    assert_eq!(out, "hello from the registry\n");
    let inspected = nook.ok(&["inspect", &target]);
    let v: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(v[0]["Manifest"]["Digest"].as_str(), Some(digest.as_str()));
}

#[test]
fn an_image_nook_pushed_is_read_by_skopeo_with_the_same_digest() {
    require_tool("skopeo");
    let registry = Registry::start();
    let host = registry.host();
    let nook = Nook::new();
    nook.default_image();
    let target = format!("{host}/nook/busybox:v2");
    nook.ok(&["tag", "busybox", &target]);
    let out = nook.ok(&["push", &target]);
    let ours = nook.inspect(&target)["Manifest"]["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(out.contains(&format!("v2: digest: {ours} ")), "{out}");
    assert_eq!(skopeo_digest(&format!("docker://{target}")), ours);

    // skopeo copies it out of the registry into an OCI layout, the manifest byte for byte.
    let dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:copied", dir.path().join("layout").display());
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--preserve-digests",
            "--src-tls-verify=false",
            &format!("docker://{target}"),
            &layout,
        ],
    );
    let out = tool("skopeo", &["inspect", &layout]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"].as_str(), Some(ours.as_str()));
}

/// The registry's name of this machine's architecture, and another one.
fn arches() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", "arm64"),
        "aarch64" => ("arm64", "amd64"),
        other => panic!("no test platform pair for {other}"),
    }
}

#[test]
fn a_multi_platform_index_with_every_layer_compression() {
    require_tool("skopeo");
    require_tool("fsck.erofs");
    let registry = Registry::start();
    let host = registry.host();
    let (here, there) = arches();
    let native = fixture(
        here,
        &[
            ("tar", "plain", "plain layer\n"),
            ("gzip", "gz", "gzip layer\n"),
            ("zstd", "zst", "zstd layer\n"),
        ],
    );
    let foreign = fixture(there, &[("gzip", "foreign", "other platform\n")]);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let index_digest = write_layout(&layout, "multi", &[(&native, here), (&foreign, there)]);
    let target = format!("{host}/multi/app:v1");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:multi", layout.display()),
            &format!("docker://{target}"),
        ],
    );

    // Default platform: this machine's; docker prints the index's digest.
    let nook = Nook::new();
    let out = nook.ok(&["pull", &target]);
    assert_eq!(field(&out, "Digest:"), Some(index_digest.as_str()), "{out}");
    let v = nook.inspect(&target);
    assert_eq!(v["Architecture"].as_str(), Some(here));
    assert_eq!(
        v["Manifest"]["Digest"].as_str(),
        Some(native.manifest_digest.as_str())
    );
    // The three layers (plain, gzip, zstd) apply into one root filesystem.
    let rootfs = nook.ok(&["image", "rootfs", &target]);
    let extract = dir.path().join("x");
    tool(
        "fsck.erofs",
        &[&format!("--extract={}", extract.display()), rootfs.trim()],
    );
    for (name, content) in [
        ("plain", "plain layer\n"),
        ("gz", "gzip layer\n"),
        ("zst", "zstd layer\n"),
    ] {
        assert_eq!(
            std::fs::read_to_string(extract.join("etc").join(name)).unwrap(),
            content
        );
    }

    // Another platform on request; one the index lacks is refused, listing what it has.
    let other = Nook::new();
    let out = other.ok(&["pull", "--platform", &format!("linux/{there}"), &target]);
    assert_eq!(field(&out, "Digest:"), Some(index_digest.as_str()));
    let v = other.inspect(&target);
    assert_eq!(v["Architecture"].as_str(), Some(there));
    assert_eq!(
        v["Manifest"]["Digest"].as_str(),
        Some(foreign.manifest_digest.as_str())
    );
    let before = other.snapshot();
    let err = other.fails(&["pull", "--platform", "linux/s390x", &target]);
    assert!(err.contains("no image for platform linux/s390x"), "{err}");
    assert!(
        err.contains(&format!("linux/{here}")) && err.contains(&format!("linux/{there}")),
        "{err}"
    );
    assert_eq!(other.snapshot(), before);
}
