//! Exit statuses of container verbs: `run`, `start -a`, `exec` and `wait`-like verbs end with the
//! container's status; errors of the container's set-up keep docker's 125/126/127.

use nook::container::store::ContainerError;
use nook::isolation::IsolationError;

/// Ends `nook` with this status and prints nothing more (the container already spoke).
#[derive(Debug, thiserror::Error)]
#[error("the container exited with status {0}")]
pub struct ExitStatus(pub i32);

/// The exit code an error should end `nook` with: the container's status, docker's 126/127 for
/// a command that cannot run, else None (nook's own error, 125).
pub fn exit_code(e: &anyhow::Error) -> Option<i32> {
    if let Some(ExitStatus(code)) = e.downcast_ref::<ExitStatus>() {
        return Some(*code);
    }
    let isolation = e.chain().find_map(|c| {
        c.downcast_ref::<IsolationError>()
            .or_else(|| match c.downcast_ref::<ContainerError>() {
                Some(ContainerError::Isolation(i)) => Some(i),
                _ => None,
            })
    })?;
    match isolation {
        IsolationError::Start { code, .. } if *code == 126 || *code == 127 => Some(*code),
        _ => None,
    }
}
