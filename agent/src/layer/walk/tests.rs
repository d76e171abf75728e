use std::fs;
use std::os::unix::fs::symlink;

use super::*;
use crate::layer::tests::{mknod_whiteout, read_tar, setxattr, Entry as TarEntry};
use crate::layer::TarWriter;

type Hook = OpenHook;

/// The tar of a walk of `root` in `mode`, with `hook` run before each entry is opened.
fn walk_tar(root: &Path, mode: Mode, hook: Option<Hook>) -> Vec<TarEntry> {
    let targets = MountTargets::default();
    let mut walker = Walker::new(mode, &targets);
    walker.before_open = hook;
    let fd = fd::open_dir(root).unwrap();
    let mut tar = TarWriter::new(Vec::new());
    walker.run(fd.as_fd(), &mut tar).unwrap();
    read_tar(&tar.finish().unwrap())
}

fn paths(entries: &[TarEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.path.as_str()).collect()
}

fn get<'a>(entries: &'a [TarEntry], path: &str) -> &'a TarEntry {
    entries
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("no entry {path} in {:?}", paths(entries)))
}

/// A directory outside the walked tree holding a file that must never be read.
fn outside() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("secret"), b"host secret\n").unwrap();
    dir
}

fn assert_no_secret(entries: &[TarEntry]) {
    for e in entries {
        assert!(!e.path.contains("secret"), "{} was written", e.path);
        assert!(e.data != b"host secret\n", "{} holds the secret", e.path);
    }
}

#[test]
fn hard_links_become_link_entries_to_the_first_path_in_both_modes() {
    let tree = tempfile::tempdir().unwrap();
    let t = tree.path();
    fs::create_dir_all(t.join("a")).unwrap();
    fs::create_dir_all(t.join("b")).unwrap();
    fs::write(t.join("a/x"), b"one file, three names").unwrap();
    fs::hard_link(t.join("a/x"), t.join("b/y")).unwrap();
    fs::hard_link(t.join("a/x"), t.join("c")).unwrap();
    for mode in [Mode::Layer, Mode::Plain] {
        let entries = walk_tar(t, mode, None);
        assert_eq!(paths(&entries), ["a", "a/x", "b", "b/y", "c"], "{mode:?}");
        assert_eq!(get(&entries, "a/x").kind, tar::EntryType::Regular);
        assert_eq!(get(&entries, "a/x").data, b"one file, three names");
        for link in ["b/y", "c"] {
            assert_eq!(get(&entries, link).kind, tar::EntryType::Link, "{link}");
            assert_eq!(get(&entries, link).link.as_deref(), Some("a/x"), "{link}");
            assert!(get(&entries, link).data.is_empty(), "{link} holds a copy");
        }
    }
}

#[test]
fn xattrs_are_kept_and_overlays_own_dropped() {
    let tree = tempfile::tempdir().unwrap();
    let t = tree.path();
    fs::write(t.join("f"), b"f").unwrap();
    setxattr(&t.join("f"), "user.note", b"kept");
    setxattr(&t.join("f"), "user.overlay.origin", b"dropped");
    fs::create_dir(t.join("d")).unwrap();
    setxattr(&t.join("d"), "user.overlay.opaque", b"y");
    setxattr(&t.join("d"), "user.mark", b"dir");

    let layer = walk_tar(t, Mode::Layer, None);
    assert_eq!(paths(&layer), ["d", "d/.wh..wh..opq", "f"]);
    assert_eq!(
        get(&layer, "f").xattrs,
        [("SCHILY.xattr.user.note".to_owned(), b"kept".to_vec())]
    );
    assert_eq!(
        get(&layer, "d").xattrs,
        [("SCHILY.xattr.user.mark".to_owned(), b"dir".to_vec())]
    );

    // A plain tree has no opaque directories: the attribute means nothing there.
    let plain = walk_tar(t, Mode::Plain, None);
    assert_eq!(paths(&plain), ["d", "f"]);
    assert_eq!(get(&plain, "f").xattrs, get(&layer, "f").xattrs);
}

#[test]
fn a_symlink_to_a_directory_outside_is_written_as_a_symlink() {
    let host = outside();
    let tree = tempfile::tempdir().unwrap();
    symlink(host.path(), tree.path().join("link")).unwrap();
    for mode in [Mode::Layer, Mode::Plain] {
        let entries = walk_tar(tree.path(), mode, None);
        assert_eq!(paths(&entries), ["link"]);
        assert_eq!(get(&entries, "link").kind, tar::EntryType::Symlink);
        assert_eq!(get(&entries, "link").link.as_deref(), host.path().to_str());
        assert_no_secret(&entries);
    }
}

/// The race `export` lost: the directory is listed as a directory, then swapped for a symlink
/// to a host directory before it is opened. It is written as the symlink it now is.
#[test]
fn a_directory_swapped_for_a_symlink_after_listing_is_not_followed() {
    let host = outside();
    let tree = tempfile::tempdir().unwrap();
    let t = tree.path().to_path_buf();
    fs::create_dir(t.join("d")).unwrap();
    fs::write(t.join("d/own"), b"own").unwrap();
    let parked = tempfile::tempdir().unwrap();
    for mode in [Mode::Layer, Mode::Plain] {
        let (t2, host_path, park) = (
            t.clone(),
            host.path().to_path_buf(),
            parked.path().join(format!("{mode:?}")),
        );
        let hook: Hook = Box::new(move |rel: &Path| {
            if rel == Path::new("d") {
                fs::rename(t2.join("d"), &park).unwrap();
                symlink(&host_path, t2.join("d")).unwrap();
            }
        });
        let entries = walk_tar(&t, mode, Some(hook));
        assert_eq!(paths(&entries), ["d"], "{mode:?}");
        assert_eq!(get(&entries, "d").kind, tar::EntryType::Symlink);
        assert_no_secret(&entries);
        // Put the directory back for the next mode.
        fs::remove_file(t.join("d")).unwrap();
        fs::rename(parked.path().join(format!("{mode:?}")), t.join("d")).unwrap();
    }
}

#[test]
fn open_entry_never_follows_a_symlink_and_reports_what_is_there() {
    let host = outside();
    let tree = tempfile::tempdir().unwrap();
    let t = tree.path();
    fs::create_dir(t.join("dir")).unwrap();
    fs::write(t.join("file"), b"x").unwrap();
    symlink(host.path(), t.join("to-dir")).unwrap();
    symlink(host.path().join("secret"), t.join("to-file")).unwrap();
    let root = fd::open_dir(t).unwrap();
    let open = |name: &str| open_entry(root.as_fd(), OsStr::new(name)).unwrap();
    assert!(matches!(open("dir"), Opened::Dir(..)));
    assert!(matches!(open("file"), Opened::File(..)));
    match open("to-dir") {
        Opened::Symlink(target, st) => {
            assert_eq!(target, host.path());
            assert!(st.is_symlink());
        }
        other => panic!("a symlink to a directory was opened as {other:?}"),
    }
    assert!(matches!(open("to-file"), Opened::Symlink(..)));
    assert!(matches!(open("missing"), Opened::Gone));
    // What O_NOFOLLOW guarantees if the swap happens between the look and the open.
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    let err = fd::openat(root.as_fd(), OsStr::new("to-dir"), flags).unwrap_err();
    assert!(
        matches!(err.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)),
        "{err}"
    );
}

#[test]
fn entries_gone_between_listing_and_opening_are_skipped() {
    let tree = tempfile::tempdir().unwrap();
    let t = tree.path().to_path_buf();
    for name in ["a", "b", "c"] {
        fs::write(t.join(name), name).unwrap();
    }
    fs::create_dir_all(t.join("d/sub")).unwrap();
    fs::write(t.join("d/sub/f"), b"f").unwrap();
    let t2 = t.clone();
    let hook: Hook = Box::new(move |rel: &Path| {
        if rel == Path::new("b") {
            fs::remove_file(t2.join("b")).unwrap();
        }
        if rel == Path::new("d/sub") {
            fs::remove_dir_all(t2.join("d/sub")).unwrap();
        }
    });
    let entries = walk_tar(&t, Mode::Layer, Some(hook));
    assert_eq!(paths(&entries), ["a", "c", "d"]);
}

#[test]
fn an_entry_whose_type_changed_is_taken_as_what_it_now_is() {
    let tree = tempfile::tempdir().unwrap();
    let t = tree.path().to_path_buf();
    fs::write(t.join("x"), b"was a file").unwrap();
    fs::create_dir(t.join("y")).unwrap();
    let t2 = t.clone();
    let hook: Hook = Box::new(move |rel: &Path| {
        if rel == Path::new("x") {
            fs::remove_file(t2.join("x")).unwrap();
            fs::create_dir(t2.join("x")).unwrap();
            fs::write(t2.join("x/inner"), b"now a directory").unwrap();
        }
        if rel == Path::new("y") {
            fs::remove_dir(t2.join("y")).unwrap();
            fs::write(t2.join("y"), b"now a file").unwrap();
        }
    });
    let entries = walk_tar(&t, Mode::Plain, Some(hook));
    assert_eq!(paths(&entries), ["x", "x/inner", "y"]);
    assert_eq!(get(&entries, "x").kind, tar::EntryType::Directory);
    assert_eq!(get(&entries, "x/inner").data, b"now a directory");
    assert_eq!(get(&entries, "y").kind, tar::EntryType::Regular);
    assert_eq!(get(&entries, "y").data, b"now a file");
}

/// Overlay whiteouts (0/0 character devices) need CAP_MKNOD on the host: not run as root, the
/// test re-runs itself through `sudo -n`.
#[test]
fn a_whiteout_is_a_deletion_in_a_layer_and_a_device_in_a_plain_tree() {
    if !crate::testing::privileged(
        crate::testing::Needs::Root,
        "layer::walk::tests::a_whiteout_is_a_deletion_in_a_layer_and_a_device_in_a_plain_tree",
    ) {
        return;
    }
    let tree = tempfile::tempdir().unwrap();
    mknod_whiteout(&tree.path().join("gone"));
    let layer = walk_tar(tree.path(), Mode::Layer, None);
    assert_eq!(paths(&layer), [".wh.gone"]);
    assert_eq!(layer[0].kind, tar::EntryType::Regular);
    let plain = walk_tar(tree.path(), Mode::Plain, None);
    assert_eq!(paths(&plain), ["gone"]);
    assert_eq!(plain[0].kind, tar::EntryType::Char);
}

#[test]
fn a_path_is_looked_up_beneath_a_root_without_following_symlinks() {
    let host = outside();
    let tree = tempfile::tempdir().unwrap();
    let t = tree.path();
    fs::create_dir(t.join("real")).unwrap();
    fs::write(t.join("real/f"), b"f").unwrap();
    symlink("real", t.join("rel-link")).unwrap();
    symlink(host.path(), t.join("abs-link")).unwrap();
    let root = fd::open_dir(t).unwrap();
    let exists = |p: &str| fd::exists_beneath(root.as_fd(), Path::new(p)).unwrap();
    assert!(exists("real"));
    assert!(exists("real/f"));
    assert!(exists("abs-link"), "the symlink itself is there");
    assert!(!exists("rel-link/f"));
    assert!(!exists("abs-link/secret"));
    assert!(!exists("real/f/below-a-file"));
    assert!(!exists("missing"));
    assert!(fd::exists_beneath(root.as_fd(), Path::new("../x")).is_err());
}
