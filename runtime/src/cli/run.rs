//! `nook run [OPTIONS] IMAGE [COMMAND] [ARG...]`: create and start a container; attached, exit
//! with its status; with -d, print its id once it runs.

use nook::container::monitor::Attach;

use super::create::CreateFlags;
use super::status::ExitStatus;
use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Run container in background and print container ID
    #[arg(short, long)]
    detach: bool,
    #[command(flatten)]
    flags: CreateFlags,
}

impl Args {
    /// Whether the container runs in a microVM, where no process of nook's ever enters it.
    pub fn wants_vm(&self) -> bool {
        self.flags.wants_vm()
    }
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let opts = args.flags.options()?;
    super::pull::ensure_image(ctx, &args.flags.image)?;
    let engine = ctx.engine();
    let container = engine.create(&opts)?;
    if args.detach {
        engine.start(container.id(), Attach::Detached)?;
        return emit(&format!("{}\n", container.id()));
    }
    match engine.start(container.id(), Attach::Attached)? {
        Some(exit) if exit.status() != 0 => Err(ExitStatus(exit.status()).into()),
        _ => Ok(()),
    }
}
