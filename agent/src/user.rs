//! Resolves an image's `User` (`name`, `uid`, `name:group`, `uid:gid`, `:gid`, ...) against the
//! container's own /etc/passwd and /etc/group, the way docker (runc's `GetExecUser` and the
//! daemon's supplementary groups) does. The one definition for both isolation columns: the
//! guest agent and the namespace column's container init.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Who a process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The supplementary groups to set: the primary gid first (as docker does since 23.0),
    /// then, unless the group was given explicitly, the groups of /etc/group listing the user.
    pub groups: Vec<u32>,
    /// The home directory from /etc/passwd (verbatim, empty included), `/` when the user has no
    /// entry.
    pub home: String,
}

/// Why a user could not be resolved; the texts are docker's.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {name}: no matching entries in passwd file")]
    UnknownUser { name: String },
    #[error("unable to find group {name}: no matching entries in group file")]
    UnknownGroup { name: String },
    #[error("reading {} failed", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Opens `rel` beneath `root`, resolving every symlink (absolute ones and `..` included) as if
/// `root` were `/`, so that a container's `/etc/passwd -> /etc/shadow` never reads the host's.
/// `Ok(None)` when the file does not exist.
fn open_in_root(root: &Path, rel: &str) -> io::Result<Option<File>> {
    let dir = crate::copy::fs::open_path(root, libc::O_PATH | libc::O_DIRECTORY)?;
    let err = match crate::copy::open_in_root(
        std::os::fd::AsFd::as_fd(&dir),
        Path::new(rel),
        libc::O_RDONLY,
        0,
    ) {
        Ok(fd) => return Ok(Some(File::from(fd))),
        Err(err) => err,
    };
    match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => Ok(None),
        // Before Linux 5.6: following symlinks from `/` cannot leave it.
        Some(libc::ENOSYS) if root == Path::new("/") => match File::open(root.join(rel)) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        },
        _ => Err(err),
    }
}

/// The text of `path` beneath `root`, read as [`open_in_root`] opens it; none when missing.
pub fn read_in_root(root: &Path, path: &Path) -> io::Result<Option<String>> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    match open_in_root(root, &rel.to_string_lossy())? {
        Some(mut f) => {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)?;
            Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
        }
        None => Ok(None),
    }
}

/// Reads a colon-separated database beneath `root`; a missing file is an empty database
/// (scratch images).
fn read_db(root: &Path, rel: &str) -> Result<String, UserError> {
    let read = || -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        if let Some(mut f) = open_in_root(root, rel)? {
            f.read_to_end(&mut bytes)?;
        }
        Ok(bytes)
    };
    match read() {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(source) => Err(UserError::Read {
            path: root.join(rel),
            source,
        }),
    }
}

/// The fields of the non-comment lines.
fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split(':').collect())
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    records(text)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                // Missing fields are empty, as in runc's parser.
                home: f.get(5).copied().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    records(text)
        .filter_map(|f| {
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `spec` against `root`/etc/passwd and `root`/etc/group, read without following
/// symlinks out of `root`. Empty means root.
pub fn resolve_user(root: &Path, spec: &str) -> Result<ResolvedUser, UserError> {
    let passwd = read_db(root, "etc/passwd")?;
    let group = read_db(root, "etc/group")?;
    resolve(spec, &passwd, &group)
}

/// Resolves `spec` against the contents of a passwd and a group file, as runc does: a numeric
/// user or group is always an id (an entry is optional), a name needs an entry, an empty user
/// is uid 0 and an empty group the user's own.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ResolvedUser, UserError> {
    let passwd = parse_passwd(passwd);
    let groups = parse_group(group);
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g).filter(|g| !g.is_empty())),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|e| e.uid == uid),
        Err(_) => Some(passwd.iter().find(|e| e.name == user_part).ok_or_else(|| {
            UserError::UnknownUser {
                name: user_part.to_owned(),
            }
        })?),
    };
    // A numeric uid needs no passwd entry.
    let uid = entry.map_or_else(|| user_part.parse().unwrap_or(0), |e| e.uid);
    let gid = match group_part {
        None => entry.map_or(0, |e| e.gid),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                groups
                    .iter()
                    .find(|e| e.name == g)
                    .ok_or_else(|| UserError::UnknownGroup { name: g.to_owned() })?
                    .gid
            }
        },
    };
    let mut supplementary = vec![gid];
    // Only the implicit form takes the groups listing the user, as in runc.
    if let (Some(e), None) = (entry, group_part) {
        for g in groups.iter().filter(|g| g.members.contains(&e.name)) {
            if !supplementary.contains(&g.gid) {
                supplementary.push(g.gid);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        groups: supplementary,
        home: entry.map_or_else(|| "/".to_owned(), |e| e.home.clone()),
    })
}

/// The user `--userns=keep-id` adds to a container, as podman does: the caller's login name,
/// uid, gid and home directory, in the container's /etc/passwd and /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepIdUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

impl KeepIdUser {
    /// `passwd` with the user's entry (podman's: `name:*:uid:gid:name:home:/bin/sh`) added;
    /// none when an entry has the uid already.
    pub fn add_to_passwd(&self, passwd: &str) -> Option<String> {
        if parse_passwd(passwd).iter().any(|e| e.uid == self.uid) {
            return None;
        }
        let home = if self.home.is_empty() {
            "/"
        } else {
            &self.home
        };
        Some(format!(
            "{}{}:*:{}:{}:{}:{home}:/bin/sh\n",
            with_newline(passwd),
            self.name,
            self.uid,
            self.gid,
            self.name
        ))
    }

    /// `group` with the user's group (`name:x:gid:`) added; none when a group has the gid.
    pub fn add_to_group(&self, group: &str) -> Option<String> {
        if parse_group(group).iter().any(|g| g.gid == self.gid) {
            return None;
        }
        Some(format!(
            "{}{}:x:{}:\n",
            with_newline(group),
            self.name,
            self.gid
        ))
    }
}

fn with_newline(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn image() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken line\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwheel:x:10:root,app\napp:x:1001:\nstaff:x:50:other\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn names_and_ids_resolve_like_docker() {
        let dir = image();
        let r = resolve_user(dir.path(), "").unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (0, 0, "/root"));
        assert_eq!(r.groups, vec![0, 10]);

        let r = resolve_user(dir.path(), "app").unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (1000, 1001, "/home/app"));
        assert_eq!(r.groups, vec![1001, 10]);
        assert_eq!(resolve_user(dir.path(), "1000").unwrap(), r);
        // An empty group is the user's own, as in runc.
        assert_eq!(resolve_user(dir.path(), "app:").unwrap(), r);

        // An explicit group replaces the groups listing the user.
        let r = resolve_user(dir.path(), "1000:staff").unwrap();
        assert_eq!((r.uid, r.gid, r.groups), (1000, 50, vec![50]));

        let r = resolve_user(dir.path(), "app:7").unwrap();
        assert_eq!((r.uid, r.gid), (1000, 7));

        // An empty user is root.
        let r = resolve_user(dir.path(), ":wheel").unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (0, 10, "/root"));

        // A uid without an entry runs with gid 0 and home /.
        let r = resolve_user(dir.path(), "4242").unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (4242, 0, "/"));
        let r = resolve_user(dir.path(), "4242:4343").unwrap();
        assert_eq!((r.uid, r.gid, r.groups.clone()), (4242, 4343, vec![4343]));
    }

    #[test]
    fn a_numeric_user_is_always_a_uid() {
        let passwd = "1000:x:5:5::/five:/bin/sh\nreal:x:1000:1000::/home/real:/bin/sh\n";
        let r = resolve("1000", passwd, "").unwrap();
        assert_eq!((r.uid, r.home.as_str()), (1000, "/home/real"));
    }

    #[test]
    fn short_passwd_lines_are_entries_with_empty_fields() {
        let r = resolve("svc", "svc:x:7:8\n", "").unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (7, 8, ""));
    }

    #[test]
    fn unknown_names_are_errors_in_dockers_words() {
        let dir = image();
        let err = resolve_user(dir.path(), "nobody").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        let err = resolve_user(dir.path(), "app:nogroup").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find group nogroup: no matching entries in group file"
        );
    }

    #[test]
    fn scratch_images_without_passwd_accept_numeric_users() {
        let dir = tempfile::tempdir().unwrap();
        let r = resolve_user(dir.path(), "65534:65534").unwrap();
        assert_eq!((r.uid, r.gid), (65534, 65534));
        assert!(resolve_user(dir.path(), "app").is_err());
    }

    #[test]
    fn symlinks_do_not_leave_the_root() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(
            outside.path().join("passwd"),
            "escaped:x:1:1::/out:/bin/sh\n",
        )
        .unwrap();
        fs::write(outside.path().join("group"), "escgrp:x:77:\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        // Absolute and `..` links both resolve inside the container's root.
        let link = std::os::unix::fs::symlink::<String, std::path::PathBuf>;
        let abs = |name: &str| outside.path().join(name).display().to_string();
        link(abs("passwd"), dir.path().join("etc/passwd")).unwrap();
        let dots = "../".repeat(dir.path().components().count() + 2);
        link(
            format!("{dots}{}", abs("group")),
            dir.path().join("etc/group"),
        )
        .unwrap();
        assert!(matches!(
            resolve_user(dir.path(), "escaped"),
            Err(UserError::UnknownUser { .. })
        ));
        assert!(matches!(
            resolve_user(dir.path(), "0:escgrp"),
            Err(UserError::UnknownGroup { .. })
        ));
        // A link that stays inside is followed.
        fs::write(dir.path().join("etc/real"), "inside:x:3:3::/in:/bin/sh\n").unwrap();
        fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        link("/etc/real".into(), dir.path().join("etc/passwd")).unwrap();
        assert_eq!(resolve_user(dir.path(), "inside").unwrap().home, "/in");
    }

    #[test]
    fn keep_id_adds_the_user_as_podman_does_unless_its_ids_exist() {
        let user = KeepIdUser {
            name: "alice".into(),
            uid: 1000,
            gid: 1001,
            home: "/home/alice".into(),
        };
        let passwd = "root:x:0:0:root:/root:/bin/sh";
        assert_eq!(
            user.add_to_passwd(passwd).unwrap(),
            "root:x:0:0:root:/root:/bin/sh\nalice:*:1000:1001:alice:/home/alice:/bin/sh\n"
        );
        assert_eq!(user.add_to_group("").unwrap(), "alice:x:1001:\n");
        assert_eq!(user.add_to_passwd("bob:x:1000:5::/:/bin/sh\n"), None);
        assert_eq!(user.add_to_group("staff:x:1001:\n"), None);
        // Resolved by uid afterwards, with the home directory.
        let added = user.add_to_passwd(passwd).unwrap();
        let r = resolve("1000:1001", &added, "").unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (1000, 1001, "/home/alice"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/group"), "alice:x:1001:\n").unwrap();
        std::os::unix::fs::symlink("/etc/group", dir.path().join("etc/passwd")).unwrap();
        let read = |p: &str| read_in_root(dir.path(), Path::new(p)).unwrap();
        assert_eq!(read("/etc/group").as_deref(), Some("alice:x:1001:\n"));
        // A symlink resolves inside the root, never to the host's file.
        assert_eq!(read("/etc/passwd").as_deref(), Some("alice:x:1001:\n"));
        assert_eq!(read("/etc/shadow"), None);
    }
}
