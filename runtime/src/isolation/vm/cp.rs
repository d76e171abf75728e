//! `nook cp` in the VM column. The container side runs in the guest agent (`CopyOut` and
//! `CopyIn`, the agent crate's copy, resolved inside the container's root exactly as the
//! namespace column resolves it); the host side here reads or writes the host's files with the
//! same crate's [`Source`] and [`copy::onto_host`], and a tar stream goes between the two over
//! the container's control channel.
//!
//! A running container is reached through its monitor. A stopped one has no running guest and
//! its writable disk is ext4, which only a kernel reads without root: a copy-only VM of the
//! container is booted (its image disk and writable disk, its volumes and bind mounts, no
//! network, no process), served by a control server of this process for the length of the
//! copy, and powered off; the caller holds the container's lock meanwhile.
//!
//! With `-a` the host side runs as root of a user namespace mapped with the containers' ids, as
//! the namespace column's copy does: a file of the container's uid 1000 becomes the host's
//! matching subordinate id, and back.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Child;
use std::sync::Arc;

use nook_agent::copy::{self, CopyError, CopyInfo, Owners, Source};
use nook_agent::layer::TarWriter;
use nook_agent::protocol::{GuestMessage, HostMessage};

use super::boot::{boot, wait_timeout, Booted, Run, RESET_TIMEOUT};
use super::control::{self, server::ControlServer, ControlError};
use super::mux::Mux;
use super::{virtiofsd, Machine, VmError};
use crate::isolation::mounts::MountSpec;
use crate::isolation::namespace::process::{self, ChildFailure};
use crate::isolation::{container_id, CopyOp, Exit, Host, IsolationError};
use crate::paths::ProcessEnv;

fn failed(message: String) -> IsolationError {
    IsolationError::Start { code: 125, message }
}

/// Runs `op` against the VM container whose directory is `dir`; `running` is its VMM's pid
/// while it runs.
pub fn copy(
    host: &Host,
    dir: &Path,
    machine: &Machine,
    mounts: &[MountSpec],
    running: Option<i32>,
    op: &CopyOp,
) -> Result<(), IsolationError> {
    let control = super::sockets::control_path(&ProcessEnv, &container_id(dir))?;
    let archive = match op {
        CopyOp::FromContainer { archive, .. } | CopyOp::ToContainer { archive, .. } => *archive,
    };
    if running.is_some() {
        return if archive {
            process::in_user_namespace(&host.ids.map, "copy", || host_side(&control, op))
        } else {
            host_side(&control, op).map_err(failed)
        };
    }
    if !machine.disks.upper.is_file() {
        return Err(VmError::NoDisk {
            path: machine.disks.upper.clone(),
        }
        .into());
    }
    if !archive {
        let vm = CopyVm::boot(dir, machine, mounts, &control)?;
        let result = host_side(&control, op).map_err(failed);
        vm.power_off();
        return result;
    }
    // The helper is cloned before the VM's threads exist (a clone of a process with threads
    // may inherit a lock one of them held); it waits for the VM, then copies.
    let (ready_read, ready_write) = pipe()?;
    let (ready_r, ready_w) = (ready_read.as_raw_fd(), ready_write.as_raw_fd());
    let mut vm = None;
    let pid = process::spawn_with(
        libc::CLONE_NEWUSER | libc::CLONE_NEWNS,
        Some(&host.ids.map),
        |_| Ok(()),
        |()| {
            vm = Some(CopyVm::boot(dir, machine, mounts, &control)?);
            // SAFETY: a one-byte write from a valid buffer to the pipe we hold open.
            unsafe { libc::write(ready_w, [1u8].as_ptr().cast(), 1) };
            Ok(())
        },
        || {
            // SAFETY: closes this process's copy of the pipe's write end (the parent's is its
            // own), so that the read below ends if the parent goes away.
            unsafe { libc::close(ready_w) };
            let mut byte = [0u8; 1];
            // SAFETY: a one-byte read into a valid buffer.
            if unsafe { libc::read(ready_r, byte.as_mut_ptr().cast(), 1) } != 1 {
                return Err(ChildFailure::setup("the copy VM did not start"));
            }
            host_side(&control, op).map_err(|message| ChildFailure { code: 1, message })
        },
    );
    drop(ready_write);
    let result = pid.and_then(|pid| match process::wait_pid(pid)? {
        Exit::Code(0) => Ok(()),
        exit => Err(failed(format!("the copy ended with {exit:?}"))),
    });
    if let Some(vm) = vm {
        vm.power_off();
    }
    drop(ready_read);
    result.map_err(|e| match e {
        IsolationError::Start { message, .. } => failed(message),
        other => other,
    })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), IsolationError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors into a valid array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(IsolationError::os(
            "create a pipe",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: two fresh descriptors owned by nobody else.
    Ok(unsafe {
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    })
}

/// A copy-only boot of a stopped container, served on its control socket.
struct CopyVm {
    child: Child,
    mux: Arc<Mux>,
    server: ControlServer,
    _shares: Vec<virtiofsd::Running>,
}

impl CopyVm {
    fn boot(
        dir: &Path,
        machine: &Machine,
        mounts: &[MountSpec],
        control: &Path,
    ) -> Result<CopyVm, IsolationError> {
        // Volumes and bind mounts, as the namespace column's copy of a stopped container: a
        // tmpfs would take the copy and lose it (docker writes there into the container's own
        // layer).
        let binds: Vec<MountSpec> = mounts
            .iter()
            .filter(|m| matches!(m, MountSpec::Bind { .. }))
            .cloned()
            .collect();
        let Booted {
            mut child,
            client,
            shares,
            guest_mounts,
            ..
        } = boot(
            dir,
            machine,
            None,
            &binds,
            None,
            &crate::isolation::namespace::idmap::IdMap::for_current_user(),
            Run::Tool,
            None,
        )?;
        let started = (|| {
            let mux =
                Arc::new(Mux::new(client).map_err(|e| {
                    IsolationError::os("start the agent connection's dispatcher", e)
                })?);
            if !guest_mounts.is_empty() {
                mount(&mux, guest_mounts)?;
            }
            let _ = std::fs::remove_file(control);
            let listener = UnixListener::bind(control)
                .map_err(|e| IsolationError::os(format!("listen on {}", control.display()), e))?;
            let server = ControlServer::start(listener, control.to_path_buf(), Arc::clone(&mux))
                .map_err(|e| IsolationError::os(format!("serve {}", control.display()), e))?;
            Ok::<_, IsolationError>((mux, server))
        })();
        match started {
            Ok((mux, server)) => Ok(CopyVm {
                child,
                mux,
                server,
                _shares: shares,
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Ends the VM: the agent syncs the writable disk and resets; killed if it does not.
    fn power_off(mut self) {
        drop(self.server);
        let _ = self.mux.shutdown();
        if wait_timeout(&mut self.child, RESET_TIMEOUT).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Asks the agent of a copy-only boot to mount the container's volumes.
fn mount(mux: &Mux, mounts: Vec<nook_agent::protocol::GuestMount>) -> Result<(), IsolationError> {
    let (stream, frames) = mux.open().map_err(VmError::Agent)?;
    mux.send(stream, &HostMessage::Mount(mounts))
        .map_err(VmError::Agent)?;
    let mut errors = Vec::new();
    let result = loop {
        match frames.recv_timeout(control::REQUEST_TIMEOUT * 6) {
            Ok(f) => match f.message {
                GuestMessage::Error { message, .. } => errors.push(message),
                GuestMessage::Exit(status) if status.code == 0 => break Ok(()),
                _ => {
                    break Err(failed(format!(
                        "cannot mount the container's volumes in the copy VM: {}",
                        errors.join("; ")
                    )))
                }
            },
            Err(_) => {
                break Err(failed(
                    "the copy VM did not mount the container's volumes".into(),
                ))
            }
        }
    };
    mux.forget(stream);
    result
}

/// The host side of a copy, with the container's monitor (or the copy VM's server) at
/// `control`.
fn host_side(control: &Path, op: &CopyOp) -> Result<(), String> {
    let chain = |e: &dyn std::error::Error| crate::errors::chain(e);
    let owners = |archive: bool| {
        if archive {
            Owners::Keep
        } else {
            Owners::Writer
        }
    };
    match op {
        CopyOp::FromContainer {
            src,
            dst,
            follow,
            archive,
        } => {
            let mut tar = control::client::copy_out(control, src, *follow, dst.is_some())
                .map_err(|e| chain(&e))?;
            match dst {
                None => {
                    let stdout = io::stdout();
                    let mut out = stdout.lock();
                    io::copy(&mut tar, &mut out)
                        .and_then(|_| out.flush())
                        .map_err(|e| format!("cannot write the tar stream: {e}"))
                }
                Some(dst) => {
                    // The guest says whether the source is a directory; its name is the one
                    // asked for, whatever the guest says.
                    let info = CopyInfo {
                        dir: tar.info().dir,
                        ..Source::info_of(src)
                    };
                    copy::onto_host(dst, owners(*archive), &info, &mut tar)
                        .map_err(|e| chain(&e))?;
                    tar.finish()
                        .map(drop)
                        .map_err(|e| format!("cannot copy {src}: {e}"))
                }
            }
        }
        CopyOp::ToContainer {
            src,
            dst,
            follow,
            archive,
        } => {
            let (source, info) = match src {
                Some(src) => {
                    let s = Source::open(None, &src.to_string_lossy(), *follow)
                        .map_err(|e| chain(&e))?;
                    let info = s.info().clone();
                    (Some(s), Some(info))
                }
                None => (None, None),
            };
            let mut into =
                control::client::copy_in(control, dst, *archive, info).map_err(|e| chain(&e))?;
            let sent = match source {
                Some(s) => {
                    let mut tar = TarWriter::new(&mut into);
                    s.send_rebased(&mut tar)
                        .and_then(|()| tar.finish().map(drop).map_err(CopyError::from))
                        .map_err(|e| chain(&e))
                }
                None => io::copy(&mut io::stdin().lock(), &mut into)
                    .map(drop)
                    .map_err(|e| format!("cannot read the tar stream: {e}")),
            };
            // The guest's own error says more than a write that failed because of it.
            match (into.finish(), sent) {
                (Err(e @ ControlError::Copy { .. }), _) => Err(chain(&e)),
                (_, Err(e)) => Err(e),
                (Err(e), Ok(())) => Err(chain(&e)),
                (Ok(_), Ok(())) => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The host side against the agent's real supervision loop over a socketpair, served by
    //! the monitor's control server, with a directory standing for the guest's root.

    use super::*;
    use nook_agent::client::Client;
    use nook_agent::protocol::BootTimes;
    use nook_agent::supervisor::{self, Config, NoSetup};
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;

    /// A guest whose root is `root`, served at a control socket in `dir`.
    fn serve(dir: &Path, root: &Path) -> (ControlServer, PathBuf) {
        let (host, agent_end) = UnixStream::pair().unwrap();
        let config = Config {
            root: root.to_path_buf(),
            reap_all: false,
            pid_namespace: false,
            upper_dir: None,
            boot: BootTimes::default(),
        };
        std::thread::spawn(move || supervisor::run(agent_end.into(), &config, &mut NoSetup));
        let client = Client::from_unix(host).unwrap();
        client
            .wait_ready(std::time::Duration::from_secs(10))
            .unwrap();
        let mux = Arc::new(Mux::new(client).unwrap());
        let path = dir.join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        (
            ControlServer::start(listener, path.clone(), mux).unwrap(),
            path,
        )
    }

    #[test]
    fn a_tree_round_trips_through_the_control_channel() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        let big: Vec<u8> = (0..(1usize << 20) + 3).map(|i| (i % 251) as u8).collect();
        std::fs::write(tree.join("sub/big"), &big).unwrap();
        std::fs::hard_link(tree.join("sub/big"), tree.join("hard")).unwrap();
        std::os::unix::fs::symlink("sub/big", tree.join("link")).unwrap();
        let (_server, control) = serve(dir.path(), &root);

        host_side(
            &control,
            &CopyOp::ToContainer {
                src: Some(tree.clone()),
                dst: "/copied".into(),
                follow: false,
                archive: false,
            },
        )
        .unwrap();
        assert_eq!(std::fs::read(root.join("copied/sub/big")).unwrap(), big);

        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        host_side(
            &control,
            &CopyOp::FromContainer {
                src: "/copied".into(),
                dst: Some(out.clone()),
                follow: false,
                archive: false,
            },
        )
        .unwrap();
        use std::os::unix::fs::MetadataExt;
        let back = out.join("copied");
        assert_eq!(std::fs::read(back.join("sub/big")).unwrap(), big);
        assert_eq!(
            std::fs::metadata(back.join("hard")).unwrap().ino(),
            std::fs::metadata(back.join("sub/big")).unwrap().ino()
        );
        assert_eq!(
            std::fs::read_link(back.join("link")).unwrap(),
            Path::new("sub/big")
        );
        // A file to a new name, contents only into a new directory.
        let one = dir.path().join("one");
        host_side(
            &control,
            &CopyOp::FromContainer {
                src: "/copied/sub/big".into(),
                dst: Some(one.clone()),
                follow: false,
                archive: false,
            },
        )
        .unwrap();
        assert_eq!(std::fs::read(&one).unwrap(), big);
        let contents = dir.path().join("contents");
        host_side(
            &control,
            &CopyOp::FromContainer {
                src: "/copied/.".into(),
                dst: Some(contents.clone()),
                follow: false,
                archive: false,
            },
        )
        .unwrap();
        assert!(contents.join("sub/big").is_file());

        let err = host_side(
            &control,
            &CopyOp::FromContainer {
                src: "/nope".into(),
                dst: Some(out.clone()),
                follow: false,
                archive: false,
            },
        )
        .unwrap_err();
        assert_eq!(err, "Could not find the file /nope in container");
        let err = host_side(
            &control,
            &CopyOp::ToContainer {
                src: Some(tree.join("sub/big")),
                dst: "/nope/".into(),
                follow: false,
                archive: false,
            },
        )
        .unwrap_err();
        assert!(err.contains("/nope"), "{err}");
    }

    #[test]
    fn a_containers_links_lead_nowhere_on_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "host secret").unwrap();
        std::os::unix::fs::symlink("/", root.join("slash")).unwrap();
        std::os::unix::fs::symlink("../../../../../../..", root.join("up")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        let rel = outside.strip_prefix("/").unwrap().display().to_string();
        // The same path inside the container, where the links resolve.
        std::fs::create_dir_all(root.join(&rel)).unwrap();
        let (_server, control) = serve(dir.path(), &root);
        let got = dir.path().join("got");
        for (src, follow) in [
            (format!("/slash/{rel}/secret"), false),
            (format!("/up/{rel}/secret"), true),
            ("/abs/secret".to_string(), true),
        ] {
            let op = CopyOp::FromContainer {
                src: src.clone(),
                dst: Some(got.clone()),
                follow,
                archive: false,
            };
            assert!(host_side(&control, &op).is_err(), "{src}");
            assert!(!got.exists(), "{src} read a host file");
        }
        let payload = dir.path().join("payload");
        std::fs::write(&payload, "payload").unwrap();
        for dst in ["/abs/planted".to_string(), format!("/up/{rel}/planted")] {
            let op = CopyOp::ToContainer {
                src: Some(payload.clone()),
                dst,
                follow: false,
                archive: false,
            };
            let _ = host_side(&control, &op);
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
        assert_eq!(
            std::fs::read_to_string(root.join(&rel).join("planted")).unwrap(),
            "payload"
        );
    }
}
