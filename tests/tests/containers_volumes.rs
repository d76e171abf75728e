//! Volumes, bind mounts, tmpfs mounts and `nook cp` in the namespace column, as an
//! unprivileged user: data that outlives a container, host directories shared both ways,
//! read-only mounts the container cannot write, bad specifications refused before anything is
//! made.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nook_tests::rootless::Rootless;
use nook_tests::SmallTmpfs;

/// A host directory the test user owns (the store's parent is the test's own temp dir).
fn host_dir(nook: &Rootless, name: &str) -> std::path::PathBuf {
    let dir = nook.root().parent().unwrap().join(name);
    std::fs::create_dir(&dir).unwrap();
    if let Some(user) = nook.user() {
        nook_tests::tool("chown", &[user, dir.to_str().unwrap()]);
    }
    dir
}

fn volume_names(nook: &Rootless) -> Vec<String> {
    nook.ok(&["volume", "ls", "-q"])
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn a_named_volume_outlives_its_containers_until_volume_rm() {
    let nook = Rootless::new();
    nook.default_image();
    // Made on first use, written by one container, removed with it: the data stays.
    nook.ok(&[
        "run",
        "--name",
        "writer",
        "-v",
        "keep:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f && mkdir /data/sub && echo deep > /data/sub/g",
    ]);
    assert_eq!(volume_names(&nook), ["keep"]);
    nook.ok(&["rm", "writer"]);
    assert_eq!(volume_names(&nook), ["keep"], "rm keeps named volumes");
    let out = nook.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=keep,dst=/again",
        "busybox",
        "cat",
        "/again/f",
        "/again/sub/g",
    ]);
    assert_eq!(out, "kept\ndeep\n");

    // docker's outputs.
    let inspect: serde_json::Value =
        serde_json::from_str(&nook.ok(&["volume", "inspect", "keep"])).unwrap();
    assert_eq!(inspect[0]["Name"], "keep");
    assert_eq!(inspect[0]["Driver"], "local");
    let mountpoint = inspect[0]["Mountpoint"].as_str().unwrap().to_string();
    assert_eq!(
        Path::new(&mountpoint),
        nook.path("volumes/keep/_data"),
        "{inspect}"
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(&mountpoint).join("f")).unwrap(),
        "kept\n"
    );
    assert!(nook
        .ok(&["volume", "ls"])
        .starts_with("DRIVER   VOLUME NAME\nlocal    keep\n"));
    let json: serde_json::Value =
        serde_json::from_str(nook.ok(&["volume", "ls", "--format", "json"]).trim()).unwrap();
    assert_eq!(json["Name"], "keep");

    // A volume a container uses is kept unless forced.
    nook.ok(&[
        "create",
        "--name",
        "holder",
        "-v",
        "keep:/data",
        "busybox",
        "true",
    ]);
    let err = nook.fails(&["volume", "rm", "keep"]);
    assert!(err.contains("volume is in use"), "{err}");
    assert!(Path::new(&mountpoint).join("f").exists());
    assert_eq!(
        nook.ok(&["volume", "prune", "-a", "-f"]),
        "Total reclaimed space: 0B\n"
    );
    assert_eq!(volume_names(&nook), ["keep"], "prune keeps a used volume");
    nook.ok(&["rm", "holder"]);
    assert_eq!(nook.ok(&["volume", "rm", "keep"]), "keep\n");
    assert!(volume_names(&nook).is_empty());
    assert!(!nook.path("volumes/keep").exists(), "its data is gone");
    let err = nook.fails(&["volume", "inspect", "keep"]);
    assert!(err.contains("no such volume"), "{err}");
}

#[test]
fn anonymous_volumes_go_with_rm_v_and_images_fill_their_volumes() {
    let nook = Rootless::new();
    nook.default_image();
    // An image with a VOLUME whose directory has files, owners and a mode.
    nook.ok(&[
        "run",
        "--name",
        "maker",
        "busybox",
        "sh",
        "-c",
        "mkdir /seed && echo s > /seed/a && chown 1234:5 /seed/a && chmod 751 /seed",
    ]);
    nook.ok(&["commit", "-c", "VOLUME /seed", "maker", "seeded"]);
    let out = nook.ok(&[
        "run",
        "--name",
        "user",
        "seeded",
        "sh",
        "-c",
        "cat /seed/a && stat -c '%u:%g' /seed/a && stat -c %a /seed && echo more > /seed/b",
    ]);
    assert_eq!(out, "s\n1234:5\n751\n", "docker's copy-up");
    let names = volume_names(&nook);
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(names[0].len(), 64, "an anonymous volume's name");
    // The volume's files never show in the container's changes.
    assert_eq!(nook.ok(&["diff", "user"]), "");
    // rm without -v keeps it; a second container of the image gets a fresh one.
    nook.ok(&["run", "--rm", "seeded", "test", "!", "-e", "/seed/b"]);
    assert_eq!(
        volume_names(&nook),
        names,
        "--rm removed only its own volume"
    );
    nook.ok(&["rm", "-v", "user"]);
    assert!(
        volume_names(&nook).is_empty(),
        "rm -v removes anonymous volumes"
    );

    // -v DST and --volumes-from share one anonymous volume.
    nook.ok(&[
        "create", "--name", "first", "-v", "/shared", "busybox", "true",
    ]);
    let out = nook.ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "first",
        "busybox",
        "sh",
        "-c",
        "echo x > /shared/x && cat /shared/x",
    ]);
    assert_eq!(out, "x\n");
    let err = nook.run(&[
        "run",
        "--rm",
        "--volumes-from",
        "first:ro",
        "busybox",
        "sh",
        "-c",
        "echo y > /shared/y",
    ]);
    assert!(!err.status.success());
    assert_eq!(volume_names(&nook).len(), 1);
    nook.ok(&["volume", "prune", "-f"]);
    assert_eq!(volume_names(&nook).len(), 1, "prune keeps a used volume");
    nook.ok(&["rm", "first"]);
    let out = nook.ok(&["volume", "prune", "-f"]);
    assert!(out.starts_with("Deleted Volumes:\n"), "{out}");
    assert!(volume_names(&nook).is_empty());
}

#[test]
fn bind_mounts_share_a_host_directory_both_ways_and_ro_refuses_writes() {
    let nook = Rootless::new();
    nook.default_image();
    let host = host_dir(&nook, "shared");
    std::fs::write(host.join("from-host"), "host\n").unwrap();
    let spec = format!("{}:/mnt/deep/share", host.display());
    nook.ok(&[
        "create",
        "--name",
        "binder",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "cat /mnt/deep/share/from-host; echo container > /mnt/deep/share/from-container",
    ]);
    // A change on the host after create is seen inside.
    std::fs::write(host.join("from-host"), "changed\n").unwrap();
    assert_eq!(nook.ok(&["start", "-a", "binder"]), "changed\n");
    assert_eq!(
        std::fs::read_to_string(host.join("from-container")).unwrap(),
        "container\n"
    );
    // The made mount point never shows as a change of the container.
    assert_eq!(nook.ok(&["diff", "binder"]), "");

    // Read-only: EROFS inside, the host file unchanged, and no remount can undo it.
    let ro = format!("{}:/ro:ro", host.display());
    let (_, err) = nook.exits(
        1,
        &[
            "run",
            "--rm",
            "-v",
            &ro,
            "busybox",
            "sh",
            "-c",
            "echo evil > /ro/from-host",
        ],
    );
    assert!(err.contains("Read-only file system"), "{err}");
    nook.exits(
        1,
        &[
            "run",
            "--rm",
            "-v",
            &ro,
            "busybox",
            "sh",
            "-c",
            "mount -o remount,rw /ro && echo evil > /ro/from-host",
        ],
    );
    let mount = format!("type=bind,source={},target=/ro,readonly", host.display());
    nook.exits(
        1,
        &[
            "run",
            "--rm",
            "--mount",
            &mount,
            "busybox",
            "rm",
            "/ro/from-host",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(host.join("from-host")).unwrap(),
        "changed\n"
    );
    let inspect = nook.ok(&["inspect", "--format", "{{json .Mounts}}", "binder"]);
    assert!(inspect.contains("\"Type\":\"bind\""), "{inspect}");

    // A single file, and a tmpfs with its size and mode.
    let file = format!("{}:/etc/motd:ro", host.join("from-host").display());
    assert_eq!(
        nook.ok(&["run", "--rm", "-v", &file, "busybox", "cat", "/etc/motd"]),
        "changed\n"
    );
    let out = nook.ok(&[
        "run",
        "--rm",
        "--tmpfs",
        "/scratch:size=1m,mode=1770",
        "busybox",
        "sh",
        "-c",
        "stat -c %a /scratch && df -k /scratch | tail -1",
    ]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1770"));
    assert!(
        lines.next().unwrap().split_whitespace().nth(1) == Some("1024"),
        "{out}"
    );
}

#[test]
fn hostile_targets_and_bad_specifications_change_nothing() {
    let nook = Rootless::new();
    nook.default_image();
    let host = host_dir(&nook, "src");
    let outside = host_dir(&nook, "outside");
    let before = volume_names(&nook);
    let containers_before = nook.ok(&["ps", "-a", "-q"]);
    for (args, says) in [
        (
            vec!["-v", "/nonexistent/dir:/x"],
            "bind source path does not exist",
        ),
        (
            vec!["-v", "../etc:/x"],
            "invalid characters for a local volume name",
        ),
        (vec!["-v", "a/b:/x"], "invalid characters"),
        (vec!["-v", "..:/x"], "invalid characters"),
        (vec!["-v", "/tmp:relative"], "must be absolute"),
        (vec!["-v", "/tmp:/"], "cannot be '/'"),
        (vec!["-v", "/tmp:/x:rx"], "invalid mode"),
        (vec!["--mount", "type=bind,dst=/x"], "source is required"),
        (
            vec!["--mount", "type=bind,src=/tmp,dst=/x,flavour=y"],
            "unexpected key",
        ),
        (vec!["--tmpfs", "/t:size=lots"], "invalid size"),
        (
            vec!["-v", "/tmp:/x", "-v", "/tmp:/x"],
            "Duplicate mount point",
        ),
        (vec!["--volumes-from", "nobody"], "No such container"),
        (
            vec!["--isolation=vm", "-v", "ok:/x"],
            "volumes in the VM column need virtio-fs",
        ),
    ] {
        let mut full = vec!["create"];
        full.extend(args.iter());
        full.extend(["busybox", "true"]);
        let err = nook.fails(&full);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(volume_names(&nook), before, "no volume was made");
    assert_eq!(
        nook.ok(&["ps", "-a", "-q"]),
        containers_before,
        "no container was made"
    );

    // A target through the image's symlinks is resolved inside the container's root: an
    // absolute link to the host's directory and a climbing one both stay inside.
    nook.ok(&[
        "run",
        "--name",
        "evil",
        "busybox",
        "sh",
        "-c",
        &format!(
            "ln -s {} /abs && ln -s ../../../../../../{} /up",
            outside.display(),
            outside.strip_prefix("/").unwrap().display()
        ),
    ]);
    nook.ok(&["commit", "evil", "evil"]);
    let spec = |t: &str| format!("{}:{t}", host.display());
    for target in ["/abs/x", "/up/y", "/abs", "/up"] {
        let _ = nook.run(&["run", "--rm", "-v", &spec(target), "evil", "true"]);
    }
    let _ = nook.run(&["run", "--rm", "--tmpfs", "/abs/t", "evil", "true"]);
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing was made in the host directory the links name"
    );
}

#[test]
fn a_full_volume_gives_enospc_and_nothing_else_breaks() {
    let nook = Rootless::new();
    nook.default_image();
    let dir = host_dir(&nook, "small");
    let small = SmallTmpfs::mount(&dir, "1m", nook.user());
    let spec = format!("{}:/small", small.path().display());
    let (_, err) = nook.exits(
        1,
        &[
            "run",
            "--rm",
            "-v",
            &spec,
            "busybox",
            "sh",
            "-c",
            "dd if=/dev/zero of=/small/fill bs=64k count=64",
        ],
    );
    assert!(err.contains("No space left on device"), "{err}");
    // The container's own layer and the next container are unaffected.
    let out = nook.ok(&["run", "--rm", "-v", &spec, "busybox", "sh", "-c",
        "echo fine > /elsewhere && cat /elsewhere && rm /small/fill && echo ok > /small/ok && cat /small/ok"]);
    assert_eq!(out, "fine\nok\n");
    assert!(small.path().join("ok").exists());
    assert!(
        std::fs::metadata(small.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777
            != 0
    );
    let _ = std::fs::metadata(small.path()).unwrap().uid();
}
