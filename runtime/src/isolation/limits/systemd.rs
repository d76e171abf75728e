//! A container's cgroup as a transient scope of the user's systemd manager, the way rootless
//! podman asks for one: `StartTransientUnit` on the user bus with the container's first process
//! and `Delegate=yes`, through `busctl` (systemd's own client, present wherever systemd is).
//! systemd moves the process; the scope's cgroup is then read back from `/proc/PID/cgroup`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::paths::Env;

/// Whether the user's systemd manager runs (its private socket exists).
pub fn manager_running(env: &dyn Env) -> bool {
    let runtime = env
        .var("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/run/user/{}", env.uid())));
    runtime.join("systemd/private").exists() && crate::host_tools::BUSCTL.find().is_some()
}

/// The controllers systemd delegates to the user's manager (those its scopes can get).
pub fn user_controllers(uid: u32) -> Vec<String> {
    let path = format!(
        "{}/user.slice/user-{uid}.slice/user@{uid}.service/cgroup.controllers",
        super::delegation::CGROUP_ROOT
    );
    std::fs::read_to_string(path)
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// The unit name of container `id`'s scope.
pub fn unit_name(id: &str) -> String {
    format!("nook-{id}.scope")
}

/// The `busctl` arguments that start the scope holding `pid`.
fn start_args(id: &str, pid: i32) -> Vec<String> {
    [
        "--user",
        "call",
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "StartTransientUnit",
        "ssa(sv)a(sa(sv))",
        &unit_name(id),
        "fail",
        "4",
        "PIDs",
        "au",
        "1",
        &pid.to_string(),
        "Delegate",
        "b",
        "true",
        "CollectMode",
        "s",
        "inactive-or-failed",
        "Description",
        "s",
        &format!("nook container {id}"),
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Starts container `id`'s scope with `pid` in it; returns the scope's cgroup directory.
pub fn start_scope(id: &str, pid: i32) -> Result<PathBuf, String> {
    let busctl = crate::host_tools::BUSCTL
        .require()
        .map_err(|e| e.to_string())?;
    let out = Command::new(busctl)
        .args(start_args(id, pid))
        .output()
        .map_err(|e| format!("cannot run busctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "systemd did not start the scope {}: {}",
            unit_name(id),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // The job runs asynchronously: wait until the process is in the scope.
    let deadline = Instant::now() + Duration::from_secs(5);
    let want = unit_name(id);
    loop {
        if let Some(path) = super::cgroup::process_cgroup(pid) {
            if path.file_name().is_some_and(|n| n == want.as_str()) {
                return Ok(path);
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "systemd started the scope {want} but process {pid} did not move into it"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_names_the_process_and_delegates() {
        let args = start_args("abc", 42);
        let joined = args.join(" ");
        assert!(
            joined.contains("StartTransientUnit ssa(sv)a(sa(sv)) nook-abc.scope fail 4"),
            "{joined}"
        );
        assert!(joined.contains("PIDs au 1 42 Delegate b true"), "{joined}");
        assert_eq!(args.last().map(String::as_str), Some("0"));
    }
}
