//! `nook cp [-a] [-L] CONTAINER:SRC_PATH DEST_PATH|-` and
//! `nook cp [-a] [-L] SRC_PATH|- CONTAINER:DEST_PATH`: docker's copies between the host and a
//! container, running or stopped; `-` is a tar stream on stdout or stdin.

use std::path::PathBuf;

use nook::isolation::CopyOp;

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// Suppress progress output during copy (nook prints none)
    #[arg(short, long)]
    quiet: bool,
    /// CONTAINER:SRC_PATH, or a host path, or - (a tar stream on stdin)
    src: String,
    /// CONTAINER:DEST_PATH, or a host path, or - (a tar stream on stdout)
    dst: String,
}

/// One side of a copy: `CONTAINER:PATH`, or a host path (one that starts with `/` or `.`, or
/// has no colon, as docker splits them).
fn container_side(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    arg.split_once(':')
}

/// A container path as docker takes it: relative ones are relative to `/`.
fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let (name, op) = match (container_side(&args.src), container_side(&args.dst)) {
        (Some(_), Some(_)) => anyhow::bail!("copying between containers is not supported"),
        (None, None) => anyhow::bail!("must specify at least one container source"),
        (Some((name, path)), None) => (
            name,
            CopyOp::FromContainer {
                src: absolute(path),
                dst: (args.dst != "-").then(|| PathBuf::from(&args.dst)),
                follow: args.follow_link,
                archive: args.archive,
            },
        ),
        (None, Some((name, path))) => (
            name,
            CopyOp::ToContainer {
                src: (args.src != "-").then(|| PathBuf::from(&args.src)),
                dst: absolute(path),
                follow: args.follow_link,
                archive: args.archive,
            },
        ),
    };
    anyhow::ensure!(
        !name.is_empty(),
        "a container name is required before the colon"
    );
    let engine = ctx.engine();
    let container = engine.containers.find(name)?;
    nook::container::cp::copy(&engine, &container, &op)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_split_like_docker() {
        assert_eq!(
            container_side("web:/etc/hosts"),
            Some(("web", "/etc/hosts"))
        );
        assert_eq!(container_side("/tmp/a:b"), None);
        assert_eq!(container_side("./a:b"), None);
        assert_eq!(container_side("file"), None);
        assert_eq!(absolute("etc"), "/etc");
    }
}
