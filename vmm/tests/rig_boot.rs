//! Boots the real guest kernel with nook-vmm: a busybox initramfs talks over the agent channel,
//! reads the EROFS disk, writes the ext4 disk, and resets the VM; with 1 and 2 vCPUs, 128 MiB and
//! 1 GiB. Needs a /dev/kvm that boots standard guests, so tests/vm/vmm-boot.sh prepares the
//! assets and runs this test inside the nested rig (NOOK_VMM_BOOT_DIR points at the assets).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Case {
    vcpus: u8,
    memory_mib: u32,
}

fn run_case(dir: &Path, case: &Case) -> Result<(), String> {
    let tag = format!("{}cpu-{}m", case.vcpus, case.memory_mib);
    let upper = dir.join(format!("upper-{tag}.ext4"));
    std::fs::copy(dir.join("upper.ext4"), &upper).map_err(|e| format!("copy upper: {e}"))?;
    let sock_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let sock = sock_dir.path().join("agent.sock");
    let listener =
        UnixListener::bind(&sock).map_err(|e| format!("bind {}: {e}", sock.display()))?;
    let serial = dir.join(format!("serial-{tag}.log"));
    let debug = std::env::var("NOOK_VMM_BOOT_SERIAL").is_ok();
    let cmdline = format!(
        "{}reboot=k panic=-1 rdinit=/init",
        if debug { "console=ttyS0 " } else { "quiet " }
    );
    let config = serde_json::json!({
        "kernel": dir.join("vmlinux"),
        "initramfs": dir.join("initrd.cpio"),
        "cmdline": cmdline,
        "memory_mib": case.memory_mib,
        "vcpus": case.vcpus,
        "disks": [
            {"path": dir.join("rootfs.erofs"), "read_only": true},
            {"path": upper, "read_only": false},
        ],
        "agent_socket": sock,
        "serial": if debug { serde_json::json!({"file": serial}) } else { serde_json::json!("off") },
        "timeout_ms": 240_000,
    });
    let started = Instant::now();
    let mut vmm = Command::new(env!("CARGO_BIN_EXE_nook-vmm"))
        .args(["--config-json", &config.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn nook-vmm: {e}"))?;
    let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(240)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    for line in BufReader::new(stream).lines() {
        let line =
            line.map_err(|e| format!("{tag}: reading the agent channel: {e} (got {lines:?})"))?;
        if line == "ready" {
            eprintln!("{tag}: guest ready after {:?}", started.elapsed());
            writer.write_all(b"ping\n").map_err(|e| e.to_string())?;
        }
        let done = line == "done";
        lines.push(line);
        if done {
            break;
        }
    }
    let status = vmm.wait().map_err(|e| e.to_string())?;
    eprintln!(
        "{tag}: VMM exited with {status} after {:?}; guest said {lines:?}",
        started.elapsed()
    );
    if !status.success() {
        return Err(format!("{tag}: nook-vmm exited with {status}"));
    }
    let expect = [
        "ready".to_string(),
        "pong:ping".to_string(),
        format!("cpus={}", case.vcpus),
        "erofs=hello from erofs".to_string(),
        "ext4=ok".to_string(),
        "vda-write=refused".to_string(),
        "done".to_string(),
    ];
    for e in &expect {
        if !lines.contains(e) {
            return Err(format!("{tag}: guest never said {e:?} (said {lines:?})"));
        }
    }
    let mem_kb: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("memkb=")?.parse().ok())
        .ok_or_else(|| format!("{tag}: no memkb line"))?;
    let wanted = u64::from(case.memory_mib) * 1024;
    if mem_kb > wanted || mem_kb < wanted * 3 / 4 {
        return Err(format!(
            "{tag}: guest sees {mem_kb} KiB for {wanted} KiB of RAM"
        ));
    }
    let out = Command::new("debugfs")
        .args(["-R", "cat /persist.txt"])
        .arg(&upper)
        .output()
        .map_err(|e| format!("debugfs: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim() != "persisted by nook" {
        return Err(format!(
            "{tag}: the writable disk holds {text:?}, not the guest's file"
        ));
    }
    Ok(())
}

#[test]
fn boots_the_guest_kernel_in_every_shape() {
    let Some(dir) = std::env::var_os("NOOK_VMM_BOOT_DIR").map(PathBuf::from) else {
        eprintln!(
            "!!!! SKIPPED: the real-kernel boot test did NOT run; it needs the nested rig: tests/vm/vmm-boot.sh !!!!"
        );
        return;
    };
    let cases = [
        Case {
            vcpus: 1,
            memory_mib: 128,
        },
        Case {
            vcpus: 2,
            memory_mib: 1024,
        },
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| run_case(&dir, c).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
