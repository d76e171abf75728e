//! The spec's hooks: each runs with the container's state on its stdin, its own args and
//! env, and a timeout; createRuntime, prestart, poststart and poststop hooks as host
//! processes, createContainer hooks from the container's first process in its namespaces
//! before pivot_root, startContainer hooks from it in its root just before the workload. A
//! failing hook fails the operation, but for poststart and poststop hooks, whose failure is a
//! warning (as the spec says).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};

use super::error::OciError;

/// The points of the lifecycle hooks run at (those nook-runtime runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Point {
    pub fn name(self) -> &'static str {
        match self {
            Point::Prestart => "prestart",
            Point::CreateRuntime => "createRuntime",
            Point::CreateContainer => "createContainer",
            Point::StartContainer => "startContainer",
            Point::Poststart => "poststart",
            Point::Poststop => "poststop",
        }
    }

    fn of(self, hooks: &Hooks) -> Vec<Hook> {
        #[allow(deprecated)]
        let list = match self {
            Point::Prestart => hooks.prestart(),
            Point::CreateRuntime => hooks.create_runtime(),
            Point::CreateContainer => hooks.create_container(),
            Point::StartContainer => hooks.start_container(),
            Point::Poststart => hooks.poststart(),
            Point::Poststop => hooks.poststop(),
        };
        list.clone().unwrap_or_default()
    }
}

/// Runs the hooks of `point` in order, each given `state` (the state document) on stdin.
pub fn run(hooks: Option<&Hooks>, point: Point, state: &str) -> Result<(), OciError> {
    let Some(hooks) = hooks else {
        return Ok(());
    };
    for hook in point.of(hooks) {
        run_one(&hook, state).map_err(|why| OciError::Hook {
            hook: point.name(),
            path: hook.path().display().to_string(),
            why,
        })?;
    }
    Ok(())
}

fn run_one(hook: &Hook, state: &str) -> Result<(), String> {
    let mut cmd = Command::new(hook.path());
    let args = hook.args().clone().unwrap_or_default();
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for e in hook.env().clone().unwrap_or_default() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::null());
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its state may close stdin early: not a failure.
        let _ = stdin.write_all(state.as_bytes());
    }
    let timeout = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t.unsigned_abs()));
    let began = Instant::now();
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(status.to_string()),
            None => {}
        }
        if timeout.is_some_and(|t| began.elapsed() > t) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("timed out".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_get_the_state_args_env_and_a_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let hooks: Hooks = serde_json::from_value(serde_json::json!({
            "poststop": [{"path": "/bin/sh",
                          "args": ["sh", "-c", format!("cat > {}; echo \"$0 $X\" >> {}", out.display(), out.display())],
                          "env": ["X=y"]}],
            "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}],
            "prestart": [{"path": "/bin/sleep", "args": ["sleep", "5"], "timeout": 1}]
        }))
        .unwrap();
        run(Some(&hooks), Point::Poststop, "{\"id\":\"c\"}").unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"id\":\"c\"}sh y\n"
        );
        let e = run(Some(&hooks), Point::Poststart, "{}")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("poststart hook /bin/sh failed: exit status: 3"),
            "{e}"
        );
        let e = run(Some(&hooks), Point::Prestart, "{}")
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("timed out"), "{e}");
        run(None, Point::Prestart, "{}").unwrap();
        run(Some(&hooks), Point::CreateRuntime, "{}").unwrap();
    }
}
