//! `nook-vmm`: runs one microVM, started by the runtime once per container.
//!
//! Usage: `nook-vmm --config FILE` (JSON [`nook_vmm::VmConfig`]; `-` reads it from stdin) or
//! `nook-vmm --config-json JSON`.
//! Exit status: 0 when the guest reset the VM (its normal end), 2 on timeout, 3 when the guest
//! halted, 1 on any error (the whole error chain is printed on stderr).

use std::io::Read;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use nook_vmm::{VmConfig, VmExit};

const USAGE: &str = "usage: nook-vmm --config FILE|- | --config-json JSON";

/// Closes every descriptor above stderr: the VMM must not hold what its parent leaked.
fn close_inherited_fds() {
    // SAFETY: close_range only closes descriptors; nothing in this process uses fds >= 3 yet.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc != 0 {
        // Kernels before 5.9: walk /proc/self/fd instead.
        let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for fd in fds.into_iter().filter(|fd| *fd > 2) {
            // SAFETY: closing a descriptor number; the directory handle's own fd fails harmlessly.
            unsafe { libc::close(fd) };
        }
    }
}

fn no_new_privs() -> Result<()> {
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot set no_new_privs");
    }
    Ok(())
}

fn read_config(args: &[String]) -> Result<VmConfig> {
    let text = match args {
        [flag, json] if flag == "--config-json" => json.clone(),
        [flag, path] if flag == "--config" && path == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the config from stdin")?;
            s
        }
        [flag, path] if flag == "--config" => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {path}"))?,
        _ => bail!("{USAGE}"),
    };
    serde_json::from_str(&text).context("invalid VM config JSON")
}

fn main() -> ExitCode {
    close_inherited_fds();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = no_new_privs()
        .and_then(|()| read_config(&args))
        .and_then(|config| {
            nook_vmm::run_confined(&config).context("the VM did not run to completion")
        });
    match result {
        Ok(VmExit::Reset) => ExitCode::SUCCESS,
        Ok(VmExit::Timeout) => {
            eprintln!("nook-vmm: the VM was killed after its timeout");
            ExitCode::from(2)
        }
        Ok(VmExit::Snapshotted) => ExitCode::SUCCESS,
        Ok(VmExit::Halted) => {
            eprintln!("nook-vmm: the guest halted without resetting the VM");
            ExitCode::from(3)
        }
        Err(e) => {
            // The whole cause chain on one line, as every nook binary prints it.
            eprintln!("nook-vmm: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
