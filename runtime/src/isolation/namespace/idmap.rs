//! The user namespace's uid/gid mapping. An unprivileged user is root inside its containers;
//! with a subordinate range in /etc/subuid and /etc/subgid the container gets ids 1..=count too
//! (written by the setuid helpers newuidmap/newgidmap), else only id 0 exists inside.

use std::fmt::Write as _;
use std::io;
use std::process::Command;

use crate::host_tools::{Tool, ToolMissing, NEWGIDMAP, NEWUIDMAP};

/// `count` ids starting at `inside` map to host ids starting at `host`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub host: u32,
    pub count: u32,
}

/// How a new user namespace is mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
    /// Write the maps through newuidmap/newgidmap (needed for more than our own id).
    pub helpers: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    #[error(transparent)]
    Missing(#[from] ToolMissing),
    #[error("cannot run {helper}")]
    Helper {
        helper: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{helper} failed for pid {pid}: {stderr}")]
    HelperFailed {
        helper: &'static str,
        pid: i32,
        stderr: String,
    },
    #[error(
        "--userns=keep-id needs subordinate ids: a range for this user in /etc/subuid and \
         /etc/subgid, and newuidmap/newgidmap installed (the uidmap package)"
    )]
    KeepIdNeedsSubordinateIds,
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// The first range of `/etc/subuid`-style `content` for the user `name` or uid `id`.
pub fn subordinate_range(content: &str, name: &str, id: u32) -> Option<(u32, u32)> {
    content.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let owner = fields.next()?;
        let start: u32 = fields.next()?.trim().parse().ok()?;
        let count: u32 = fields.next()?.trim().parse().ok()?;
        let matches = owner == name || owner.parse::<u32>().ok() == Some(id);
        (matches && count > 0 && !owner.is_empty()).then_some((start, count))
    })
}

impl IdMap {
    /// The mapping for a user with `uid`/`gid`, login `name`, given the contents of
    /// /etc/subuid and /etc/subgid and whether newuidmap/newgidmap are installed.
    pub fn plan(
        uid: u32,
        gid: u32,
        name: &str,
        subuid: &str,
        subgid: &str,
        helpers_installed: bool,
    ) -> IdMap {
        if uid == 0 {
            // Root needs no helper and has every id: the identity mapping keeps file owners
            // the same inside and out.
            let all = vec![IdRange {
                inside: 0,
                host: 0,
                count: u32::MAX,
            }];
            return IdMap {
                uids: all.clone(),
                gids: all,
                helpers: false,
            };
        }
        let own_uid = IdRange {
            inside: 0,
            host: uid,
            count: 1,
        };
        let own_gid = IdRange {
            inside: 0,
            host: gid,
            count: 1,
        };
        let sub = (
            subordinate_range(subuid, name, uid),
            subordinate_range(subgid, name, uid),
        );
        match sub {
            (Some((us, uc)), Some((gs, gc))) if helpers_installed => IdMap {
                uids: vec![
                    own_uid,
                    IdRange {
                        inside: 1,
                        host: us,
                        count: uc,
                    },
                ],
                gids: vec![
                    own_gid,
                    IdRange {
                        inside: 1,
                        host: gs,
                        count: gc,
                    },
                ],
                helpers: true,
            },
            _ => IdMap {
                uids: vec![own_uid],
                gids: vec![own_gid],
                helpers: false,
            },
        }
    }

    /// The mapping for the calling user, from the system's files.
    pub fn for_current_user() -> IdMap {
        // SAFETY: getuid/getgid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let name = user_name(uid).unwrap_or_default();
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let helpers = NEWUIDMAP.find().is_some() && NEWGIDMAP.find().is_some();
        IdMap::plan(
            uid,
            gid,
            &name,
            &read("/etc/subuid"),
            &read("/etc/subgid"),
            helpers,
        )
    }

    /// podman's `--userns=keep-id` mapping, from this (the default) one: the user's own uid and
    /// gid are the same number inside, and the ids below and above them are the subordinate
    /// ids, in order (container 0..U-1 the first U of them, U+1.. the rest). Root's identity
    /// mapping already keeps every id. Without subordinate ids there is no container root to
    /// set the container up: refused.
    pub fn keep_id(&self) -> Result<IdMap, IdMapError> {
        if self.uids.first().is_some_and(|r| r.count == u32::MAX) {
            return Ok(self.clone());
        }
        let keep = |ranges: &[IdRange]| match ranges {
            [own, sub] if own.inside == 0 && own.count == 1 && sub.inside == 1 => {
                Some(keep_id_ranges(own.host, *sub))
            }
            _ => None,
        };
        match (self.helpers, keep(&self.uids), keep(&self.gids)) {
            (true, Some(uids), Some(gids)) => Ok(IdMap {
                uids,
                gids,
                helpers: true,
            }),
            _ => Err(IdMapError::KeepIdNeedsSubordinateIds),
        }
    }

    /// Whether the container may call setgroups (the kernel denies it when an unprivileged
    /// process wrote the gid map itself).
    pub fn setgroups_allowed(&self) -> bool {
        // SAFETY: geteuid has no preconditions.
        self.setgroups_allowed_as(unsafe { libc::geteuid() } == 0)
    }

    /// [`IdMap::setgroups_allowed`] for a writer that is root or not: root (of the host, or of
    /// the user namespace an OCI runtime's caller runs it in) writes any map without denying
    /// setgroups.
    pub fn setgroups_allowed_as(&self, root: bool) -> bool {
        self.helpers || root || self.uids.first().is_some_and(|r| r.count == u32::MAX)
    }

    /// A short key naming this mapping: directories unpacked under one mapping have owners that
    /// mean something else under another, so caches are keyed by it.
    pub fn key(&self) -> String {
        let mut s = String::new();
        for r in self.uids.iter().chain(&self.gids) {
            let _ = write!(s, "{}-{}-{}.", r.inside, r.host, r.count);
        }
        let hash = s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
        format!("{hash:016x}")
    }

    /// The map's lines as the kernel and newuidmap take them.
    pub fn map_lines(ranges: &[IdRange]) -> String {
        ranges
            .iter()
            .map(|r| format!("{} {} {}\n", r.inside, r.host, r.count))
            .collect()
    }

    /// Writes the maps of the user namespace of process `pid` (a child waiting for it).
    pub fn apply(&self, pid: i32) -> Result<(), IdMapError> {
        if self.helpers {
            run_helper(NEWUIDMAP, pid, &self.uids)?;
            run_helper(NEWGIDMAP, pid, &self.gids)?;
            return Ok(());
        }
        let write = |file: &str, content: &str| {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, content).map_err(|source| IdMapError::Write { path, source })
        };
        write("uid_map", &Self::map_lines(&self.uids))?;
        if !self.setgroups_allowed() {
            write("setgroups", "deny")?;
        }
        write("gid_map", &Self::map_lines(&self.gids))
    }
}

/// The keep-id ranges of one kind of id: `own` (the user's host id) is `own` inside too, the
/// subordinate range `sub` fills the ids below it and then those above it.
fn keep_id_ranges(own: u32, sub: IdRange) -> Vec<IdRange> {
    let below = own.min(sub.count);
    // Inside ids stop at u32::MAX - 1 (the kernel's invalid id is u32::MAX).
    let above = (sub.count - below).min(u32::MAX - 1 - own);
    let mut out = Vec::with_capacity(3);
    if below > 0 {
        out.push(IdRange {
            inside: 0,
            host: sub.host,
            count: below,
        });
    }
    out.push(IdRange {
        inside: own,
        host: own,
        count: 1,
    });
    if above > 0 {
        out.push(IdRange {
            inside: own + 1,
            host: sub.host + below,
            count: above,
        });
    }
    out
}

fn run_helper(tool: Tool, pid: i32, ranges: &[IdRange]) -> Result<(), IdMapError> {
    let helper = tool.name;
    let mut cmd = Command::new(tool.require()?);
    cmd.arg(pid.to_string());
    for r in ranges {
        cmd.args([
            r.inside.to_string(),
            r.host.to_string(),
            r.count.to_string(),
        ]);
    }
    let out = cmd
        .output()
        .map_err(|source| IdMapError::Helper { helper, source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(IdMapError::HelperFailed {
            helper,
            pid,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The calling user as `--userns=keep-id` adds it to a container: login name (its uid
/// without one), uid, gid and home directory from /etc/passwd.
pub fn keep_id_user() -> nook_agent::user::KeepIdUser {
    // SAFETY: getuid/getgid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let entry = passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() > 5 && f[2].parse::<u32>().ok() == Some(uid))
            .then(|| (f[0].to_string(), f[5].to_string()))
    });
    let (name, home) = entry.unwrap_or_else(|| (uid.to_string(), "/".to_string()));
    nook_agent::user::KeepIdUser {
        name,
        uid,
        gid,
        home,
    }
}

/// The login name of `uid` from /etc/passwd.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBUID: &str = "alice:100000:65536\n# comment\n1001:200000:65536\nbob:300000:0\n";

    #[test]
    fn subordinate_ranges_match_by_name_or_uid() {
        assert_eq!(
            subordinate_range(SUBUID, "alice", 1000),
            Some((100000, 65536))
        );
        assert_eq!(
            subordinate_range(SUBUID, "carol", 1001),
            Some((200000, 65536))
        );
        assert_eq!(subordinate_range(SUBUID, "bob", 1002), None, "empty range");
        assert_eq!(subordinate_range(SUBUID, "dave", 1003), None);
        assert_eq!(subordinate_range("garbage\n:1:2\n", "", 5), None);
    }

    #[test]
    fn unprivileged_user_with_ranges_gets_the_full_mapping_through_the_helpers() {
        let map = IdMap::plan(1000, 1000, "alice", SUBUID, SUBUID, true);
        assert!(map.helpers);
        assert_eq!(IdMap::map_lines(&map.uids), "0 1000 1\n1 100000 65536\n");
        assert!(map.setgroups_allowed());
    }

    #[test]
    fn without_ranges_or_helpers_only_our_own_id_is_mapped() {
        for map in [
            IdMap::plan(1000, 1000, "alice", SUBUID, SUBUID, false),
            IdMap::plan(1003, 1003, "dave", SUBUID, SUBUID, true),
            IdMap::plan(1000, 1000, "alice", SUBUID, "", true),
        ] {
            assert!(!map.helpers);
            assert_eq!(map.uids.len(), 1);
            assert_eq!(map.uids[0].count, 1);
            assert!(!map.setgroups_allowed_as(false));
        }
    }

    #[test]
    fn keep_id_maps_the_users_own_ids_to_themselves_and_fills_around_them_with_subordinate_ids() {
        let map = IdMap::plan(1000, 1001, "alice", SUBUID, SUBUID, true)
            .keep_id()
            .unwrap();
        assert!(map.helpers);
        assert_eq!(
            IdMap::map_lines(&map.uids),
            "0 100000 1000\n1000 1000 1\n1001 101000 64536\n"
        );
        assert_eq!(
            IdMap::map_lines(&map.gids),
            "0 100000 1001\n1001 1001 1\n1002 101001 64535\n"
        );
        // The same host ids as the default mapping: every file either can own, the other can.
        let total = |m: &IdMap| m.uids.iter().map(|r| u64::from(r.count)).sum::<u64>();
        let default = IdMap::plan(1000, 1001, "alice", SUBUID, SUBUID, true);
        assert_eq!(total(&map), total(&default));
        assert_ne!(map.key(), default.key(), "trees unpacked under each differ");
        assert!(map.setgroups_allowed_as(false));
    }

    #[test]
    fn keep_id_with_a_uid_above_the_subordinate_range_maps_what_there_is() {
        let map = IdMap::plan(
            70000,
            70000,
            "big",
            "big:100000:65536\n",
            "big:100000:65536\n",
            true,
        )
        .keep_id()
        .unwrap();
        assert_eq!(
            IdMap::map_lines(&map.uids),
            "0 100000 65536\n70000 70000 1\n"
        );
        // Uid 0 inside: nothing below it, the whole range above.
        let ranges = keep_id_ranges(
            0,
            IdRange {
                inside: 1,
                host: 5,
                count: 10,
            },
        );
        assert_eq!(IdMap::map_lines(&ranges), "0 0 1\n1 5 10\n");
        // No inside id reaches u32::MAX.
        let ranges = keep_id_ranges(
            u32::MAX - 2,
            IdRange {
                inside: 1,
                host: 0,
                count: u32::MAX,
            },
        );
        assert_eq!(ranges.last().unwrap().inside, u32::MAX - 1);
        assert_eq!(ranges.last().unwrap().count, 1);
    }

    #[test]
    fn keep_id_is_refused_without_subordinate_ids_and_is_the_identity_for_root() {
        for map in [
            IdMap::plan(1000, 1000, "alice", SUBUID, SUBUID, false),
            IdMap::plan(1003, 1003, "dave", SUBUID, SUBUID, true),
        ] {
            let err = map.keep_id().unwrap_err();
            assert!(err.to_string().contains("/etc/subuid"), "{err}");
        }
        let root = IdMap::plan(0, 0, "root", "", "", true);
        assert_eq!(root.keep_id().unwrap(), root);
    }

    #[test]
    fn root_gets_the_identity_mapping_and_keys_differ_between_mappings() {
        let root = IdMap::plan(0, 0, "root", "", "", true);
        assert_eq!(IdMap::map_lines(&root.uids), format!("0 0 {}\n", u32::MAX));
        assert!(root.setgroups_allowed());
        let a = IdMap::plan(1000, 1000, "alice", SUBUID, SUBUID, true);
        let b = IdMap::plan(1000, 1000, "alice", "", "", true);
        assert_ne!(a.key(), b.key());
        assert_eq!(
            a.key(),
            IdMap::plan(1000, 1000, "alice", SUBUID, SUBUID, true).key()
        );
    }
}
