//! Builds an EROFS image from plain (decompressed) tar layers, lowest first:
//! `build_erofs OUT.erofs LAYER.tar...` (`-` reads a layer from stdin).
//! Used by tests/bench/erofs.sh and the fixture checks.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};

use anyhow::{bail, Context, Result};
use nook::layers::erofs::{build_erofs, Layer};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, layers)) = args.split_first() else {
        bail!("usage: build_erofs OUT.erofs LAYER.tar...");
    };
    let mut inputs = Vec::new();
    for path in layers {
        let tar: Box<dyn Read> = if path == "-" {
            Box::new(BufReader::with_capacity(1 << 20, io::stdin()))
        } else {
            let f = File::open(path).with_context(|| format!("cannot open layer {path}"))?;
            Box::new(BufReader::with_capacity(1 << 20, f))
        };
        inputs.push(Layer {
            name: path.clone(),
            tar,
        });
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .with_context(|| format!("cannot create {out}"))?;
    let stats = build_erofs(inputs, &file).with_context(|| format!("cannot build {out}"))?;
    println!(
        "{out}: {} inodes, {} bytes, {} bytes unreferenced",
        stats.inodes, stats.bytes, stats.unreferenced_bytes
    );
    Ok(())
}
