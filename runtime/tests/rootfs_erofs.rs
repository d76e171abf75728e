//! The EROFS writer against independent readers: a multi-layer image exercising every file kind,
//! whiteout and replacement case is built, checked by fsck.erofs, read back with the erofs-rs
//! crate and (as root) through a kernel loop mount, and compared with GNU tar's extraction of
//! the same layers.

mod common;

use common::*;
use tar::EntryType;

fn attrs(mode: u32, uid: u64, gid: u64, mtime: u64) -> Attrs {
    Attrs {
        mode,
        uid,
        gid,
        mtime,
    }
}

/// A VFS capability v2 blob granting cap_net_raw (what `setcap cap_net_raw+ep` writes).
const CAP_NET_RAW: &[u8] = &[
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
];

fn layers() -> Vec<Vec<u8>> {
    let dir = attrs(0o755, 0, 0, 1_600_000_000);
    let file = DEFAULT;
    let long_name = vec![b'n'; 255];
    let deep: Vec<u8> = std::iter::repeat_n(&b"d"[..], 300)
        .collect::<Vec<_>>()
        .join(&b'/');

    // Layer 0: the base.
    let mut l0 = LayerBuilder::new();
    l0.dir(b"./", &dir)
        .dir(b"etc", &dir)
        .file(b"etc/passwd", b"root:x:0:0::/root:/bin/sh\n", &file)
        .file(b"etc/empty", b"", &file)
        .file(b"etc/block", &vec![7u8; 4096], &file)
        .file(
            b"etc/bigger",
            &(0..20_000u32).map(|i| i as u8).collect::<Vec<_>>(),
            &file,
        )
        .file(
            b"usr/bin/su",
            b"\x7fELF su",
            &attrs(0o4755, 0, 0, 1_600_000_001),
        )
        .file(
            b"usr/bin/wall",
            b"\x7fELF wall",
            &attrs(0o2755, 0, 5, 1_600_000_002),
        )
        .dir(b"tmp", &attrs(0o1777, 0, 0, 1_600_000_000))
        .file(
            b"usr/bin/ping",
            b"\x7fELF ping",
            &attrs(0o755, 0, 0, 1_600_000_003),
        )
        .hardlink(b"usr/bin/ping2", b"usr/bin/ping")
        .file(
            b"big-ids",
            b"owned far away",
            &attrs(0o640, 5_000_000, 4_000_000_000, (1 << 33) + 12_345),
        )
        .device(
            b"dev/null",
            EntryType::Char,
            1,
            3,
            &attrs(0o666, 0, 0, 1_600_000_000),
        )
        .device(
            b"dev/sda1",
            EntryType::Block,
            8,
            1,
            &attrs(0o660, 0, 6, 1_600_000_000),
        )
        .device(
            b"dev/big",
            EntryType::Block,
            259,
            70_000,
            &attrs(0o600, 0, 0, 1_600_000_000),
        )
        .device(
            b"dev/fifo",
            EntryType::Fifo,
            0,
            0,
            &attrs(0o600, 0, 0, 1_600_000_000),
        )
        .symlink(b"bin", b"usr/bin", &attrs(0o777, 0, 0, 1_600_000_000))
        .symlink(
            b"dangling",
            b"/nowhere/at/all",
            &attrs(0o777, 0, 0, 1_600_000_000),
        )
        .symlink(
            b"long-link",
            &vec![b'x'; 300],
            &attrs(0o777, 0, 0, 1_600_000_000),
        )
        .file(&long_name, b"a 255-byte name", &file)
        .file(b"caf\xe9-latin1", b"not UTF-8", &file)
        .file(&[&deep[..], b"/bottom"].concat(), b"deep", &file)
        .file(b"sparse", &sparse_looking(), &file)
        .file(b"gone/a", b"a", &file)
        .file(b"gone/sub/b", b"b", &file)
        .file(b"whited-file", &[b'w'; 10_000], &file)
        .file(b"opq/lower1", b"lower", &file)
        .file(b"opq/sub/lower2", b"lower", &file)
        .file(b"opq2/lower", b"lower", &file)
        .file(b"merge/lower", b"kept", &file)
        .file(b"r1", b"file then dir", &file)
        .file(b"r2/child", b"dir then file", &file)
        .file(b"r3", b"file, dir, file", &file)
        .symlink(b"r4", b"was a symlink", &attrs(0o777, 0, 0, 1_600_000_000))
        .file(b"r5", b"will be a symlink", &file)
        .file(b"linked-then-whited", b"survives through its link", &file)
        .file(b"resurrect", b"first life", &file);
    for i in 0..300 {
        let name = format!("many/{i:03}-{}", "m".repeat(90));
        l0.file(name.as_bytes(), format!("file {i}").as_bytes(), &file);
    }
    // xattrs through PAX SCHILY.xattr records, and a PAX path record with ns mtime.
    l0.pax(&[
        ("SCHILY.xattr.security.capability", CAP_NET_RAW),
        ("SCHILY.xattr.user.origin", b"layer0"),
    ])
    .file(
        b"usr/bin/ping-cap",
        b"\x7fELF ping-cap",
        &attrs(0o755, 0, 0, 1_600_000_004),
    );
    l0.pax(&[("SCHILY.xattr.user.dir", b"on a dir")])
        .dir(b"xdir", &dir);
    let pax_path = format!("pax/{}", "p".repeat(150));
    l0.pax(&[
        ("path", pax_path.as_bytes()),
        ("mtime", b"1700000000.123456789"),
    ])
    .file(b"pax/short-name-overridden", b"from a PAX path", &file);

    // Layer 1: whiteouts, opaque dirs, replacements, links across layers.
    let mut l1 = LayerBuilder::new();
    l1.whiteout(b"", b"gone")
        .whiteout(b"", b"whited-file")
        .whiteout(b"", b"never-existed")
        .dir(b"opq", &dir)
        .opaque(b"opq")
        .file(b"opq/upper", b"upper", &file)
        .opaque(b"opq2")
        .dir(b"merge", &attrs(0o700, 7, 8, 1_600_000_100))
        .file(b"merge/upper", b"added", &file)
        .dir(b"r1", &dir)
        .file(b"r1/inside", b"now a dir", &file)
        .file(b"r2", b"now a file", &file)
        .dir(b"r3", &dir)
        .file(b"r3/x", b"x", &file)
        .file(b"r4", b"now a file", &file)
        .symlink(b"r5", b"etc/passwd", &attrs(0o777, 0, 0, 1_600_000_000))
        .hardlink(b"etc/passwd-link", b"etc/passwd")
        .hardlink(b"keeper", b"linked-then-whited")
        .whiteout(b"", b"resurrect")
        .file(b"etc/passwd", b"root:x:0:0::/root:/bin/bash\n", &file);

    // Layer 2: back again, and a re-creation after a whiteout.
    let mut l2 = LayerBuilder::new();
    l2.file(b"r3", b"a file again", &attrs(0o600, 1, 1, 1_600_000_200))
        .whiteout(b"", b"linked-then-whited")
        .file(b"resurrect", b"second life", &file);

    vec![l0.finish(), l1.finish(), l2.finish()]
}

fn sparse_looking() -> Vec<u8> {
    let mut v = vec![0u8; 1 << 20];
    v[4096 * 100] = 1;
    v[(1 << 20) - 1] = 2;
    v
}

#[test]
fn multi_layer_image_matches_gnu_tar_and_the_kernel() {
    let work = tempfile::tempdir().unwrap();
    let (image, layer_paths, stats) = build_image(work.path(), &layers());
    let snap = check_against_gnu_tar(&image, &layer_paths, work.path());

    // Spot checks that hold without root, read back by erofs-rs.
    let get = |p: &[u8]| {
        snap.get(p)
            .unwrap_or_else(|| panic!("{} missing", String::from_utf8_lossy(p)))
    };
    for gone in [
        &b"gone"[..],
        b"whited-file",
        b"opq/lower1",
        b"opq/sub",
        b"opq2/lower",
        b"linked-then-whited",
    ] {
        assert!(
            !snap.contains_key(gone),
            "{} should be whited out",
            String::from_utf8_lossy(gone)
        );
    }
    assert!(snap.contains_key(&b"opq2"[..]));
    assert_eq!(get(b"opq/upper").kind, 'f');
    assert_eq!(get(b"merge/lower").kind, 'f');
    let merge = get(b"merge");
    assert_eq!((merge.perm, merge.uid, merge.gid), (0o700, 7, 8));
    assert_eq!(get(b"r1").kind, 'd');
    assert_eq!(get(b"r2").kind, 'f');
    assert!(!snap.contains_key(&b"r2/child"[..]));
    assert_eq!(get(b"r3").kind, 'f');
    assert!(!snap.contains_key(&b"r3/x"[..]));
    assert_eq!(get(b"r4").kind, 'f');
    assert_eq!(get(b"r5").target.as_deref(), Some(&b"etc/passwd"[..]));
    assert_eq!(get(b"usr/bin/su").perm, 0o4755);
    assert_eq!(get(b"usr/bin/wall").perm, 0o2755);
    assert_eq!(get(b"tmp").perm, 0o1777);
    let big = get(b"big-ids");
    assert_eq!(
        (big.uid, big.gid, big.mtime),
        (5_000_000, 4_000_000_000, Some(((1 << 33) + 12_345, 0)))
    );
    assert_eq!(get(b"dev/null").rdev, Some((1, 3)));
    assert_eq!(get(b"dev/big").rdev, Some((259, 70_000)));
    assert_eq!(get(b"dev/fifo").kind, 'p');
    assert_eq!(get(b"usr/bin/ping2").link_group, b"usr/bin/ping".to_vec());
    assert_eq!(
        get(b"keeper").size,
        b"survives through its link".len() as u64
    );
    assert_eq!(
        get(b"etc/passwd-link").size,
        b"root:x:0:0::/root:/bin/sh\n".len() as u64
    );
    assert_eq!(get(b"resurrect").size, b"second life".len() as u64);
    let cap = get(b"usr/bin/ping-cap");
    assert_eq!(
        cap.xattrs.get(&b"security.capability"[..]).map(|v| &v[..]),
        Some(CAP_NET_RAW)
    );
    assert_eq!(
        cap.xattrs.get(&b"user.origin"[..]).map(|v| &v[..]),
        Some(&b"layer0"[..])
    );
    assert!(get(b"xdir").xattrs.contains_key(&b"user.dir"[..]));
    let pax = format!("pax/{}", "p".repeat(150));
    assert_eq!(
        get(pax.as_bytes()).mtime,
        Some((1_700_000_000, 123_456_789))
    );
    assert!(snap.contains_key(&vec![b'n'; 255]));
    assert!(snap.contains_key(&b"caf\xe9-latin1"[..]));
    assert_eq!(
        get(b"long-link").target.as_ref().map(|t| t.len()),
        Some(300)
    );
    assert_eq!(get(b"sparse").size, 1 << 20);
    assert_eq!(snap.keys().filter(|k| k.starts_with(b"many/")).count(), 300);
    assert!(
        stats.unreferenced_bytes >= 8192,
        "whited-out data is reported: {stats:?}"
    );
}

#[test]
fn empty_layer_list_gives_an_empty_root() {
    let work = tempfile::tempdir().unwrap();
    let (image, _, stats) = build_image(work.path(), &[]);
    fsck(&image);
    let snap = snapshot_erofs_rs(&image);
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[&b""[..]].kind, 'd');
    assert_eq!(stats.inodes, 1);
}

/// The built-in default image's content (Debian's static busybox and its applet links) as one
/// layer: checked like the others, then, as root, a shell from the mounted image runs in a chroot.
#[test]
fn busybox_image_runs_a_shell_from_the_mounted_image() {
    let busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox (Debian package busybox-static) must be installed");
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    let mut l = LayerBuilder::new();
    let dir = attrs(0o755, 0, 0, 1_600_000_000);
    l.dir(b"./", &dir)
        .dir(b"bin", &dir)
        .file(b"bin/busybox", &busybox, &attrs(0o755, 0, 0, 1_600_000_000))
        .dir(b"tmp", &attrs(0o1777, 0, 0, 1_600_000_000));
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            l.symlink(
                format!("bin/{applet}").as_bytes(),
                b"busybox",
                &attrs(0o777, 0, 0, 0),
            );
        }
    }
    let work = tempfile::tempdir().unwrap();
    let (image, layer_paths, _) = build_image(work.path(), &[l.finish()]);
    let snap = check_against_gnu_tar(&image, &layer_paths, work.path());
    assert!(snap.len() > 100, "busybox has its applets");
    if !is_root() {
        say_not_root("the chroot into the mounted busybox image");
        return;
    }
    let mount = Mount::new(&image);
    let out = std::process::Command::new("chroot")
        .arg(mount.dir.path())
        .args([
            "/bin/sh",
            "-c",
            "echo hello from $(ls /bin | wc -l) applets",
        ])
        .output()
        .expect("chroot");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("hello from"),
        "{stdout} {out:?}"
    );
}

#[test]
fn pax_owner_records_and_blank_owner_fields_are_read_like_docker() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut b = LayerBuilder::new();
    // Go's archive/tar puts ids above the octal field's range in PAX records, header ids 0.
    b.pax(&[("uid", b"3000000000"), ("gid", b"3000000001")])
        .file(b"pax-owned", b"x", &DEFAULT);
    let mut blank = tar::Header::new_ustar();
    blank.set_entry_type(EntryType::Regular);
    blank.set_mode(0o600);
    blank.set_mtime(1_600_000_000);
    blank.set_size(1);
    blank.as_ustar_mut().expect("ustar").uid = [b' '; 8];
    blank.as_ustar_mut().expect("ustar").gid = [0; 8];
    b.raw(blank, b"blank-owner", b"y");
    let (image, _, _) = build_image(tmp.path(), &[b.finish()]);
    fsck(&image);
    let snap = snapshot_erofs_rs(&image);
    let node = |p: &[u8]| snap.get(p).expect("entry present");
    assert_eq!(
        (node(b"pax-owned").uid, node(b"pax-owned").gid),
        (3_000_000_000, 3_000_000_001)
    );
    assert_eq!((node(b"blank-owner").uid, node(b"blank-owner").gid), (0, 0));
}
