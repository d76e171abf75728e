//! docker's security options in the namespace column, as an unprivileged user: `--cap-add`,
//! `--cap-drop`, `--privileged`, `--security-opt no-new-privileges` and `--security-opt
//! seccomp=`, for the first process, for `exec` and for every start; bad input fails with 125
//! and leaves nothing behind.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use nook_tests::rootless::Rootless;

/// A file the user running nook can read, next to its store.
fn file(nook: &Rootless, name: &str, text: &str) -> String {
    let path: PathBuf = nook.root().parent().unwrap().join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path.to_string_lossy().into_owned()
}

/// The value of `field` in the container's /proc/self/status, run with `flags`.
fn status_field(nook: &Rootless, flags: &[&str], field: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "cat", "/proc/self/status"]);
    let out = nook.ok(&args);
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {out}"))
        .trim()
        .to_string()
}

fn containers(nook: &Rootless) -> String {
    nook.ok(&["ps", "-a", "-q"])
}

const DENY_MKDIR: &str = r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  "syscalls": [
    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
     "comment": "refused to show the profile holds"}
  ]
}"#;

#[test]
fn capabilities_follow_cap_add_cap_drop_and_privileged() {
    let nook = Rootless::new();
    nook.default_image();
    // docker's default set.
    assert_eq!(status_field(&nook, &[], "CapEff"), "00000000a80425fb");
    assert_eq!(
        status_field(&nook, &["--cap-drop", "ALL"], "CapEff"),
        "0000000000000000"
    );
    assert_eq!(
        status_field(
            &nook,
            &["--cap-drop", "all", "--cap-add", "cap_chown"],
            "CapBnd"
        ),
        "0000000000000001"
    );
    let admin = status_field(&nook, &["--cap-add", "SYS_ADMIN"], "CapEff");
    assert_eq!(
        u64::from_str_radix(&admin, 16).unwrap(),
        0xa80425fb | 1 << 21
    );

    // Root of the container may chown with its default set, not without CAP_CHOWN.
    nook.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "touch /f && chown 1:1 /f",
    ]);
    let (_, err) = nook.exits(
        1,
        &[
            "run",
            "--rm",
            "--cap-drop",
            "ALL",
            "busybox",
            "sh",
            "-c",
            "touch /f && chown 1:1 /f",
        ],
    );
    assert!(err.contains("Operation not permitted"), "{err}");

    // --privileged: every capability of the user namespace, which lets it mount a tmpfs
    // there; without it, no.
    let bnd = status_field(&nook, &["--privileged"], "CapEff");
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        u64::from_str_radix(&bnd, 16).unwrap(),
        (1u64 << (last + 1)) - 1
    );
    let mount = "mount -t tmpfs none /mnt && touch /mnt/x && grep ' /mnt tmpfs' /proc/mounts";
    let out = nook.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        &format!("mkdir -p /mnt && {mount}"),
    ]);
    assert!(out.contains("/mnt tmpfs"), "{out}");
    nook.exits(
        1,
        &[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            &format!("mkdir -p /mnt && {mount}"),
        ],
    );
    // Nothing of /proc is masked, and there is no seccomp filter.
    assert_eq!(status_field(&nook, &["--privileged"], "Seccomp"), "0");
    let kcore = nook.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "grep -c /proc/kcore /proc/mounts || true",
    ]);
    assert_eq!(kcore.trim(), "0");
}

#[test]
fn exec_and_every_start_get_the_same_options_and_inspect_shows_them() {
    let nook = Rootless::new();
    nook.default_image();
    nook.ok(&[
        "run",
        "-d",
        "--name",
        "sec",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "kill",
        "--security-opt",
        "no-new-privileges",
        "busybox",
        "sleep",
        "1000",
    ]);
    let status = nook.ok(&["exec", "sec", "cat", "/proc/self/status"]);
    assert!(status.contains("CapBnd:\t0000000000000020"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    let (_, err) = nook.exits(1, &["exec", "sec", "sh", "-c", "touch /f && chown 1:1 /f"]);
    assert!(err.contains("Operation not permitted"), "{err}");

    let host = &inspect(&nook, "sec")[0]["HostConfig"];
    assert_eq!(host["CapAdd"], serde_json::json!(["CAP_KILL"]));
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]));
    assert_eq!(
        host["SecurityOpt"],
        serde_json::json!(["no-new-privileges"])
    );
    assert_eq!(host["Privileged"], false);
    nook.ok(&["rm", "-f", "sec"]);

    // The record keeps them: each start applies them again.
    nook.ok(&[
        "create",
        "--name",
        "again",
        "--cap-drop",
        "ALL",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    for _ in 0..2 {
        let out = nook.ok(&["start", "-a", "again"]);
        assert_eq!(out.trim(), "CapEff:\t0000000000000000");
    }
    let plain = nook.ok(&["create", "busybox", "true"]);
    let host = &inspect(&nook, plain.trim())[0]["HostConfig"];
    assert!(
        host["CapAdd"].is_null() && host["SecurityOpt"].is_null(),
        "{host}"
    );
    nook.ok(&["rm", "-f", "again", plain.trim()]);
}

#[test]
fn no_new_privileges_shows_in_proc_and_can_be_turned_off() {
    let nook = Rootless::new();
    nook.default_image();
    let nnp = |flags: &[&str]| status_field(&nook, flags, "NoNewPrivs");
    assert_eq!(nnp(&["--security-opt", "no-new-privileges"]), "1");
    assert_eq!(nnp(&["--security-opt", "no-new-privileges=true"]), "1");
    // nook's default, stricter than docker's.
    assert_eq!(nnp(&[]), "1");
    // Off, the filter is still installed (by the container's root, before it drops its
    // capabilities).
    assert_eq!(nnp(&["--security-opt", "no-new-privileges=false"]), "0");
    assert_eq!(
        status_field(
            &nook,
            &["--security-opt", "no-new-privileges=false"],
            "Seccomp"
        ),
        "2"
    );
}

#[test]
fn a_profile_denying_mkdir_holds_and_unconfined_lifts_the_filter() {
    let nook = Rootless::new();
    nook.default_image();
    let profile = file(&nook, "deny-mkdir.json", DENY_MKDIR);
    let opt = format!("seccomp={profile}");
    let (_, err) = nook.exits(
        1,
        &[
            "run",
            "--rm",
            "--security-opt",
            &opt,
            "busybox",
            "mkdir",
            "/d",
        ],
    );
    assert!(err.contains("Operation not permitted"), "{err}");
    // The rest is allowed, and the profile replaces the default one (one filter).
    assert_eq!(
        status_field(&nook, &["--security-opt", &opt], "Seccomp_filters"),
        "1"
    );
    // Without no_new_privs too.
    nook.exits(
        1,
        &[
            "run",
            "--rm",
            "--security-opt",
            &opt,
            "--security-opt",
            "no-new-privileges=false",
            "busybox",
            "mkdir",
            "/d",
        ],
    );

    nook.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "mkdir",
        "/d",
    ]);
    assert_eq!(
        status_field(&nook, &["--security-opt", "seccomp=unconfined"], "Seccomp"),
        "0"
    );
    // The default profile refuses unshare; unconfined lets it through.
    nook.exits(1, &["run", "--rm", "busybox", "unshare", "-U", "true"]);
    nook.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "unshare",
        "-U",
        "true",
    ]);

    // docker's allow-list form, with names this architecture does not have: ignored, and
    // said so.
    let allow = file(
        &nook,
        "allow.json",
        r#"{"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["socketcall", "no_such_syscall"], "action": "SCMP_ACT_ALLOW"},
                         {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 13},
                         {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}],
            "architectures": ["SCMP_ARCH_X86_64"]}"#,
    );
    let everything_else = file(
        &nook,
        "allow-default.json",
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["socketcall", "no_such_syscall"], "action": "SCMP_ACT_ERRNO"},
                         {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 13}]}"#,
    );
    let out = nook.cmd(&[
        "create",
        "--security-opt",
        &format!("seccomp={allow}"),
        "busybox",
        "true",
    ]);
    let out = out_of(out);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("ignored as docker ignores them: no_such_syscall, socketcall")
            && out.stderr.contains(&allow),
        "{}",
        out.stderr
    );
    let (_, err) = nook.exits(
        1,
        &[
            "run",
            "--rm",
            "--security-opt",
            &format!("seccomp={everything_else}"),
            "busybox",
            "mkdir",
            "/d",
        ],
    );
    assert!(err.contains("Permission denied"), "{err}");
}

struct Out {
    status: std::process::ExitStatus,
    stderr: String,
}

fn out_of(mut cmd: std::process::Command) -> Out {
    let out = cmd.output().unwrap();
    Out {
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn bad_options_fail_with_125_and_leave_nothing() {
    let nook = Rootless::new();
    nook.default_image();
    let malformed = file(
        &nook,
        "malformed.json",
        "{\n  \"defaultAction\": \"SCMP_ACT_ERRNO\",\n  \"syscalls\": [\n",
    );
    let bad_action = file(
        &nook,
        "bad-action.json",
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_PERHAPS"}]}"#,
    );
    let misspelt = file(
        &nook,
        "misspelt.json",
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscall": []}"#,
    );
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec!["--cap-add".into(), "CAP_FLY".into()],
            vec!["unknown capability: \"CAP_FLY\"".into()],
        ),
        (
            vec!["--cap-drop".into(), "chwon".into()],
            vec!["unknown capability: \"chwon\"".into()],
        ),
        (
            vec!["--security-opt".into(), format!("seccomp={malformed}")],
            vec![
                format!("invalid seccomp profile {malformed}"),
                "not a docker seccomp profile".into(),
                "line 4".into(),
            ],
        ),
        (
            vec!["--security-opt".into(), format!("seccomp={bad_action}")],
            vec![
                format!("invalid seccomp profile {bad_action}"),
                "unknown variant `SCMP_ACT_PERHAPS`".into(),
            ],
        ),
        (
            vec!["--security-opt".into(), format!("seccomp={misspelt}")],
            vec!["unknown field `syscall`".into()],
        ),
        (
            vec![
                "--security-opt".into(),
                "seccomp=/no/such/profile.json".into(),
            ],
            vec!["cannot read the seccomp profile /no/such/profile.json".into()],
        ),
        (
            vec!["--security-opt".into(), "no-new-privileges=maybe".into()],
            vec!["invalid --security-opt \"no-new-privileges=maybe\"".into()],
        ),
        (
            vec!["--security-opt".into(), "apparmor=unconfined".into()],
            vec!["no LSM".into()],
        ),
        // The VM column checks them as the namespace column does (applied in the guest).
        (
            vec!["--isolation=vm".into(), "--cap-drop".into(), "FLY".into()],
            vec!["unknown capability".into()],
        ),
    ];
    for (flags, expected) in &cases {
        for verb in ["run", "create"] {
            let mut args = vec![verb];
            args.extend(flags.iter().map(String::as_str));
            args.extend_from_slice(&["busybox", "true"]);
            let (_, err) = nook.exits(125, &args);
            for e in expected {
                assert!(err.contains(e.as_str()), "{args:?}: {e:?} not in {err}");
            }
        }
    }
    assert_eq!(containers(&nook), "");
    let dir = nook.root().join("containers");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
}

/// `nook inspect` of one container.
fn inspect(nook: &Rootless, name: &str) -> serde_json::Value {
    serde_json::from_str(&nook.ok(&["inspect", name])).unwrap()
}
