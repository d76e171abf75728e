//! `nook port CONTAINER [PRIVATE_PORT[/PROTO]]`: the container's published ports, as docker
//! prints them (`80/tcp -> 0.0.0.0:8080`).

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    container: String,
    /// Only this container port (PORT or PORT/PROTO)
    private_port: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = ctx.engine();
    let container = engine.containers.find(&args.container)?;
    let wanted = args
        .private_port
        .as_deref()
        .map(|p| match p.split_once('/') {
            Some((port, proto)) => (port.to_string(), proto.to_string()),
            None => (p.to_string(), "tcp".to_string()),
        });
    let mut out = String::new();
    for m in &container.config.launch.network.ports {
        let key = (m.container_port.to_string(), m.protocol.to_string());
        if wanted.as_ref().is_some_and(|w| *w != key) {
            continue;
        }
        let host = m.host_ip.map_or("0.0.0.0".to_string(), |ip| ip.to_string());
        if wanted.is_some() {
            out.push_str(&format!("{host}:{}\n", m.host_port));
        } else {
            out.push_str(&format!(
                "{}/{} -> {host}:{}\n",
                m.container_port, m.protocol, m.host_port
            ));
        }
    }
    if out.is_empty() {
        if let Some((port, proto)) = wanted {
            anyhow::bail!(
                "no public port '{port}/{proto}' published for {}",
                args.container
            );
        }
    }
    emit(&out)
}
