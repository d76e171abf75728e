//! The merged file tree of all layers applied so far: metadata only, never file contents.
//!
//! Inodes live in an arena indexed by [`Ino`], so hard links are two directory entries holding the
//! same index, and dropping a whited-out subtree is removing one map entry (no recursion, so a
//! hostile deep tree cannot overflow the stack). Unreachable inodes stay in the arena until the
//! image is written and are simply not emitted; their data blocks, already streamed into the
//! image, are left unreferenced.

use std::collections::BTreeMap;

use crate::layers::rules::path::display_components;

/// Index of an inode in the arena.
pub type Ino = u32;

/// The root directory's index.
pub const ROOT: Ino = 0;

/// Where a regular file's bytes are in the image.
#[derive(Debug, Clone)]
pub struct FileData {
    pub size: u64,
    /// First block of the file's full blocks (and of its tail when not inline).
    pub blkaddr: u32,
    /// The last partial block, kept in memory to be packed after the inode (EROFS "inline" layout).
    pub inline_tail: Option<Box<[u8]>>,
}

#[derive(Debug)]
pub enum Kind {
    File(FileData),
    Dir(BTreeMap<Box<[u8]>, Child>),
    Symlink(Box<[u8]>),
    CharDev(u32),
    BlockDev(u32),
    Fifo,
}

impl Kind {
    pub fn is_dir(&self) -> bool {
        matches!(self, Kind::Dir(_))
    }

    /// The `S_IFMT` bits of this kind.
    pub fn format_bits(&self) -> u16 {
        match self {
            Kind::File(_) => 0o100000,
            Kind::Dir(_) => 0o040000,
            Kind::Symlink(_) => 0o120000,
            Kind::CharDev(_) => 0o020000,
            Kind::BlockDev(_) => 0o060000,
            Kind::Fifo => 0o010000,
        }
    }
}

/// One extended attribute, its name already split into an EROFS prefix index and the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    pub index: u8,
    pub suffix: Box<[u8]>,
    pub value: Box<[u8]>,
}

/// Everything but the name of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits, setuid/setgid/sticky included (`0o7777`).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub xattrs: Vec<Xattr>,
}

impl Meta {
    /// Metadata of a directory a layer implies without listing it (docker creates those 0755).
    pub fn implicit_dir() -> Self {
        Meta {
            perm: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            xattrs: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub struct Inode {
    pub kind: Kind,
    pub meta: Meta,
}

/// A directory entry: the inode it names and the layer that last wrote that path (opaque
/// whiteouts keep what the current layer wrote and drop the rest).
#[derive(Debug, Clone, Copy)]
pub struct Child {
    pub ino: Ino,
    pub layer: u32,
}

/// Why a tree operation failed; the caller adds the layer and entry names.
#[derive(Debug, PartialEq, Eq)]
pub enum TreeError {
    ThroughSymlink(String),
    NotADirectory(String),
    LinkTargetMissing,
    LinkTargetIsDir,
    RootNotDir,
}

pub struct Tree {
    inodes: Vec<Inode>,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    pub fn new() -> Self {
        Tree {
            inodes: vec![Inode {
                kind: Kind::Dir(BTreeMap::new()),
                meta: Meta::implicit_dir(),
            }],
        }
    }

    pub fn inode(&self, ino: Ino) -> &Inode {
        &self.inodes[ino as usize]
    }

    fn children(&self, ino: Ino) -> Option<&BTreeMap<Box<[u8]>, Child>> {
        match &self.inodes[ino as usize].kind {
            Kind::Dir(c) => Some(c),
            _ => None,
        }
    }

    fn children_mut(&mut self, ino: Ino) -> &mut BTreeMap<Box<[u8]>, Child> {
        match &mut self.inodes[ino as usize].kind {
            Kind::Dir(c) => c,
            _ => unreachable!("callers only pass directories"),
        }
    }

    /// Walks `comps` from the root, all of which must be directories. With `create`, missing
    /// ones are made like docker does; without it, a missing one gives `Ok(None)`.
    pub fn walk_dirs(
        &mut self,
        comps: &[&[u8]],
        layer: u32,
        create: bool,
    ) -> Result<Option<Ino>, TreeError> {
        let mut cur = ROOT;
        for (i, comp) in comps.iter().enumerate() {
            let found = self.children(cur).and_then(|c| c.get(*comp)).copied();
            cur = match found {
                Some(child) => match &self.inodes[child.ino as usize].kind {
                    Kind::Dir(_) => child.ino,
                    Kind::Symlink(_) => {
                        return Err(TreeError::ThroughSymlink(display_components(&comps[..=i])))
                    }
                    _ => return Err(TreeError::NotADirectory(display_components(&comps[..=i]))),
                },
                None if create => {
                    let ino = self.push(Inode {
                        kind: Kind::Dir(BTreeMap::new()),
                        meta: Meta::implicit_dir(),
                    });
                    self.children_mut(cur)
                        .insert((*comp).into(), Child { ino, layer });
                    ino
                }
                None => return Ok(None),
            };
        }
        Ok(Some(cur))
    }

    fn push(&mut self, inode: Inode) -> Ino {
        let ino = self.inodes.len() as Ino;
        self.inodes.push(inode);
        ino
    }

    /// Puts a new inode at `parent/name`. A directory over a directory only updates the metadata
    /// (the old children stay, as when extracting a layer over its parent); anything else
    /// replaces what was there, subtree included.
    pub fn insert(&mut self, parent: Ino, name: &[u8], inode: Inode, layer: u32) {
        if let Some(existing) = self.children(parent).and_then(|c| c.get(name)).copied() {
            let old = &mut self.inodes[existing.ino as usize];
            if old.kind.is_dir() && inode.kind.is_dir() {
                old.meta = inode.meta;
                self.children_mut(parent).insert(
                    name.into(),
                    Child {
                        ino: existing.ino,
                        layer,
                    },
                );
                return;
            }
        }
        let ino = self.push(inode);
        self.children_mut(parent)
            .insert(name.into(), Child { ino, layer });
    }

    /// Sets the metadata of the root directory (a `./` entry).
    pub fn set_root_meta(&mut self, meta: Meta) {
        self.inodes[ROOT as usize].meta = meta;
    }

    /// Looks up an existing non-directory for a hard link.
    pub fn link_target(&mut self, comps: &[&[u8]]) -> Result<Ino, TreeError> {
        let Some((name, dirs)) = comps.split_last() else {
            return Err(TreeError::LinkTargetIsDir);
        };
        let parent = self
            .walk_dirs(dirs, 0, false)?
            .ok_or(TreeError::LinkTargetMissing)?;
        let child = self
            .children(parent)
            .and_then(|c| c.get(*name))
            .copied()
            .ok_or(TreeError::LinkTargetMissing)?;
        if self.inodes[child.ino as usize].kind.is_dir() {
            return Err(TreeError::LinkTargetIsDir);
        }
        Ok(child.ino)
    }

    /// Adds another name for an existing inode.
    pub fn link(&mut self, parent: Ino, name: &[u8], target: Ino, layer: u32) {
        self.children_mut(parent)
            .insert(name.into(), Child { ino: target, layer });
    }

    /// Removes `parent/name` and everything under it (`.wh.NAME`).
    pub fn whiteout(&mut self, parent: Ino, name: &[u8]) {
        self.children_mut(parent).remove(name);
    }

    /// Removes everything under `dir` that the current layer did not write (`.wh..wh..opq`).
    pub fn opaque(&mut self, dir: Ino, layer: u32) {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            let children = self.children_mut(d);
            children.retain(|_, c| c.layer == layer);
            let keep: Vec<Ino> = children.values().map(|c| c.ino).collect();
            for ino in keep {
                if self.inodes[ino as usize].kind.is_dir() {
                    stack.push(ino);
                }
            }
        }
    }

    /// What `parent/name` currently is, if anything.
    pub fn get(&self, parent: Ino, name: &[u8]) -> Option<Ino> {
        self.children(parent)
            .and_then(|c| c.get(name))
            .map(|c| c.ino)
    }

    /// The sorted entries of a directory.
    pub fn dir_entries(&self, ino: Ino) -> impl Iterator<Item = (&[u8], Ino)> {
        self.children(ino)
            .into_iter()
            .flat_map(|c| c.iter().map(|(n, c)| (&n[..], c.ino)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Inode {
        Inode {
            kind: Kind::Fifo,
            meta: Meta::implicit_dir(),
        }
    }

    fn dir() -> Inode {
        Inode {
            kind: Kind::Dir(BTreeMap::new()),
            meta: Meta::implicit_dir(),
        }
    }

    #[test]
    fn opaque_keeps_only_what_the_current_layer_wrote() {
        let mut t = Tree::new();
        let d = t.walk_dirs(&[b"d"], 0, true).unwrap().unwrap();
        t.insert(d, b"old", file(), 0);
        let sub = t.walk_dirs(&[b"d", b"sub"], 0, true).unwrap().unwrap();
        t.insert(sub, b"old2", file(), 0);
        // Layer 1 re-declares d/sub and adds d/new, then marks d opaque.
        t.insert(d, b"sub", dir(), 1);
        t.insert(d, b"new", file(), 1);
        t.opaque(d, 1);
        let names: Vec<_> = t.dir_entries(d).map(|(n, _)| n.to_vec()).collect();
        assert_eq!(names, vec![b"new".to_vec(), b"sub".to_vec()]);
        assert_eq!(t.dir_entries(sub).count(), 0);
    }

    #[test]
    fn walking_through_a_symlink_or_file_fails() {
        let mut t = Tree::new();
        t.insert(
            ROOT,
            b"l",
            Inode {
                kind: Kind::Symlink(b"/etc".as_slice().into()),
                meta: Meta::implicit_dir(),
            },
            0,
        );
        t.insert(ROOT, b"f", file(), 0);
        assert_eq!(
            t.walk_dirs(&[b"l", b"x"], 0, true),
            Err(TreeError::ThroughSymlink("l".into()))
        );
        assert_eq!(
            t.walk_dirs(&[b"f"], 0, true),
            Err(TreeError::NotADirectory("f".into()))
        );
    }

    #[test]
    fn file_replaces_dir_and_links_keep_the_old_inode() {
        let mut t = Tree::new();
        t.insert(ROOT, b"a", file(), 0);
        let a = t.get(ROOT, b"a").unwrap();
        let target = t.link_target(&[b"a"]).unwrap();
        t.link(ROOT, b"b", target, 0);
        t.insert(ROOT, b"a", dir(), 1);
        assert!(t.inode(t.get(ROOT, b"a").unwrap()).kind.is_dir());
        assert_eq!(t.get(ROOT, b"b"), Some(a));
        assert_eq!(t.link_target(&[b"a"]), Err(TreeError::LinkTargetIsDir));
        assert_eq!(t.link_target(&[b"zz"]), Err(TreeError::LinkTargetMissing));
    }
}
