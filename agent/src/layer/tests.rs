use super::*;
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;

pub(super) fn setxattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings and a valid value buffer.
    let ret = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        ret,
        0,
        "setxattr {name} on {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
}

pub(super) fn mknod_whiteout(path: &Path) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path; mode and device are plain integers.
    let ret = unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR, 0) };
    assert_eq!(
        ret,
        0,
        "mknod {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
}

pub(super) struct Entry {
    pub(super) path: String,
    pub(super) kind: tar::EntryType,
    pub(super) link: Option<String>,
    pub(super) data: Vec<u8>,
    pub(super) xattrs: Vec<(String, Vec<u8>)>,
}

pub(super) fn read_tar(bytes: &[u8]) -> Vec<Entry> {
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let mut xattrs = Vec::new();
        if let Some(ext) = e.pax_extensions().unwrap() {
            for x in ext {
                let x = x.unwrap();
                xattrs.push((x.key().unwrap().to_owned(), x.value_bytes().to_vec()));
            }
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(Entry {
            path: e.path().unwrap().to_string_lossy().into_owned(),
            kind: e.header().entry_type(),
            link: e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned()),
            data,
            xattrs,
        });
    }
    out
}

/// Overlay whiteouts need CAP_MKNOD and `trusted.*` xattrs need CAP_SYS_ADMIN of the host (a user
/// namespace's root cannot set them): this test builds a real upper directory, so not run as
/// root it re-runs itself through `sudo -n`.
#[test]
fn upper_dir_becomes_an_oci_layer_with_whiteouts() {
    if !crate::testing::privileged(
        crate::testing::Needs::Root,
        "layer::tests::upper_dir_becomes_an_oci_layer_with_whiteouts",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path().join("upper");
    let up = upper.as_path();
    fs::create_dir_all(up.join("etc")).unwrap();
    fs::write(up.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    fs::hard_link(up.join("etc/hosts"), up.join("etc/hosts2")).unwrap();
    setxattr(&up.join("etc/hosts"), "user.note", b"kept");
    setxattr(&up.join("etc/hosts"), "trusted.overlay.origin", b"dropped");
    fs::create_dir_all(up.join("var/cache")).unwrap();
    setxattr(&up.join("var/cache"), "trusted.overlay.opaque", b"y");
    fs::write(up.join("var/cache/new"), b"n").unwrap();
    mknod_whiteout(&up.join("etc/gone"));
    // A whiteout where the agent once made a mount target is the container's deletion.
    let mut targets = targets::MountTargets::default();
    targets
        .insert(Path::new("/etc/gone"), targets::TargetKind::File)
        .unwrap();
    targets.save(&targets::record_path(up)).unwrap();
    symlink("etc/hosts", up.join("link")).unwrap();
    let long = "d".repeat(120);
    fs::create_dir_all(up.join(&long)).unwrap();
    fs::write(up.join(&long).join("f".repeat(100)), b"long").unwrap();

    let mut chunks = Vec::new();
    let mut sink = ChunkSink::new(|c: &[u8]| {
        assert!(c.len() <= MAX_DATA_CHUNK);
        chunks.push(c.to_vec());
        Ok(())
    });
    write_upper_tar(up, &mut sink).unwrap();
    sink.finish().unwrap();
    let total = sink.total();
    let bytes: Vec<u8> = chunks.concat();
    assert_eq!(bytes.len() as u64, total);

    let entries = read_tar(&bytes);
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let long_file = format!("{long}/{}", "f".repeat(100));
    assert_eq!(
        paths,
        vec![
            long.as_str(),
            long_file.as_str(),
            "etc",
            "etc/.wh.gone",
            "etc/hosts",
            "etc/hosts2",
            "link",
            "var",
            "var/cache",
            "var/cache/.wh..wh..opq",
            "var/cache/new",
        ]
    );
    let get = |p: &str| entries.iter().find(|e| e.path == p).unwrap();
    assert_eq!(get("etc/.wh.gone").kind, tar::EntryType::Regular);
    assert!(get("etc/.wh.gone").data.is_empty());
    assert_eq!(get("etc/hosts").data, b"127.0.0.1 localhost\n");
    assert_eq!(
        get("etc/hosts").xattrs,
        vec![("SCHILY.xattr.user.note".to_owned(), b"kept".to_vec())]
    );
    assert_eq!(get("etc/hosts2").kind, tar::EntryType::Link);
    assert_eq!(get("etc/hosts2").link.as_deref(), Some("etc/hosts"));
    assert_eq!(get("link").kind, tar::EntryType::Symlink);
    assert_eq!(get("link").link.as_deref(), Some("etc/hosts"));
    assert_eq!(get("var/cache").kind, tar::EntryType::Directory);
    assert!(
        get("var/cache").xattrs.is_empty(),
        "overlay xattrs must not leak"
    );
    assert_eq!(get(&long_file).data, b"long");
}

#[test]
fn unreadable_upper_is_an_error_naming_the_path() {
    let err = write_upper_tar(Path::new("/nonexistent-upper"), io::sink()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent-upper"), "{err}");
}

/// The layer leaves out the agent's own mount targets while they are its untouched empty
/// files, and writes everything the container did, including to a recorded path.
#[test]
fn untouched_agent_mount_targets_are_left_out_of_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("upper");
    fs::create_dir_all(up.join("etc")).unwrap();
    // The agent's empty target, untouched.
    fs::write(up.join("etc/hosts"), b"").unwrap();
    // The agent's target, since given content by the container.
    fs::write(up.join("etc/resolv.conf"), b"nameserver 192.0.2.1\n").unwrap();
    // The agent's target, since replaced by a directory.
    fs::create_dir(up.join("etc/hostname")).unwrap();
    // An empty file the agent did not record: the container's.
    fs::write(up.join("etc/empty"), b"").unwrap();
    // A user file.
    fs::write(up.join("data.txt"), b"kept\n").unwrap();
    // A parent directory the agent created, holding only its untouched target.
    fs::create_dir(up.join("run")).unwrap();
    fs::write(up.join("run/target"), b"").unwrap();
    // A parent directory the agent created, where the container has since put a file.
    fs::create_dir(up.join("srv")).unwrap();
    fs::write(up.join("srv/target"), b"").unwrap();
    fs::write(up.join("srv/mine"), b"m").unwrap();

    let mut targets = targets::MountTargets::default();
    use targets::TargetKind::{Dir, File};
    for (p, kind) in [
        ("/etc/hosts", File),
        ("/etc/resolv.conf", File),
        ("/etc/hostname", File),
        ("/run", Dir),
        ("/run/target", File),
        ("/srv", Dir),
        ("/srv/target", File),
    ] {
        targets.insert(Path::new(p), kind).unwrap();
    }
    let record = targets::record_path(&up);
    targets.save(&record).unwrap();
    // Next to the upper directory, not inside it.
    assert!(dir.path().join(targets::RECORD_NAME).is_file());

    let mut bytes = Vec::new();
    write_upper_tar(&up, &mut bytes).unwrap();
    let entries = read_tar(&bytes);
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "data.txt",
            "etc",
            "etc/empty",
            "etc/hostname",
            "etc/resolv.conf",
            "srv",
            "srv/mine",
        ]
    );
    let get = |p: &str| entries.iter().find(|e| e.path == p).unwrap();
    assert_eq!(get("data.txt").data, b"kept\n");
    assert_eq!(get("etc/resolv.conf").data, b"nameserver 192.0.2.1\n");
    assert_eq!(get("etc/hostname").kind, tar::EntryType::Directory);

    // Without the record, the same upper streams every entry.
    fs::remove_file(dir.path().join(targets::RECORD_NAME)).unwrap();
    let mut bytes = Vec::new();
    write_upper_tar(&up, &mut bytes).unwrap();
    let all = read_tar(&bytes);
    for p in ["etc/hosts", "run", "run/target", "srv/target"] {
        assert!(
            all.iter().any(|e| e.path == p),
            "{p} missing without a record"
        );
    }
}

#[test]
fn an_unreadable_record_fails_the_layer_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("upper");
    fs::create_dir(&up).unwrap();
    fs::create_dir(dir.path().join(targets::RECORD_NAME)).unwrap();
    let err = write_upper_tar(&up, io::sink()).unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(chain.contains(targets::RECORD_NAME), "{chain}");
}

/// A file that grows after its header was written is cut at the header's size, one that
/// shrinks is padded with zeros: the tar stays valid either way.
#[test]
fn file_data_is_exactly_the_size_in_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    fs::write(&path, b"0123456789").unwrap();
    let read = |left: u64| {
        let mut out = Vec::new();
        SizedReader {
            file: File::open(&path).unwrap(),
            left,
        }
        .read_to_end(&mut out)
        .unwrap();
        out
    };
    assert_eq!(read(4), b"0123");
    assert_eq!(read(10), b"0123456789");
    assert_eq!(read(13), b"0123456789\0\0\0");
}

#[test]
fn a_plain_tree_is_written_whole_without_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    fs::create_dir_all(t.join("bin")).unwrap();
    fs::write(t.join("bin/busybox"), b"elf").unwrap();
    fs::hard_link(t.join("bin/busybox"), t.join("bin/sh")).unwrap();
    symlink("busybox", t.join("bin/ls")).unwrap();
    // An empty file where the agent records a mount target: a plain tree keeps it.
    fs::create_dir(t.join("etc")).unwrap();
    fs::write(t.join("etc/hosts"), b"").unwrap();
    let bytes = write_tree_tar(t, Vec::new()).unwrap();
    let entries = read_tar(&bytes);
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["bin", "bin/busybox", "bin/ls", "bin/sh", "etc", "etc/hosts"]
    );
    assert_eq!(entries[3].kind, tar::EntryType::Link);
    assert_eq!(entries[3].link.as_deref(), Some("bin/busybox"));
}
