//! Unit tests of archive staging: paths, links, and docker archives with shared layers.

use super::*;
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
