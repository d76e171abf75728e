//! The body of the `layer_to_erofs` fuzz target, shared with `runtime/tests/rootfs_fuzz_corpus.rs`,
//! which runs it over the seed corpus in plain `cargo test`.
//!
//! An input is one or more tar layers joined by [`LAYER_SEPARATOR`]. The build must either fail
//! with an error that names its layer, or produce an image that the independent erofs-rs reader
//! walks completely: every directory, file, symlink and xattr set.

use std::io::{Cursor, Read};

use nook::layers::erofs::{build_erofs, BuildStats, Layer, RootfsError};

/// Separates the layers of one fuzz input.
pub const LAYER_SEPARATOR: &[u8] = b"\n--nook-layer--\n";
const MAX_LAYERS: usize = 8;

fn split(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while out.len() + 1 < MAX_LAYERS {
        match data
            .windows(LAYER_SEPARATOR.len())
            .position(|w| w == LAYER_SEPARATOR)
        {
            Some(i) => {
                out.push(&data[..i]);
                data = &data[i + LAYER_SEPARATOR.len()..];
            }
            None => break,
        }
    }
    out.push(data);
    out
}

/// Joins layers into one fuzz input (used by the corpus test, not the fuzz target).
#[allow(dead_code)]
pub fn join(layers: &[Vec<u8>]) -> Vec<u8> {
    layers.join(LAYER_SEPARATOR)
}

/// Builds an image from `data`; returns it when the build succeeded.
pub fn run(data: &[u8]) -> Option<(tempfile::NamedTempFile, BuildStats)> {
    let layers: Vec<Layer<'_>> = split(data)
        .into_iter()
        .enumerate()
        .map(|(i, l)| Layer {
            name: format!("fuzz-layer-{i}"),
            tar: Box::new(Cursor::new(l)) as Box<dyn Read>,
        })
        .collect();
    let image = tempfile::NamedTempFile::new().expect("temp file");
    match build_erofs(layers, image.as_file()) {
        Ok(stats) => {
            verify(&image, &stats);
            Some((image, stats))
        }
        Err(e) => {
            let msg = e.to_string();
            match e {
                RootfsError::WriteMetadata { .. } | RootfsError::ImageTooLarge => {}
                _ => assert!(msg.contains("fuzz-layer-"), "error names no layer: {msg}"),
            }
            None
        }
    }
}

fn verify(image: &tempfile::NamedTempFile, stats: &BuildStats) {
    let data = std::fs::read(image.path()).expect("read the image back");
    assert_eq!(data.len() as u64, stats.bytes, "reported size");
    let fs = erofs_rs::EroFS::new(erofs_rs::backend::SliceImage::new(&data))
        .expect("erofs-rs opens every image we write");
    let mut seen = 1u64;
    for entry in fs.walk_dir("/").expect("walk the root") {
        let entry = entry.expect("every directory entry reads back");
        let inode = entry.inode;
        fs.xattrs_inode(inode).expect("xattrs read back");
        if inode.is_file() {
            let mut f = fs.open_inode_file(inode).expect("open file");
            let mut sink = Vec::new();
            f.read_to_end(&mut sink).expect("file data reads back");
            assert_eq!(sink.len() as u64, inode.data_size());
        } else if inode.is_symlink() {
            fs.read_link_inode(inode)
                .expect("symlink target reads back");
        }
        seen += 1;
    }
    assert!(seen <= stats.inodes + 1_000_000, "walk terminates");
}
