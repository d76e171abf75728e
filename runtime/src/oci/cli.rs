//! runc's command line, as containerd's go-runc and podman's conmon call it: global flags
//! before the verb, then the verb's flags and the container id.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::log::LogFormat;

#[derive(Parser, Debug)]
#[command(
    name = "nook-runtime",
    about = "An OCI runtime with runc's command line, running containers in nook's namespace column",
    disable_version_flag = true
)]
pub struct Cli {
    /// Where containers' state is kept.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Where the log goes (stderr without one).
    #[arg(long)]
    pub log: Option<PathBuf>,
    #[arg(long = "log-format", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log debugging detail too.
    #[arg(long)]
    pub debug: bool,
    /// Accepted for runc's callers; nook-runtime makes no cgroup (logged).
    #[arg(long = "systemd-cgroup")]
    pub systemd_cgroup: bool,
    /// Accepted for runc's callers (true, false or auto): nook-runtime works the same way for
    /// root and for users.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long)]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// The bundle's directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Where to write the pid of the container's first process.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// A unix socket to send the pty's leader to, for a process with a terminal.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Accepted; the root is always entered with pivot_root.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Accepted; no session keyring is made.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// How many descriptors from 3 on the container inherits.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container, its first process waiting for `start`.
    Create(CreateArgs),
    /// Let a created container's first process run.
    Start { id: String },
    /// Print a container's state document.
    State { id: String },
    /// Send a signal (TERM by default) to a container's first process, or to all of them.
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a stopped container (any container with --force).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container, and wait for it unless --detach.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it ends.
        #[arg(long)]
        keep: bool,
    },
    /// Run a process in a running container.
    Exec(ExecArgs),
    /// List a container's processes.
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        /// Options for ps(1) (table format).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List containers.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print what this runtime supports (the spec's features document).
    Features,
    /// Write a starting config.json.
    Spec {
        #[arg(short, long)]
        bundle: Option<PathBuf>,
        #[arg(long)]
        rootless: bool,
    },
    /// Not supported: nook-runtime has no freezer.
    Pause { id: String },
    /// Not supported: nook-runtime has no freezer.
    Resume { id: String },
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The process, as a JSON file of the spec's `process`.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(short, long)]
    pub tty: bool,
    #[arg(long)]
    pub cwd: Option<String>,
    #[arg(short, long)]
    pub env: Vec<String>,
    /// uid[:gid]
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}
