//! The namespace column's seccomp profile refuses what docker's default profile refuses: a
//! static probe built from `tests/fixtures/seccomp_probe.c` calls each syscall by number inside a
//! container and prints the errno it got.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use nook_tests::rootless::Rootless;

/// The syscalls the profile refuses beyond its first version (EPERM, as docker answers).
/// sethostname, setdomainname and vhangup also fail without the profile, for want of a
/// capability; the profile refuses them whatever the capabilities.
const DENIED: &[&str] = &[
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "socket_vsock",
    "personality_addr_no_randomize",
    "fanotify_init",
    "get_mempolicy",
    "set_mempolicy",
    "mbind",
    "set_mempolicy_home_node",
    "migrate_pages",
    "move_pages",
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
    "quotactl_fd",
    "sethostname",
    "setdomainname",
    "sysfs",
    "ustat",
    "vhangup",
];

/// Calls docker allows, which the profile must not refuse.
const ALLOWED: &[&str] = &[
    "getpid",
    "socket_unix",
    "personality_query",
    "personality_linux32",
];

/// Builds the probe and imports it as the image `probe`, runs it, returns name -> errno.
fn probe_results(nook: &Rootless) -> BTreeMap<String, i32> {
    let dir = nook.root().parent().unwrap().join("probe");
    std::fs::create_dir(&dir).unwrap();
    let source = nook_tests::workspace_root().join("tests/fixtures/seccomp_probe.c");
    let binary = dir.join("probe");
    nook_tests::compile_static_probe(&source, &binary);
    let data = std::fs::read(&binary).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header.set_size(data.len() as u64);
    tar.append_data(&mut header, "probe", &data[..]).unwrap();
    let tarball = dir.join("probe.tar");
    std::fs::write(&tarball, tar.into_inner().unwrap()).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&tarball, std::fs::Permissions::from_mode(0o644)).unwrap();
    nook.ok(&["import", tarball.to_str().unwrap(), "probe"]);
    let printed = nook.ok(&["run", "--rm", "probe", "/probe"]);
    printed
        .lines()
        .map(|l| {
            let (name, errno) = l.split_once(' ').expect("probe prints `name errno`");
            (name.to_string(), errno.parse().expect("numeric errno"))
        })
        .collect()
}

#[test]
fn the_profile_refuses_what_dockers_refuses_and_allows_the_rest() {
    let nook = Rootless::new();
    let results = probe_results(&nook);
    let mut wrong = Vec::new();
    for name in DENIED {
        match results.get(*name) {
            Some(&errno) if errno == libc::EPERM => {}
            got => wrong.push(format!("{name}: expected EPERM, got errno {got:?}")),
        }
    }
    for name in ALLOWED {
        match results.get(*name) {
            Some(0) => {}
            got => wrong.push(format!("{name}: expected success, got errno {got:?}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\nall results: {results:?}",
        wrong.join("\n")
    );
}
