//! What the container side of nook leaves in the store, reclaimed by `image prune`: the
//! unpacked trees (`rootfs/*.tree`) of images no longer in the store and used by no container,
//! temp directories and files of nook processes that are gone (a killed `export`, unpack or
//! removal), and the directories of creates that never finished. Trees and what containers
//! wrote hold files owned by subordinate ids, so they go through
//! [`crate::isolation::Host::remove_all`]. Each removal counts the bytes it frees.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::engine::Engine;
use super::store::ContainerError;
use crate::image::digest::chain_id;
use crate::image::gc::disk_usage;
use crate::image::Store;
use crate::util::atomic::{process_gone, temp_file_owner};
use crate::util::lock::{FileLock, LockMode};

/// What a prune removed.
#[derive(Debug, Default)]
pub struct Reclaimed {
    pub paths: Vec<PathBuf>,
    pub bytes: u64,
}

/// A `removing-<id>` directory whose lock file is gone is left alone this long: its remover
/// may still be deleting it.
const REMOVAL_GRACE: Duration = Duration::from_secs(600);

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ContainerError {
    let path = path.to_path_buf();
    move |source| ContainerError::Io { what, path, source }
}

fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, ContainerError> {
    let list = match std::fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in list {
        let entry = entry.map_err(io_err("read", dir))?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    out.sort();
    Ok(out)
}

impl Reclaimed {
    fn remove(&mut self, engine: &Engine, path: &Path) -> Result<(), ContainerError> {
        let bytes = disk_usage(path);
        engine.remove_all(path)?;
        self.bytes += bytes;
        self.paths.push(path.to_path_buf());
        Ok(())
    }
}

/// The chain ids (hex, or "empty" for an image without layers) of the images in the store:
/// their trees are kept.
fn chains_in_store(store: &Store) -> Result<BTreeSet<String>, ContainerError> {
    let mut keep = BTreeSet::new();
    for image in store.images()? {
        keep.insert(match chain_id(&image.diff_ids()?) {
            Some(c) => c.hex().to_string(),
            None => "empty".to_string(),
        });
    }
    Ok(keep)
}

/// Removes the trees of images no longer in the store that no container uses.
pub fn prune_trees(engine: &Engine, store: &Store) -> Result<Reclaimed, ContainerError> {
    let keep = chains_in_store(store)?;
    let used: BTreeSet<PathBuf> = engine
        .containers
        .list()?
        .into_iter()
        .map(|c| c.config.isolation.image_path().to_path_buf())
        .collect();
    let mut reclaimed = Reclaimed::default();
    for (name, path) in entries(&engine.root.join("rootfs"))? {
        let Some(stem) = name.strip_suffix(".tree") else {
            continue;
        };
        let chain = stem.split('.').next().unwrap_or_default();
        if keep.contains(chain) || used.contains(&path) {
            continue;
        }
        // The lock its builder takes: a tree being made is not pulled away.
        let _guard = FileLock::acquire(
            &engine.root.join("locks").join(format!("{name}.lock")),
            LockMode::Exclusive,
        )?;
        reclaimed.remove(engine, &path)?;
    }
    Ok(reclaimed)
}

/// Whether the temp entry `name` (in the store's `tmp/`) is the leftover of a process that is
/// gone; entries of running processes and unknown ones are kept.
fn is_leftover(name: &str, path: &Path) -> bool {
    // `export-<container>-<pid>` (a mount point) and `tree-<chain>-<pid>` (an unpack).
    let last_pid = || {
        name.rsplit('-')
            .next()
            .and_then(|p| p.parse::<i32>().ok())
            .filter(|&p| p > 0)
    };
    if name.starts_with("export-") || name.starts_with("tree-") {
        return last_pid().is_some_and(process_gone);
    }
    if name.starts_with("layer-") {
        return temp_file_owner(name, "layer-").is_some_and(process_gone);
    }
    if name.starts_with("removing-") {
        // Its remover holds the container's lock, which moved along with it.
        let lock = path.join("lock");
        return match std::fs::OpenOptions::new().read(true).open(&lock) {
            Ok(file) => try_lock(&file),
            Err(_) => std::fs::symlink_metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > REMOVAL_GRACE),
        };
    }
    false
}

fn try_lock(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own; the lock goes with the file when it is dropped.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Removes what dead processes left in `tmp/` and the directories of creates that never
/// finished (those without `state.json`, which `ps -a` cannot show).
pub fn prune_leftovers(engine: &Engine) -> Result<Reclaimed, ContainerError> {
    let mut reclaimed = Reclaimed::default();
    for (name, path) in entries(&engine.containers.tmp_dir())? {
        if is_leftover(&name, &path) {
            reclaimed.remove(engine, &path)?;
        }
    }
    let containers = engine.root.join("containers");
    if !containers.is_dir() {
        return Ok(reclaimed);
    }
    // Creates hold this lock until state.json is written.
    let _guard = FileLock::acquire(
        &engine.root.join("locks/containers.lock"),
        LockMode::Exclusive,
    )?;
    for (_, path) in entries(&containers)? {
        if path.is_dir() && !path.join("state.json").exists() {
            reclaimed.remove(engine, &path)?;
        }
    }
    Ok(reclaimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_pid() -> i32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        pid
    }

    #[test]
    fn leftovers_are_those_of_processes_that_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let dead = dead_pid();
        let p = dir.path();
        assert!(is_leftover(&format!("export-abc-{dead}"), p));
        assert!(!is_leftover(&format!("export-abc-{me}"), p));
        assert!(is_leftover(&format!("tree-0123-{dead}"), p));
        assert!(!is_leftover(&format!("tree-0123-{me}"), p));
        assert!(is_leftover(&format!("layer-{dead}-0-ff"), p));
        assert!(!is_leftover(&format!("layer-{me}-0-ff"), p));
        assert!(!is_leftover("something-else", p));

        // A removal whose remover holds the lock is in progress; one without is left over.
        let trash = p.join("removing-abc");
        std::fs::create_dir(&trash).unwrap();
        let held = FileLock::acquire(&trash.join("lock"), LockMode::Exclusive).unwrap();
        assert!(!is_leftover("removing-abc", &trash));
        drop(held);
        assert!(is_leftover("removing-abc", &trash));
    }
}
