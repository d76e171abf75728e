//! Runs the `layer_to_erofs` fuzz body (runtime/fuzz/body.rs) over hostile seeds made here and
//! over the committed seed corpus, so the fuzz target's checks also run in plain `cargo test`.
//! Every image a seed produces must also pass fsck.erofs.

mod common;

#[path = "../fuzz/body.rs"]
mod body;

use std::fs;
use std::path::PathBuf;

use common::*;
use tar::EntryType;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/layer_to_erofs")
}

/// Small hostile and valid inputs, each one or more layers.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut v = Vec::new();
    let mut l = LayerBuilder::new();
    l.dir(b"./", &DEFAULT)
        .file(b"etc/passwd", b"root:x:0:0\n", &DEFAULT)
        .file(b"big", &[3u8; 9000], &DEFAULT)
        .symlink(b"bin", b"usr/bin", &DEFAULT)
        .hardlink(b"etc/passwd2", b"etc/passwd")
        .device(b"dev/null", EntryType::Char, 1, 3, &DEFAULT)
        .device(b"dev/fifo", EntryType::Fifo, 0, 0, &DEFAULT)
        .pax(&[("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02")])
        .file(b"cap", b"x", &DEFAULT);
    let base = l.finish();
    let mut l = LayerBuilder::new();
    l.whiteout(b"etc", b"passwd")
        .opaque(b"etc")
        .file(b"etc/new", b"n", &DEFAULT)
        .file(b"bin", b"now a file", &DEFAULT)
        .dir(b"big", &DEFAULT);
    let upper = l.finish();
    v.push(("valid-two-layers", body::join(&[base.clone(), upper])));
    v.push(("valid-one-layer", base.clone()));
    v.push((
        "dotdot",
        end(raw_entry(b"../x", EntryType::Regular, 1, b"", b"x")),
    ));
    v.push((
        "abs",
        end(raw_entry(b"/abs/x", EntryType::Regular, 1, b"", b"x")),
    ));
    v.push((
        "link-out",
        end(raw_entry(
            b"l",
            EntryType::Link,
            0,
            b"../../etc/shadow",
            b"",
        )),
    ));
    v.push((
        "link-missing",
        end(raw_entry(b"l", EntryType::Link, 0, b"nope", b"")),
    ));
    v.push((
        "huge-size",
        end(raw_entry(b"h", EntryType::Regular, 1 << 60, b"", b"")),
    ));
    let mut cut = raw_entry(b"cut", EntryType::Regular, 1 << 20, b"", &[1u8; 600]);
    cut.truncate(1000);
    v.push(("truncated", cut));
    let mut l0 = LayerBuilder::new();
    l0.symlink(b"etc", b"/etc", &DEFAULT);
    let mut l1 = LayerBuilder::new();
    l1.file(b"etc/passwd", b"x", &DEFAULT);
    v.push(("through-symlink", body::join(&[l0.finish(), l1.finish()])));
    v.push(("garbage", b"this is not a tar archive at all".repeat(20)));
    v.push(("empty", Vec::new()));
    let mut half = base.clone();
    half.truncate(base.len() / 2);
    v.push(("half-archive", half));
    v
}

#[test]
fn fuzz_body_survives_the_seeds_and_every_image_passes_fsck() {
    let mut inputs = seeds();
    let mut on_disk = 0;
    for e in fs::read_dir(corpus_dir()).expect("the seed corpus directory exists") {
        let path = e.unwrap().path();
        inputs.push(("corpus file", fs::read(&path).unwrap()));
        on_disk += 1;
    }
    assert!(
        on_disk >= 10,
        "the committed seed corpus has {on_disk} files"
    );
    let mut built = 0;
    for (name, data) in &inputs {
        if let Some((image, _)) = body::run(data) {
            eprintln!("seed {name}: built an image");
            fsck(image.path());
            built += 1;
        }
    }
    assert!(built >= 3, "some seeds are valid images ({built} built)");
}

/// Writes the in-code seeds into the corpus directory (run once; the files are committed).
#[test]
#[ignore = "regenerates runtime/fuzz/corpus; run by hand"]
fn write_seed_corpus() {
    fs::create_dir_all(corpus_dir()).unwrap();
    for (name, data) in seeds() {
        fs::write(corpus_dir().join(name), data).unwrap();
    }
}
