//! Where a VM container's sockets go: the agent socket (only while the VMM connects) and the
//! control socket its monitor serves while it runs.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::VmError;
use crate::paths::{self, Env};
use crate::util::short_id;

/// Debug boots (`NOOK_VM_DEBUG=1`): kernel console and agent steps in `console.log`.
pub(super) fn debugging(env: &dyn Env) -> bool {
    env.var("NOOK_VM_DEBUG").is_some_and(|v| v != "0")
}

/// Where the agent and control sockets go: the runtime directory, or the temp directory when
/// that path is too long for a Unix socket address (108 bytes).
fn socket_dir(env: &dyn Env) -> Result<PathBuf, VmError> {
    let mut dir = paths::runtime_dir(env).join("vm");
    if dir.as_os_str().len() + 12 + 8 > 100 {
        dir = std::env::temp_dir().join(format!("nook-vm-{}", env.uid()));
    }
    std::fs::create_dir_all(&dir).map_err(|source| VmError::Io {
        what: "create",
        path: dir.clone(),
        source,
    })?;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    Ok(dir)
}

/// Where the agent socket goes (only while the VMM connects).
pub(super) fn socket_path(env: &dyn Env, id: &str) -> Result<PathBuf, VmError> {
    Ok(socket_dir(env)?.join(format!("{}.sock", short_id(id))))
}

/// Where the monitor of the running container `id` serves its control channel.
pub fn control_path(env: &dyn Env, id: &str) -> Result<PathBuf, VmError> {
    Ok(socket_dir(env)?.join(format!("{}.ctl", short_id(id))))
}

/// Where the caller listens for the VMM of container `id` to connect its snapshot trigger
/// (only while the VMM connects).
pub fn trigger_path(env: &dyn Env, id: &str) -> Result<PathBuf, VmError> {
    Ok(socket_dir(env)?.join(format!("{}.snap", short_id(id))))
}

/// Where passt listens for the VMM of container `id` (only while the VMM connects).
pub fn net_path(env: &dyn Env, id: &str) -> Result<PathBuf, VmError> {
    Ok(socket_dir(env)?.join(format!("{}.net", short_id(id))))
}

/// Where the virtiofsd of shared directory `index` of container `id` listens (only while the
/// VMM connects).
pub fn fs_path(env: &dyn Env, id: &str, index: usize) -> Result<PathBuf, VmError> {
    Ok(socket_dir(env)?.join(format!("{}.fs{index}", short_id(id))))
}
