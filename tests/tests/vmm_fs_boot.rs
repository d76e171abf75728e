//! Shared directories in a VM, end to end below the CLI: virtiofsd started by the runtime's own
//! code (`nook::isolation::vm::virtiofsd`, rootless in its user namespace), nook-vmm's
//! vhost-user-fs devices, nook's kernel (FUSE, virtio-fs) and the agent's mounts from `Start`:
//! - a bind-mounted host directory shows the host's changes inside and the container's on the
//!   host (owned by the user who ran it);
//! - a read-only share refuses writes (EROFS) and the host file is unchanged;
//! - a tmpfs is there with the size and mode asked;
//! - a volume's file written by one VM is seen by the next VM that mounts it;
//! - virtiofsd killed under a running VM stops the VM with an error naming the tag.
//!
//! Needs a /dev/kvm that boots standard guests: tests/vm/volumes-vm.sh prepares the assets and
//! runs this test inside the nested rig (NOOK_VMM_FS_DIR points at them).

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nook::isolation::vm::shares::Share;
use nook::isolation::vm::virtiofsd;
use nook_agent::client::Client;
use nook_agent::protocol::{GuestMount, ProcessSpec, StartSpec};

struct Assets {
    dir: PathBuf,
    vmm: PathBuf,
    virtiofsd: PathBuf,
}

struct Vm {
    child: Child,
    client: Client,
    _daemons: Vec<virtiofsd::Running>,
    stderr: PathBuf,
}

/// Boots a VM sharing `shares` (tag nook<i> each); returns once the agent is ready.
fn boot(a: &Assets, name: &str, shares: &[Share]) -> Result<Vm, String> {
    let run = a.dir.join(name);
    std::fs::create_dir_all(&run).map_err(|e| e.to_string())?;
    let upper = run.join("upper.ext4");
    std::fs::copy(a.dir.join("upper.ext4"), &upper).map_err(|e| format!("copy upper: {e}"))?;
    let mut daemons = Vec::new();
    let mut fs = Vec::new();
    for share in shares {
        let socket = run.join(format!("{}.sock", share.tag));
        let log = run.join(format!("virtiofsd-{}.log", share.tag));
        let ids = nook::isolation::namespace::idmap::IdMap::for_current_user();
        let launch = virtiofsd::launch(&a.virtiofsd, share, &socket, &log, &ids, None)
            .map_err(|e| format!("{name}: {e}"))?;
        daemons.push(virtiofsd::wait_ready(launch).map_err(|e| format!("{name}: {e}"))?);
        fs.push(serde_json::json!({"socket": socket, "tag": share.tag}));
    }
    let sock = run.join("agent.sock");
    let listener = UnixListener::bind(&sock).map_err(|e| format!("bind: {e}"))?;
    let config = serde_json::json!({
        "kernel": a.dir.join("vmlinux"),
        "initramfs": a.dir.join("agent.cpio"),
        "cmdline": "console=ttynull reboot=k panic=-1 rdinit=/init",
        "memory_mib": 256,
        "vcpus": 1,
        "disks": [
            {"path": a.dir.join("image.erofs"), "read_only": true},
            {"path": upper, "read_only": false},
        ],
        "agent_socket": sock,
        "timeout_ms": 600_000,
        "fs": fs,
    });
    let stderr = run.join("vmm.stderr");
    let err_file = std::fs::File::create(&stderr).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let child = Command::new(&a.vmm)
        .args(["--config-json", &config.to_string()])
        .stdin(Stdio::null())
        .stderr(err_file)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", a.vmm.display()))?;
    let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let client = Client::from_unix(stream).map_err(|e| format!("{name}: {e}"))?;
    client
        .wait_ready(Duration::from_secs(400))
        .map_err(|e| format!("{name}: {e}; VMM: {}", read(&stderr)))?;
    eprintln!("{name}: agent ready after {:?}", started.elapsed());
    Ok(Vm {
        child,
        client,
        _daemons: daemons,
        stderr,
    })
}

/// The VMM's resident memory outside guest RAM, in KiB: every mapping's `Rss` in smaps but the
/// guest RAM memfds' (named `nook-guest-ram-*`).
fn rss_outside_guest_kib(pid: u32) -> Result<u64, String> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).map_err(|e| e.to_string())?;
    let mut guest = false;
    let mut total = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            guest = line.contains("nook-guest-ram-");
        } else if let Some(kib) = line.strip_prefix("Rss:") {
            if !guest {
                total += kib
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(total)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn spec(script: &str, mounts: Vec<GuestMount>) -> StartSpec {
    StartSpec {
        process: ProcessSpec {
            argv: ["sh", "-c", script].map(String::from).to_vec(),
            env: vec!["PATH=/bin:/usr/bin".into()],
            ..ProcessSpec::default()
        },
        hostname: "volumes".into(),
        mounts,
        ..StartSpec::default()
    }
}

/// Runs `script` to its end; (exit code, stdout, stderr).
fn run(vm: Vm, script: &str, mounts: Vec<GuestMount>) -> Result<(i32, String, String), String> {
    let Vm {
        mut child,
        client,
        _daemons,
        stderr,
    } = vm;
    let id = client
        .start(spec(script, mounts))
        .map_err(|e| format!("start: {e}"))?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = client
        .wait_process(id, &mut out, &mut err)
        .map_err(|e| format!("wait: {e}; VMM: {}", read(&stderr)))?;
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("nook-vmm exited with {status}: {}", read(&stderr)));
    }
    Ok((
        result.status.code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    ))
}

fn share(tag: &str, source: &Path, readonly: bool) -> Share {
    Share {
        tag: tag.into(),
        source: source.into(),
        readonly,
    }
}

fn virtiofs(tag: &str, target: &str, readonly: bool) -> GuestMount {
    GuestMount::Virtiofs {
        tag: tag.into(),
        target: target.into(),
        readonly,
        file: false,
    }
}

/// Bind mount both ways, read-only, tmpfs, and the first half of the volume.
fn shares_and_tmpfs(a: &Assets) -> Result<(), String> {
    let host = a.dir.join("host");
    let ro = a.dir.join("ro");
    let vol = a.dir.join("volume");
    for d in [&host, &ro, &vol] {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    std::fs::write(host.join("from-host"), "host one\n").map_err(|e| e.to_string())?;
    std::fs::write(ro.join("keep"), "original\n").map_err(|e| e.to_string())?;
    let vm = boot(
        a,
        "first",
        &[
            share("nook0", &host, false),
            share("nook1", &ro, true),
            share("nook2", &vol, false),
        ],
    )?;
    let rss = rss_outside_guest_kib(vm.child.id())?;
    eprintln!("first: nook-vmm RSS outside guest RAM with 3 virtio-fs devices: {rss} KiB");
    if rss > 5 * 1024 {
        return Err(format!(
            "nook-vmm uses {rss} KiB outside guest RAM (goal: <= 5 MiB)"
        ));
    }
    // The host changes the shared directory once the container has written to it.
    let watched = host.clone();
    let writer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(300);
        while !watched.join("from-guest").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::write(watched.join("host-later"), "host two\n")
    });
    let script = r#"
        cat /data/from-host
        echo guest one > /data/from-guest
        i=0
        while [ ! -e /data/host-later ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done
        cat /data/host-later || echo "MISSING host-later"
        if echo changed > /ro/keep; then echo "RO-WRITABLE"; fi
        if touch /ro/new; then echo "RO-CREATABLE"; fi
        cat /ro/keep
        grep -q " /ro virtiofs ro," /proc/mounts && echo "ro mounted"
        df -k /scratch | awk 'NR==2 {print "scratch " $2}'
        stat -c "scratch mode %a" /scratch
        grep " /scratch tmpfs " /proc/mounts | cut -d" " -f4 | tr , "\n" | grep -x ro || echo "scratch rw"
        echo kept in the volume > /vol/file
    "#;
    let mounts = vec![
        virtiofs("nook0", "/data", false),
        virtiofs("nook1", "/ro", true),
        GuestMount::Tmpfs {
            target: "/scratch".into(),
            size: Some(8 << 20),
            mode: Some(0o700),
            readonly: false,
        },
        virtiofs("nook2", "/vol", false),
    ];
    let (code, out, err) = run(vm, script, mounts)?;
    let wrote = writer
        .join()
        .map_err(|_| "the host writer panicked".to_string())?;
    wrote.map_err(|e| format!("the host could not write: {e}"))?;
    eprintln!("first: exit {code}\n{out}--- stderr\n{err}");
    let expected = "host one\nhost two\noriginal\nro mounted\nscratch 8192\nscratch mode 700\n\
                    scratch rw\n";
    if code != 0 || out != expected {
        return Err(format!(
            "first VM: exit {code}, stdout {out:?} (expected {expected:?}), stderr {err:?}"
        ));
    }
    if !err.contains("Read-only file system") {
        return Err(format!("writes to /ro did not fail with EROFS: {err:?}"));
    }
    let from_guest = read(&host.join("from-guest"));
    if from_guest != "guest one\n" {
        return Err(format!("the container's file on the host: {from_guest:?}"));
    }
    let meta = std::fs::metadata(host.join("from-guest")).map_err(|e| e.to_string())?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if meta.uid() != uid {
        return Err(format!(
            "the container's file belongs to uid {} on the host, not to the user {uid}",
            meta.uid()
        ));
    }
    if read(&ro.join("keep")) != "original\n" || ro.join("new").exists() {
        return Err("the read-only share was changed on the host".into());
    }
    Ok(())
}

/// The next VM mounting the volume sees what the first wrote.
fn volume_outlives_its_vm(a: &Assets) -> Result<(), String> {
    let vol = a.dir.join("volume");
    let vm = boot(a, "second", &[share("nook0", &vol, false)])?;
    let (code, out, err) = run(
        vm,
        "cat /data/file",
        vec![virtiofs("nook0", "/data", false)],
    )?;
    if (code, out.as_str()) != (0, "kept in the volume\n") {
        return Err(format!(
            "second VM: exit {code}, stdout {out:?}, stderr {err:?}"
        ));
    }
    Ok(())
}

/// virtiofsd killed under a running VM: the VMM stops with an error naming the tag.
fn backend_death_stops_the_vm(a: &Assets) -> Result<(), String> {
    let dir = a.dir.join("victim");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let Vm {
        mut child,
        client,
        _daemons,
        stderr,
    } = boot(a, "third", &[share("nook0", &dir, false)])?;
    client
        .start(spec(
            "ls /data; sleep 600",
            vec![virtiofs("nook0", "/data", false)],
        ))
        .map_err(|e| format!("start: {e}"))?;
    std::thread::sleep(Duration::from_secs(5));
    drop(_daemons);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("the VM kept running after its virtiofsd was killed".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let message = read(&stderr);
    eprintln!("third: VMM {status}: {}", message.trim());
    if status.code() != Some(1) || !message.contains("virtiofsd serving tag nook0 ended") {
        return Err(format!("after virtiofsd died: {status}, {message:?}"));
    }
    Ok(())
}

#[test]
fn shared_directories_in_a_vm() {
    let (Some(dir), Some(vmm), Some(virtiofsd)) = (
        std::env::var_os("NOOK_VMM_FS_DIR").map(PathBuf::from),
        std::env::var_os("NOOK_VMM_BIN").map(PathBuf::from),
        std::env::var_os("NOOK_VIRTIOFSD").map(PathBuf::from),
    ) else {
        eprintln!("!!!! SKIPPED: the virtio-fs boot test did NOT run; it needs the nested rig: tests/vm/volumes-vm.sh !!!!");
        return;
    };
    let a = Assets {
        dir,
        vmm,
        virtiofsd,
    };
    let mut failures = Vec::new();
    for (name, case) in [
        (
            "shares and tmpfs",
            shares_and_tmpfs as fn(&Assets) -> Result<(), String>,
        ),
        ("volume outlives its VM", volume_outlives_its_vm),
        ("virtiofsd death", backend_death_stops_the_vm),
    ] {
        if let Err(e) = case(&a) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
