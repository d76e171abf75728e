//! Resolving a docker-style `--user` (`name`, `uid`, `name:group`, `uid:gid`) against the
//! container's own /etc/passwd and /etc/group.

/// The ids a container process runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups the user is listed in.
    pub groups: Vec<u32>,
    /// The user's home from passwd, for `HOME` when the image sets none.
    pub home: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error(
        "cannot run as {kind} {id}: the container's user namespace maps only the {kind}s {mapped} \
         (the invoking user and its subordinate ids in /etc/sub{kind}); give the user a larger \
         range there to use {kind} {id}"
    )]
    Unmapped {
        kind: &'static str,
        id: u32,
        mapped: String,
    },
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        Some(PasswdEntry {
            name: f.first()?,
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3)?.parse().ok()?,
            home: f.get(5).copied().unwrap_or("/"),
        })
    })
}

/// (name, gid, members) of each /etc/group line.
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        let members = f
            .get(3)
            .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        Some((*f.first()?, f.get(2)?.parse().ok()?, members))
    })
}

/// Resolves `spec` against the contents of the container's passwd and group files.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Ids, UserError> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entry = passwd_entries(passwd).find(|e| e.name == user || e.uid.to_string() == user);
    let (uid, mut gid, name, home) = match (entry, user.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name), e.home.to_string()),
        // A numeric uid needs no passwd entry, as in docker.
        (None, Ok(uid)) => (uid, 0, None, "/".to_string()),
        (None, Err(_)) => return Err(UserError::NoUser(user.to_string())),
    };
    if let Some(g) = grp.filter(|g| !g.is_empty()) {
        gid = match group_entries(group).find(|(n, id, _)| *n == g || id.to_string() == g) {
            Some((_, id, _)) => id,
            None => g.parse().map_err(|_| UserError::NoGroup(g.to_string()))?,
        };
    }
    let groups = match name {
        Some(name) if grp.is_none() => group_entries(group)
            .filter(|(_, id, members)| *id != gid && members.contains(&name))
            .map(|(_, id, _)| id)
            .collect(),
        _ => Vec::new(),
    };
    Ok(Ids {
        uid,
        gid,
        groups,
        home,
    })
}

/// Checks that the uid and gid of `ids` exist in the container's user namespace, whose `/proc/self/uid_map` and
/// `gid_map` are given: an unmapped id would fail `setuid`/`setgid` with a bare EINVAL. An
/// unreadable (empty) map is not checked.
pub fn check_mapped(ids: &Ids, uid_map: &str, gid_map: &str) -> Result<(), UserError> {
    let check = |kind: &'static str, map: &str, id: u32| {
        let ranges: Vec<(u64, u64)> = map
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace().map(|n| n.parse::<u64>().ok());
                let (inside, _outside, count) = (f.next()??, f.next()??, f.next()??);
                Some((inside, count))
            })
            .collect();
        let inside = |(first, count): &(u64, u64)| (*first..first + count).contains(&id.into());
        if ranges.is_empty() || ranges.iter().any(inside) {
            return Ok(());
        }
        let mapped = ranges
            .iter()
            .map(|(first, count)| match count {
                1 => first.to_string(),
                _ => format!("{first}-{}", first + count - 1),
            })
            .collect::<Vec<_>>()
            .join(", ");
        Err(UserError::Unmapped { kind, id, mapped })
    };
    check("uid", uid_map, ids.uid)?;
    check("gid", gid_map, ids.gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\nbad line\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nstaff:x:50:www,other\n";

    #[test]
    fn names_and_numbers_resolve() {
        let root = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let www = resolve("www", PASSWD, GROUP).unwrap();
        assert_eq!((www.uid, www.gid, www.groups.clone()), (33, 33, vec![50]));
        assert_eq!(resolve("33", PASSWD, GROUP).unwrap(), www);
        let n = resolve("1234:99", PASSWD, GROUP).unwrap();
        assert_eq!((n.uid, n.gid), (1234, 99));
        let g = resolve("www:staff", PASSWD, GROUP).unwrap();
        assert_eq!((g.uid, g.gid, g.groups.len()), (33, 50, 0));
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        assert_eq!(
            resolve("nobody", PASSWD, GROUP),
            Err(UserError::NoUser("nobody".into()))
        );
        assert_eq!(
            resolve("www:nogroup", PASSWD, GROUP),
            Err(UserError::NoGroup("nogroup".into()))
        );
    }

    #[test]
    fn ids_outside_the_user_namespace_are_named_with_the_mapped_ranges() {
        let map = "         0       1000          1\n         1     400000      65536\n";
        let ids = |uid, gid| Ids {
            uid,
            gid,
            groups: vec![],
            home: "/".into(),
        };
        assert_eq!(check_mapped(&ids(65536, 0), map, map), Ok(()));
        assert_eq!(check_mapped(&ids(99999, 0), "", ""), Ok(()));
        let err = check_mapped(&ids(99999, 0), map, map).unwrap_err();
        assert_eq!(
            err,
            UserError::Unmapped {
                kind: "uid",
                id: 99999,
                mapped: "0, 1-65536".into()
            }
        );
        assert!(err.to_string().contains("/etc/subuid"), "{err}");
        let err = check_mapped(&ids(0, 70000), map, map).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot run as gid 70000"),
            "{err}"
        );
    }
}
