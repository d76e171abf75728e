//! Whole-program tests of `nook save` and `nook load`: round trips, docker and OCI archives,
//! several images per archive, and bad archives that must fail clearly and change nothing.

use nook_tests::{gzip, rootfs_tar, sha256, zstd, Nook};
use serde_json::json;

/// A tar archive from (path, content) pairs.
fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn hex(digest: &str) -> &str {
    &digest["sha256:".len()..]
}

/// The parts of a one-layer OCI image, each field overridable to make it bad.
struct OciParts {
    layer: Vec<u8>,
    layer_media: String,
    diff_id: String,
    tag: String,
}

impl OciParts {
    fn new(tag: &str) -> OciParts {
        let tar = rootfs_tar(tag);
        OciParts {
            diff_id: sha256(&tar),
            layer: gzip(&tar),
            layer_media: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            tag: tag.into(),
        }
    }

    fn config(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [self.diff_id]},
        }))
        .unwrap()
    }

    fn manifest(&self, config: &[u8]) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256(config), "size": config.len()},
            "layers": [{"mediaType": self.layer_media, "digest": sha256(&self.layer),
                        "size": self.layer.len()}],
        }))
        .unwrap()
    }

    /// The archive's files: oci-layout, index.json and the three blobs.
    fn files(&self) -> Vec<(String, Vec<u8>)> {
        let config = self.config();
        let manifest = self.manifest(&config);
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": sha256(&manifest), "size": manifest.len(),
                           "annotations": {"org.opencontainers.image.ref.name": self.tag}}],
        }))
        .unwrap();
        vec![
            (
                "oci-layout".into(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".into(), index),
            (
                format!("blobs/sha256/{}", hex(&sha256(&manifest))),
                manifest,
            ),
            (format!("blobs/sha256/{}", hex(&sha256(&config))), config),
            (
                format!("blobs/sha256/{}", hex(&sha256(&self.layer))),
                self.layer.clone(),
            ),
        ]
    }

    fn archive(&self) -> Vec<u8> {
        archive_of(self.files())
    }
}

fn archive_of(files: Vec<(String, Vec<u8>)>) -> Vec<u8> {
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
    tar_of(&refs)
}

/// Loads `archive` into a store holding busybox; asserts it fails naming every `needle`, and
/// that the store is unchanged and still works.
fn assert_load_fails(archive: &[u8], needles: &[&str]) {
    let nook = Nook::new();
    nook.default_image();
    let before = nook.snapshot();
    let err = nook.fails_with_input(&["load"], archive);
    for needle in needles {
        assert!(err.contains(needle), "missing {needle:?} in: {err}");
    }
    assert_eq!(
        nook.snapshot(),
        before,
        "a failed load must not change the store"
    );
    let tmp: Vec<_> = std::fs::read_dir(nook.root().join("tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty(), "staging files left behind: {tmp:?}");
    assert!(nook.ok(&["images"]).contains("busybox"));
}

#[test]
fn save_then_load_keeps_digests_tags_and_ids() {
    let src = Nook::new();
    src.default_image();
    src.ok_with_input(
        &["import", "-", "localhost:5000/app:v1"],
        &zstd(&rootfs_tar("app")),
    );
    src.ok(&["tag", "busybox", "busybox:second"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("images.tar");
    src.ok(&[
        "save",
        "-o",
        out.to_str().unwrap(),
        "busybox:latest",
        "busybox:second",
        "localhost:5000/app:v1",
    ]);

    let dst = Nook::new();
    let loaded = dst.ok(&["load", "-i", out.to_str().unwrap()]);
    assert_eq!(
        loaded,
        "Loaded image: busybox:latest\nLoaded image: busybox:second\nLoaded image: localhost:5000/app:v1\n"
    );
    for tag in ["busybox:latest", "busybox:second", "localhost:5000/app:v1"] {
        let (a, b) = (src.inspect(tag), dst.inspect(tag));
        assert_eq!(a["Id"], b["Id"], "{tag}");
        assert_eq!(a["Manifest"], b["Manifest"], "{tag}");
        assert_eq!(a["Layers"], b["Layers"], "{tag}");
    }
    // Saving to stdout gives the same archive.
    let piped = src.cmd(["save", "busybox:latest"]).output().unwrap();
    assert!(piped.status.success());
    let again = Nook::new();
    let loaded = again.ok_with_input(&["load"], &piped.stdout);
    assert_eq!(loaded, "Loaded image: busybox:latest\n");
    // Loading over a tag that names another image moves the tag, saying so like docker.
    let moved = Nook::new();
    moved.ok_with_input(&["import", "-", "busybox"], &rootfs_tar("older"));
    let old_id = moved.inspect("busybox")["Id"].as_str().unwrap().to_string();
    let report = moved.ok_with_input(&["load"], &piped.stdout);
    assert_eq!(
        report,
        format!(
            "The image busybox:latest already exists, renaming the old one with ID {old_id} to empty string\nLoaded image: busybox:latest\n"
        )
    );
    assert!(moved.ok(&["images"]).contains("<none>"));
    // Loading twice is harmless.
    dst.ok(&["load", "-q", "-i", out.to_str().unwrap()]);
    assert_eq!(dst.ok(&["images", "-q"]).lines().count(), 2);
}

#[test]
fn docker_manifest_json_archives_load_with_several_images() {
    let src = Nook::new();
    src.default_image();
    src.ok_with_input(&["import", "-", "second:v2"], &rootfs_tar("two"));
    let saved = src.cmd(["save", "busybox", "second:v2"]).output().unwrap();
    assert!(saved.status.success());
    // Drop the OCI index: what remains is a docker archive (manifest.json + files).
    let mut files = Vec::new();
    let mut archive = tar::Archive::new(&saved.stdout[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path == "index.json" || path == "oci-layout" || path.ends_with('/') {
            continue;
        }
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        files.push((path, data));
    }
    let docker = archive_of(files);
    let dst = Nook::new();
    let out = dst.ok_with_input(&["load"], &gzip(&docker));
    assert_eq!(
        out,
        "Loaded image: busybox:latest\nLoaded image: second:v2\n"
    );
    assert_eq!(dst.inspect("busybox")["Id"], src.inspect("busybox")["Id"]);
    assert_eq!(
        dst.inspect("second:v2")["Id"],
        src.inspect("second:v2")["Id"]
    );
}

#[test]
fn a_hand_made_oci_archive_loads() {
    let parts = OciParts::new("hand:made");
    let nook = Nook::new();
    assert_eq!(
        nook.ok_with_input(&["load"], &parts.archive()),
        "Loaded image: hand:made\n"
    );
    let info = nook.inspect("hand:made");
    assert_eq!(info["RootFS"]["Layers"][0], parts.diff_id);
    assert_eq!(info["Config"]["Cmd"], json!(["sh"]));
}

#[test]
fn load_refuses_a_blob_that_does_not_match_its_digest() {
    let parts = OciParts::new("bad:digest");
    let mut files = parts.files();
    // Same name, other bytes.
    files[4].1 = gzip(&rootfs_tar("tampered"));
    assert_load_fails(
        &archive_of(files),
        &["does not match its digest", "layer 1", "bad:digest"],
    );
}

#[test]
fn load_refuses_an_unknown_layer_media_type() {
    let mut parts = OciParts::new("bad:media");
    parts.layer_media = "application/x-made-up".into();
    assert_load_fails(
        &parts.archive(),
        &[
            "unknown layer media type",
            "application/x-made-up",
            "layer 1",
            "bad:media",
        ],
    );
}

#[test]
fn load_refuses_truncated_or_corrupt_compressed_layers() {
    let tar = rootfs_tar("some content that compresses");
    let mut parts = OciParts::new("bad:gzip");
    let gz = gzip(&tar);
    parts.layer = gz[..gz.len() - 10].to_vec();
    assert_load_fails(
        &parts.archive(),
        &["cannot be decompressed", "layer 1", "bad:gzip"],
    );

    let mut parts = OciParts::new("bad:zstd");
    let z = zstd(&tar);
    parts.layer = z[..z.len() / 2].to_vec();
    parts.layer_media = "application/vnd.oci.image.layer.v1.tar+zstd".into();
    assert_load_fails(&parts.archive(), &["layer 1", "bad:zstd"]);

    // Valid compression, wrong content for the config's diff id.
    let mut parts = OciParts::new("bad:diffid");
    parts.diff_id = sha256(b"something else");
    assert_load_fails(&parts.archive(), &["diff id", "layer 1", "bad:diffid"]);
}

#[test]
fn load_refuses_malformed_index_and_manifest_json() {
    let parts = OciParts::new("bad:index");
    let mut files = parts.files();
    files[1].1 = b"{\"schemaVersion\": 2, \"manifests\": [".to_vec();
    assert_load_fails(&archive_of(files), &["index.json is malformed"]);

    let docker = tar_of(&[("manifest.json", b"[{\"Config\": 3}]".to_vec())]);
    assert_load_fails(&docker, &["manifest.json is malformed"]);

    let parts = OciParts::new("bad:manifest");
    let mut files = parts.files();
    let garbage = b"not json".to_vec();
    // Point the index at a garbage manifest blob (its digest is right, its content is not JSON).
    files[1].1 = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json",
         "digest": sha256(&garbage), "size": garbage.len(),
         "annotations": {"org.opencontainers.image.ref.name": "bad:manifest"}}]}))
    .unwrap();
    files.push((format!("blobs/sha256/{}", hex(&sha256(&garbage))), garbage));
    assert_load_fails(
        &archive_of(files),
        &["manifest", "bad:manifest", "malformed"],
    );
}

#[test]
fn load_refuses_missing_blobs_unsafe_paths_and_non_archives() {
    let parts = OciParts::new("bad:missing");
    let mut files = parts.files();
    let config_name = files[3].0.clone();
    files.remove(3);
    assert_load_fails(
        &archive_of(files),
        &[
            &config_name,
            "is missing",
            "the config of image bad:missing",
        ],
    );

    let evil = {
        let mut data = Vec::new();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        // tar::Builder refuses "..", so write the name bytes directly.
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        data.extend_from_slice(h.as_bytes());
        data.extend_from_slice(&[b'x'; 512]);
        data.extend_from_slice(&[0; 1024]);
        data
    };
    assert_load_fails(&evil, &["../escape", "unsafe path"]);
    assert_load_fails(
        &tar_of(&[("hello.txt", b"hi".to_vec())]),
        &["neither an OCI layout"],
    );
    assert_load_fails(
        b"this is not a tar archive at all, not even close",
        &["cannot read the archive"],
    );
    let truncated = OciParts::new("cut:short").archive();
    assert_load_fails(&gzip(&truncated)[..300], &["cannot read the archive"]);
}
