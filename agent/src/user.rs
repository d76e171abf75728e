//! Resolves an image's `User` (`name`, `uid`, `name:group`, `uid:gid`, ...) against the
//! container's own /etc/passwd and /etc/group, the way docker and runc do.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Who a process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the groups of /etc/group that list the user by name.
    pub groups: Vec<u32>,
    /// The home directory from /etc/passwd, `/` when the user has no entry.
    pub home: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {name}: no matching entries in {}", path.display())]
    UnknownUser { name: String, path: PathBuf },
    #[error("unable to find group {name}: no matching entries in {}", path.display())]
    UnknownGroup { name: String, path: PathBuf },
    #[error("reading {} failed", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("user `{spec}` is not a name, a uid or a name/uid pair")]
    Malformed { spec: String },
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

/// Reads a colon-separated database; a missing file is an empty database (scratch images).
fn read_db(path: &Path) -> Result<String, UserError> {
    match fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(UserError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 6 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_owned(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
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

/// Resolves `spec` against `root`/etc/passwd and `root`/etc/group. Empty means root.
pub fn resolve_user(root: &Path, spec: &str) -> Result<ResolvedUser, UserError> {
    let passwd_path = root.join("etc/passwd");
    let group_path = root.join("etc/group");
    let passwd = parse_passwd(&read_db(&passwd_path)?);
    let groups = parse_group(&read_db(&group_path)?);

    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user_part.is_empty() && group_part.is_some() || group_part == Some("") {
        return Err(UserError::Malformed {
            spec: spec.to_owned(),
        });
    }
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|e| e.uid == uid),
        Err(_) => Some(passwd.iter().find(|e| e.name == user_part).ok_or_else(|| {
            UserError::UnknownUser {
                name: user_part.to_owned(),
                path: passwd_path.clone(),
            }
        })?),
    };
    let uid = match entry {
        Some(e) => e.uid,
        None => user_part.parse().map_err(|_| UserError::Malformed {
            spec: spec.to_owned(),
        })?,
    };
    let mut gid = entry.map_or(0, |e| e.gid);
    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                groups
                    .iter()
                    .find(|e| e.name == g)
                    .ok_or_else(|| UserError::UnknownGroup {
                        name: g.to_owned(),
                        path: group_path.clone(),
                    })?
                    .gid
            }
        };
    }
    let mut supplementary: Vec<u32> = match entry {
        Some(e) => groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == &e.name))
            .map(|g| g.gid)
            .collect(),
        None => Vec::new(),
    };
    if !supplementary.contains(&gid) {
        supplementary.insert(0, gid);
    }
    supplementary.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        groups: supplementary,
        home: entry.map_or_else(|| "/".to_owned(), |e| e.home.clone()),
    })
}

#[cfg(test)]
mod tests {
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

        let r = resolve_user(dir.path(), "1000:staff").unwrap();
        assert_eq!((r.uid, r.gid), (1000, 50));

        let r = resolve_user(dir.path(), "app:7").unwrap();
        assert_eq!((r.uid, r.gid), (1000, 7));

        // A uid without an entry runs with gid 0 and home /.
        let r = resolve_user(dir.path(), "4242").unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (4242, 0, "/"));
        let r = resolve_user(dir.path(), "4242:4343").unwrap();
        assert_eq!((r.uid, r.gid, r.groups.clone()), (4242, 4343, vec![4343]));
    }

    #[test]
    fn unknown_names_are_errors_naming_the_file() {
        let dir = image();
        let err = resolve_user(dir.path(), "nobody").unwrap_err();
        assert!(
            err.to_string().contains("unable to find user nobody"),
            "{err}"
        );
        assert!(err.to_string().contains("etc/passwd"));
        let err = resolve_user(dir.path(), "app:nogroup").unwrap_err();
        assert!(err.to_string().contains("unable to find group nogroup"));
        assert!(matches!(
            resolve_user(dir.path(), "app:"),
            Err(UserError::Malformed { .. })
        ));
    }

    #[test]
    fn scratch_images_without_passwd_accept_numeric_users() {
        let dir = tempfile::tempdir().unwrap();
        let r = resolve_user(dir.path(), "65534:65534").unwrap();
        assert_eq!((r.uid, r.gid), (65534, 65534));
        assert!(resolve_user(dir.path(), "app").is_err());
    }
}
