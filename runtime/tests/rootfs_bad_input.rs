//! Hostile and broken layers: each must give a typed error naming the layer and the entry, never
//! a panic, and nothing may be written outside the output file.

mod common;

use std::fs;
use std::io::{Cursor, Read};

use common::*;
use nook::layers::erofs::{build_erofs, Layer, RootfsError};
use tar::EntryType;

/// Builds from `layers` in a fresh directory; returns the error, after checking that the
/// directory holds nothing but the output file.
fn build_err(layers: Vec<Vec<u8>>) -> RootfsError {
    let dir = tempfile::tempdir().unwrap();
    let out = create(&dir.path().join("out.erofs"));
    let inputs = layers
        .into_iter()
        .enumerate()
        .map(|(i, l)| Layer {
            name: format!("sha256:layer{i}"),
            tar: Box::new(Cursor::new(l)) as Box<dyn Read>,
        })
        .collect();
    let err = build_erofs(inputs, &out).expect_err("the layers are bad");
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec!["out.erofs"],
        "nothing is written beside the image"
    );
    err
}

fn assert_names(err: &RootfsError, layer: &str, entry: &str) {
    let msg = err.to_string();
    assert!(msg.contains(layer), "error names the layer {layer}: {msg}");
    assert!(msg.contains(entry), "error names the entry {entry}: {msg}");
}

#[test]
fn dotdot_is_refused() {
    let err = build_err(vec![end(raw_entry(
        b"a/../../etc/evil",
        EntryType::Regular,
        1,
        b"",
        b"x",
    ))]);
    assert!(matches!(err, RootfsError::BadPath { .. }), "{err:?}");
    assert_names(&err, "sha256:layer0", "a/../../etc/evil");
}

#[test]
fn absolute_paths_are_made_relative() {
    let work = tempfile::tempdir().unwrap();
    let layer = end(raw_entry(b"/etc/abs", EntryType::Regular, 3, b"", b"abs"));
    let (image, _, _) = build_image(work.path(), &[layer]);
    fsck(&image);
    let snap = snapshot_erofs_rs(&image);
    assert_eq!(snap[&b"etc/abs"[..]].size, 3);
}

#[test]
fn a_path_through_a_symlink_is_refused() {
    let mut l0 = LayerBuilder::new();
    l0.symlink(b"etc", b"/host/etc", &DEFAULT);
    let mut l1 = LayerBuilder::new();
    l1.file(b"etc/passwd", b"x", &DEFAULT);
    let err = build_err(vec![l0.finish(), l1.finish()]);
    assert!(matches!(err, RootfsError::ThroughSymlink { .. }), "{err:?}");
    assert_names(&err, "sha256:layer1", "etc/passwd");
}

#[test]
fn a_whiteout_through_a_symlink_is_refused() {
    let mut l0 = LayerBuilder::new();
    l0.symlink(b"d", b"/", &DEFAULT);
    let mut l1 = LayerBuilder::new();
    l1.whiteout(b"d", b"etc");
    let err = build_err(vec![l0.finish(), l1.finish()]);
    assert!(matches!(err, RootfsError::ThroughSymlink { .. }), "{err:?}");
}

#[test]
fn hard_links_outside_or_to_nothing_are_refused() {
    let outside = end(raw_entry(
        b"evil",
        EntryType::Link,
        0,
        b"../../etc/shadow",
        b"",
    ));
    let err = build_err(vec![outside]);
    assert!(matches!(err, RootfsError::BadHardLink { .. }), "{err:?}");
    assert_names(&err, "sha256:layer0", "evil");
    assert!(err.to_string().contains("../../etc/shadow"));

    let mut l = LayerBuilder::new();
    l.hardlink(b"link", b"missing");
    let err = build_err(vec![l.finish()]);
    assert!(err.to_string().contains("does not exist"), "{err}");

    let mut l = LayerBuilder::new();
    l.dir(b"d", &DEFAULT).hardlink(b"link", b"d");
    let err = build_err(vec![l.finish()]);
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[test]
fn absurd_sizes_are_refused() {
    let err = build_err(vec![end(raw_entry(
        b"huge",
        EntryType::Regular,
        1 << 60,
        b"",
        b"",
    ))]);
    assert!(
        matches!(err, RootfsError::OutOfRange { field: "size", .. }),
        "{err:?}"
    );
    assert_names(&err, "sha256:layer0", "huge");
}

#[test]
fn truncated_streams_are_reported() {
    // The data stops 1000 bytes into a 1 MiB file.
    let mut t = raw_entry(b"cut", EntryType::Regular, 1 << 20, b"", &[1u8; 1000]);
    t.truncate(512 + 1000);
    let err = build_err(vec![t]);
    assert!(matches!(err, RootfsError::Truncated { .. }), "{err:?}");
    assert_names(&err, "sha256:layer0", "cut");

    // The stream stops inside the second header.
    let mut t = raw_entry(b"first", EntryType::Regular, 1, b"", b"1");
    t.extend_from_slice(&raw_entry(b"second", EntryType::Regular, 1, b"", b"2")[..100]);
    let err = build_err(vec![t]);
    assert!(matches!(err, RootfsError::ReadTar { .. }), "{err:?}");
    assert_names(&err, "sha256:layer0", "first");
}

#[test]
fn corrupt_headers_are_reported() {
    let mut t = raw_entry(b"ok", EntryType::Regular, 1, b"", b"1");
    let mut bad = raw_entry(b"bad", EntryType::Regular, 1, b"", b"2");
    bad[0] = b'B'; // the checksum no longer matches
    t.extend_from_slice(&bad);
    let err = build_err(vec![end(t)]);
    assert!(matches!(err, RootfsError::ReadTar { .. }), "{err:?}");
    assert!(err.to_string().contains("after ok"), "{err}");
}

#[test]
fn odd_entries_are_refused() {
    let err = build_err(vec![end(raw_entry(
        b"vol",
        EntryType::new(b'V'),
        0,
        b"",
        b"",
    ))]);
    assert!(
        matches!(err, RootfsError::UnsupportedType { .. }),
        "{err:?}"
    );
    assert_names(&err, "sha256:layer0", "vol");

    let err = build_err(vec![end(raw_entry(b"./", EntryType::Regular, 0, b"", b""))]);
    assert!(err.to_string().contains("root"), "{err}");

    let mut l = LayerBuilder::new();
    l.pax(&[("SCHILY.xattr.weird.ns", b"v")])
        .file(b"x", b"", &DEFAULT);
    let err = build_err(vec![l.finish()]);
    assert!(matches!(err, RootfsError::BadXattr { .. }), "{err:?}");
    assert_names(&err, "sha256:layer0", "weird.ns");

    let mut l = LayerBuilder::new();
    l.file(b"f", b"", &DEFAULT)
        .file(b"f/under-a-file", b"", &DEFAULT);
    let err = build_err(vec![l.finish()]);
    assert!(matches!(err, RootfsError::NotADirectory { .. }), "{err:?}");
}

/// A decompressor that fails part way, as a corrupt gzip or zstd stream does.
struct FailsAfter {
    data: Cursor<Vec<u8>>,
    left: usize,
}

impl Read for FailsAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "corrupt deflate stream",
            ));
        }
        let n = buf.len().min(self.left);
        let n = self.data.read(&mut buf[..n])?;
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn a_failing_decompressor_is_reported_with_its_layer_and_entry() {
    let mut l = LayerBuilder::new();
    l.file(b"first", b"1", &DEFAULT)
        .file(b"second", &[2u8; 100_000], &DEFAULT);
    let dir = tempfile::tempdir().unwrap();
    let out = create(&dir.path().join("out.erofs"));
    let layer = Layer {
        name: "sha256:corrupt".into(),
        tar: Box::new(FailsAfter {
            data: Cursor::new(l.finish()),
            left: 50_000,
        }),
    };
    let err = build_erofs(vec![layer], &out).expect_err("the stream fails");
    assert!(matches!(err, RootfsError::ReadTar { .. }), "{err:?}");
    assert_names(&err, "sha256:corrupt", "second");
    let chain = std::error::Error::source(&err).map(|s| s.to_string());
    assert_eq!(chain.as_deref(), Some("corrupt deflate stream"));
}
