//! `nook info`: where this nook keeps things and what it runs, in docker's `info` spirit: the
//! store, cache and configuration directories, the VM column's kernel, agent and VMM with where
//! each was found (the install, a checkout's build, or a variable), `/dev/kvm` access, and the
//! host tools nook runs with the path each resolves to.

use std::ffi::CString;

use nook::host_tools::{self, Tool};
use nook::paths::{self, ProcessEnv};

use super::{emit, version, Context};

#[derive(clap::Args)]
pub struct Args {}

/// The host tools nook itself runs (the bench's peers are reported by `nook bench`).
const TOOLS: &[Tool] = &[
    host_tools::MKFS_EXT4,
    host_tools::NEWUIDMAP,
    host_tools::NEWGIDMAP,
];

fn kvm_access() -> String {
    let path = CString::new("/dev/kvm").expect("no NUL");
    // SAFETY: access(2) reads the NUL-terminated path and nothing else.
    let rw = unsafe { libc::access(path.as_ptr(), libc::R_OK | libc::W_OK) } == 0;
    match (std::path::Path::new("/dev/kvm").exists(), rw) {
        (false, _) => "missing (the VM column cannot run here)".into(),
        (true, true) => "read/write".into(),
        (true, false) => {
            "no access (join the kvm group: sudo usermod -aG kvm $USER, then log in again)".into()
        }
    }
}

pub fn run(_args: Args, ctx: &Context) -> anyhow::Result<()> {
    let env = ProcessEnv;
    let mut s = format!(
        "Version: {}, build {}\nExecutable: {}\nStore root: {}\nCache: {}\nConfig: {}\n",
        version::VERSION,
        version::COMMIT,
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|e| format!("unknown ({e})")),
        ctx.store_root.display(),
        paths::cache_dir(&env).display(),
        paths::config_dir(&env).join("config.toml").display(),
    );
    s.push_str("VM column:\n");
    for c in version::components() {
        match c.found {
            Ok((path, origin)) => s.push_str(&format!(
                " {}: {} (from {origin})\n",
                c.name,
                path.display()
            )),
            Err(why) => s.push_str(&format!(" {}: not found: {why}\n", c.name)),
        }
    }
    s.push_str(&format!(" /dev/kvm: {}\n", kvm_access()));
    s.push_str("Host tools:\n");
    for tool in TOOLS {
        match tool.require() {
            Ok(p) => s.push_str(&format!(" {}: {}\n", tool.name, p.display())),
            Err(e) => s.push_str(&format!(" {}: {e}\n", tool.name)),
        }
    }
    emit(&s)
}
