//! The namespace column's side of `--user`: the resolution itself is the agent library's
//! ([`nook_agent::user`], shared with the VM column); what is left here is the check that the
//! resolved ids exist in the container's user namespace.

use std::path::Path;

pub use nook_agent::user::ResolvedUser as Ids;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Resolve(#[from] nook_agent::user::UserError),
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

/// Resolves `spec` against the container's /etc/passwd and /etc/group; called with the
/// container's filesystem as the process's root.
pub fn resolve(spec: &str) -> Result<Ids, UserError> {
    Ok(nook_agent::user::resolve_user(Path::new("/"), spec)?)
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

    #[test]
    fn ids_outside_the_user_namespace_are_named_with_the_mapped_ranges() {
        let map = "         0       1000          1\n         1     400000      65536\n";
        let ids = |uid, gid| Ids {
            uid,
            gid,
            groups: vec![],
            home: "/".into(),
        };
        assert!(check_mapped(&ids(65536, 0), map, map).is_ok());
        assert!(check_mapped(&ids(99999, 0), "", "").is_ok());
        let err = check_mapped(&ids(99999, 0), map, map).unwrap_err();
        assert!(
            matches!(
                &err,
                UserError::Unmapped { kind: "uid", id: 99999, mapped } if mapped == "0, 1-65536"
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("/etc/subuid"), "{err}");
        let err = check_mapped(&ids(0, 70000), map, map).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot run as gid 70000"),
            "{err}"
        );
    }
}
