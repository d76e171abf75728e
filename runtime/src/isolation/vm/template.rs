//! Warm-start templates: a snapshot of a booted guest whose agent waits for its container
//! (see the agent's `guest::warm` and nook-vmm's `snapshot`), from which every VM of the same
//! shape starts instead of booting its kernel.
//!
//! A template is made for one [`Layout`] (memory, vCPUs, whether the container has a writable
//! disk and a network device) from one kernel, initramfs and VMM, and kept under
//! `<cache>/templates/<key>/` where the key hashes all of them (each file by its identity:
//! device, inode, size and modification time, so a rebuilt input makes a new template). It is
//! built on first need under a lock, by booting the guest with placeholder disks and a VMM told
//! to write its snapshot; nook-vmm checks its version, checksum and shape on every restore, and
//! a template that fails [`nook_vmm::snapshot::file::check`] here is built again (the check
//! reads the state's header, checksum and memory file, not the whole machine state, which
//! nook-vmm decodes anyway).

use std::fs::File;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nook_agent::guest::cmdline::{BootParams, Upper, AUTO_UPPER_DEVICE};
use nook_agent::guest::warm::read_request;
use sha2::{Digest, Sha256};

use super::boot::{self, describe, io, wait_timeout, Accept};
use super::sockets::{self, socket_path};
use super::VmError;
use crate::isolation::network;
use crate::paths::Env;
use crate::util::lock::{FileLock, LockMode};

/// The MAC address of every warm-started VM's interface: the guest's driver read it while the
/// template booted. Each VM has a passt of its own, so they never meet.
pub const MAC: &str = "52:54:00:6e:6f:6b";
/// How long building a template may take (a whole boot, under nested virtualization).
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
/// The placeholder disks' size: the kernel probes them at boot; a restored VM's disks replace
/// them and the guest learns their sizes.
const PLACEHOLDER: u64 = 4096;

/// The shape of the VMs a template serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    pub memory_mib: u32,
    pub vcpus: u8,
    /// A writable disk (vdb) besides the image's.
    pub upper_disk: bool,
    /// A virtio-net device.
    pub net: bool,
}

/// What a template is built from.
pub struct Inputs<'a> {
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    pub vmm: &'a Path,
    pub layout: Layout,
}

/// The template's name: a hash of everything it depends on.
pub fn key(inputs: &Inputs<'_>) -> Result<String, VmError> {
    let mut h = Sha256::new();
    h.update(b"nook warm-start template 1\n");
    for path in [inputs.kernel, inputs.initramfs, inputs.vmm] {
        h.update(super::assets::identity(path)?.as_bytes());
        h.update(b"\n");
    }
    h.update(format!("{:?}", inputs.layout).as_bytes());
    Ok(h.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The template for `inputs`, built first if there is none (or a broken one).
pub fn ensure(env: &dyn Env, cache: &Path, inputs: &Inputs<'_>) -> Result<PathBuf, VmError> {
    let key = key(inputs)?;
    let top = cache.join("templates");
    let dir = top.join(&key);
    if nook_vmm::snapshot::file::check(&dir).is_ok() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&top).map_err(io("create", &top))?;
    let lock_path = top.join(format!("{key}.lock"));
    let _lock = FileLock::acquire(&lock_path, LockMode::Exclusive).map_err(|e| VmError::Io {
        what: "lock",
        path: lock_path.clone(),
        source: e.source,
    })?;
    // Another nook may have built it while this one waited.
    if nook_vmm::snapshot::file::check(&dir).is_ok() {
        return Ok(dir);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io("remove the broken template", &dir))?;
    }
    let work = top.join(format!(".{key}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir(&work).map_err(io("create", &work))?;
    let result = build(env, &key, &work, inputs)
        .and_then(|snapshot| std::fs::rename(&snapshot, &dir).map_err(io("move into place", &dir)));
    let _ = std::fs::remove_dir_all(&work);
    result.map(|()| dir)
}

/// Boots the template VM in `work` until its agent asks for its container, then has the VMM
/// write its snapshot; returns the snapshot's directory.
fn build(env: &dyn Env, key: &str, work: &Path, inputs: &Inputs<'_>) -> Result<PathBuf, VmError> {
    let layout = inputs.layout;
    let mut disks = Vec::new();
    for (name, read_only) in [("vda", true), ("vdb", false)]
        .into_iter()
        .take(if layout.upper_disk { 2 } else { 1 })
    {
        let path = work.join(name);
        let file = File::create(&path).map_err(io("create", &path))?;
        file.set_len(PLACEHOLDER).map_err(io("size", &path))?;
        disks.push(nook_vmm::DiskConfig { path, read_only });
    }
    let agent_socket = socket_path(env, &format!("a{key}"))?;
    let trigger_socket = socket_path(env, &format!("s{key}"))?;
    let net_socket = sockets::net_path(env, &format!("n{key}"))?;
    for path in [&agent_socket, &trigger_socket, &net_socket] {
        let _ = std::fs::remove_file(path);
    }
    let agent = UnixListener::bind(&agent_socket).map_err(io("listen on", &agent_socket))?;
    let trigger = UnixListener::bind(&trigger_socket).map_err(io("listen on", &trigger_socket))?;
    // The template's network device has no backend: its interface stays down until a resumed
    // VM's agent configures it, on its own passt.
    let _net = if layout.net {
        Some(UnixListener::bind(&net_socket).map_err(io("listen on", &net_socket))?)
    } else {
        None
    };
    let snapshot = work.join("snapshot");
    std::fs::create_dir(&snapshot).map_err(io("create", &snapshot))?;
    let params = BootParams {
        warm: true,
        upper: if layout.upper_disk {
            Upper::Device(AUTO_UPPER_DEVICE.into())
        } else {
            Upper::Tmpfs
        },
        ..BootParams::default()
    };
    let config = nook_vmm::VmConfig {
        kernel: inputs.kernel.to_path_buf(),
        initramfs: Some(inputs.initramfs.to_path_buf()),
        cmdline: params.to_string(),
        memory_mib: layout.memory_mib,
        vcpus: layout.vcpus,
        disks,
        agent_socket: Some(agent_socket.clone()),
        serial: nook_vmm::SerialOutput::Off,
        timeout_ms: Some(BUILD_TIMEOUT.as_millis() as u64),
        net: layout.net.then(|| nook_vmm::NetConfig {
            socket: net_socket.clone(),
            mac: MAC.into(),
            mtu: network::MTU,
        }),
        fs: Vec::new(),
        snapshot_to: Some(nook_vmm::SnapshotTo {
            dir: snapshot.clone(),
            trigger: trigger_socket.clone(),
        }),
        restore_from: None,
    };
    let config_path = work.join("vm.json");
    let json = serde_json::to_vec(&config).map_err(|e| VmError::Io {
        what: "write",
        path: config_path.clone(),
        source: e.into(),
    })?;
    std::fs::write(&config_path, json).map_err(io("write", &config_path))?;
    let log_path = work.join("vmm.log");
    let log = File::create(&log_path).map_err(io("create", &log_path))?;
    let mut command = Command::new(inputs.vmm);
    command
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: setsid and prctl are async-signal-safe; the template VM dies with its builder.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(io("start the VMM", inputs.vmm))?;
    let failed = |status: String| VmError::Template {
        status,
        message: vmm_message(&log_path, work, layout.memory_mib),
    };
    // The agent asks for its container once booted: that is the moment of the snapshot.
    let asked = (|| -> Result<UnixStream, VmError> {
        let accept = |listener: &UnixListener, child: &mut std::process::Child, path: &Path| {
            boot::accept(listener, child, path).map_err(|e| match e {
                Accept::Exited(status) => failed(describe(status)),
                Accept::Err(e) => e,
            })
        };
        let mut channel = accept(&agent, &mut child, &agent_socket)?;
        let mut pull = accept(&trigger, &mut child, &trigger_socket)?;
        channel
            .set_read_timeout(Some(BUILD_TIMEOUT))
            .map_err(io("set a timeout on", &agent_socket))?;
        read_request(&mut channel).map_err(VmError::Warm)?;
        pull.write_all(&[1])
            .map_err(io("write to", &trigger_socket))?;
        Ok(pull)
    })();
    let status = match &asked {
        Ok(_) => wait_timeout(&mut child, BUILD_TIMEOUT),
        Err(_) => None,
    };
    for path in [&agent_socket, &trigger_socket, &net_socket] {
        let _ = std::fs::remove_file(path);
    }
    if let Err(e) = asked {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    match status {
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(failed(format!("no snapshot within {BUILD_TIMEOUT:?}")))
        }
        Some(s) if !s.success() => Err(failed(describe(s))),
        Some(_) => match nook_vmm::snapshot::file::read(&snapshot) {
            Ok(_) => Ok(snapshot),
            // The guest ended without ringing (an agent without warm starts).
            Err(e) => Err(failed(format!("no usable snapshot: {e}"))),
        },
    }
}

/// 64 fresh random bytes from the host, for a resumed guest's pool.
pub fn seed() -> Result<[u8; nook_agent::guest::warm::SEED_BYTES], VmError> {
    let mut seed = [0u8; nook_agent::guest::warm::SEED_BYTES];
    let mut filled = 0;
    while filled < seed.len() {
        // SAFETY: getrandom writes at most the given length into the buffer's remaining part.
        let n =
            unsafe { libc::getrandom(seed[filled..].as_mut_ptr().cast(), seed.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(VmError::Io {
                    what: "read random bytes for",
                    path: "the guest".into(),
                    source: e,
                });
            }
        } else {
            filled += n as usize;
        }
    }
    Ok(seed)
}

/// What the template's VMM said in its log; when it said nothing (a log it could not write:
/// a full file system takes the log with the snapshot), how much room the template had.
fn vmm_message(log_path: &Path, work: &Path, memory_mib: u32) -> String {
    let said = std::fs::read_to_string(log_path).unwrap_or_default();
    if !said.trim().is_empty() {
        return said.trim().to_string();
    }
    let room = match free_bytes(work) {
        Some(free) => format!(
            "; its file system has {} MiB free, and a template takes up to the guest's \
             {memory_mib} MiB of memory: is it full?",
            free >> 20
        ),
        None => String::new(),
    };
    format!("nook-vmm left no message in {}{room}", log_path.display())
}

/// The bytes an unprivileged user may still write on the file system of `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: a zeroed statvfs is a valid value for the kernel to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid statvfs to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VMM that failed without a word (its log on a full file system) still gets an error
    /// that says where to look.
    #[test]
    fn a_silent_vmm_failure_says_how_much_room_there_was() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("vmm.log");
        std::fs::write(&log, "nook-vmm: cannot write the snapshot: No space left\n").unwrap();
        assert_eq!(
            vmm_message(&log, dir.path(), 256),
            "nook-vmm: cannot write the snapshot: No space left"
        );
        std::fs::write(&log, "").unwrap();
        let said = vmm_message(&log, dir.path(), 256);
        assert!(said.starts_with("nook-vmm left no message in"), "{said}");
        assert!(
            said.contains("MiB free") && said.contains("256 MiB"),
            "{said}"
        );
    }

    #[test]
    fn the_key_follows_every_input() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, name).unwrap();
            p
        };
        let (kernel, initramfs, vmm) = (file("k"), file("i"), file("v"));
        let layout = Layout {
            memory_mib: 256,
            vcpus: 1,
            upper_disk: true,
            net: false,
        };
        let inputs = |layout| Inputs {
            kernel: &kernel,
            initramfs: &initramfs,
            vmm: &vmm,
            layout,
        };
        let base = key(&inputs(layout)).unwrap();
        assert_eq!(base, key(&inputs(layout)).unwrap());
        assert_eq!(base.len(), 24);
        for other in [
            Layout {
                memory_mib: 512,
                ..layout
            },
            Layout { vcpus: 2, ..layout },
            Layout {
                upper_disk: false,
                ..layout
            },
            Layout {
                net: true,
                ..layout
            },
        ] {
            assert_ne!(base, key(&inputs(other)).unwrap(), "{other:?}");
        }
        // A rebuilt kernel (another size) is another template.
        std::fs::write(&kernel, "rebuilt").unwrap();
        assert_ne!(base, key(&inputs(layout)).unwrap());
        assert!(key(&Inputs {
            kernel: &dir.path().join("missing"),
            ..inputs(layout)
        })
        .is_err());
    }

    #[test]
    fn seeds_differ() {
        assert_ne!(seed().unwrap(), seed().unwrap());
    }
}
