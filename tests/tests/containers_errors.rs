//! Bad input to the container verbs: a clear error naming the thing, docker's exit status, and
//! nothing changed.

use nook_tests::rootless::Rootless;

fn containers(nook: &Rootless) -> String {
    nook.ok(&[
        "ps",
        "-a",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Names}} {{.State}}",
    ])
}

#[test]
fn unknown_image_creates_nothing() {
    let nook = Rootless::new();
    nook.default_image();
    let err = nook.fails(&["run", "no-such-image:1.0", "true"]);
    assert!(err.contains("no-such-image"), "{err}");
    let err = nook.fails(&["create", "no-such-image"]);
    assert!(err.contains("no-such-image"), "{err}");
    assert_eq!(containers(&nook), "");
}

#[test]
fn name_clash_is_refused() {
    let nook = Rootless::new();
    nook.default_image();
    nook.ok(&["create", "--name", "taken", "busybox", "true"]);
    let before = containers(&nook);
    let err = nook.fails(&["run", "--name", "taken", "busybox", "true"]);
    assert!(err.contains("\"/taken\" is already in use"), "{err}");
    let err = nook.fails(&["create", "--name", "bad name", "busybox"]);
    assert!(err.contains("invalid container name"), "{err}");
    assert_eq!(containers(&nook), before);
}

#[test]
fn lifecycle_rules_are_enforced() {
    let nook = Rootless::new();
    nook.default_image();
    nook.ok(&["create", "--name", "idle", "busybox", "sleep", "1000"]);
    let err = nook.fails(&["exec", "idle", "true"]);
    assert!(err.contains("container idle is not running"), "{err}");
    let err = nook.fails(&["kill", "idle"]);
    assert!(err.contains("is not running"), "{err}");
    assert!(nook.state_of("idle").starts_with("created"));

    nook.ok(&["start", "idle"]);
    let before = nook.state_of("idle");
    let err = nook.fails(&["start", "idle"]);
    assert!(err.contains("container idle is already running"), "{err}");
    let err = nook.fails(&["rm", "idle"]);
    assert!(err.contains("container is running"), "{err}");
    assert_eq!(
        nook.state_of("idle").split(' ').next(),
        before.split(' ').next()
    );

    let err = nook.fails(&["exec", "no-such", "true"]);
    assert!(err.contains("No such container: no-such"), "{err}");
    nook.ok(&["rm", "-f", "idle"]);
}

#[test]
fn invalid_flags_change_nothing() {
    let nook = Rootless::new();
    nook.default_image();
    nook.ok(&["run", "-d", "--name", "steady", "busybox", "sleep", "1000"]);
    let before = containers(&nook);
    nook.fails(&["run", "--no-such-flag", "busybox", "true"]);
    nook.fails(&["stop", "-t", "soon", "steady"]);
    let err = nook.fails(&["kill", "-s", "NOPE", "steady"]);
    assert!(err.contains("invalid signal: NOPE"), "{err}");
    let err = nook.fails(&["run", "--isolation", "chroot", "busybox", "true"]);
    assert!(err.contains("invalid isolation"), "{err}");
    let err = nook.fails(&["run", "--memory", "lots", "busybox", "true"]);
    assert!(err.contains("--memory"), "{err}");
    let err = nook.fails(&["logs", "--tail", "some", "steady"]);
    assert!(err.contains("--tail"), "{err}");
    let err = nook.fails(&["run", "--kernel", "/vmlinux", "busybox", "true"]);
    assert!(
        err.contains("--kernel applies only to --isolation=vm"),
        "{err}"
    );
    assert_eq!(containers(&nook), before);
    assert!(nook.state_of("steady").starts_with("running"));
    nook.ok(&["rm", "-f", "steady"]);
}

#[test]
fn concurrent_creates_keep_names_unique() {
    let nook = Rootless::new();
    nook.default_image();
    // Eight commands race for one name, eight more create distinct ones.
    let mut children = Vec::new();
    for i in 0..16 {
        let name = if i < 8 {
            "contested".to_string()
        } else {
            format!("own-{i}")
        };
        children.push(
            nook.cmd(&["create", "--name", &name, "busybox", "true"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    let results: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let contested_ok = results[..8].iter().filter(|o| o.status.success()).count();
    assert_eq!(contested_ok, 1, "exactly one create of the same name wins");
    for o in &results[..8] {
        if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("is already in use"), "{err}");
        }
    }
    assert!(results[8..].iter().all(|o| o.status.success()));
    let listed = containers(&nook);
    assert_eq!(listed.lines().count(), 9, "{listed}");
    assert_eq!(listed.matches(" contested ").count(), 1, "{listed}");
}

#[test]
fn a_missing_vm_kernel_is_named_before_any_vm_starts() {
    let nook = Rootless::new();
    nook.default_image();
    let (_, err) = nook.exits(
        125,
        &[
            "run",
            "--rm",
            "--isolation=vm",
            "--kernel",
            "/no/such/vmlinux",
            "busybox",
            "true",
        ],
    );
    assert!(err.contains("/no/such/vmlinux"), "{err}");
}

#[test]
fn the_default_isolation_comes_from_the_flag_then_the_environment_then_the_config_file() {
    let nook = nook_tests::Nook::new();
    nook.default_image();
    let isolation = |name: &str| {
        let out = nook.ok(&["inspect", "--format", "{{.HostConfig.Isolation}}", name]);
        out.trim().to_string()
    };
    nook.ok(&["create", "--name", "plain", "busybox"]);
    assert_eq!(isolation("plain"), "container");

    std::fs::create_dir_all(nook.config_file().parent().unwrap()).unwrap();
    std::fs::write(nook.config_file(), "isolation = \"vm\"\n").unwrap();
    nook.ok(&["create", "--name", "configured", "busybox"]);
    assert_eq!(isolation("configured"), "vm");
    let out = nook
        .cmd(["create", "--name", "from-env", "busybox"])
        .env("NOOK_ISOLATION", "container")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(isolation("from-env"), "container");
    nook.ok(&[
        "create",
        "--isolation=container",
        "--name",
        "flagged",
        "busybox",
    ]);
    assert_eq!(isolation("flagged"), "container");

    // A broken file is named, and nothing is created.
    std::fs::write(nook.config_file(), "isolation = \"kvm\"\n").unwrap();
    let err = nook.fails(&["create", "--name", "broken", "busybox"]);
    assert!(err.contains("config.toml"), "{err}");
    let all = nook.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!all.contains("broken"), "{all}");
}

#[test]
fn ps_filters_last_and_latest_follow_docker() {
    let nook = Rootless::new();
    nook.default_image();
    nook.ok(&["create", "--name", "first", "busybox"]);
    nook.exits(
        3,
        &["run", "--name", "failed", "busybox", "sh", "-c", "exit 3"],
    );
    nook.ok(&["create", "--name", "newest", "busybox"]);
    let names = |args: &[&str]| {
        let mut all = vec!["ps", "--format", "{{.Names}}"];
        all.extend_from_slice(args);
        nook.ok(&all).lines().map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(names(&[]), Vec::<String>::new(), "nothing runs");
    assert_eq!(names(&["-a"]), ["newest", "failed", "first"]);
    assert_eq!(names(&["-l"]), ["newest"]);
    assert_eq!(names(&["-n", "2"]), ["newest", "failed"]);
    assert_eq!(names(&["-f", "status=exited"]), ["failed"]);
    assert_eq!(names(&["-f", "exited=3"]), ["failed"]);
    assert_eq!(names(&["-f", "exited=0"]), Vec::<String>::new());
    assert_eq!(names(&["-a", "-f", "status=created"]), ["newest", "first"]);
    assert_eq!(
        names(&["-a", "-f", "name=ne", "-f", "name=fi"]),
        ["newest", "first"]
    );
    assert_eq!(
        names(&["-a", "-f", "ancestor=busybox:latest", "-f", "name=fail"]),
        ["failed"]
    );
    assert_eq!(names(&["-a", "-f", "isolation=vm"]), Vec::<String>::new());
    let (_, err) = nook.exits(125, &["ps", "-f", "colour=red"]);
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn malformed_image_references_are_refused_without_asking_a_registry() {
    let nook = Rootless::new();
    let long = "a".repeat(300);
    for reference in ["UPPER:bad", "", long.as_str()] {
        for verb in ["run", "create"] {
            let err = nook.fails(&[verb, reference, "true"]);
            assert!(
                err.contains("invalid reference format"),
                "{verb} {reference:?}: {err}"
            );
            assert!(
                !err.contains("No such image") && !err.contains("Unable to find image"),
                "{verb} {reference:?}: {err}"
            );
        }
    }
    assert_eq!(containers(&nook), "");
}

#[test]
fn bad_flag_values_are_refused_as_docker_refuses_them() {
    let nook = Rootless::new();
    nook.default_image();
    let err = nook.fails(&["run", "-e", "=val", "busybox", "true"]);
    assert!(err.contains("invalid environment variable: =val"), "{err}");
    let err = nook.fails(&["run", "--memory", "4m", "busybox", "true"]);
    assert!(err.contains("Minimum memory limit allowed is 6MB"), "{err}");
    for cpus in ["--cpus=-1", "--cpus=0"] {
        let err = nook.fails(&["run", cpus, "busybox", "true"]);
        assert!(
            err.contains("Range of CPUs is from 0.01 to"),
            "{cpus}: {err}"
        );
        assert!(!err.contains("warning"), "the error comes first: {err}");
    }
    assert_eq!(containers(&nook), "");
    // The smallest limit docker accepts is accepted.
    nook.ok(&["run", "--rm", "--memory", "6m", "busybox", "true"]);
}

#[test]
fn a_numeric_user_without_a_passwd_entry_runs_as_that_uid_or_says_why_not() {
    let nook = Rootless::new();
    nook.default_image();
    let out = nook.ok(&["run", "--rm", "-u", "4242", "busybox", "id", "-u"]);
    assert_eq!(out.trim(), "4242");
    // The test user's subordinate range (65536 ids) maps container ids 0..=65536 only.
    let err = nook.fails(&["run", "--rm", "-u", "99999", "busybox", "id", "-u"]);
    assert!(err.contains("cannot run as uid 99999"), "{err}");
    assert!(err.contains("maps only the uids 0"), "{err}");
    assert!(err.contains("/etc/subuid"), "{err}");
}

#[test]
fn the_loser_of_two_concurrent_removals_says_the_container_is_gone() {
    let nook = Rootless::new();
    nook.default_image();
    for round in 0..4 {
        let name = format!("doomed-{round}");
        nook.ok(&["run", "-d", "--name", &name, "busybox", "sleep", "1000"]);
        let children: Vec<_> = (0..2)
            .map(|_| {
                nook.cmd(&["rm", "-f", &name])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let results: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let won = results.iter().filter(|o| o.status.success()).count();
        assert_eq!(won, 1, "round {round}: exactly one removal succeeds");
        for o in results.iter().filter(|o| !o.status.success()) {
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(125), "{err}");
            assert!(err.contains(&format!("No such container: {name}")), "{err}");
            assert!(!err.contains("lock"), "{err}");
        }
        assert!(!containers(&nook).contains(&name));
    }
}

#[test]
fn checkpoints_of_namespace_containers_name_what_they_would_need() {
    let nook = Rootless::new();
    nook.default_image();
    nook.ok(&["create", "--name", "idle", "busybox", "sleep", "1000"]);
    let err = nook.fails(&["checkpoint", "create", "idle", "c1"]);
    assert!(err.contains("container idle is not running"), "{err}");
    let err = nook.fails(&["checkpoint", "create", "idle", "../x"]);
    assert!(err.contains("checkpoint ../x: invalid name"), "{err}");
    for args in [
        &["checkpoint", "ls", "idle"][..],
        &["checkpoint", "rm", "idle", "c1"],
        &["start", "--checkpoint", "c1", "idle"],
    ] {
        let err = nook.fails(args);
        assert!(
            err.contains("needs the VM column") && err.contains("CRIU"),
            "{args:?}: {err}"
        );
    }
    assert!(nook.state_of("idle").starts_with("created"));
    nook.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "up",
        "busybox",
        "sleep",
        "1000",
    ]);
    let err = nook.fails(&["checkpoint", "create", "up", "c1"]);
    assert!(
        err.contains("needs the VM column") && err.contains("CRIU"),
        "{err}"
    );
    assert!(
        nook.state_of("up").starts_with("running"),
        "{}",
        nook.state_of("up")
    );
    nook.ok(&["rm", "-f", "idle", "up"]);
}
