//! Unit tests of archive staging: paths, links, docker archives with shared layers, and the
//! platform an OCI archive's nested index gives.

use super::*;
use crate::image::layer::{OCI_CONFIG, OCI_MANIFEST};
use crate::image::platform::Platform;
use crate::image::store::Store;

#[test]
fn normalize_accepts_relative_and_refuses_escapes() {
    assert_eq!(
        normalize("a", "./blobs/sha256/x").unwrap(),
        "blobs/sha256/x"
    );
    assert_eq!(normalize("a", "dir//file").unwrap(), "dir/file");
    for bad in ["/etc/passwd", "../x", "a/../../x", "a/.."] {
        let err = normalize("arch.tar", bad).unwrap_err().to_string();
        assert!(err.contains("arch.tar") && err.contains(bad), "{err}");
    }
}

#[test]
fn symlinks_resolve_inside_the_archive_only() {
    assert_eq!(
        resolve_symlink("b/layer.tar", "../a/layer.tar").as_deref(),
        Some("a/layer.tar")
    );
    assert_eq!(
        resolve_symlink("b/layer.tar", "./x").as_deref(),
        Some("b/x")
    );
    assert_eq!(resolve_symlink("b/layer.tar", "../../x"), None);
    assert_eq!(resolve_symlink("layer.tar", "/etc/passwd"), None);
}

#[test]
fn claimed_digests_come_from_file_names() {
    let hex = "a".repeat(64);
    assert_eq!(claimed_digest(&format!("{hex}.json")).unwrap().hex(), hex);
    assert_eq!(
        claimed_digest(&format!("blobs/sha256/{hex}"))
            .unwrap()
            .hex(),
        hex
    );
    assert!(claimed_digest("config.json").is_none());
}

fn tar_entry(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, path, data).unwrap();
}

/// The legacy docker layout: `<id>/layer.tar` per layer, a repeated layer as a symlink.
#[test]
fn legacy_docker_archive_with_a_symlinked_layer_loads() {
    let mut layer = tar::Builder::new(Vec::new());
    tar_entry(&mut layer, "file", b"content");
    let layer = layer.into_inner().unwrap();
    let diff = Digest::of(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff}","{diff}"]}}}}"#
    );
    let config_name = format!("{}.json", Digest::of(config.as_bytes()).hex());
    let manifest = format!(
        r#"[{{"Config":"{config_name}","RepoTags":["legacy:1"],"Layers":["a/layer.tar","b/layer.tar"]}}]"#
    );
    let mut b = tar::Builder::new(Vec::new());
    tar_entry(&mut b, "manifest.json", manifest.as_bytes());
    tar_entry(&mut b, &config_name, config.as_bytes());
    tar_entry(&mut b, "a/layer.tar", &layer);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "b/layer.tar", "../a/layer.tar")
        .unwrap();
    let archive = b.into_inner().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let loaded = load(&store, &archive[..], "legacy.tar").unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].tags[0].familiar(), "legacy:1");
    let image = &loaded[0].image;
    assert_eq!(image.layer_digests().unwrap(), vec![diff.clone(), diff]);
    assert_eq!(image.config_digest, Digest::of(config.as_bytes()));
}

#[test]
fn docker_config_named_with_a_wrong_digest_is_refused() {
    let config =
        r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let wrong = format!("{}.json", "b".repeat(64));
    let manifest = format!(r#"[{{"Config":"{wrong}","RepoTags":["x:1"],"Layers":[]}}]"#);
    let mut b = tar::Builder::new(Vec::new());
    tar_entry(&mut b, "manifest.json", manifest.as_bytes());
    tar_entry(&mut b, &wrong, config.as_bytes());
    let archive = b.into_inner().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = load(&store, &archive[..], "x.tar").unwrap_err().to_string();
    assert!(
        err.contains("does not match its digest") && err.contains("x:1"),
        "{err}"
    );
    assert!(store.images().unwrap().is_empty());
}

/// An OCI archive whose index.json names one nested index of `(platform, os label)` images;
/// each image is an empty config whose `os` field is the label, so the chosen one shows.
fn oci_archive_with_nested_index(images: &[(Option<serde_json::Value>, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let blob = |b: &mut tar::Builder<Vec<u8>>, data: &[u8]| {
        let digest = Digest::of(data);
        tar_entry(b, &format!("blobs/sha256/{}", digest.hex()), data);
        serde_json::json!({"size": data.len(), "digest": digest.to_string()})
    };
    let mut entries = Vec::new();
    for (platform, label) in images {
        let config = format!(
            r#"{{"architecture":"amd64","os":"{label}","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        );
        let mut config_desc = blob(&mut b, config.as_bytes());
        config_desc["mediaType"] = OCI_CONFIG.into();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": [],
        });
        let mut desc = blob(&mut b, manifest.to_string().as_bytes());
        desc["mediaType"] = OCI_MANIFEST.into();
        if let Some(p) = platform {
            desc["platform"] = p.clone();
        }
        entries.push(desc);
    }
    let nested =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    let mut nested_desc = blob(&mut b, nested.to_string().as_bytes());
    nested_desc["mediaType"] = OCI_INDEX.into();
    nested_desc["annotations"] =
        serde_json::json!({"io.containerd.image.name": "docker.io/library/multi:1"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [nested_desc]});
    tar_entry(&mut b, "index.json", index.to_string().as_bytes());
    tar_entry(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    b.into_inner().unwrap()
}

#[test]
fn a_nested_index_gives_the_host_platform_else_its_unlabeled_image() {
    let host = Platform::host();
    let host_json = serde_json::json!({"os": "linux", "architecture": host.architecture});
    let other = serde_json::json!({"os": "linux", "architecture": "nosucharch"});
    let config_os = |archive: &[u8]| {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        load(&store, archive, "multi.tar").map(|loaded| {
            let config = store.read_blob(&loaded[0].image.config_digest).unwrap();
            let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
            config["os"].as_str().unwrap().to_string()
        })
    };
    let both = oci_archive_with_nested_index(&[
        (None, "unlabeled"),
        (Some(other.clone()), "other"),
        (Some(host_json), "host"),
    ]);
    assert_eq!(config_os(&both).unwrap(), "host");
    let fallback =
        oci_archive_with_nested_index(&[(Some(other.clone()), "other"), (None, "unlabeled")]);
    assert_eq!(config_os(&fallback).unwrap(), "unlabeled");
    let none = oci_archive_with_nested_index(&[(Some(other), "other")]);
    let err = config_os(&none).unwrap_err().to_string();
    assert!(
        err.contains(&format!("has no manifest for {host}")),
        "{err}"
    );
}
