//! `nook checkpoint create|ls|rm`: docker's checkpoint verbs. A VM container's checkpoint is
//! its VM's snapshot and its writable disk (see `nook::isolation::vm::checkpoint`); `nook start
//! --checkpoint NAME` resumes it. The namespace column answers with what it would need (CRIU).

use anyhow::Context as _;
use clap::Subcommand;

use nook::container::engine::Engine;
use nook::container::store::Container;
use nook::isolation::vm::checkpoint;
use nook::isolation::IsolationError;

use super::{emit, Context};

#[derive(Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Create a checkpoint from a running container (VM column)
    Create(CreateArgs),
    /// List checkpoints for a container
    #[command(visible_alias = "list", name = "ls")]
    Ls(LsArgs),
    /// Remove a checkpoint
    #[command(visible_alias = "remove", name = "rm")]
    Rm(RmArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Leave the container running after checkpoint
    #[arg(long)]
    leave_running: bool,
    container: String,
    checkpoint: String,
}

#[derive(clap::Args)]
pub struct LsArgs {
    container: String,
}

#[derive(clap::Args)]
pub struct RmArgs {
    container: String,
    checkpoint: String,
}

/// The checkpoints of `container` live in its directory, and only a VM container has any.
fn vm_dir(
    engine: &Engine,
    container: &Container,
    what: &'static str,
) -> anyhow::Result<std::path::PathBuf> {
    if container.config.isolation.vm_settings().is_none() {
        return Err(IsolationError::NoCheckpoints { what }.into());
    }
    Ok(engine.containers.dir(container.id()))
}

pub fn run(command: Command, ctx: &Context) -> anyhow::Result<()> {
    let engine = ctx.engine();
    match command {
        Command::Create(a) => {
            let container = engine.containers.find(&a.container)?;
            checkpoint::check_name(&a.checkpoint)?;
            engine
                .checkpoint(&container, &a.checkpoint, a.leave_running)
                .with_context(|| {
                    format!(
                        "cannot checkpoint container {} as {}",
                        container.name(),
                        a.checkpoint
                    )
                })?;
            emit(&format!("{}\n", a.checkpoint))
        }
        Command::Ls(a) => {
            let container = engine.containers.find(&a.container)?;
            let dir = vm_dir(&engine, &container, "nook checkpoint ls")?;
            let mut out = String::from("CHECKPOINT NAME\n");
            for c in checkpoint::list(&dir)? {
                out.push_str(&c.name);
                out.push('\n');
            }
            emit(&out)
        }
        Command::Rm(a) => {
            let container = engine.containers.find(&a.container)?;
            let dir = vm_dir(&engine, &container, "nook checkpoint rm")?;
            let _lock = engine.containers.lock(container.id())?;
            checkpoint::remove(&dir, &a.checkpoint)?;
            Ok(())
        }
    }
}
