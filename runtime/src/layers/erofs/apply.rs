//! Applying one layer's tar stream to the merged tree, streaming file data into the image: the
//! tree is an [`rules::Output`], so whiteouts, opaque markers and replacements follow the one
//! set of layer rules; what is here is reading entries into inodes.

use std::collections::BTreeMap;
use std::io::{self, Read};

use tar::{Archive, Entry, EntryType};

use super::error::RootfsError;
use super::ondisk::format::{
    encode_dev, split_xattr_name, xattr_ibody_size, BLOCK, EXTENDED_INODE_SIZE, XATTR_VALUE_MAX,
};
use super::ondisk::output::Output;
use super::tree::{FileData, Inode, Kind, Meta, Tree, TreeError, Xattr};
use super::Layer;
use crate::layers::rules::path::{components, display};
use crate::layers::rules::{self, Existing, Refused};

/// Longest symlink target Linux accepts (PATH_MAX without the NUL).
const SYMLINK_MAX: usize = 4095;
/// How much larger than its stored bytes a GNU sparse member may be once its holes are zeros.
const SPARSE_EXPANSION_MAX: u64 = 16;
/// Bound on one inode's inline xattr body, far above what images use.
const XATTR_BODY_MAX: usize = 64 << 10;

/// The layer being read and the entry being applied, to name them in errors.
struct Ctx<'n> {
    layer: &'n str,
    entry: String,
}

impl Ctx<'_> {
    fn tree_err(&self, e: TreeError) -> RootfsError {
        let (layer, entry) = (self.layer.to_owned(), self.entry.clone());
        match e {
            TreeError::ThroughSymlink(symlink) => RootfsError::ThroughSymlink {
                layer,
                entry,
                symlink,
            },
            TreeError::NotADirectory(parent) => RootfsError::NotADirectory {
                layer,
                entry,
                parent,
            },
            TreeError::RootNotDir => RootfsError::BadEntry {
                layer,
                entry,
                reason: "the image root can only be a directory",
            },
            // Hard link lookups map these themselves, with the target's name.
            TreeError::LinkTargetMissing => RootfsError::BadEntry {
                layer,
                entry,
                reason: "the hard link target does not exist",
            },
            TreeError::LinkTargetIsDir => RootfsError::BadEntry {
                layer,
                entry,
                reason: "the hard link target is a directory",
            },
        }
    }

    fn bad(&self, reason: &'static str) -> RootfsError {
        RootfsError::BadEntry {
            layer: self.layer.to_owned(),
            entry: self.entry.clone(),
            reason,
        }
    }

    fn header(&self, field: &'static str, source: io::Error) -> RootfsError {
        RootfsError::BadHeader {
            layer: self.layer.to_owned(),
            entry: self.entry.clone(),
            field,
            source,
        }
    }

    fn range(&self, field: &'static str, value: u64) -> RootfsError {
        RootfsError::OutOfRange {
            layer: self.layer.to_owned(),
            entry: self.entry.clone(),
            field,
            value,
        }
    }

    fn read(&self, source: io::Error) -> RootfsError {
        RootfsError::ReadTar {
            layer: self.layer.to_owned(),
            entry: self.entry.clone(),
            source,
        }
    }
}

/// Reads `layer` to its end and applies every entry to `tree`; `index` (from 1) orders layers.
pub fn apply(
    layer: Layer<'_>,
    index: u32,
    tree: &mut Tree,
    out: &mut Output<'_>,
    budget: &mut usize,
) -> Result<(), RootfsError> {
    let mut archive = Archive::new(layer.tar);
    let mut last = String::from("(first entry)");
    let entries = archive.entries().map_err(|source| RootfsError::ReadTar {
        layer: layer.name.clone(),
        entry: last.clone(),
        source,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| RootfsError::ReadTar {
            layer: layer.name.clone(),
            entry: format!("after {last}"),
            source,
        })?;
        let raw_path = entry.path_bytes().into_owned();
        let ctx = Ctx {
            layer: &layer.name,
            entry: display(&raw_path),
        };
        let mut target = Target {
            ctx: &ctx,
            layer: index,
            tree: &mut *tree,
            out: &mut *out,
            budget: &mut *budget,
        };
        rules::apply(&mut target, &mut entry)?;
        last = ctx.entry;
    }
    // Read what follows the end-of-archive marker too, so a digest computed by the reader
    // covers the whole blob and a truncated compressed stream is noticed here.
    let ctx = Ctx {
        layer: &layer.name,
        entry: format!("after {last} (end of archive)"),
    };
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| ctx.read(e))?;
    Ok(())
}

/// The merged tree and the image being written, as one layer entry sees them.
struct Target<'c, 't, 'o> {
    ctx: &'c Ctx<'c>,
    layer: u32,
    tree: &'t mut Tree,
    out: &'t mut Output<'o>,
    budget: &'t mut usize,
}

impl<'a> rules::Output<Box<dyn Read + 'a>> for Target<'_, '_, '_> {
    type Error = RootfsError;

    fn refused(&mut self, _raw: &[u8], why: Refused) -> Result<(), RootfsError> {
        Err(match why {
            Refused::WhiteoutOfNothing => self.ctx.bad("the whiteout names no file"),
            path => RootfsError::BadPath {
                layer: self.ctx.layer.to_owned(),
                entry: self.ctx.entry.clone(),
                reason: path.to_string(),
            },
        })
    }

    fn existing(&mut self, path: &[&[u8]]) -> Result<Option<Existing>, RootfsError> {
        let Some((name, dirs)) = path.split_last() else {
            return Ok(Some(Existing::Dir));
        };
        // A parent that is not a directory is [`Target::put`]'s to report.
        let Ok(Some(parent)) = self.tree.walk_dirs(dirs, self.layer, false) else {
            return Ok(None);
        };
        Ok(self.tree.get(parent, name).map(|ino| {
            if self.tree.inode(ino).kind.is_dir() {
                Existing::Dir
            } else {
                Existing::Other
            }
        }))
    }

    fn remove(&mut self, path: &[&[u8]]) -> Result<(), RootfsError> {
        let Some((name, dirs)) = path.split_last() else {
            return Ok(());
        };
        if let Some(parent) = self
            .tree
            .walk_dirs(dirs, self.layer, false)
            .map_err(|e| self.ctx.tree_err(e))?
        {
            self.tree.whiteout(parent, name);
        }
        Ok(())
    }

    fn make_opaque(&mut self, dir: &[&[u8]]) -> Result<(), RootfsError> {
        let dir = self
            .tree
            .walk_dirs(dir, self.layer, true)
            .map_err(|e| self.ctx.tree_err(e))?
            .expect("created when missing");
        self.tree.opaque(dir, self.layer);
        Ok(())
    }

    fn put(
        &mut self,
        path: &[&[u8]],
        entry: &mut Entry<'_, Box<dyn Read + 'a>>,
    ) -> Result<(), RootfsError> {
        put_entry(self, entry, path)
    }

    fn put_root(&mut self, entry: &mut Entry<'_, Box<dyn Read + 'a>>) -> Result<(), RootfsError> {
        put_entry(self, entry, &[])
    }
}

/// Reads `entry` into an inode at `comps` (the root when empty).
fn put_entry(
    target: &mut Target<'_, '_, '_>,
    entry: &mut Entry<'_, Box<dyn Read + '_>>,
    comps: &[&[u8]],
) -> Result<(), RootfsError> {
    let Target {
        ctx,
        layer,
        tree,
        out,
        budget,
    } = target;
    let (ctx, layer) = (*ctx, *layer);
    let kind = entry.header().entry_type();
    let meta = read_meta(ctx, entry)?;
    let split = comps.split_last();
    if let EntryType::Link = kind {
        return apply_hardlink(ctx, entry, comps, layer, tree);
    }
    // Parents first: a bad path must fail before any data is written.
    let parent = match split {
        Some((_, dirs)) => Some(
            tree.walk_dirs(dirs, layer, true)
                .map_err(|e| ctx.tree_err(e))?
                .expect("created when missing"),
        ),
        None => None,
    };
    if let EntryType::GNUSparse = kind {
        // A sparse member expands its stored bytes with holes, which this writer stores as
        // zeros: bound the expansion so a tiny hostile layer cannot fill the disk.
        let stored = entry
            .header()
            .entry_size()
            .map_err(|e| ctx.header("size", e))?;
        if entry.size()
            > stored
                .saturating_mul(SPARSE_EXPANSION_MAX)
                .saturating_add(1 << 20)
        {
            return Err(ctx.range("sparse file size", entry.size()));
        }
    }
    let kind = match kind {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            Kind::File(stream_file(ctx, entry, &meta, out, budget)?)
        }
        EntryType::Directory => Kind::Dir(BTreeMap::new()),
        EntryType::Symlink => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| ctx.bad("the symbolic link has no target"))?;
            if target.is_empty() {
                return Err(ctx.bad("the symbolic link has an empty target"));
            }
            if target.len() > SYMLINK_MAX {
                return Err(ctx.range("symbolic link target length", target.len() as u64));
            }
            Kind::Symlink(target.into_owned().into_boxed_slice())
        }
        EntryType::Char | EntryType::Block => {
            let major = device_number(ctx, entry.header().device_major(), "device major")?;
            let minor = device_number(ctx, entry.header().device_minor(), "device minor")?;
            if major > 0xfff {
                return Err(ctx.range("device major", major.into()));
            }
            if minor > 0xf_ffff {
                return Err(ctx.range("device minor", minor.into()));
            }
            let rdev = encode_dev(major, minor);
            if matches!(kind, EntryType::Char) {
                Kind::CharDev(rdev)
            } else {
                Kind::BlockDev(rdev)
            }
        }
        EntryType::Fifo => Kind::Fifo,
        other => {
            return Err(RootfsError::UnsupportedType {
                layer: ctx.layer.to_owned(),
                entry: ctx.entry.clone(),
                kind: other.as_byte(),
            })
        }
    };
    let inode = Inode { kind, meta };
    match (split, parent) {
        (Some((name, _)), Some(parent)) => tree.insert(parent, name, inode, layer),
        _ if inode.kind.is_dir() => tree.set_root_meta(inode.meta),
        _ => return Err(ctx.tree_err(TreeError::RootNotDir)),
    }
    Ok(())
}

fn device_number(
    ctx: &Ctx<'_>,
    value: io::Result<Option<u32>>,
    field: &'static str,
) -> Result<u32, RootfsError> {
    match value {
        Ok(v) => Ok(v.unwrap_or(0)),
        Err(e) => Err(ctx.header(field, e)),
    }
}

fn apply_hardlink(
    ctx: &Ctx<'_>,
    entry: &Entry<'_, Box<dyn Read + '_>>,
    comps: &[&[u8]],
    layer: u32,
    tree: &mut Tree,
) -> Result<(), RootfsError> {
    let raw_target = entry
        .link_name_bytes()
        .ok_or_else(|| ctx.bad("the hard link has no target"))?;
    let target_name = display(&raw_target);
    let bad_link = |reason: &'static str| RootfsError::BadHardLink {
        layer: ctx.layer.to_owned(),
        entry: ctx.entry.clone(),
        target: target_name.clone(),
        reason,
    };
    let target_comps =
        components(&raw_target).map_err(|_| bad_link("is not a valid path inside the image"))?;
    let target = tree.link_target(&target_comps).map_err(|e| match e {
        TreeError::LinkTargetMissing => bad_link("does not exist in the image"),
        TreeError::LinkTargetIsDir => bad_link("is a directory"),
        other => ctx.tree_err(other),
    })?;
    let Some((name, dirs)) = comps.split_last() else {
        return Err(ctx.bad("the image root cannot be a hard link"));
    };
    let parent = tree
        .walk_dirs(dirs, layer, true)
        .map_err(|e| ctx.tree_err(e))?
        .expect("created when missing");
    tree.link(parent, name, target, layer);
    Ok(())
}

/// Owner, mode, mtime and xattrs of an entry; PAX records override the header.
fn read_meta(
    ctx: &Ctx<'_>,
    entry: &mut Entry<'_, Box<dyn Read + '_>>,
) -> Result<Meta, RootfsError> {
    let mut mtime_pax: Option<Vec<u8>> = None;
    let mut uid_pax: Option<u64> = None;
    let mut gid_pax: Option<u64> = None;
    let mut xattrs: Vec<Xattr> = Vec::new();
    let pax = entry.pax_extensions().map_err(|e| ctx.header("pax", e))?;
    if let Some(pax) = pax {
        for ext in pax {
            let ext = ext.map_err(|e| ctx.header("pax", e))?;
            let key = ext.key_bytes();
            if key == b"mtime" {
                mtime_pax = Some(ext.value_bytes().to_vec());
            } else if key == b"uid" || key == b"gid" {
                // Go's archive/tar (docker, buildkit) writes ids that do not fit the octal
                // header field as PAX records; they override the header.
                let id = parse_pax_id(ext.value_bytes())
                    .ok_or_else(|| ctx.bad("a PAX uid or gid record is malformed"))?;
                if key == b"uid" {
                    uid_pax = Some(id);
                } else {
                    gid_pax = Some(id);
                }
            } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                let x = parse_xattr(ctx, name, ext.value_bytes())?;
                // A repeated record overrides the earlier one, as for any PAX keyword.
                xattrs.retain(|old| (old.index, &old.suffix) != (x.index, &x.suffix));
                xattrs.push(x);
            }
        }
    }
    let body = xattr_ibody_size(xattrs.iter().map(|x| (&x.suffix[..], &x.value[..])));
    if body > XATTR_BODY_MAX {
        return Err(ctx.range("extended attributes size", body as u64));
    }
    let header = entry.header();
    let mode = header.mode().map_err(|e| ctx.header("mode", e))?;
    let uid = match uid_pax {
        Some(id) => id,
        None => {
            numeric_field(header.uid(), &header.as_old().uid).map_err(|e| ctx.header("uid", e))?
        }
    };
    let gid = match gid_pax {
        Some(id) => id,
        None => {
            numeric_field(header.gid(), &header.as_old().gid).map_err(|e| ctx.header("gid", e))?
        }
    };
    let uid = u32::try_from(uid).map_err(|_| ctx.range("uid", uid))?;
    let gid = u32::try_from(gid).map_err(|_| ctx.range("gid", gid))?;
    let (mtime, mtime_nsec) = match mtime_pax {
        Some(v) => {
            parse_pax_time(&v).ok_or_else(|| ctx.bad("the PAX mtime record is malformed"))?
        }
        None => {
            let t = header.mtime().map_err(|e| ctx.header("mtime", e))?;
            (i64::try_from(t).map_err(|_| ctx.range("mtime", t))?, 0)
        }
    };
    Ok(Meta {
        perm: (mode & 0o7777) as u16,
        uid,
        gid,
        mtime,
        mtime_nsec,
        xattrs,
    })
}

fn parse_xattr(ctx: &Ctx<'_>, name: &[u8], value: &[u8]) -> Result<Xattr, RootfsError> {
    let bad = |reason| RootfsError::BadXattr {
        layer: ctx.layer.to_owned(),
        entry: ctx.entry.clone(),
        name: display(name),
        reason,
    };
    let (index, suffix) =
        split_xattr_name(name).ok_or_else(|| bad("its namespace cannot be stored in EROFS"))?;
    if suffix.len() > u8::MAX as usize {
        return Err(bad("its name is longer than 255 bytes"));
    }
    if value.len() > XATTR_VALUE_MAX {
        return Err(bad("its value is longer than 65535 bytes"));
    }
    Ok(Xattr {
        index,
        suffix: suffix.into(),
        value: value.into(),
    })
}

/// Parses a PAX time, `SECONDS[.FRACTION]`, seconds possibly negative.
/// A header's numeric field: an all-blank field (spaces and NULs) reads as 0, as Go's
/// archive/tar reads it, since some writers leave owner fields empty.
fn numeric_field(parsed: io::Result<u64>, raw: &[u8]) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        other => other,
    }
}

/// A PAX `uid`/`gid` record: decimal digits only.
fn parse_pax_id(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nsec: u32 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nsec += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    // A negative time with a fraction is `secs - fraction`: borrow one second.
    if s.starts_with('-') && nsec > 0 {
        Some((secs.checked_sub(1)?, 1_000_000_000 - nsec))
    } else {
        Some((secs, nsec))
    }
}

/// Copies a regular file's bytes into the image: whole blocks now, the tail now or kept for
/// packing after the inode.
fn stream_file(
    ctx: &Ctx<'_>,
    entry: &mut Entry<'_, Box<dyn Read + '_>>,
    meta: &Meta,
    out: &mut Output<'_>,
    budget: &mut usize,
) -> Result<FileData, RootfsError> {
    let size = entry.size();
    let blkaddr = out.block();
    let room = (u64::from(u32::MAX) - blkaddr.min(u64::from(u32::MAX))) * BLOCK;
    if size > room {
        return Err(ctx.range("size", size));
    }
    let full = size - size % BLOCK;
    let write_err = |source| RootfsError::WriteData {
        layer: ctx.layer.to_owned(),
        entry: ctx.entry.clone(),
        source,
    };
    let mut buf = vec![0u8; 256 << 10];
    let mut done = 0u64;
    while done < full {
        let want = (full - done).min(buf.len() as u64) as usize;
        let n = read_some(ctx, entry, &mut buf[..want], size - done)?;
        out.write(&buf[..n]).map_err(write_err)?;
        done += n as u64;
    }
    let tail_len = (size - full) as usize;
    let mut tail = vec![0u8; tail_len];
    let mut got = 0;
    while got < tail_len {
        got += read_some(ctx, entry, &mut tail[got..], (tail_len - got) as u64)?;
    }
    let xattrs = xattr_ibody_size(meta.xattrs.iter().map(|x| (&x.suffix[..], &x.value[..])));
    let fits = EXTENDED_INODE_SIZE + xattrs + tail_len <= BLOCK as usize;
    let inline_tail = if tail_len > 0 && fits && *budget >= tail_len {
        *budget -= tail_len;
        Some(tail.into_boxed_slice())
    } else {
        out.write(&tail).map_err(write_err)?;
        out.pad_to(BLOCK).map_err(write_err)?;
        None
    };
    Ok(FileData {
        size,
        blkaddr: u32::try_from(blkaddr).map_err(|_| RootfsError::ImageTooLarge)?,
        inline_tail,
    })
}

/// One read of entry data; the stream ending early is a truncated entry.
fn read_some(
    ctx: &Ctx<'_>,
    entry: &mut impl Read,
    buf: &mut [u8],
    missing: u64,
) -> Result<usize, RootfsError> {
    loop {
        match entry.read(buf) {
            Ok(0) => {
                return Err(RootfsError::Truncated {
                    layer: ctx.layer.to_owned(),
                    entry: ctx.entry.clone(),
                    missing,
                })
            }
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ctx.read(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{numeric_field, parse_pax_id, parse_pax_time};
    use std::io;

    #[test]
    fn pax_ids_are_decimal_only() {
        assert_eq!(parse_pax_id(b"4000000000"), Some(4_000_000_000));
        assert_eq!(parse_pax_id(b"0"), Some(0));
        assert_eq!(parse_pax_id(b""), None);
        assert_eq!(parse_pax_id(b"-1"), None);
        assert_eq!(parse_pax_id(b"12a"), None);
        assert_eq!(parse_pax_id(b"99999999999999999999999"), None);
    }

    #[test]
    fn blank_numeric_fields_read_as_zero_and_garbage_stays_an_error() {
        let err = || Err(io::Error::other("not a number"));
        assert_eq!(numeric_field(err(), b"        ").unwrap(), 0);
        assert_eq!(numeric_field(err(), &[0u8; 8]).unwrap(), 0);
        assert!(numeric_field(err(), b"12x4    ").is_err());
        assert_eq!(numeric_field(Ok(7), b"0000007\0").unwrap(), 7);
    }

    #[test]
    fn pax_times_parse_with_fractions_and_signs() {
        assert_eq!(parse_pax_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(parse_pax_time(b"1.5"), Some((1, 500_000_000)));
        assert_eq!(parse_pax_time(b"12.0000000019"), Some((12, 1)));
        assert_eq!(parse_pax_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_pax_time(b"x"), None);
        assert_eq!(parse_pax_time(b"1.2x"), None);
    }
}
