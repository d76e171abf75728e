//! `nook cp`: the container side. A running container is copied from and into as it runs; a
//! stopped one under its lock, so that it cannot start while its files are mounted elsewhere.

use super::engine::Engine;
use super::state::{ProcFs, Status};
use super::store::{Container, ContainerError};
use crate::isolation::CopyOp;

/// Runs `op` against `container`.
pub fn copy(engine: &Engine, container: &Container, op: &CopyOp) -> Result<(), ContainerError> {
    let lock = engine.containers.lock(container.id())?;
    let current = engine.containers.load(container.id())?;
    let running = match current.status() {
        Status::Running { init, .. } if init.alive(&ProcFs) => Some(init.pid),
        _ => None,
    };
    // A running container is not held: it keeps changing whatever we do.
    let _lock = running.is_none().then_some(lock);
    // A stopped container's files are read and written as its own user namespace maps them.
    let host = engine
        .host
        .for_container(current.config.launch.security.keep_id)?;
    Ok(current.config.isolation.copy(
        &host,
        &engine.containers.dir(current.id()),
        &current.config.launch.mounts,
        running,
        op,
    )?)
}
