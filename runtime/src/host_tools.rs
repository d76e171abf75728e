//! The host programs nook runs (`mkfs.ext4`, `newuidmap`, `qemu-system-x86_64`, ...), found the
//! way a normal user's machine keeps them. Debian installs administration tools such as
//! `mkfs.ext4` in /sbin and /usr/sbin, which are not on a normal user's PATH, so a lookup that only
//! searched PATH would call an installed tool missing. Every lookup goes through here: PATH first,
//! then the usual system directories; a tool that is really absent names its Debian package.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Searched after PATH, in this order: where distributions keep programs that PATH may lack.
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/sbin",
    "/sbin",
    "/usr/local/bin",
    "/usr/bin",
    "/bin",
];

/// A host program and the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub name: &'static str,
    pub package: &'static str,
}

/// Makes the VM column's writable ext4 disks.
pub const MKFS_EXT4: Tool = Tool {
    name: "mkfs.ext4",
    package: "e2fsprogs",
};
/// Writes a user namespace's uid map from /etc/subuid.
pub const NEWUIDMAP: Tool = Tool {
    name: "newuidmap",
    package: "uidmap",
};
/// Writes a user namespace's gid map from /etc/subgid.
pub const NEWGIDMAP: Tool = Tool {
    name: "newgidmap",
    package: "uidmap",
};
/// The namespace column's user-mode network stack.
pub const PASTA: Tool = Tool {
    name: "pasta",
    package: "passt",
};
/// The VM column's user-mode network stack.
pub const PASST: Tool = Tool {
    name: "passt",
    package: "passt",
};
/// The VM column's virtio-fs backend (not packaged by Debian 12: tests/setup.sh builds it with
/// `cargo install`, see `isolation::vm::virtiofsd::find`).
pub const VIRTIOFSD: Tool = Tool {
    name: "virtiofsd",
    package: "",
};
/// Asks the user's systemd manager for a container's cgroup (a transient scope).
pub const BUSCTL: Tool = Tool {
    name: "busctl",
    package: "systemd",
};
/// `nook bench`'s QEMU microvm peer.
pub const QEMU: Tool = Tool {
    name: "qemu-system-x86_64",
    package: "qemu-system-x86",
};
/// `nook bench`'s runc peer.
pub const RUNC: Tool = Tool {
    name: "runc",
    package: "runc",
};
/// `nook bench`'s crun peer.
pub const CRUN: Tool = Tool {
    name: "crun",
    package: "crun",
};
/// `nook bench`'s Firecracker peer (not packaged by Debian 12).
pub const FIRECRACKER: Tool = Tool {
    name: "firecracker",
    package: "",
};

/// A host program that is installed nowhere nook looks.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{} is not installed: it is neither on PATH nor in {}{}", tool.name, SYSTEM_DIRS.join(", "), install_hint(tool))]
pub struct ToolMissing {
    pub tool: Tool,
}

fn install_hint(tool: &Tool) -> String {
    if tool.package.is_empty() {
        String::new()
    } else {
        format!(" (install the Debian package {})", tool.package)
    }
}

impl Tool {
    /// Where the program is: PATH first, then [`SYSTEM_DIRS`].
    pub fn find(&self) -> Option<PathBuf> {
        find_in(std::env::var_os("PATH").as_deref(), self.name)
    }

    /// Where the program is, or an error naming its package.
    pub fn require(&self) -> Result<PathBuf, ToolMissing> {
        self.find().ok_or(ToolMissing { tool: *self })
    }
}

/// `name` looked up in the directories of `path` (a PATH value), then in [`SYSTEM_DIRS`].
/// A name with a slash is taken as a path.
pub fn find_in(path: Option<&OsStr>, name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    let from_path = path.into_iter().flat_map(std::env::split_paths);
    from_path
        // An empty PATH entry means the working directory: never for host tools.
        .filter(|d| d.is_absolute())
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn executable(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn path_comes_first_then_the_system_directories() {
        let dir = tempfile::tempdir().unwrap();
        let mine = executable(dir.path(), "sh", 0o755);
        let path = std::env::join_paths([dir.path()]).unwrap();
        assert_eq!(find_in(Some(&path), "sh"), Some(mine));
        // Not on PATH at all: /bin/sh (or /usr/bin/sh) is found anyway.
        let found = find_in(Some(OsStr::new("/nonexistent")), "sh").unwrap();
        assert!(found.ends_with("bin/sh"), "{}", found.display());
        assert!(find_in(None, "sh").is_some());
    }

    #[test]
    fn sbin_tools_are_found_without_sbin_on_path() {
        // What a normal Debian user's PATH holds.
        let path = OsStr::new("/usr/local/bin:/usr/bin:/bin:/usr/games");
        let found = find_in(Some(path), "mkfs.ext4").expect(
            "mkfs.ext4 is required by this test but is not installed (e2fsprogs, tests/setup.sh)",
        );
        assert!(found.is_absolute());
    }

    #[test]
    fn non_executables_relative_entries_and_absent_programs_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        executable(dir.path(), "no-such-tool-x", 0o644);
        let path = std::env::join_paths([dir.path()]).unwrap();
        assert_eq!(find_in(Some(&path), "no-such-tool-x"), None);
        assert_eq!(find_in(Some(OsStr::new(":.")), "no-such-tool-x"), None);
        let with_slash = executable(dir.path(), "tool", 0o755);
        assert_eq!(
            find_in(None, with_slash.to_str().unwrap()),
            Some(with_slash)
        );
    }

    #[test]
    fn a_missing_tool_names_its_package() {
        let missing = Tool {
            name: "no-such-tool-x",
            package: "no-such-package",
        };
        let msg = missing.require().unwrap_err().to_string();
        assert!(msg.contains("no-such-tool-x is not installed"), "{msg}");
        assert!(msg.contains("/usr/sbin"), "{msg}");
        assert!(msg.contains("Debian package no-such-package"), "{msg}");
        assert_eq!(MKFS_EXT4.package, "e2fsprogs");
    }
}
