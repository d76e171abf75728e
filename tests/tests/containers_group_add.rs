//! docker's `--group-add` in the namespace column, as an unprivileged user: numeric gids and
//! names of the image's /etc/group join the process's supplementary groups, for the first
//! process, for `exec` and for every start; an unknown name fails with 125 and docker's message,
//! leaving no container.

use nook_tests::rootless::Rootless;

/// The gid of the built-in busybox image's `nogroup` (its /etc/group has `root` and `nogroup`).
const NOGROUP: &str = "65534";

#[test]
fn added_groups_are_the_processes_supplementary_groups() {
    let nook = Rootless::new();
    nook.default_image();
    let groups = nook.ok(&[
        "run",
        "--rm",
        "--group-add",
        "1234",
        "--group-add",
        "nogroup",
        "busybox",
        "id",
        "-G",
    ]);
    assert_eq!(groups.trim(), format!("0 1234 {NOGROUP}"));
    // Another user keeps its own primary group, and gets the added ones besides.
    let groups = nook.ok(&[
        "run",
        "--rm",
        "--user",
        "1000:1000",
        "--group-add",
        "nogroup",
        "busybox",
        "id",
        "-G",
    ]);
    assert_eq!(groups.trim(), format!("1000 {NOGROUP}"));
}

#[test]
fn exec_and_a_second_start_get_the_added_groups() {
    let nook = Rootless::new();
    nook.default_image();
    nook.ok(&[
        "run",
        "-d",
        "--name",
        "grouped",
        "--group-add",
        "4321",
        "busybox",
        "sleep",
        "60",
    ]);
    assert_eq!(nook.ok(&["exec", "grouped", "id", "-G"]).trim(), "0 4321");
    nook.ok(&["rm", "-f", "grouped"]);
    nook.ok(&[
        "create",
        "--name",
        "again",
        "--group-add",
        "nogroup",
        "busybox",
        "id",
        "-G",
    ]);
    for _ in 0..2 {
        nook.ok(&["start", "again"]);
        nook.ok(&["wait", "again"]);
    }
    let logs = nook.ok(&["logs", "again"]);
    assert_eq!(logs, format!("0 {NOGROUP}\n0 {NOGROUP}\n"));
}

#[test]
fn an_unknown_group_name_fails_with_125_and_creates_nothing() {
    let nook = Rootless::new();
    nook.default_image();
    let err = nook.fails(&["run", "--rm", "--group-add", "nosuch", "busybox", "true"]);
    assert!(
        err.contains("unable to find group nosuch: no matching entries in group file"),
        "{err}"
    );
    let err = nook.fails(&["create", "--group-add", "", "busybox", "true"]);
    assert!(err.contains("--group-add"), "{err}");
    assert_eq!(nook.ok(&["ps", "-a", "-q"]), "");
}
