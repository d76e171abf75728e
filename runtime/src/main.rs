//! The `nook` command line.

use clap::Parser;

/// A rootless container runtime: Linux namespaces or one KVM microVM per container.
#[derive(Parser)]
#[command(name = "nook", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
