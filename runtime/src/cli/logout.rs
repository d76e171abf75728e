//! `nook logout [SERVER]`: forgets the credentials nook's auth file holds for a registry.

use anyhow::Context as _;

use nook::paths::ProcessEnv;
use nook::registry::credentials::AuthFiles;
use nook::registry::endpoint::registry_of_server;

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// The registry (default: docker.io)
    server: Option<String>,
}

pub fn run(args: Args, _ctx: &Context) -> anyhow::Result<()> {
    let registry = registry_of_server(args.server.as_deref());
    let removed = AuthFiles::from_env(&ProcessEnv)
        .remove(&registry)
        .with_context(|| format!("cannot remove the credentials for {registry}"))?;
    if removed {
        emit(&format!("Removing login credentials for {registry}\n"))
    } else {
        emit(&format!("Not logged in to {registry}\n"))
    }
}
