//! Volumes, bind mounts, tmpfs mounts and `nook cp` in the namespace column, as an
//! unprivileged user: data that outlives a container, host directories shared both ways,
//! read-only mounts the container cannot write, bad specifications refused before anything is
//! made, and copies that a hostile container's symlinks cannot turn onto the host's files.

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

/// A host tree of every kind `cp` keeps: a 100 MiB file, a symlink, a hard link, modes and a
/// sub-directory.
fn make_tree(dir: &Path) {
    use std::io::Write;
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    let mut big = std::fs::File::create(dir.join("big")).unwrap();
    let mut block = vec![0u8; 1 << 20];
    for i in 0..100u32 {
        for (j, b) in block.iter_mut().enumerate() {
            *b = (i as usize * 31 + j * 7) as u8;
        }
        big.write_all(&block).unwrap();
    }
    std::fs::write(dir.join("sub/script"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        dir.join("sub/script"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::fs::write(dir.join("sub/deeper/secret"), "s").unwrap();
    std::fs::set_permissions(
        dir.join("sub/deeper/secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(
        dir.join("sub/deeper"),
        std::fs::Permissions::from_mode(0o711),
    )
    .unwrap();
    std::fs::hard_link(dir.join("sub/script"), dir.join("hardlink")).unwrap();
    std::os::unix::fs::symlink("sub/script", dir.join("symlink")).unwrap();
}

/// Every entry below `dir`: its path, type, mode, contents or link target, and which entries
/// share an inode.
fn describe_tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut inodes: Vec<(u64, String)> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let mode = m.mode() & 0o7777;
            if m.file_type().is_symlink() {
                out.push(format!(
                    "{rel} link {}",
                    std::fs::read_link(&p).unwrap().display()
                ));
            } else if m.is_dir() {
                out.push(format!("{rel} dir {mode:o}"));
                stack.push(p);
            } else {
                let data = std::fs::read(&p).unwrap();
                let sum = nook_tests::sha256(&data);
                let first = match inodes.iter().find(|(i, _)| *i == m.ino()) {
                    Some((_, f)) => f.clone(),
                    None => {
                        inodes.push((m.ino(), rel.clone()));
                        rel.clone()
                    }
                };
                out.push(format!(
                    "{rel} file {mode:o} {} {sum} inode-of {first}",
                    data.len()
                ));
            }
        }
    }
    out.sort();
    // The first path of a linked pair depends on the walk's order: name them by the sorted
    // order instead.
    out
}

#[test]
fn cp_round_trips_a_tree_both_ways_running_and_stopped() {
    let nook = Rootless::new();
    nook.default_image();
    let tree = host_dir(&nook, "tree");
    make_tree(&tree);
    if let Some(user) = nook.user() {
        nook_tests::tool("chown", &["-R", user, tree.to_str().unwrap()]);
    }
    let want = describe_tree(&tree);
    assert!(
        want.iter().any(|l| l.starts_with("big file 644 104857600")),
        "{want:?}"
    );

    nook.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "600"]);
    // Into the running container: a directory that does not exist takes the tree's contents.
    nook.ok(&["cp", tree.to_str().unwrap(), "box:/copied"]);
    let inside = nook.ok(&["exec", "box", "sh", "-c",
        "stat -c '%a %u' /copied/sub/script && readlink /copied/symlink && md5sum /copied/big | cut -c1-32"]);
    let md5 = nook_tests::tool(
        "sh",
        &["-c", &format!("md5sum {}/big | cut -c1-32", tree.display())],
    );
    assert_eq!(
        inside,
        format!("750 0\nsub/script\n{md5}"),
        "copies belong to the container's root"
    );

    // Out of the running container, into an existing directory: the tree keeps its name.
    let out = host_dir(&nook, "out-running");
    nook.ok(&["cp", "box:/copied", out.to_str().unwrap()]);
    assert_eq!(describe_tree(&out.join("copied")), want, "byte-identical");

    // Out of the stopped container, contents only (`/.`), and back into it while stopped.
    nook.ok(&["stop", "-t", "0", "box"]);
    let stopped = host_dir(&nook, "out-stopped");
    nook.ok(&["cp", "box:/copied/.", stopped.to_str().unwrap()]);
    assert_eq!(describe_tree(&stopped), want);
    nook.ok(&["cp", tree.join("sub").to_str().unwrap(), "box:/again"]);
    let back = host_dir(&nook, "back");
    nook.ok(&["cp", "box:/again/script", back.join("s").to_str().unwrap()]);
    assert_eq!(
        std::fs::read(back.join("s")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        std::fs::metadata(back.join("s")).unwrap().mode() & 0o777,
        0o750
    );

    // A tar stream out and in.
    let tar = nook.cmd(&["cp", "box:/copied/sub", "-"]).output().unwrap();
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let mut names: Vec<String> = tar::Archive::new(&tar.stdout[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["sub", "sub/deeper", "sub/deeper/secret", "sub/script"]
    );
    let mut child = nook
        .cmd(&["cp", "-", "box:/tmp"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &tar.stdout).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    nook.ok(&["start", "box"]);
    assert_eq!(
        nook.ok(&["exec", "box", "cat", "/tmp/sub/script"]),
        "#!/bin/sh\necho hi\n"
    );
    // Owners: -a keeps the container's, the default gives them to the user.
    nook.ok(&["exec", "box", "chown", "1234:1234", "/tmp/sub/script"]);
    let plain = host_dir(&nook, "plain");
    nook.ok(&["cp", "box:/tmp/sub/script", plain.to_str().unwrap()]);
    let me = std::fs::metadata(&plain).unwrap().uid();
    assert_eq!(std::fs::metadata(plain.join("script")).unwrap().uid(), me);
    let archived = host_dir(&nook, "archived");
    nook.ok(&[
        "cp",
        "-a",
        "box:/tmp/sub/script",
        archived.to_str().unwrap(),
    ]);
    assert_ne!(
        std::fs::metadata(archived.join("script")).unwrap().uid(),
        me
    );
    // cp went into the container's files, so diff shows it (and only that).
    let diff = nook.ok(&["diff", "box"]);
    assert!(
        diff.contains("A /copied/big") && diff.contains("A /again/script"),
        "{diff}"
    );
    nook.ok(&["rm", "-f", "box"]);
}

#[test]
fn cp_never_follows_a_containers_symlinks_onto_the_host() {
    let nook = Rootless::new();
    nook.default_image();
    let outside = host_dir(&nook, "outside");
    std::fs::write(outside.join("secret"), "host secret\n").unwrap();
    let victim = host_dir(&nook, "victim");
    let out_rel = outside.strip_prefix("/").unwrap().display().to_string();
    // Links to the host's `/`, climbing links, and a parent directory that is such a link.
    nook.ok(&[
        "run",
        "-d",
        "--name",
        "evil",
        "busybox",
        "sh",
        "-c",
        &format!(
            "mkdir -p /{out_rel} && echo decoy > /{out_rel}/secret && \
         ln -s / /root-link && ln -s ../../../../../../../.. /up && ln -s {} /abs-dir && \
         ln -s {}/secret /abs-file && sleep 600",
            outside.display(),
            outside.display()
        ),
    ]);
    // `run -d` returns once the shell runs, not once it has made its links.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while nook
        .run(&["exec", "evil", "test", "-L", "/abs-file"])
        .status
        .code()
        != Some(0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the container never made its links"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let host_out = victim.join("got");
    let try_read = |src: &str, follow: bool| {
        let mut args = vec!["cp"];
        if follow {
            args.push("-L");
        }
        args.extend([src, host_out.to_str().unwrap()]);
        let _ = nook.run(&args);
        let read = std::fs::read_to_string(&host_out).unwrap_or_default();
        let _ = std::fs::remove_file(&host_out);
        read
    };
    for state in ["running", "stopped"] {
        for (src, follow) in [
            (format!("evil:/up/{out_rel}/secret"), false),
            (format!("evil:/root-link/{out_rel}/secret"), false),
            ("evil:/abs-dir/secret".to_string(), false),
            ("evil:/abs-file".to_string(), true),
        ] {
            let read = try_read(&src, follow);
            assert!(
                !read.contains("host secret"),
                "{state}: {src} read a host file"
            );
            assert_eq!(
                read, "decoy\n",
                "{state}: {src} resolves inside the container"
            );
        }
        // Without -L, a link is copied as the link it is.
        nook.ok(&["cp", "evil:/abs-file", host_out.to_str().unwrap()]);
        assert!(std::fs::symlink_metadata(&host_out)
            .unwrap()
            .file_type()
            .is_symlink());
        std::fs::remove_file(&host_out).unwrap();

        // Writes through the same links stay inside the container.
        let file = victim.join("payload");
        std::fs::write(&file, "payload\n").unwrap();
        for dst in [
            "evil:/abs-dir/planted".to_string(),
            format!("evil:/up/{out_rel}/planted"),
            format!("evil:/root-link/{out_rel}/"),
        ] {
            let _ = nook.run(&["cp", file.to_str().unwrap(), &dst]);
        }
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(8);
        h.set_mode(0o644);
        tar.append_data(&mut h, "planted-by-tar", &b"payload\n"[..])
            .unwrap();
        let tar = tar.into_inner().unwrap();
        let _ = nook
            .cmd(&["cp", "-", "evil:/abs-dir"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                std::io::Write::write_all(c.stdin.as_mut().unwrap(), &tar)?;
                drop(c.stdin.take());
                c.wait()
            });
        let mut left: Vec<String> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["secret"],
            "{state}: nothing was written outside the container"
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("secret")).unwrap(),
            "host secret\n"
        );
        if state == "running" {
            nook.ok(&["stop", "-t", "0", "evil"]);
        }
    }
    // What the links led to was made inside the container's own root.
    let inside = victim.join("inside");
    nook.ok(&["cp", &format!("evil:/{out_rel}"), inside.to_str().unwrap()]);
    for (name, want) in [
        ("planted", "payload\n"),
        ("planted-by-tar", "payload\n"),
        ("secret", "decoy\n"),
    ] {
        assert_eq!(
            std::fs::read_to_string(inside.join(name)).unwrap(),
            want,
            "{name}"
        );
    }
    nook.ok(&["rm", "-f", "evil"]);
}

#[test]
fn cp_into_a_read_only_container_goes_only_into_its_writable_volumes() {
    let nook = Rootless::new();
    nook.default_image();
    let data = host_dir(&nook, "data");
    let conf = host_dir(&nook, "conf");
    let payload = host_dir(&nook, "payload").join("file");
    std::fs::write(&payload, "payload\n").unwrap();
    let payload = payload.to_str().unwrap();
    let rw = format!("{}:/data", data.display());
    let ro = format!("{}:/conf:ro", conf.display());
    nook.ok(&[
        "create",
        "--name",
        "sealed",
        "--read-only",
        "-v",
        &rw,
        "-v",
        &ro,
        "busybox",
        "sleep",
        "600",
    ]);
    for state in ["stopped", "running"] {
        if state == "running" {
            nook.ok(&["start", "sealed"]);
        }
        for dst in ["sealed:/", "sealed:/etc/x", "sealed:/data/../x"] {
            let err = nook.fails(&["cp", payload, dst]);
            assert!(
                err.contains("container rootfs is marked read-only"),
                "{state} {dst}: {err}"
            );
        }
        let err = nook.fails(&["cp", payload, "sealed:/conf/x"]);
        assert!(
            err.contains("mounted volume is marked read-only"),
            "{state}: {err}"
        );
        assert_eq!(std::fs::read_dir(&conf).unwrap().count(), 0, "{state}");
        let name = format!("sealed:/data/{state}");
        nook.ok(&["cp", payload, &name]);
        assert_eq!(
            std::fs::read_to_string(data.join(state)).unwrap(),
            "payload\n"
        );
    }
    nook.ok(&["rm", "-f", "sealed"]);
}
