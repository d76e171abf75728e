//! Two containers of one image see neither each other's files, processes nor hostnames; a
//! container runs with the namespaces, ids, capabilities and filters it should, as an
//! unprivileged user.

use nook_tests::rootless::Rootless;

#[test]
fn two_containers_share_no_files_processes_or_hostnames() {
    let nook = Rootless::new();
    nook.default_image();
    nook.ok(&["run", "-d", "--name", "one", "busybox", "sleep", "1001"]);
    nook.ok(&[
        "run",
        "-d",
        "--name",
        "two",
        "--hostname",
        "second",
        "busybox",
        "sleep",
        "1002",
    ]);

    nook.ok(&["exec", "one", "touch", "/only-in-one"]);
    nook.ok(&["exec", "one", "test", "-e", "/only-in-one"]);
    nook.exits(1, &["exec", "two", "test", "-e", "/only-in-one"]);

    let ps_one = nook.ok(&["exec", "one", "ps", "-o", "pid,args"]);
    assert!(ps_one.contains("sleep 1001"), "{ps_one}");
    assert!(!ps_one.contains("sleep 1002"), "{ps_one}");
    // PID 1 of the container is its own first process.
    assert!(
        ps_one
            .lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("sleep 1001")),
        "{ps_one}"
    );

    let host_one = nook.ok(&["exec", "one", "hostname"]);
    let host_two = nook.ok(&["exec", "two", "hostname"]);
    assert_eq!(
        host_one.trim(),
        &nook.id_of("one")[..12],
        "default hostname is the short id"
    );
    assert_eq!(host_two.trim(), "second");

    nook.ok(&["rm", "-f", "one", "two"]);
}

#[test]
fn the_container_is_confined() {
    let nook = Rootless::new();
    nook.default_image();
    let status = nook.ok(&["run", "--rm", "busybox", "cat", "/proc/self/status"]);
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .trim()
            .to_string()
    };
    // Docker's default capability set, nothing else, no ambient capabilities.
    assert_eq!(field("CapBnd:"), "00000000a80425fb");
    assert_eq!(field("CapEff:"), "00000000a80425fb");
    assert_eq!(field("CapAmb:"), "0000000000000000");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2");

    // Root inside, mapped to the unprivileged user outside; with subordinate ids, more.
    let map = nook.ok(&["run", "--rm", "busybox", "cat", "/proc/self/uid_map"]);
    let first: Vec<&str> = map.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(first[0], "0");
    if nook.user().is_some() {
        assert_eq!(
            map.lines().count(),
            2,
            "the test user has subordinate ids: {map}"
        );
    }
    // Namespaces refused by the seccomp profile; a network namespace of its own (loopback
    // only with --network none, plus pasta's eth0 by default); /sys is read-only.
    nook.exits(1, &["run", "--rm", "busybox", "unshare", "-U", "true"]);
    let ifaces = |extra: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend(["busybox", "cat", "/proc/net/dev"]);
        let net = nook.ok(&args);
        net.lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|s| s.trim().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ifaces(&["--network", "none"]), ["lo"]);
    assert_eq!(ifaces(&[]), ["lo", "eth0"]);
    nook.exits(1, &["run", "--rm", "busybox", "touch", "/sys/x"]);
    // docker's masked paths are covered wherever this kernel has them, and read as empty.
    let masked = nook.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "for p in /proc/acpi /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug \
           /proc/scsi /sys/firmware; do \
           [ -e $p ] && ! grep -q \" $p \" /proc/self/mountinfo && echo uncovered $p; done; \
         cat /proc/keys /proc/timer_list | wc -c",
    ]);
    assert_eq!(masked.trim(), "0", "{masked}");
    nook.exits(
        1,
        &[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo x > /proc/sys/kernel/hostname",
        ],
    );
    // A non-root user in the image gets no capabilities.
    let caps = nook.ok(&[
        "run",
        "--rm",
        "-u",
        "1000:1000",
        "busybox",
        "sh",
        "-c",
        "id -u; grep CapEff /proc/self/status",
    ]);
    assert!(caps.starts_with("1000\n"), "{caps}");
    assert!(caps.contains("0000000000000000"), "{caps}");
    // --read-only root.
    nook.exits(1, &["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
}
