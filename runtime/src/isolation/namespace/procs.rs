//! The processes of a running container, as the host sees them: those in the pid namespace of
//! its first process (its own, `exec`'d ones and all their children). The user who runs nook
//! owns the container's user namespace, so it may read their `/proc/PID/ns/pid` links.

use std::path::Path;

use crate::isolation::IsolationError;

/// The host pids of the processes in the pid namespace of `init`, sorted.
pub fn processes(init: i32) -> Result<Vec<i32>, IsolationError> {
    in_namespace_of(Path::new("/proc"), init)
}

fn in_namespace_of(proc: &Path, init: i32) -> Result<Vec<i32>, IsolationError> {
    let link = |pid: i32| std::fs::read_link(proc.join(pid.to_string()).join("ns/pid"));
    let ns = link(init)
        .map_err(|e| IsolationError::os(format!("read the pid namespace of process {init}"), e))?;
    let entries = std::fs::read_dir(proc)
        .map_err(|e| IsolationError::os(format!("list {}", proc.display()), e))?;
    let mut pids: Vec<i32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        // A process of another user, or one that ended meanwhile, is not the container's.
        .filter(|pid| link(*pid).is_ok_and(|l| l == ns))
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_are_picked_by_their_namespace_link() {
        let dir = tempfile::tempdir().unwrap();
        for (pid, ns) in [
            (1, "pid:[1]"),
            (40, "pid:[7]"),
            (41, "pid:[7]"),
            (50, "pid:[1]"),
        ] {
            let d = dir.path().join(pid.to_string()).join("ns");
            std::fs::create_dir_all(&d).unwrap();
            std::os::unix::fs::symlink(ns, d.join("pid")).unwrap();
        }
        std::fs::create_dir(dir.path().join("self")).unwrap();
        std::fs::create_dir(dir.path().join("60")).unwrap();
        assert_eq!(in_namespace_of(dir.path(), 41).unwrap(), [40, 41]);
        assert_eq!(in_namespace_of(dir.path(), 1).unwrap(), [1, 50]);
        assert!(in_namespace_of(dir.path(), 99).is_err());
    }
}
