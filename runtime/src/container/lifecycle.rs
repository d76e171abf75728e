//! Which operation a container allows in which state: every rule in one place, so the verbs
//! agree with each other. Each predicate takes the *observed* status (a lost monitor already
//! counts as exited).

use super::state::Status;

/// An operation refused in the container's current state; the message names the container.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LifecycleError {
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("cannot remove container {0}: container is running: stop the container before removing or force remove")]
    RemoveRunning(String),
}

/// `start` needs a container that is not running.
pub fn can_start(name: &str, status: &Status) -> Result<(), LifecycleError> {
    match status {
        Status::Running { .. } => Err(LifecycleError::AlreadyRunning(name.to_string())),
        Status::Created | Status::Exited { .. } => Ok(()),
    }
}

/// `stop` of a container that is not running succeeds without doing anything (as docker);
/// true when there is a process to stop.
pub fn can_stop(status: &Status) -> bool {
    status.is_running()
}

/// `kill` needs a running container.
pub fn can_kill(name: &str, status: &Status) -> Result<(), LifecycleError> {
    if status.is_running() {
        Ok(())
    } else {
        Err(LifecycleError::NotRunning(name.to_string()))
    }
}

/// `exec` needs a running container.
pub fn can_exec(name: &str, status: &Status) -> Result<(), LifecycleError> {
    can_kill(name, status)
}

/// `rm` refuses a running container unless forced (then it is killed first).
pub fn can_remove(name: &str, status: &Status, force: bool) -> Result<(), LifecycleError> {
    if status.is_running() && !force {
        Err(LifecycleError::RemoveRunning(name.to_string()))
    } else {
        Ok(())
    }
}

/// `restart` works in every state: it stops what runs, then starts.
pub fn can_restart(_status: &Status) -> bool {
    true
}

/// `diff`, `commit` and `export` read the writable layer, which exists in every state.
pub fn can_read_layer(_status: &Status) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::super::state::ProcessId;
    use super::*;
    use chrono::Utc;

    fn all() -> [Status; 3] {
        let p = ProcessId {
            pid: 1,
            start_time: 1,
        };
        [
            Status::Created,
            Status::Running {
                init: p,
                monitor: p,
                started_at: Utc::now(),
                cgroup: None,
            },
            Status::Exited {
                code: 0,
                started_at: None,
                finished_at: Utc::now(),
                monitor_lost: false,
                oom_killed: false,
            },
        ]
    }

    #[test]
    fn the_rules_table() {
        let [created, running, exited] = all();
        assert_eq!(can_start("c", &created), Ok(()));
        assert_eq!(can_start("c", &exited), Ok(()));
        assert_eq!(
            can_start("c", &running),
            Err(LifecycleError::AlreadyRunning("c".into()))
        );
        assert!(can_stop(&running) && !can_stop(&created) && !can_stop(&exited));
        assert!(can_kill("c", &running).is_ok());
        assert_eq!(
            can_kill("c", &exited).unwrap_err().to_string(),
            "container c is not running"
        );
        assert!(can_exec("c", &created).is_err());
        assert!(can_remove("c", &running, false).is_err());
        assert!(can_remove("c", &running, true).is_ok());
        assert!(can_remove("c", &exited, false).is_ok());
        assert!(can_remove("c", &created, false).is_ok());
        for s in all() {
            assert!(can_restart(&s) && can_read_layer(&s));
        }
    }
}
