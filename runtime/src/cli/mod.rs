//! The `nook` command line: one verb a file, docker's names, flags and output.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use nook::container::store::ContainerError;
use nook::image::Store;
use nook::paths::{self, ProcessEnv};

mod bench;
mod completion;
pub mod format;
mod history;
mod image_default;
mod image_rootfs;
mod images;
mod import;
mod in_use;
mod info;
mod inspect;
mod load;
mod login;
mod logout;
mod prune;
mod pull;
mod push;
mod rmi;
mod save;
pub mod status;
mod system;
mod tag;
pub mod version;
mod volume;

// Container verbs.
mod checkpoint;
mod commit;
mod container_inspect;
mod cp;
mod create;
mod diff;
mod exec;
mod export;
mod kill;
mod limit_flags;
mod logs;
mod port;
mod ps;
mod ps_filter;
mod restart;
mod rm;
mod run;
mod start;
mod stats;
mod stop;
mod top;
mod update;
mod wait;

/// A rootless container runtime: Linux namespaces or one KVM microVM per container.
#[derive(Parser)]
// `--version` is nook's own flag: it reports the components too, which clap's cannot.
#[command(
    name = "nook",
    about,
    disable_version_flag = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Print the version, the commit and the VM components, and exit
    #[arg(short = 'V', long)]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Create and run a new container from an image
    Run(run::Args),
    /// Create a new container
    Create(create::Args),
    /// Start one or more stopped containers
    Start(start::Args),
    /// Stop one or more running containers
    Stop(stop::Args),
    /// Kill one or more running containers
    Kill(kill::Args),
    /// Restart one or more containers
    Restart(restart::Args),
    /// Remove one or more containers
    Rm(rm::Args),
    /// List containers
    Ps(ps::Args),
    /// Fetch the logs of a container
    Logs(logs::Args),
    /// Execute a command in a running container
    Exec(exec::Args),
    /// Block until one or more containers stop, then print their exit codes
    Wait(wait::Args),
    /// Display the running processes of a container
    Top(top::Args),
    /// Display a live stream of container(s) resource usage statistics
    Stats(stats::Args),
    /// Update configuration (resource limits) of one or more containers
    Update(update::Args),
    /// List port mappings of a container
    Port(port::Args),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::Args),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(diff::Args),
    /// Create a new image from a container's changes
    Commit(commit::Args),
    /// Export a container's filesystem as a tar archive
    Export(export::Args),
    /// Import the contents from a tarball to create a filesystem image
    Import(import::Args),
    /// Load images from a tar archive (docker save or OCI archive) or STDIN
    Load(load::Args),
    /// Save one or more images to an OCI tar archive (streamed to STDOUT by default)
    Save(save::Args),
    /// List images
    Images(images::Args),
    /// Return low-level information on images
    Inspect(inspect::Args),
    /// Show the history of an image
    History(history::Args),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(tag::Args),
    /// Remove one or more images
    Rmi(rmi::Args),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volume::Command),
    /// Manage checkpoints (VM containers)
    #[command(subcommand)]
    Checkpoint(checkpoint::Command),
    /// Manage nook: disk usage
    #[command(subcommand)]
    System(system::Command),
    /// Download an image from a registry
    Pull(pull::Args),
    /// Upload an image to a registry
    Push(push::Args),
    /// Log in to a registry
    Login(login::Args),
    /// Log out from a registry
    Logout(logout::Args),
    /// Measure start-up cost of the isolation columns against runc, crun, QEMU, Firecracker
    Bench(bench::Args),
    /// Show the version, the commit and the VM components nook uses
    Version(version::Args),
    /// Display system-wide information: directories, VM components, /dev/kvm, host tools
    Info(info::Args),
    /// Print the shell completion script for bash, zsh or fish
    Completion(completion::Args),
    /// Write nook's man pages to a directory (used by install.sh)
    #[command(hide = true)]
    Manpages(completion::ManArgs),
}

#[derive(Subcommand)]
#[command(defer = true)]
pub enum ImageCommand {
    /// List images
    #[command(visible_alias = "list", name = "ls")]
    Ls(images::Args),
    /// Import the contents from a tarball to create a filesystem image
    Import(import::Args),
    /// Load images from a tar archive or STDIN
    Load(load::Args),
    /// Save one or more images to an OCI tar archive
    Save(save::Args),
    /// Display detailed information on one or more images
    Inspect(inspect::Args),
    /// Show the history of an image
    History(history::Args),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(tag::Args),
    /// Remove one or more images
    #[command(visible_alias = "remove", name = "rm")]
    Rm(rmi::Args),
    /// Remove dangling images and every blob no image references
    Prune(prune::Args),
    /// Build (once) and print the path of the image's read-only EROFS root filesystem
    Rootfs(image_rootfs::Args),
    /// Create the built-in default image busybox:latest from the host's static busybox
    Default(image_default::Args),
}

/// What every verb needs: where the store is.
pub struct Context {
    pub store_root: PathBuf,
}

impl Context {
    pub fn from_env() -> Context {
        Context {
            store_root: paths::store_root(&ProcessEnv),
        }
    }

    /// The containers of the store and the isolation backend.
    pub fn engine(&self) -> nook::container::engine::Engine {
        nook::container::engine::Engine::new(&self.store_root)
    }

    /// Opens (creating if needed) the image store.
    pub fn store(&self) -> anyhow::Result<Store> {
        Store::open(&self.store_root).with_context(|| {
            format!(
                "cannot open the image store at {}",
                self.store_root.display()
            )
        })
    }
}

/// Runs one parsed command line.
pub fn run(cli: Cli, ctx: &Context) -> anyhow::Result<()> {
    let command = match cli.command {
        Some(command) if !cli.version => command,
        // arg_required_else_help: only `--version` gets here without a verb.
        _ => return version::run(version::Args {}),
    };
    match command {
        Command::Run(a) => run::run(a, ctx),
        Command::Create(a) => create::run(a, ctx),
        Command::Start(a) => start::run(a, ctx),
        Command::Stop(a) => stop::run(a, ctx),
        Command::Kill(a) => kill::run(a, ctx),
        Command::Restart(a) => restart::run(a, ctx),
        Command::Rm(a) => rm::run(a, ctx),
        Command::Ps(a) => ps::run(a, ctx),
        Command::Logs(a) => logs::run(a, ctx),
        Command::Exec(a) => exec::run(a, ctx),
        Command::Wait(a) => wait::run(a, ctx),
        Command::Top(a) => top::run(a, ctx),
        Command::Stats(a) => stats::run(a, ctx),
        Command::Update(a) => update::run(a, ctx),
        Command::Port(a) => port::run(a, ctx),
        Command::Cp(a) => cp::run(a, ctx),
        Command::Diff(a) => diff::run(a, ctx),
        Command::Commit(a) => commit::run(a, ctx),
        Command::Export(a) => export::run(a, ctx),
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => import::run(a, ctx),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => load::run(a, ctx),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => save::run(a, ctx),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::run(a, ctx),
        Command::Inspect(a) | Command::Image(ImageCommand::Inspect(a)) => inspect::run(a, ctx),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => history::run(a, ctx),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => tag::run(a, ctx),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => rmi::run(a, ctx),
        Command::Image(ImageCommand::Prune(a)) => prune::run(a, ctx),
        Command::Image(ImageCommand::Rootfs(a)) => image_rootfs::run(a, ctx),
        Command::Image(ImageCommand::Default(a)) => image_default::run(a, ctx),
        Command::Volume(c) => volume::run(c, ctx),
        Command::Checkpoint(c) => checkpoint::run(c, ctx),
        Command::System(c) => system::run(c, ctx),
        Command::Pull(a) => pull::run(a, ctx),
        Command::Push(a) => push::run(a, ctx),
        Command::Login(a) => login::run(a, ctx),
        Command::Logout(a) => logout::run(a, ctx),
        Command::Bench(a) => bench::run(a, ctx),
        Command::Version(a) => version::run(a),
        Command::Info(a) => info::run(a, ctx),
        Command::Completion(a) => completion::run(a),
        Command::Manpages(a) => completion::run_man(a),
    }
}

/// Applies `action` to each named container, as docker's multi-container verbs do: `done` reports
/// each success (usually by printing the name), each failure goes to stderr with its whole cause
/// chain, and the verb fails at the end naming every container it could not `verb`.
pub fn for_each_container<T>(
    engine: &nook::container::engine::Engine,
    names: &[String],
    verb: &str,
    mut action: impl FnMut(&nook::container::store::Container) -> Result<T, ContainerError>,
    mut done: impl FnMut(&str, T) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for name in names {
        match engine.containers.find(name).and_then(|c| action(&c)) {
            Ok(value) => done(name, value)?,
            Err(e) => {
                eprintln!("Error: {}", nook::errors::chain(&e));
                failed.push(name.as_str());
            }
        }
    }
    anyhow::ensure!(
        failed.is_empty(),
        "failed to {verb} containers: {}",
        failed.join(", ")
    );
    Ok(())
}

/// Writes command output to stdout; a closed pipe (`nook images | head -1`) is not an error.
pub fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// clap's own consistency checks, over every subcommand (deferred ones are built first).
    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Subcommands are built only when used (`defer`): a doc comment on an argument struct
    /// would then replace the verb's own about text, as `CreateFlags`' once did for `run`.
    #[test]
    fn each_verb_keeps_its_own_about_text() {
        let mut cmd = Cli::command();
        cmd.build();
        let about = |name: &str| {
            cmd.find_subcommand(name)
                .and_then(|c| c.get_about())
                .map(|a| a.to_string())
                .unwrap_or_default()
        };
        assert_eq!(about("run"), "Create and run a new container from an image");
        assert_eq!(about("create"), "Create a new container");
        assert_eq!(about("start"), "Start one or more stopped containers");
        assert_eq!(about("volume"), "Manage volumes");
    }
}
