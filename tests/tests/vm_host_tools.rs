//! nook finds the host tools it runs where Debian keeps them, also when a normal user's PATH
//! lacks /sbin and /usr/sbin: `create --isolation=vm` (not `--rm`) makes the container's ext4
//! disk with `mkfs.ext4`, which Debian installs in /sbin. No guest boots, so no KVM is needed.

use nook_tests::Nook;

/// A normal Debian user's PATH: no /sbin, no /usr/sbin.
const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games";

#[test]
fn vm_create_makes_its_disk_without_sbin_on_path() {
    let mkfs_on_user_path = USER_PATH
        .split(':')
        .any(|d| std::path::Path::new(d).join("mkfs.ext4").exists());
    assert!(
        !mkfs_on_user_path,
        "this test needs mkfs.ext4 in /sbin or /usr/sbin only, as Debian installs it"
    );
    let nook = Nook::new();
    nook.default_image();
    // A fresh cache: the empty ext4 template is made now, with mkfs.ext4.
    let cache = tempfile::tempdir().unwrap();
    let out = nook
        .cmd(["create", "--isolation=vm", "--name", "disked", "busybox"])
        .env("PATH", USER_PATH)
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .expect("cannot start nook");
    assert!(
        out.status.success(),
        "nook create --isolation=vm failed with {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let disk = nook.root().join("containers").join(&id).join("upper.ext4");
    let data = std::fs::read(&disk)
        .unwrap_or_else(|e| panic!("the container's disk {}: {e}", disk.display()));
    // ext4 superblock magic 0xEF53 at offset 1024 + 0x38.
    assert_eq!(&data[1024 + 0x38..1024 + 0x3a], &[0x53, 0xef]);
    assert!(cache.path().join("nook/ext4").is_dir());
    nook.ok(&["rm", "disked"]);
}
