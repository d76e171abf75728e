//! `nook create [OPTIONS] IMAGE [COMMAND] [ARG...]`: a new container, not started.

use std::path::PathBuf;

use anyhow::Context as _;

use nook::config::{Config, IsolationKind};
use nook::container::engine::CreateOptions;
use nook::container::log::LogOptions;
use nook::isolation::vm::VmSettings;
use nook::paths::ProcessEnv;

use super::{emit, Context};

/// The flags `create` and `run` share.
#[derive(clap::Args, Debug, Clone)]
pub struct CreateFlags {
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(long)]
    pub hostname: Option<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    pub read_only: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Isolation technology: container (Linux namespaces) or vm (a KVM microVM); default:
    /// $NOOK_ISOLATION, else `isolation` in config.toml, else container
    #[arg(long, env = "NOOK_ISOLATION")]
    pub isolation: Option<String>,
    /// Memory limit: the VM's size with --isolation=vm (not enforced with --isolation=container)
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Number of CPUs: the VM's vCPUs with --isolation=vm (not enforced with --isolation=container)
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Log driver options: max-size (default 20m, -1: no limit), max-file (default 5)
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// Guest kernel (ELF vmlinux) for --isolation=vm; default: $NOOK_KERNEL, else the cached build
    #[arg(long, value_name = "VMLINUX")]
    pub kernel: Option<PathBuf>,
    /// The image to create the container from
    pub image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

impl CreateFlags {
    /// Checks the flags and turns them into the engine's options.
    pub fn options(&self) -> anyhow::Result<CreateOptions> {
        let memory = self.memory.as_deref().map(parse_memory).transpose()?;
        let isolation = match &self.isolation {
            Some(i) => i.clone(),
            None => match Config::load(&ProcessEnv)?.isolation {
                Some(IsolationKind::Vm) => "vm".into(),
                Some(IsolationKind::Container) | None => "container".into(),
            },
        };
        let vm = match isolation.as_str() {
            "container" | "default" => {
                anyhow::ensure!(
                    self.kernel.is_none(),
                    "--kernel applies only to --isolation=vm"
                );
                if memory.is_some() || self.cpus.is_some() {
                    // Like docker and podman on a host without delegated cgroups: say so
                    // rather than pretend the limit holds.
                    eprintln!(
                        "nook: warning: --memory and --cpus are not enforced with \
                         --isolation=container (rootless, no delegated cgroup v2); \
                         use --isolation=vm to bound them"
                    );
                }
                None
            }
            "vm" => {
                let mut vm = VmSettings::from_flags(memory, self.cpus)?;
                // Absolute: the container may be started later, from another directory.
                vm.kernel = self
                    .kernel
                    .as_deref()
                    .map(std::path::absolute)
                    .transpose()
                    .context("cannot resolve the --kernel path")?;
                Some(vm)
            }
            other => anyhow::bail!(
                "invalid isolation {other:?}: use \"container\" (namespaces) or \"vm\" (microVM)"
            ),
        };
        if let Some(c) = self.cpus {
            anyhow::ensure!(
                c > 0.0 && c.is_finite(),
                "invalid --cpus {c}: must be a positive number"
            );
        }
        let mut env = Vec::new();
        for file in &self.env_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the env file {}", file.display()))?;
            env.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        env.extend(self.env.iter().cloned());
        Ok(CreateOptions {
            image: self.image.clone(),
            name: self.name.clone(),
            cmd: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            env,
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            read_only: self.read_only,
            tty: self.tty,
            interactive: self.interactive,
            auto_remove: self.rm,
            vm,
            log: LogOptions::parse(&self.log_opt)?,
        })
    }
}

/// docker's memory sizes: a number with an optional b, k, m or g suffix.
pub fn parse_memory(s: &str) -> anyhow::Result<u64> {
    let lower = s.to_ascii_lowercase();
    let (digits, unit) = match lower.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("invalid --memory {s:?}: expected a size like 512m or 1g"))?;
    let mult = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => anyhow::bail!("invalid --memory {s:?}: expected a size like 512m or 1g"),
    };
    Ok(n * mult)
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub flags: CreateFlags,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let opts = args.flags.options()?;
    super::pull::ensure_image(ctx, &args.flags.image)?;
    let container = ctx.engine().create(&opts)?;
    emit(&format!("{}\n", container.id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("100").unwrap(), 100);
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("5x").is_err());
    }
}
