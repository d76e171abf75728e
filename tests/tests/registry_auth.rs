//! Authentication against a real registry with htpasswd (bcrypt) basic auth: refused without
//! credentials, `nook login` checks before saving (0600 file), push and pull with them, logout,
//! and the credential files docker and podman/skopeo write.

mod registry_support;

use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use nook_tests::Nook;
use registry_support::Registry;

fn login(
    nook: &Nook,
    config: &std::path::Path,
    host: &str,
    password: &str,
) -> std::process::Output {
    let mut child = nook
        .cmd(["login", "-u", "alice", "--password-stdin", host])
        .env("XDG_CONFIG_HOME", config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn login_push_pull_logout_with_basic_auth() {
    let registry = Registry::with_auth("alice", "s3cret-pw");
    let host = registry.host();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    let nook = Nook::new();
    nook.default_image();
    let target = format!("{host}/private/bb:v1");
    nook.ok(&["tag", "busybox", &target]);
    let env_cmd = |args: &[&str]| {
        let mut c = nook.cmd(args);
        c.env("XDG_CONFIG_HOME", &config).env("HOME", home.path());
        c.output().unwrap()
    };

    // Anonymous: refused, naming the registry and repository.
    let out = env_cmd(&["push", &target]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unauthorized") || err.contains("denied"),
        "{err}"
    );
    assert!(err.contains(&host) && err.contains("private/bb"), "{err}");

    // A wrong password is refused by the registry and nothing is saved.
    let out = login(&nook, &config, &host, "wrong");
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("login to"));
    let auth_file = config.join("nook/auth.json");
    assert!(!auth_file.exists());

    let out = login(&nook, &config, &host, "s3cret-pw");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Login Succeeded\n");
    let mode = std::fs::metadata(&auth_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the auth file is private");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&auth_file).unwrap()).unwrap();
    let b64 = saved["auths"][host.as_str()]["auth"].as_str().unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        b"alice:s3cret-pw"
    );

    let out = env_cmd(&["push", &target]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other = Nook::new();
    let out = {
        let mut c = other.cmd(["pull", &target]);
        c.env("XDG_CONFIG_HOME", &config).env("HOME", home.path());
        c.output().unwrap()
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = env_cmd(&["logout", &host]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Removing login credentials for {host}\n")
    );
    let out = env_cmd(&["pull", &target]);
    assert_eq!(out.status.code(), Some(125), "logged out: refused again");
    let out = env_cmd(&["logout", &host]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Not logged in to {host}\n")
    );
}

#[test]
fn credentials_of_docker_and_containers_files_are_used() {
    let registry = Registry::with_auth("alice", "pw2");
    let host = registry.host();
    let nook = Nook::new();
    nook.default_image();
    let target = format!("{host}/x/bb:v1");
    nook.ok(&["tag", "busybox", &target]);
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:pw2");

    // docker's ~/.docker/config.json.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".docker")).unwrap();
    std::fs::write(
        home.path().join(".docker/config.json"),
        serde_json::json!({"auths": {format!("https://{host}"): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let out = nook
        .cmd(["push", "-q", &target])
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // containers' $XDG_RUNTIME_DIR/containers/auth.json.
    let home = tempfile::tempdir().unwrap();
    let run = home.path().join("run");
    std::fs::create_dir_all(run.join("containers")).unwrap();
    std::fs::write(
        run.join("containers/auth.json"),
        serde_json::json!({"auths": {host.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let other = Nook::new();
    let out = other
        .cmd(["pull", "-q", &target])
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", &run)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{target}\n"));
}
