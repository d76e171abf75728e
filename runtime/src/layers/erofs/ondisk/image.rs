//! Writing the metadata of the merged tree once every layer has been streamed: directory blocks,
//! inodes with their inline xattrs and tails, and the superblock.

use std::collections::HashMap;
use std::io;

use super::format::{
    self, encode_dir_block, encode_xattrs, file_type, xattr_ibody_size, DataLayout, InodeFields,
    SuperBlock, BLOCK, COMPACT_INODE_SIZE, DIRENT_SIZE, EXTENDED_INODE_SIZE, INODE_SLOT,
};
use super::output::Output;
use crate::layers::erofs::tree::{Ino, Kind, Tree, ROOT};

/// How many block-end gaps of the metadata area are remembered for back-filling.
const GAPS_KEPT: usize = 64;

/// What [`write_image`] reports.
pub struct Written {
    pub inodes: u64,
    pub blocks: u64,
    /// Bytes of streamed file data no reachable inode refers to (whited out or overwritten).
    pub unreferenced_bytes: u64,
}

/// Where an inode's bytes go.
enum Body {
    /// No data (devices, fifos, empty files) or data already in whole blocks.
    Plain { blkaddr: u32 },
    /// Whole blocks (if any) at `blkaddr`, then `tail` bytes packed after the inode.
    Inline { blkaddr: u32, tail_len: usize },
}

struct Dir {
    /// Entries per directory block, "." and ".." included.
    per_block: Vec<usize>,
    size: u64,
}

struct Plan {
    ino: Ino,
    parent: Ino,
    nlink: u32,
    extended: bool,
    xattr_size: usize,
    body: Body,
    dir: Option<Dir>,
    /// Offset in the metadata area.
    offset: u64,
}

impl Plan {
    fn inode_size(&self) -> usize {
        if self.extended {
            EXTENDED_INODE_SIZE
        } else {
            COMPACT_INODE_SIZE
        }
    }

    fn tail_len(&self) -> usize {
        match self.body {
            Body::Inline { tail_len, .. } => tail_len,
            Body::Plain { .. } => 0,
        }
    }

    fn nid(&self) -> u64 {
        self.offset / INODE_SLOT
    }
}

fn ftype(kind: &Kind) -> u8 {
    match kind {
        Kind::File(_) => file_type::REG,
        Kind::Dir(_) => file_type::DIR,
        Kind::Symlink(_) => file_type::LNK,
        Kind::CharDev(_) => file_type::CHR,
        Kind::BlockDev(_) => file_type::BLK,
        Kind::Fifo => file_type::FIFO,
    }
}

/// A directory's entries in on-disk order, "." and ".." included.
fn dir_entries(tree: &Tree, ino: Ino, parent: Ino) -> Vec<(&[u8], Ino)> {
    let mut entries: Vec<(&[u8], Ino)> = tree.dir_entries(ino).collect();
    entries.push((b".", ino));
    entries.push((b"..", parent));
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

/// Packs directory entries into blocks: each block holds dirents then names, never split.
fn layout_dir(entries: &[(&[u8], Ino)]) -> Dir {
    let mut per_block = Vec::new();
    let (mut used, mut count) = (0usize, 0usize);
    for (name, _) in entries {
        let need = DIRENT_SIZE + name.len();
        if used + need > BLOCK as usize {
            per_block.push(count);
            used = 0;
            count = 0;
        }
        used += need;
        count += 1;
    }
    per_block.push(count);
    let size = (per_block.len() as u64 - 1) * BLOCK + used as u64;
    Dir { per_block, size }
}

fn size_of(tree: &Tree, plan: &Plan) -> u64 {
    match &tree.inode(plan.ino).kind {
        Kind::File(f) => f.size,
        Kind::Dir(_) => plan.dir.as_ref().map_or(0, |d| d.size),
        Kind::Symlink(t) => t.len() as u64,
        _ => 0,
    }
}

fn fields(tree: &Tree, plan: &Plan, ino_number: u32) -> InodeFields {
    let inode = tree.inode(plan.ino);
    let (layout, u) = match (&inode.kind, &plan.body) {
        (Kind::CharDev(rdev) | Kind::BlockDev(rdev), _) => (DataLayout::FlatPlain, *rdev),
        (_, Body::Plain { blkaddr }) => (DataLayout::FlatPlain, *blkaddr),
        (_, Body::Inline { blkaddr, .. }) => (DataLayout::FlatInline, *blkaddr),
    };
    InodeFields {
        layout,
        xattr_icount: format::xattr_icount(plan.xattr_size).unwrap_or(0),
        mode: inode.kind.format_bits() | inode.meta.perm,
        nlink: plan.nlink,
        size: size_of(tree, plan),
        u,
        ino: ino_number,
        uid: inode.meta.uid,
        gid: inode.meta.gid,
        mtime: inode.meta.mtime,
        mtime_nsec: inode.meta.mtime_nsec,
    }
}

fn too_large() -> io::Error {
    io::Error::other("the image exceeds 2^32 blocks")
}

fn blkaddr(block: u64) -> io::Result<u32> {
    u32::try_from(block).map_err(|_| too_large())
}

/// Lays out and writes everything but file data, then the superblock.
pub fn write_image(tree: &Tree, out: &mut Output<'_>) -> io::Result<Written> {
    out.pad_to(BLOCK)?;
    let data_end = out.pos();

    // Reachable inodes in breadth-first order, root first; hard links counted.
    let mut index: HashMap<Ino, usize> = HashMap::new();
    let mut plans: Vec<Plan> = Vec::new();
    let new_plan = |ino: Ino, parent: Ino| Plan {
        ino,
        parent,
        nlink: 0,
        extended: false,
        xattr_size: 0,
        body: Body::Plain { blkaddr: 0 },
        dir: None,
        offset: 0,
    };
    index.insert(ROOT, 0);
    plans.push(new_plan(ROOT, ROOT));
    let mut next = 0;
    while next < plans.len() {
        let dir = plans[next].ino;
        next += 1;
        if !tree.inode(dir).kind.is_dir() {
            continue;
        }
        for (_, child) in tree.dir_entries(dir) {
            let i = *index.entry(child).or_insert_with(|| {
                plans.push(new_plan(child, dir));
                plans.len() - 1
            });
            plans[i].nlink += 1;
        }
    }

    // Directory link counts: "." plus the entry in the parent plus each subdirectory's "..".
    for p in plans.iter_mut() {
        if tree.inode(p.ino).kind.is_dir() {
            let subdirs = tree
                .dir_entries(p.ino)
                .filter(|(_, c)| tree.inode(*c).kind.is_dir())
                .count();
            p.nlink = 2 + subdirs as u32;
        }
    }

    // The most common mtime becomes the build time, so those inodes can be compact.
    let mut times: HashMap<(i64, u32), usize> = HashMap::new();
    for p in &plans {
        let m = &tree.inode(p.ino).meta;
        *times.entry((m.mtime, m.mtime_nsec)).or_default() += 1;
    }
    let (build_time, build_nsec) = times
        .into_iter()
        .max_by_key(|(t, n)| (*n, std::cmp::Reverse(*t)))
        .map_or((0, 0), |(t, _)| t);

    // Data layout of every inode; directories and long symlinks get blocks after the file data.
    let mut late_blocks: u64 = 0;
    let mut referenced: u64 = 0;
    for p in plans.iter_mut() {
        let inode = tree.inode(p.ino);
        p.xattr_size = xattr_ibody_size(
            inode
                .meta
                .xattrs
                .iter()
                .map(|x| (&x.suffix[..], &x.value[..])),
        );
        p.extended = true;
        let max_inline = (BLOCK as usize).saturating_sub(EXTENDED_INODE_SIZE + p.xattr_size);
        p.body = match &inode.kind {
            Kind::File(f) => {
                referenced +=
                    f.size.next_multiple_of(BLOCK) - f.inline_tail.as_ref().map_or(0, |_| BLOCK);
                match &f.inline_tail {
                    Some(t) => Body::Inline {
                        blkaddr: f.blkaddr,
                        tail_len: t.len(),
                    },
                    None => Body::Plain { blkaddr: f.blkaddr },
                }
            }
            Kind::Dir(_) => {
                let d = layout_dir(&dir_entries(tree, p.ino, p.parent));
                let tail = (d.size % BLOCK) as usize;
                let start = blkaddr(data_end / BLOCK + late_blocks)?;
                let body = if tail != 0 && tail <= max_inline {
                    late_blocks += d.size / BLOCK;
                    Body::Inline {
                        blkaddr: start,
                        tail_len: tail,
                    }
                } else {
                    late_blocks += d.size.div_ceil(BLOCK);
                    Body::Plain { blkaddr: start }
                };
                p.dir = Some(d);
                body
            }
            Kind::Symlink(t) if t.len() <= max_inline => Body::Inline {
                blkaddr: 0,
                tail_len: t.len(),
            },
            Kind::Symlink(_) => {
                let start = blkaddr(data_end / BLOCK + late_blocks)?;
                late_blocks += 1;
                Body::Plain { blkaddr: start }
            }
            _ => Body::Plain { blkaddr: 0 },
        };
    }
    for p in plans.iter_mut() {
        let f = fields(tree, p, 0);
        p.extended = !f.fits_compact(build_time, build_nsec);
    }

    // Metadata area: each inode 32-byte aligned, never straddling a block when it fits in one,
    // so inline tails never cross a block boundary (the kernel refuses that). The space a
    // skipped block end leaves is remembered and back-filled by later, smaller inodes.
    let meta_start = data_end + late_blocks * BLOCK;
    let mut off: u64 = 0;
    let mut gaps: Vec<(u64, u64)> = Vec::new();
    for p in plans.iter_mut() {
        let need = (p.inode_size() + p.xattr_size + p.tail_len()) as u64;
        if let Some(i) = gaps.iter().position(|&(_, len)| len >= need) {
            let (at, len) = gaps[i];
            p.offset = at;
            let used = need.next_multiple_of(INODE_SLOT);
            if len > used {
                gaps[i] = (at + used, len - used);
            } else {
                gaps.swap_remove(i);
            }
            continue;
        }
        let in_block = off % BLOCK;
        if in_block + need > BLOCK && need <= BLOCK {
            let next = off.next_multiple_of(BLOCK);
            if next - off >= INODE_SLOT {
                gaps.push((off, next - off));
                // Searching stays cheap: old small gaps are given up.
                if gaps.len() > GAPS_KEPT {
                    gaps.sort_unstable_by_key(|g| std::cmp::Reverse(g.1));
                    gaps.truncate(GAPS_KEPT / 2);
                }
            }
            off = next;
        }
        p.offset = off;
        off = (off + need).next_multiple_of(INODE_SLOT);
    }
    if plans[0].nid() > u16::MAX as u64 {
        return Err(io::Error::other("root nid does not fit 16 bits"));
    }
    let nid_of: HashMap<Ino, u64> = plans.iter().map(|p| (p.ino, p.nid())).collect();

    // Late blocks: directories (whole blocks only when the tail is inline) and long symlinks.
    let mut buf = Vec::with_capacity(BLOCK as usize);
    for p in &plans {
        let inode = tree.inode(p.ino);
        match (&inode.kind, &p.body) {
            (Kind::Dir(_), body) => {
                let entries = dir_entries(tree, p.ino, p.parent);
                let dir = p.dir.as_ref().expect("directories have a layout");
                let full = match body {
                    Body::Inline { .. } => dir.per_block.len() - 1,
                    Body::Plain { .. } => dir.per_block.len(),
                };
                let mut at = 0;
                for &count in &dir.per_block[..full] {
                    buf.clear();
                    let block: Vec<(&[u8], u64, u8)> = entries[at..at + count]
                        .iter()
                        .map(|(n, c)| (*n, nid_of[c], ftype(&tree.inode(*c).kind)))
                        .collect();
                    encode_dir_block(&mut buf, &block);
                    buf.resize(BLOCK as usize, 0);
                    out.write(&buf)?;
                    at += count;
                }
            }
            (Kind::Symlink(t), Body::Plain { .. }) => {
                out.write(t)?;
                out.pad_to(BLOCK)?;
            }
            _ => {}
        }
    }
    debug_assert_eq!(out.pos(), meta_start);

    // Metadata area, in offset order (back-filled inodes come before later ones).
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_unstable_by_key(|&i| plans[i].offset);
    for number in order {
        let p = &plans[number];
        let pos = out.pos() - meta_start;
        out.zeros(p.offset - pos)?;
        let inode = tree.inode(p.ino);
        buf.clear();
        let f = fields(tree, p, number as u32 + 1);
        if p.extended {
            f.encode_extended(&mut buf);
        } else {
            f.encode_compact(&mut buf);
        }
        encode_xattrs(
            &mut buf,
            inode
                .meta
                .xattrs
                .iter()
                .map(|x| (x.index, &x.suffix[..], &x.value[..])),
        );
        match (&inode.kind, &p.body) {
            (Kind::File(f), Body::Inline { .. }) => {
                buf.extend_from_slice(f.inline_tail.as_deref().unwrap_or_default())
            }
            (Kind::Symlink(t), Body::Inline { .. }) => buf.extend_from_slice(t),
            (Kind::Dir(_), Body::Inline { .. }) => {
                let entries = dir_entries(tree, p.ino, p.parent);
                let dir = p.dir.as_ref().expect("directories have a layout");
                let count = *dir.per_block.last().expect("at least one block");
                let block: Vec<(&[u8], u64, u8)> = entries[entries.len() - count..]
                    .iter()
                    .map(|(n, c)| (*n, nid_of[c], ftype(&tree.inode(*c).kind)))
                    .collect();
                encode_dir_block(&mut buf, &block);
            }
            _ => {}
        }
        debug_assert_eq!(buf.len(), p.inode_size() + p.xattr_size + p.tail_len());
        out.write(&buf)?;
    }
    out.pad_to(BLOCK)?;
    let blocks = out.pos() / BLOCK;
    let sb = SuperBlock {
        root_nid: plans[0].nid() as u16,
        inos: plans.len() as u64,
        build_time: build_time as u64,
        build_time_nsec: build_nsec,
        blocks: blkaddr(blocks)?,
        meta_blkaddr: blkaddr(meta_start / BLOCK)?,
        uuid: [0; 16],
    };
    out.write_at(&sb.encode(), format::SUPER_OFFSET)?;
    Ok(Written {
        inodes: plans.len() as u64,
        blocks,
        unreferenced_bytes: (data_end - BLOCK).saturating_sub(referenced),
    })
}
