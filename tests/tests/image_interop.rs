//! The store and nook's archives, read and written by tools nobody here wrote: skopeo and umoci.

use nook_tests::{require_tool, rootfs_tar, sha256, tool, Nook};

#[test]
fn skopeo_reads_the_store_by_familiar_reference() {
    require_tool("skopeo");
    let nook = Nook::new();
    nook.default_image();
    nook.ok(&["tag", "busybox", "localhost:5000/bb:v1"]);
    let info = nook.inspect("busybox");
    let root = nook.root().to_str().unwrap();
    for reference in ["busybox:latest", "localhost:5000/bb:v1"] {
        let out = tool("skopeo", &["inspect", &format!("oci:{root}:{reference}")]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Digest"], info["Manifest"]["Digest"], "{reference}");
        assert_eq!(v["Layers"][0], info["Layers"][0]["Digest"], "{reference}");
        assert_eq!(v["Os"], "linux");
    }
    let config = tool(
        "skopeo",
        &["inspect", "--config", &format!("oci:{root}:busybox:latest")],
    );
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
}

#[test]
fn umoci_lists_and_unpacks_the_store() {
    require_tool("umoci");
    let nook = Nook::new();
    nook.default_image();
    nook.ok_with_input(
        &["import", "-", "hello:v1"],
        &rootfs_tar("hello from nook\n"),
    );
    let root = nook.root().to_str().unwrap();
    let tags = tool("umoci", &["ls", "--layout", root]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, ["busybox:latest", "hello:v1"]);

    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{root}:busybox:latest"),
            bundle.to_str().unwrap(),
        ],
    );
    let rootfs = bundle.join("rootfs");
    let ours = std::fs::read(rootfs.join("bin/busybox")).unwrap();
    let host = std::fs::read("/bin/busybox").unwrap();
    assert_eq!(
        sha256(&ours),
        sha256(&host),
        "bin/busybox is the host's static busybox"
    );
    assert!(rootfs.join("bin/sh").exists());
    assert!(std::fs::read_to_string(rootfs.join("etc/passwd"))
        .unwrap()
        .starts_with("root:x:0:0:"));

    let bundle2 = dir.path().join("bundle2");
    tool(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{root}:hello:v1"),
            bundle2.to_str().unwrap(),
        ],
    );
    let message = std::fs::read_to_string(bundle2.join("rootfs/etc/message")).unwrap();
    assert_eq!(message, "hello from nook\n");
    let link = std::fs::read_link(bundle2.join("rootfs/message")).unwrap();
    assert_eq!(link.to_str(), Some("etc/message"));
}

#[test]
fn skopeo_reads_saved_archives_and_nook_loads_what_skopeo_writes() {
    require_tool("skopeo");
    let nook = Nook::new();
    nook.default_image();
    let info = nook.inspect("busybox");
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved.tar");
    let saved_s = saved.to_str().unwrap();
    nook.ok(&["save", "-o", saved_s, "busybox"]);

    // skopeo reads nook's archive as an OCI archive and as a docker archive.
    let out = tool(
        "skopeo",
        &["inspect", &format!("oci-archive:{saved_s}:busybox:latest")],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"], info["Manifest"]["Digest"]);
    let out = tool("skopeo", &["inspect", &format!("docker-archive:{saved_s}")]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);

    // skopeo converts it to a docker archive and to another OCI archive; nook loads both.
    let docker = dir.path().join("docker.tar");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci-archive:{saved_s}:busybox:latest"),
            &format!("docker-archive:{}:skopeo/docker:v1", docker.display()),
        ],
    );
    let oci = dir.path().join("oci.tar");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci:{}:busybox:latest", nook.root().display()),
            &format!("oci-archive:{}:skopeo/oci:v2", oci.display()),
        ],
    );
    let other = Nook::new();
    let out = other.ok(&["load", "-i", docker.to_str().unwrap()]);
    assert_eq!(out, "Loaded image: skopeo/docker:v1\n");
    let out = other.ok(&["load", "-i", oci.to_str().unwrap()]);
    assert_eq!(out, "Loaded image: skopeo/oci:v2\n");
    // Same image content either way: the config (the image id) survives every conversion.
    assert_eq!(other.inspect("skopeo/docker:v1")["Id"], info["Id"]);
    assert_eq!(other.inspect("skopeo/oci:v2")["Id"], info["Id"]);
    assert_eq!(
        other.inspect("skopeo/oci:v2")["RootFS"],
        info["RootFS"],
        "diff ids survive"
    );
    // skopeo can also write into nook's store; nook then lists and uses the image.
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci-archive:{}:skopeo/oci:v2", oci.display()),
            &format!("oci:{}:written/by-skopeo:v3", other.root().display()),
        ],
    );
    assert!(other.ok(&["images"]).contains("written/by-skopeo   v3"));
    assert_eq!(other.inspect("written/by-skopeo:v3")["Id"], info["Id"]);
    // And nook's re-saved archive is still readable by skopeo.
    let back = dir.path().join("back.tar");
    other.ok(&["save", "-o", back.to_str().unwrap(), "skopeo/docker:v1"]);
    tool(
        "skopeo",
        &[
            "inspect",
            &format!("oci-archive:{}:skopeo/docker:v1", back.display()),
        ],
    );
}
