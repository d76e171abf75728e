use super::*;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn open_dir(p: &Path) -> OwnedFd {
    File::open(p).unwrap().into()
}

#[test]
fn a_tree_is_copied_with_links_modes_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/f"), "data").unwrap();
    std::fs::set_permissions(src.join("sub/f"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::hard_link(src.join("sub/f"), src.join("hard")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
    let dst = dir.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    let mut sink = Sink::new(open_dir(&dst), Owners::Writer);
    let top = Meta::of(&stat_fd(open_dir(&src).as_fd()).unwrap());
    sink.put(Path::new("copy"), &top, Content::Dir).unwrap();
    let root = open_dir(&src);
    crate::layer::walk::walk(
        root.as_fd(),
        crate::layer::walk::Mode::Plain,
        &Default::default(),
        &mut IntoSink {
            sink: &mut sink,
            base: PathBuf::from("copy"),
        },
    )
    .unwrap();
    assert_eq!(sink.finish().unwrap(), 4);
    let out = dst.join("copy");
    assert_eq!(std::fs::read_to_string(out.join("sub/f")).unwrap(), "data");
    let m = std::fs::metadata(out.join("sub/f")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!(
        m.mtime(),
        std::fs::metadata(src.join("sub/f")).unwrap().mtime()
    );
    assert_eq!(m.ino(), std::fs::metadata(out.join("hard")).unwrap().ino());
    assert_eq!(
        std::fs::read_link(out.join("link")).unwrap(),
        Path::new("/etc/passwd")
    );
}

#[test]
fn hostile_paths_stay_inside_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("dst");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    // A link already in the destination, and one the stream writes itself.
    std::os::unix::fs::symlink(&outside, dst.join("abs")).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    tar.append_link(&mut h, "up", "../../outside").unwrap();
    for p in ["abs/x", "up/y"] {
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        tar.append_data(&mut h, p, &b"z"[..]).unwrap();
    }
    let bytes = tar.into_inner().unwrap();
    let mut sink = Sink::new(open_dir(&dst), Owners::Writer);
    let _ = untar(&bytes[..], &mut sink, Path::new(""));
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    // `..` in a stream is refused outright.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_path("x").unwrap();
    h.as_old_mut().name[..5].copy_from_slice(b"../zz");
    h.set_cksum();
    tar.append(&h, &b"z"[..]).unwrap();
    let bytes = tar.into_inner().unwrap();
    let mut sink = Sink::new(open_dir(&dst), Owners::Writer);
    assert!(untar(&bytes[..], &mut sink, Path::new("")).is_err());
    assert!(!dir.path().join("zz").exists());
}

/// A tree with a file, a hard link, a symlink, modes and a sub-directory.
fn make_tree(at: &Path) {
    std::fs::create_dir_all(at.join("sub")).unwrap();
    std::fs::write(at.join("sub/f"), "data").unwrap();
    std::fs::set_permissions(at.join("sub/f"), std::fs::Permissions::from_mode(0o751)).unwrap();
    std::fs::hard_link(at.join("sub/f"), at.join("hard")).unwrap();
    std::os::unix::fs::symlink("sub/f", at.join("link")).unwrap();
    std::fs::set_permissions(at.join("sub"), std::fs::Permissions::from_mode(0o710)).unwrap();
}

/// The rebased tar of `path` inside `root` (what the agent sends for `cp CONTAINER:SRC DST`).
fn rebased_tar(root: Option<&Path>, path: &str) -> (CopyInfo, Vec<u8>) {
    let root = root.map(open_dir);
    let source = Source::open(root.as_ref().map(|r| r.as_fd()), path, false).unwrap();
    let info = source.info().clone();
    let mut tar = crate::layer::TarWriter::new(Vec::new());
    source.send_rebased(&mut tar).unwrap();
    (info, tar.finish().unwrap())
}

#[test]
fn a_rebased_stream_lands_by_dockers_rules() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    make_tree(&root.join("tree"));
    let (info, tar) = rebased_tar(Some(&root), "/tree");
    assert_eq!(
        info,
        CopyInfo {
            dir: true,
            name: "tree".into(),
            contents_only: false
        }
    );
    // Into an existing directory: under the source's name.
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    assert_eq!(onto_host(&out, Owners::Writer, &info, &tar[..]).unwrap(), 4);
    let got = out.join("tree");
    assert_eq!(std::fs::read_to_string(got.join("sub/f")).unwrap(), "data");
    assert_eq!(
        std::fs::metadata(got.join("sub/f")).unwrap().mode() & 0o7777,
        0o751
    );
    assert_eq!(
        std::fs::metadata(got.join("sub")).unwrap().mode() & 0o7777,
        0o710
    );
    assert_eq!(
        std::fs::metadata(got.join("hard")).unwrap().ino(),
        std::fs::metadata(got.join("sub/f")).unwrap().ino()
    );
    assert_eq!(
        std::fs::read_link(got.join("link")).unwrap(),
        Path::new("sub/f")
    );
    // At a path that does not exist: the tree takes that name.
    let renamed = dir.path().join("renamed");
    onto_host(&renamed, Owners::Writer, &info, &tar[..]).unwrap();
    assert_eq!(
        std::fs::read_to_string(renamed.join("sub/f")).unwrap(),
        "data"
    );
    // A directory onto a file is refused.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(matches!(
        onto_host(&file, Owners::Writer, &info, &tar[..]),
        Err(CopyError::DirOntoFile { .. })
    ));
    // One file, into a container at a new name and into a directory.
    let (info, tar) = rebased_tar(Some(&root), "/tree/sub/f");
    assert!(!info.dir);
    let croot = open_dir(&root);
    into_container(
        croot.as_fd(),
        "/copy",
        Owners::Writer,
        Some(&info),
        &tar[..],
    )
    .unwrap();
    into_container(
        croot.as_fd(),
        "/tree/",
        Owners::Writer,
        Some(&info),
        &tar[..],
    )
    .unwrap();
    assert_eq!(std::fs::read_to_string(root.join("copy")).unwrap(), "data");
    assert_eq!(
        std::fs::read_to_string(root.join("tree/f")).unwrap(),
        "data"
    );
    assert!(matches!(
        into_container(
            croot.as_fd(),
            "/nope/",
            Owners::Writer,
            Some(&info),
            &tar[..]
        ),
        Err(CopyError::NoDirectory { .. })
    ));
}

#[test]
fn a_containers_symlinks_never_lead_a_copy_out_of_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "host").unwrap();
    std::os::unix::fs::symlink("/", root.join("slash")).unwrap();
    std::os::unix::fs::symlink("../../../../..", root.join("up")).unwrap();
    let out_rel = outside.strip_prefix("/").unwrap().display().to_string();
    let croot = open_dir(&root);
    // Reading through them: resolved inside the root, where nothing is.
    for p in [
        format!("/slash/{out_rel}/secret"),
        format!("/up/{out_rel}/secret"),
    ] {
        for follow in [false, true] {
            assert!(matches!(
                Source::open(Some(croot.as_fd()), &p, follow),
                Err(CopyError::NotFound { .. })
            ));
        }
    }
    // Writing through them: inside the root or refused, never outside.
    let (info, tar) = rebased_tar(None, outside.join("secret").to_str().unwrap());
    for dst in [
        format!("/slash/{out_rel}/planted"),
        format!("/up/{out_rel}/planted"),
        format!("/up/{out_rel}/"),
    ] {
        let _ = into_container(croot.as_fd(), &dst, Owners::Writer, Some(&info), &tar[..]);
        let _ = into_container(croot.as_fd(), &dst, Owners::Writer, None, &tar[..]);
    }
    let left: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert_eq!(left.len(), 1, "nothing was written outside the root");
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).unwrap(),
        "host"
    );
}

#[test]
fn a_malformed_stream_is_an_error_and_writes_nothing_outside() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    let info = CopyInfo {
        dir: true,
        name: "x".into(),
        contents_only: false,
    };
    // Garbage, a truncated archive and a climbing path.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1000);
    h.set_mode(0o644);
    tar.append_data(&mut h, "big", &[7u8; 1000][..]).unwrap();
    let whole = tar.into_inner().unwrap();
    let truncated = &whole[..700];
    let mut climbing = tar::Header::new_gnu();
    climbing.set_size(1);
    climbing.set_mode(0o644);
    climbing.set_path("x").unwrap();
    climbing.as_old_mut().name[..7].copy_from_slice(b"../../z");
    climbing.set_cksum();
    let mut up = tar::Builder::new(Vec::new());
    up.append(&climbing, &b"z"[..]).unwrap();
    let up = up.into_inner().unwrap();
    for bad in [&[0x55u8; 1024][..], truncated, &up[..]] {
        assert!(
            onto_host(&dst, Owners::Writer, &info, bad).is_err(),
            "a malformed stream is refused"
        );
    }
    assert!(!dir.path().join("z").exists() && !dir.path().parent().unwrap().join("z").exists());
}
