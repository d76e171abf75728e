//! `nook create [OPTIONS] IMAGE [COMMAND] [ARG...]`: a new container, not started.

use std::path::PathBuf;

use anyhow::Context as _;

use nook::config::{Config, IsolationKind};
use nook::container::engine::CreateOptions;
use nook::container::log::LogOptions;
use nook::container::mount_args::{self, MountRequest};
use nook::isolation::limits::{self, delegation::Delegation, ulimit::Ulimit, Limits};
use nook::isolation::network::{self, NetworkSpec};
use nook::isolation::security::{parse_userns, Seccomp, SecurityOptions};
use nook::isolation::vm::{BootMode, VmSettings};
use nook::isolation::Column;
use nook::paths::ProcessEnv;

use super::limit_flags::LimitFlags;
use super::{emit, Context};

// The flags `create` and `run` share (a plain comment: a doc comment would become their help text).
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
    /// Add an additional group to join: a group name of the image's /etc/group or a numeric
    /// gid (names in the namespace column only)
    #[arg(long = "group-add", value_name = "GROUP")]
    pub group_add: Vec<String>,
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
    #[command(flatten)]
    pub resources: LimitFlags,
    /// Ulimit options: NAME=SOFT[:HARD] (nofile, nproc, core, ...; -1: unlimited)
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm (default 64m)
    #[arg(long, allow_hyphen_values = true, value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Log driver options: max-size (default 20m, -1: no limit), max-file (default 5)
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// Network mode: pasta (default; rootless user-mode networking), pasta:OPTIONS (e.g.
    /// pasta:--map-gw to reach the host's loopback), none (only lo), host (container isolation
    /// only)
    #[arg(long, visible_alias = "net", default_value = "pasta")]
    pub network: String,
    /// Publish a container's port(s) to the host: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp]
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to free host ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Set custom DNS servers
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// Add a custom host-to-IP mapping (NAME:IP)
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// Bind mount a volume: SRC:DST[:ro|rw] (SRC an absolute host path, or a volume name
    /// created on first use) or DST (a new anonymous volume)
    #[arg(short = 'v', long = "volume", value_name = "[SRC:]DST[:OPTS]")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount: type=bind|volume|tmpfs,source=...,target=...[,readonly]
    /// [,tmpfs-size=...][,tmpfs-mode=...]
    #[arg(long, value_name = "SPEC")]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory: DST[:size=...,mode=...,ro]
    #[arg(long, value_name = "DST[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// Mount volumes from the specified container(s): CONTAINER[:ro|rw]
    #[arg(long = "volumes-from", value_name = "CONTAINER")]
    pub volumes_from: Vec<String>,
    /// Add Linux capabilities (docker's names, with or without CAP_; ALL for every one)
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities (docker's names, with or without CAP_; ALL for every one)
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Security options: no-new-privileges[=true|false], seccomp=PROFILE.json (docker's
    /// format) or seccomp=unconfined
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Give the container every capability of its user namespace, no seccomp filter and
    /// nothing of /proc or /sys masked (still rootless: it is root of its user namespace only)
    #[arg(long)]
    pub privileged: bool,
    /// User namespace mode: keep-id (podman's: the user's own uid and gid inside, the process
    /// running as them, the user in the container's /etc/passwd and /etc/group); default: the
    /// user is the container's root
    #[arg(long, value_name = "MODE")]
    pub userns: Option<String>,
    /// Guest kernel (ELF vmlinux) for --isolation=vm; default: $NOOK_KERNEL, else the cached build
    #[arg(long, value_name = "VMLINUX")]
    pub kernel: Option<PathBuf>,
    /// How an --isolation=vm container starts: warm (resume a booted guest of its shape, built
    /// on first need) or cold (boot the kernel)
    #[arg(long, value_enum, value_name = "MODE")]
    pub boot: Option<BootMode>,
    /// The image to create the container from
    pub image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

impl CreateFlags {
    /// Whether the container runs in a microVM (`--isolation`, `$NOOK_ISOLATION`, then the
    /// config file); an unreadable config counts as no (the verb reports it later).
    pub fn wants_vm(&self) -> bool {
        match &self.isolation {
            Some(i) => i == "vm",
            None => Config::load(&ProcessEnv)
                .is_ok_and(|c| matches!(c.isolation, Some(IsolationKind::Vm))),
        }
    }

    /// Checks the flags and turns them into the engine's options.
    pub fn options(&self) -> anyhow::Result<CreateOptions> {
        let isolation = match &self.isolation {
            Some(i) => i.clone(),
            None => match Config::load(&ProcessEnv)?.isolation {
                Some(IsolationKind::Vm) => "vm".into(),
                Some(IsolationKind::Container) | None => "container".into(),
            },
        };
        // Before any warning about the limits, as docker does.
        let limits = self.limits(isolation == "vm")?;
        let memory = limits.memory;
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
        if let Some(bad) = env.iter().find(|e| e.is_empty() || e.starts_with('=')) {
            anyhow::bail!("invalid environment variable: {bad}");
        }
        let column = match isolation.as_str() {
            "container" | "default" => {
                anyhow::ensure!(
                    self.kernel.is_none(),
                    "--kernel applies only to --isolation=vm"
                );
                check_delegation(&limits)?;
                anyhow::ensure!(self.boot.is_none(), "--boot applies only to --isolation=vm");
                Column::Container
            }
            "vm" => {
                let refused = limits.not_in_vm().flag_names();
                anyhow::ensure!(
                    refused.is_empty(),
                    "{} not yet applied with --isolation=vm: the VM column takes --memory and \
                     --cpus (the VM's size), --pids-limit and --ulimit (set inside the guest) only",
                    refused.join(", ")
                );
                let mut vm = VmSettings::from_flags(memory, self.resources.cpus)?;
                // Absolute: the container may be started later, from another directory.
                vm.kernel = self
                    .kernel
                    .as_deref()
                    .map(std::path::absolute)
                    .transpose()
                    .context("cannot resolve the --kernel path")?;
                vm.boot = self.boot.unwrap_or_default();
                Column::Vm(vm)
            }
            other => anyhow::bail!(
                "invalid isolation {other:?}: use \"container\" (namespaces) or \"vm\" (microVM)"
            ),
        };
        let security = self.security_options()?;
        Ok(CreateOptions {
            image: self.image.clone(),
            name: self.name.clone(),
            cmd: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            env,
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            group_add: self.group_add.clone(),
            hostname: self.hostname.clone(),
            read_only: self.read_only,
            tty: self.tty,
            interactive: self.interactive,
            auto_remove: self.rm,
            column,
            log: LogOptions::parse(&self.log_opt)?,
            network: self.network_spec()?,
            publish_all: self.publish_all,
            mounts: self.mount_requests()?,
            volumes_from: self
                .volumes_from
                .iter()
                .map(|v| mount_args::parse_volumes_from(v))
                .collect::<Result<_, _>>()?,
            security,
            limits,
        })
    }

    /// The limit flags, in docker's units, checked together.
    fn limits(&self, vm: bool) -> anyhow::Result<Limits> {
        let limits = Limits {
            ulimits: self
                .ulimit
                .iter()
                .map(|u| Ulimit::parse(u))
                .collect::<Result<_, _>>()?,
            shm_size: self
                .shm_size
                .as_deref()
                .map(|s| limits::parse_size("--shm-size", s))
                .transpose()?,
            ..self.resources.limits(vm)?
        };
        limits.check()?;
        Ok(limits)
    }
}

/// The namespace column's limits need a delegated cgroup v2: without one they are not
/// enforced, and the user is told why (as docker and podman warn); with one, a limit whose
/// controller is not delegated is refused, naming it.
fn check_delegation(limits: &Limits) -> anyhow::Result<()> {
    let limits = &limits.cgroup_limits();
    if limits.is_default() {
        return Ok(());
    }
    match Delegation::detect(&ProcessEnv) {
        Err(why) => eprintln!(
            "nook: warning: {} not enforced with --isolation=container: {why}; see `nook info`, \
             docs/limits.md, or use --isolation=vm to bound memory and CPUs",
            limits.flag_names().join(", ")
        ),
        Ok(d) if d.controllers.is_empty() => {}
        Ok(d) => {
            for f in limits.cgroup_files(None) {
                anyhow::ensure!(
                    d.controllers.iter().any(|c| c == f.controller),
                    "cannot apply {}: the {} controller is not delegated ({}); available: {}",
                    f.file,
                    f.controller,
                    d.describe(),
                    d.controllers.join(" ")
                );
            }
        }
    }
    Ok(())
}

impl CreateFlags {
    /// `--cap-add`, `--cap-drop`, `--security-opt` and `--privileged`, checked as a start
    /// will apply them: a bad profile fails here, naming its file.
    fn security_options(&self) -> anyhow::Result<SecurityOptions> {
        let mut security = SecurityOptions::from_flags(
            &self.cap_add,
            &self.cap_drop,
            &self.security_opt,
            self.privileged,
        )?;
        security.keep_id = parse_userns(self.userns.as_deref().unwrap_or(""))?;
        let ignored = security.check()?;
        if let (Seccomp::Profile { file, .. }, false) = (&security.seccomp, ignored.is_empty()) {
            // As docker (libseccomp, through runc) does, so that one profile serves every
            // architecture and kernel; but not silently.
            const SHOWN: usize = 8;
            let mut names = ignored[..ignored.len().min(SHOWN)].join(", ");
            if ignored.len() > SHOWN {
                names.push_str(&format!(" and {} more", ignored.len() - SHOWN));
            }
            eprintln!(
                "nook: warning: seccomp profile {}: syscalls unknown on x86_64, ignored as \
                 docker ignores them: {names}",
                file.display(),
            );
        }
        Ok(security)
    }

    /// `-v`, `--mount` and `--tmpfs`, in that order (clap keeps each flag's own order).
    fn mount_requests(&self) -> anyhow::Result<Vec<MountRequest>> {
        let mut out = Vec::new();
        for v in &self.volume {
            out.push(mount_args::parse_volume(v)?);
        }
        for m in &self.mount {
            out.push(mount_args::parse_mount(m)?);
        }
        for t in &self.tmpfs {
            out.push(mount_args::parse_tmpfs(t)?);
        }
        Ok(out)
    }

    /// `--network`, `-p`, `--dns`, `--dns-search`, `--add-host`.
    fn network_spec(&self) -> anyhow::Result<NetworkSpec> {
        let mut ports = Vec::new();
        for p in &self.publish {
            ports.extend(network::parse_publish(p)?);
        }
        Ok(NetworkSpec {
            mode: network::parse_mode(&self.network)?,
            ports,
            dns: self
                .dns
                .iter()
                .map(|d| network::parse_dns(d))
                .collect::<Result<_, _>>()?,
            dns_search: self.dns_search.clone(),
            add_hosts: self
                .add_host
                .iter()
                .map(|h| network::parse_add_host(h))
                .collect::<Result<_, _>>()?,
        })
    }
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
