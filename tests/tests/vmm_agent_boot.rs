//! nook's VMM with nook's kernel and agent: the agent boots from its initramfs, mounts the image's
//! EROFS (vda) and the writable ext4 disk (vdb), runs busybox `sh -c 'echo hello; echo err >&2;
//! exit 3'` and the container's file persists on vdb; with 1 vCPU/128 MiB and 2 vCPUs/1 GiB.
//! Needs a /dev/kvm that boots standard guests: tests/vm/vmm-agent.sh prepares the assets and
//! runs this test inside the nested rig (NOOK_VMM_AGENT_DIR points at them).

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nook_agent::client::Client;
use nook_agent::protocol::{ProcessSpec, StartSpec};

fn run_case(dir: &Path, vmm: &Path, vcpus: u8, memory_mib: u32) -> Result<(), String> {
    let tag = format!("{vcpus}cpu-{memory_mib}m");
    let upper = dir.join(format!("upper-{tag}.ext4"));
    std::fs::copy(dir.join("upper.ext4"), &upper).map_err(|e| format!("copy upper: {e}"))?;
    let sock_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let sock = sock_dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).map_err(|e| format!("bind: {e}"))?;
    let config = serde_json::json!({
        "kernel": dir.join("vmlinux"),
        "initramfs": dir.join("agent.cpio"),
        "cmdline": "console=ttynull reboot=k panic=-1 rdinit=/init",
        "memory_mib": memory_mib,
        "vcpus": vcpus,
        "disks": [
            {"path": dir.join("image.erofs"), "read_only": true},
            {"path": upper, "read_only": false},
        ],
        "agent_socket": sock,
        "timeout_ms": 300_000,
    });
    let started = Instant::now();
    let mut child = Command::new(vmm)
        .args(["--config-json", &config.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", vmm.display()))?;
    let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let client = Client::from_unix(stream).map_err(|e| format!("{tag}: {e}"))?;
    client
        .wait_ready(Duration::from_secs(240))
        .map_err(|e| format!("{tag}: {e}"))?;
    eprintln!("{tag}: agent ready after {:?}", started.elapsed());
    let spec = StartSpec {
        process: ProcessSpec {
            argv: [
                "sh",
                "-c",
                "echo hello; echo err >&2; echo kept > /persisted; exit 3",
            ]
            .map(String::from)
            .to_vec(),
            env: vec!["PATH=/bin:/usr/bin".into()],
            cwd: String::new(),
            user: String::new(),
            terminal: false,
            rows: 0,
            cols: 0,
            ..ProcessSpec::default()
        },
        hostname: "nook-test".into(),
        resolv_conf: String::new(),
        hosts: String::new(),
        mounts: Vec::new(),
        limits: Default::default(),
        security: Default::default(),
        keep_id: None,
    };
    let stream_id = client
        .start(spec)
        .map_err(|e| format!("{tag}: start: {e}"))?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = client
        .wait_process(stream_id, &mut out, &mut err)
        .map_err(|e| format!("{tag}: wait: {e}"))?;
    let status = child.wait().map_err(|e| e.to_string())?;
    eprintln!(
        "{tag}: VMM exited with {status} after {:?}",
        started.elapsed()
    );
    let out = String::from_utf8_lossy(&out);
    let err = String::from_utf8_lossy(&err);
    if (result.status.code, out.as_ref(), err.as_ref()) != (3, "hello\n", "err\n") {
        return Err(format!(
            "{tag}: got code {:?}, stdout {out:?}, stderr {err:?}, errors {:?}",
            result.status, result.errors
        ));
    }
    if !status.success() {
        return Err(format!("{tag}: nook-vmm exited with {status}"));
    }
    let cat = Command::new("debugfs")
        .args(["-R", "cat /upper/persisted"])
        .arg(&upper)
        .output()
        .map_err(|e| format!("debugfs: {e}"))?;
    if String::from_utf8_lossy(&cat.stdout).trim() != "kept" {
        return Err(format!(
            "{tag}: the container's file is not on the writable disk"
        ));
    }
    Ok(())
}

#[test]
fn agent_runs_a_container_command_under_nook_vmm() {
    let (Some(dir), Some(vmm)) = (
        std::env::var_os("NOOK_VMM_AGENT_DIR").map(PathBuf::from),
        std::env::var_os("NOOK_VMM_BIN").map(PathBuf::from),
    ) else {
        eprintln!("!!!! SKIPPED: the nook-vmm + agent boot test did NOT run; it needs the nested rig: tests/vm/vmm-agent.sh !!!!");
        return;
    };
    let failures: Vec<String> = [(1, 128), (2, 1024)]
        .into_iter()
        .filter_map(|(vcpus, mem)| run_case(&dir, &vmm, vcpus, mem).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
