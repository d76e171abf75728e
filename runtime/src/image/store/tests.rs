//! Unit tests of the image store.

use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("root")).unwrap();
    (dir, store)
}

fn fake_image(store: &Store, seed: &str) -> (Digest, u64) {
    let _lock = store.lock_store(LockMode::Shared).unwrap();
    let layer = store.put_blob(seed.as_bytes()).unwrap();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer}"]}}}}"#
    );
    let config_digest = store.put_blob(config.as_bytes()).unwrap();
    let config_desc = Descriptor::new(
        MediaType::ImageConfig,
        config.len() as u64,
        oci_spec::image::Digest::from(&config_digest),
    );
    let layer_desc = Descriptor::new(
        MediaType::ImageLayer,
        seed.len() as u64,
        oci_spec::image::Digest::from(&layer),
    );
    store.put_manifest(&config_desc, vec![layer_desc]).unwrap()
}

#[test]
fn open_creates_a_valid_empty_layout() {
    let (_d, store) = store();
    let layout: serde_json::Value =
        serde_json::from_slice(&fs::read(store.root().join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    assert!(store.read_index().unwrap().manifests().is_empty());
    assert!(store.images().unwrap().is_empty());
    // Reopening keeps it.
    Store::open(store.root()).unwrap();
}

#[test]
fn tags_move_and_orphans_stay_untagged() {
    let (_d, store) = store();
    let (a, a_size) = fake_image(&store, "a");
    let (b, b_size) = fake_image(&store, "b");
    let latest = Reference::parse("busybox").unwrap();
    let v1 = Reference::parse("busybox:v1").unwrap();
    store
        .set_tags(&a, a_size, &[latest.clone(), v1.clone()])
        .unwrap();
    let image = store.resolve("busybox").unwrap();
    assert_eq!(image.manifest_digest, a);
    assert_eq!(image.tags, vec![latest.clone(), v1.clone()]);
    // Moving `latest` to b leaves a with v1 only.
    store
        .set_tags(&b, b_size, std::slice::from_ref(&latest))
        .unwrap();
    assert_eq!(store.resolve("busybox:latest").unwrap().manifest_digest, b);
    assert_eq!(store.resolve("busybox:v1").unwrap().manifest_digest, a);
    // Moving v1 too leaves a untagged but present.
    store
        .set_tags(&b, b_size, std::slice::from_ref(&v1))
        .unwrap();
    let images = store.images().unwrap();
    assert_eq!(images.len(), 2);
    let a_image = images.iter().find(|i| i.manifest_digest == a).unwrap();
    assert!(a_image.tags.is_empty());
    // Resolvable by id prefix and full id.
    let id = a_image.config_digest.clone();
    assert_eq!(store.resolve(&id.hex()[..8]).unwrap().manifest_digest, a);
    assert_eq!(store.resolve(&id.to_string()).unwrap().manifest_digest, a);
    // Prune drops it and its blobs, but keeps b's.
    assert_eq!(
        store.remove_dangling(&BTreeSet::from([a.clone()])).unwrap(),
        vec![]
    );
    assert_eq!(
        store.remove_dangling(&BTreeSet::new()).unwrap(),
        vec![a.clone()]
    );
    let report = store.gc().unwrap();
    assert_eq!(report.blobs.len(), 3, "manifest, config and layer of a");
    assert!(!store.has_blob(&a));
    assert!(store.has_blob(&b));
    assert_eq!(store.images().unwrap().len(), 1);
}

#[test]
fn untag_all_keeps_the_image_untagged() {
    let (_d, store) = store();
    let (a, s) = fake_image(&store, "a");
    let tags = [
        Reference::parse("x:1").unwrap(),
        Reference::parse("y:2").unwrap(),
    ];
    store.set_tags(&a, s, &tags).unwrap();
    let removed = store.untag_all(&a).unwrap();
    assert_eq!(removed, tags);
    let images = store.images().unwrap();
    assert_eq!(images.len(), 1);
    assert!(images[0].tags.is_empty());
}

#[test]
fn resolve_reports_missing_and_ambiguous() {
    let (_d, store) = store();
    let err = store.resolve("nothere").unwrap_err();
    assert_eq!(err.to_string(), "No such image: nothere:latest");
    let (a, s) = fake_image(&store, "x");
    store.set_tags(&a, s, &[]).unwrap();
    assert!(store.resolve("").is_err());
    let image = store.images().unwrap().remove(0);
    assert!(image.tags.is_empty());
    // By manifest digest too.
    assert_eq!(
        store
            .resolve(&format!("busybox@{a}"))
            .unwrap()
            .manifest_digest,
        a
    );
}

#[test]
fn blob_writer_rejects_a_wrong_digest_and_leaves_nothing() {
    let (_d, store) = store();
    let mut w = store.blob_writer().unwrap();
    w.write_all(b"data").unwrap();
    let wrong = Digest::of(b"other");
    assert!(matches!(
        w.commit(Some(&wrong)),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(fs::read_dir(store.blobs_dir()).unwrap().count(), 0);
    assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
}

#[test]
fn read_blob_detects_corruption() {
    let (_d, store) = store();
    let d = store.put_blob(b"hello").unwrap();
    fs::write(store.blob_path(&d), b"hellO").unwrap();
    let err = store.read_blob(&d).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let missing = Digest::of(b"nope");
    assert!(matches!(
        store.read_blob(&missing),
        Err(StoreError::MissingBlob { .. })
    ));
}

#[test]
fn index_entries_name_tags_both_ways() {
    let (_d, store) = store();
    let (a, s) = fake_image(&store, "a");
    let r = Reference::parse("localhost:5000/app:v2").unwrap();
    store.set_tags(&a, s, std::slice::from_ref(&r)).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(store.index_path()).unwrap()).unwrap();
    let ann = &index["manifests"][0]["annotations"];
    assert_eq!(ann[ANNOTATION_REF_NAME], "localhost:5000/app:v2");
    assert_eq!(ann[ANNOTATION_IMAGE_NAME], "localhost:5000/app:v2");
    assert_eq!(index["schemaVersion"], 2);
}

#[test]
fn gc_clears_only_image_writer_leftovers_in_tmp() {
    let (_d, store) = store();
    let tmp = store.tmp_dir();
    fs::write(tmp.join("blob-123"), b"partial").unwrap();
    fs::create_dir(tmp.join("load-123")).unwrap();
    fs::write(tmp.join("load-123/f1"), b"staged").unwrap();
    fs::write(tmp.join("write-fresh"), b"in flight").unwrap();
    // Other parts of nook: a container mount point and a commit in progress.
    fs::create_dir(tmp.join("mnt-abc")).unwrap();
    fs::write(tmp.join("mnt-abc/file"), b"keep").unwrap();
    fs::write(tmp.join("commit-1"), b"keep").unwrap();
    store.gc().unwrap();
    let mut left: Vec<String> = fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["commit-1", "mnt-abc", "write-fresh"]);
    assert!(tmp.join("mnt-abc/file").exists());
}

#[test]
fn malformed_index_is_named() {
    let (_d, store) = store();
    fs::write(store.index_path(), b"{not json").unwrap();
    let err = store.images().unwrap_err();
    assert!(err.to_string().contains("index.json"), "{err}");
}

#[test]
fn index_entries_carry_the_manifests_own_media_type() {
    let (_d, store) = store();
    let (oci, oci_size) = fake_image(&store, "oci");
    // A docker schema 2 manifest, as a registry serves it, for the same config and layer.
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.read_blob(&oci).unwrap()).unwrap();
    let mut docker = manifest.clone();
    docker["mediaType"] = super::super::layer::DOCKER_MANIFEST.into();
    let bytes = serde_json::to_vec(&docker).unwrap();
    let docker_digest = {
        let _lock = store.lock_store(LockMode::Shared).unwrap();
        store.put_blob(&bytes).unwrap()
    };
    let a = Reference::parse("oci:1").unwrap();
    let b = Reference::parse("docker:1").unwrap();
    store
        .set_tags(&oci, oci_size, std::slice::from_ref(&a))
        .unwrap();
    store
        .set_tags(&docker_digest, bytes.len() as u64, std::slice::from_ref(&b))
        .unwrap();
    let index = store.read_index().unwrap();
    let type_of = |d: &Digest| {
        let d: oci_spec::image::Digest = d.into();
        let e = index.manifests().iter().find(|e| e.digest() == &d).unwrap();
        e.media_type().to_string()
    };
    assert_eq!(type_of(&oci), OCI_MANIFEST);
    assert_eq!(
        type_of(&docker_digest),
        super::super::layer::DOCKER_MANIFEST
    );
    assert_eq!(store.images().unwrap().len(), 2);
}
