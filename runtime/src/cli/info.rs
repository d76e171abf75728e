//! `nook info`: where this nook keeps things and what it runs, in docker's `info` spirit: the
//! store, cache and configuration directories, the VM column's kernel, agent and VMM with where
//! each was found (the install, a checkout's build, or a variable), `/dev/kvm` access, and the
//! host tools nook runs with the path and version each resolves to, the KVM kind, and whether
//! limits can be enforced here (the cgroup version and the user's delegated subtree).

use std::ffi::CString;

use nook::host_tools::{self, Tool};
use nook::isolation::limits::delegation::{Delegation, Hierarchy};
use nook::paths::{self, ProcessEnv};

use super::{emit, version, Context};

#[derive(clap::Args)]
pub struct Args {}

/// The host tools nook itself runs (the bench's peers are reported by `nook bench`).
const TOOLS: &[Tool] = &[
    host_tools::MKFS_EXT4,
    host_tools::NEWUIDMAP,
    host_tools::NEWGIDMAP,
    host_tools::PASTA,
    host_tools::PASST,
];

/// Which KVM the host has: the PVM module only boots PVM-enabled guests.
fn kvm_kind() -> &'static str {
    let module = |m: &str| std::path::Path::new("/sys/module").join(m).exists();
    if module("kvm_pvm") {
        "PVM (kvm_pvm: only PVM-enabled guest kernels boot; run VM tests in the nested rig)"
    } else if module("kvm_intel") {
        "hardware (Intel VT-x, kvm_intel)"
    } else if module("kvm_amd") {
        "hardware (AMD-V, kvm_amd)"
    } else if module("kvm") {
        "kvm without a known vendor module"
    } else {
        "none"
    }
}

/// The first line of `TOOL --version` that says something (passt prints "unknown version"
/// when built without one), or why there is none.
fn tool_version(path: &std::path::Path) -> String {
    let out = match std::process::Command::new(path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(o) => o,
        Err(e) => return format!("version unknown: {e}"),
    };
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("version unknown")
        .to_string();
    if !line.contains("unknown version") {
        return line;
    }
    // Debian's passt is built without a version: its package has one.
    let name = path.file_name().map(|n| n.to_string_lossy().to_string());
    let package = match name.as_deref() {
        Some("pasta" | "passt") => "passt",
        _ => return line,
    };
    std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .ok()
        .filter(|o| o.status.success() && !o.stdout.is_empty())
        .map(|o| {
            format!(
                "Debian package {package} {}",
                String::from_utf8_lossy(&o.stdout)
            )
        })
        .unwrap_or(line)
}

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
    s.push_str(&format!(" KVM: {}\n", kvm_kind()));
    s.push_str(&format!(
        " virtiofsd: {}\n",
        match nook::isolation::vm::virtiofsd::find(&env) {
            Ok(p) => format!("{} ({})", p.display(), tool_version(&p)),
            Err(e) => format!("not found: {}", nook::errors::chain(&e)),
        }
    ));
    s.push_str("Limits (--memory, --cpus, --pids-limit, ...):\n");
    s.push_str(&format!(" Cgroups: {}\n", Hierarchy::detect().describe()));
    match Delegation::detect(&env) {
        Ok(d) => s.push_str(&format!(
            " Delegated: {}\n Namespace column: enforced, one cgroup a container\n",
            d.describe()
        )),
        Err(why) => s.push_str(&format!(
            " Delegated: none: {why}\n Namespace column: not enforced (create warns); the VM \
             column sizes the VM with --memory and --cpus\n"
        )),
    }
    s.push_str("Host tools:\n");
    for tool in TOOLS {
        match tool.require() {
            // Only these answer --version; mkfs and the uid helpers print their usage.
            Ok(p) if [host_tools::PASTA, host_tools::PASST].contains(tool) => s.push_str(&format!(
                " {}: {} ({})\n",
                tool.name,
                p.display(),
                tool_version(&p)
            )),
            Ok(p) => s.push_str(&format!(" {}: {}\n", tool.name, p.display())),
            Err(e) => s.push_str(&format!(" {}: {e}\n", tool.name)),
        }
    }
    emit(&s)
}
