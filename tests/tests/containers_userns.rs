//! `--userns=keep-id` in the namespace column, as an unprivileged user (with subordinate ids):
//! the user's own uid and gid inside, the process running as them, the user in the container's
//! /etc/passwd and /etc/group, files it writes in a bind mount owned by the user on the host, the
//! image's files still owned by the container's root; other modes fail with 125.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use nook_tests::rootless::Rootless;

/// The uid, gid and login name nook runs as.
fn ids(nook: &Rootless) -> (u32, u32, String) {
    let id = |flag: &str| {
        let mut c = Command::new("id");
        c.arg(flag);
        if let Some(user) = nook.user() {
            c.arg(user);
        }
        let out = c.output().expect("id");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    (
        id("-u").parse().unwrap(),
        id("-g").parse().unwrap(),
        id("-un"),
    )
}

#[test]
fn keep_id_runs_as_the_user_who_owns_what_it_writes_in_a_bind_mount() {
    let nook = Rootless::new();
    nook.default_image();
    let (uid, gid, name) = ids(&nook);
    assert_ne!(uid, 0, "the test needs an unprivileged user");

    assert_eq!(
        nook.ok(&["run", "--rm", "--userns=keep-id", "busybox", "id", "-u"]),
        format!("{uid}\n")
    );
    // podman's entries, and the process's user resolved through them.
    let out = nook.ok(&[
        "run",
        "--rm",
        "--userns=keep-id",
        "busybox",
        "sh",
        "-c",
        "id; grep \"^$(id -un):\" /etc/passwd; grep \":$(id -g):\" /etc/group; \
         stat -c '%u %g' /bin/busybox /etc /",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(
        lines[0].starts_with(&format!("uid={uid}({name}) gid={gid}(")),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!("{name}:*:{uid}:{gid}:")) && lines[1].ends_with(":/bin/sh"),
        "{out}"
    );
    assert!(lines[2].contains(&format!(":{gid}:")), "{out}");
    // The image's files are still the container root's.
    assert_eq!(lines[3], "0 0", "{out}");
    assert_eq!(lines[4], "0 0", "{out}");
    assert_eq!(lines[5], "0 0", "{out}");

    // --user wins over the user's own ids.
    assert_eq!(
        nook.ok(&[
            "run",
            "--rm",
            "--userns=keep-id",
            "--user",
            "0",
            "busybox",
            "id",
            "-u"
        ]),
        "0\n"
    );

    // A file written in a bind mount belongs to the user on the host.
    let host = nook.root().parent().unwrap().join("shared");
    std::fs::create_dir(&host).unwrap();
    if let Some(user) = nook.user() {
        nook_tests::tool("chown", &[user, host.to_str().unwrap()]);
    }
    let spec = format!("{}:/shared", host.display());
    nook.ok(&[
        "run",
        "--rm",
        "--userns=keep-id",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "echo mine > /shared/made && mkdir /shared/dir",
    ]);
    for made in ["made", "dir"] {
        let meta = std::fs::metadata(host.join(made)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{made}");
    }
    // Without keep-id the container's root is the user, and its uid 1000 a subordinate id.
    let out = nook.ok(&[
        "run",
        "--rm",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "id -u; stat -c %u /shared/made",
    ]);
    assert_eq!(out, "0\n0\n");

    // diff and export see the owners as the container does: the image's root, and the user.
    nook.ok(&[
        "run",
        "--name",
        "writer",
        "--userns=keep-id",
        "busybox",
        "sh",
        "-c",
        "echo x > /tmp/mine",
    ]);
    assert_eq!(nook.ok(&["diff", "writer"]), "C /tmp\nA /tmp/mine\n");
    let tar = host.join("writer.tar");
    nook.ok(&["export", "-o", tar.to_str().unwrap(), "writer"]);
    let listing = nook_tests::tool("tar", &["--numeric-owner", "-tvf", tar.to_str().unwrap()]);
    let owner = |name: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("no {name} in {listing}"))
            .to_string()
    };
    assert_eq!(owner(" bin"), "0/0");
    assert_eq!(owner(" etc/passwd"), "0/0");
    assert_eq!(owner(" tmp/mine"), format!("{uid}/{gid}"));
    nook.ok(&["rm", "writer"]);

    // inspect shows the mode; exec runs as the user too; the container's record keeps it.
    nook.ok(&[
        "run",
        "-d",
        "--name",
        "kept",
        "--userns=keep-id",
        "busybox",
        "sleep",
        "600",
    ]);
    assert_eq!(
        nook.ok(&["inspect", "-f", "{{.HostConfig.UsernsMode}}", "kept"]),
        "keep-id\n"
    );
    assert_eq!(nook.ok(&["exec", "kept", "id", "-u"]), format!("{uid}\n"));
    nook.ok(&["rm", "-f", "kept"]);
    assert_eq!(nook.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn other_userns_modes_fail_with_125_and_create_nothing() {
    let nook = Rootless::new();
    nook.default_image();
    for mode in ["--userns=host", "--userns=auto", "--userns=keep-id:uid=5"] {
        let (_, err) = nook.exits(125, &["run", "--rm", mode, "busybox", "true"]);
        assert!(
            err.contains("--userns=") && err.contains("keep-id"),
            "{mode}: {err}"
        );
    }
    assert_eq!(nook.ok(&["ps", "-a", "-q"]), "");
}
