//! virtiofsd, the vhost-user backend of a VM's shared directory: one process per directory,
//! started before the VMM (which connects to its socket), a child of the container's monitor
//! that dies with it (parent-death signal), and ended with the VM: it exits when the VMM's
//! connection closes, and is killed when dropped.
//!
//! Rootless: virtiofsd's `--sandbox namespace` puts it in new user, mount, pid and net
//! namespaces and makes the shared directory its root, so no symlink in the directory leads
//! out of it. As a normal user, `--uid-map`/`--gid-map` give that namespace the mapping of the
//! namespace column's containers ([`IdMap`]): the user is root there, and with subordinate ids
//! (`/etc/subuid`, newuidmap) guest ids 1… are the user's subordinate ids. The guest's root
//! creates files owned by the user on the host, and a guest user (`--user 1000`) creates files
//! owned by its subordinate id, as a rootless container's do in the namespace column.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::shares::Share;
use super::VmError;
use crate::host_tools::VIRTIOFSD;
use crate::isolation::namespace::idmap::{IdMap, IdRange};
use crate::paths::{self, Env};

/// The virtiofsd release tests/setup.sh installs (`cargo install virtiofsd --version`), in the
/// cache directory nook looks in after PATH.
pub const VERSION: &str = "1.14.0";

/// How long virtiofsd may take to listen on its socket.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where virtiofsd is: `NOOK_VIRTIOFSD`, then PATH and the system directories, then the
/// cache's pinned build.
pub fn find(env: &dyn Env) -> Result<PathBuf, VmError> {
    if let Some(path) = env.var("NOOK_VIRTIOFSD") {
        return Ok(PathBuf::from(path));
    }
    if let Some(path) = VIRTIOFSD.find() {
        return Ok(path);
    }
    let cached = paths::cache_dir(env)
        .join(format!("virtiofsd-{VERSION}"))
        .join("bin/virtiofsd");
    if cached.is_file() {
        return Ok(cached);
    }
    Err(VmError::Missing {
        what: "virtiofsd (needed to share host directories with a VM)",
        path: cached,
        hint: "tests/setup.sh builds it with cargo install, or put one on PATH",
    })
}

/// The arguments for sharing `share` on `socket` with the caller's id mapping `ids` (root's,
/// every id to itself, needs none).
pub fn args(share: &Share, socket: &Path, ids: &IdMap) -> Vec<String> {
    let mut args = vec![
        format!("--socket-path={}", socket.display()),
        format!("--shared-dir={}", share.source.display()),
        "--sandbox=namespace".to_owned(),
        "--log-level=error".to_owned(),
    ];
    let identity = |r: &[IdRange]| {
        matches!(
            r,
            [IdRange {
                inside: 0,
                host: 0,
                count: u32::MAX
            }]
        )
    };
    if !(identity(&ids.uids) && identity(&ids.gids)) {
        for r in &ids.uids {
            args.push(format!("--uid-map=:{}:{}:{}:", r.inside, r.host, r.count));
        }
        for r in &ids.gids {
            args.push(format!("--gid-map=:{}:{}:{}:", r.inside, r.host, r.count));
        }
    }
    if share.readonly {
        args.push("--readonly".to_owned());
    }
    args
}

/// A virtiofsd starting (killed when dropped before it is ready, as when the boot fails
/// meanwhile).
pub struct Launch {
    child: Running,
    socket: PathBuf,
    log_path: PathBuf,
}

/// A running virtiofsd: killed (and reaped) when dropped, with its VM.
pub struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `program` serving `share` on `socket`; its messages go to `log_path`.
pub fn launch(
    program: &Path,
    share: &Share,
    socket: &Path,
    log_path: &Path,
    ids: &IdMap,
    cgroup: Option<&crate::isolation::limits::cgroup::Cgroup>,
) -> Result<Launch, VmError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| VmError::Io { what, path, source }
    };
    let _ = std::fs::remove_file(socket);
    let log = File::create(log_path).map_err(io("create", log_path))?;
    let mut command = Command::new(program);
    // First, so that its sandbox's processes start in the container's cgroup too.
    if let Some(cgroup) = cgroup {
        cgroup
            .enter_on_exec(&mut command)
            .map_err(|e| VmError::Cgroup(Box::new(e)))?;
    }
    command
        .args(args(share, socket, ids))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(io("start", program))?;
    Ok(Launch {
        child: Running(child),
        socket: socket.to_path_buf(),
        log_path: log_path.to_path_buf(),
    })
}

/// Waits until virtiofsd listens (its socket exists) and returns it; its own message when it
/// exits first.
pub fn wait_ready(launch: Launch) -> Result<Running, VmError> {
    let Launch {
        mut child,
        socket,
        log_path,
    } = launch;
    let start = Instant::now();
    loop {
        if socket.exists() {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(VmError::Virtiofsd {
                socket,
                message: format!("it exited ({status}): {}", log.trim()),
            });
        }
        if start.elapsed() > READY_TIMEOUT {
            drop(child);
            return Err(VmError::Virtiofsd {
                socket,
                message: format!("it did not listen within {READY_TIMEOUT:?}"),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_maps_the_user_to_root_and_the_guests_users_to_its_subordinate_ids() {
        let share = Share {
            tag: "nook0".into(),
            source: "/srv/data".into(),
            readonly: true,
        };
        let socket = Path::new("/run/fs0.sock");
        let sub = IdMap::plan(
            1002,
            1003,
            "dev",
            "dev:100000:65536\n",
            "dev:200000:65536\n",
            true,
        );
        let args = args(&share, socket, &sub);
        let maps: Vec<&str> = args
            .iter()
            .filter(|a| a.contains("-map="))
            .map(String::as_str)
            .collect();
        assert_eq!(
            maps,
            [
                "--uid-map=:0:1002:1:",
                "--uid-map=:1:100000:65536:",
                "--gid-map=:0:1003:1:",
                "--gid-map=:1:200000:65536:"
            ]
        );
        assert!(args.contains(&"--readonly".to_owned()));
        assert!(args.contains(&"--sandbox=namespace".to_owned()));
        // --userns=keep-id: the guest's uid 1002 is the user, its root a subordinate id.
        let keep = super::args(&share, socket, &sub.keep_id().unwrap());
        assert_eq!(
            args_maps(&keep),
            [
                "--uid-map=:0:100000:1002:",
                "--uid-map=:1002:1002:1:",
                "--uid-map=:1003:101002:64534:",
                "--gid-map=:0:200000:1003:",
                "--gid-map=:1003:1003:1:",
                "--gid-map=:1004:201003:64533:"
            ]
        );
        // Without subordinate ids (or newuidmap): the user alone, as root.
        let own = IdMap::plan(1002, 1003, "dev", "", "", true);
        let args = super::args(&share, socket, &own);
        let maps: Vec<&String> = args.iter().filter(|a| a.contains("-map=")).collect();
        assert_eq!(maps, ["--uid-map=:0:1002:1:", "--gid-map=:0:1003:1:"]);
        let root = super::args(
            &Share {
                readonly: false,
                ..share
            },
            Path::new("/s"),
            &IdMap::plan(0, 0, "root", "", "", true),
        );
        assert!(!root.iter().any(|a| a.contains("map") || a == "--readonly"));
    }

    fn args_maps(args: &[String]) -> Vec<&str> {
        args.iter()
            .filter(|a| a.contains("-map="))
            .map(String::as_str)
            .collect()
    }
}
