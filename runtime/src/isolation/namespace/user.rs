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
}
