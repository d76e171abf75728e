//! `nook pull [-q] [--platform P] [--tls-verify=BOOL] NAME[:TAG|@DIGEST]`: an image from a
//! registry, with docker's output; also the pull `run` and `create` do for a missing image.

use std::io::Write;

use anyhow::Context as _;

use nook::image::reference::{is_id_like, Reference};
use nook::image::{Store, StoreError};
use nook::paths::ProcessEnv;
use nook::registry::client::Client;
use nook::registry::credentials::AuthFiles;
use nook::registry::progress::{Mode, Progress};
use nook::registry::{Platform, PullOptions, Pulled};

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    platform: Option<String>,
    /// Require HTTPS and verify certificates (default: true, except for localhost registries)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    tls_verify: Option<bool>,
    /// The image to pull: NAME[:TAG|@DIGEST]
    name: String,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let reference = Reference::parse(&args.name)?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let store = ctx.store()?;
    if !args.quiet
        && Reference::parse_name_only(&args.name)?.tag().is_none()
        && reference.digest().is_none()
    {
        emit("Using default tag: latest\n")?;
    }
    let progress = Progress::new(Mode::auto(args.quiet), Box::new(std::io::stdout()));
    let pulled = pull_with(&store, &reference, platform, args.tls_verify, &progress)?;
    let mut out = String::new();
    if !args.quiet {
        out.push_str(&summary(&reference, &pulled));
    }
    out.push_str(&format!("{reference}\n"));
    emit(&out)
}

fn pull_with(
    store: &Store,
    reference: &Reference,
    platform: Platform,
    tls_verify: Option<bool>,
    progress: &Progress,
) -> anyhow::Result<Pulled> {
    let options = PullOptions {
        platform,
        tls_verify,
        auth: AuthFiles::from_env(&ProcessEnv),
    };
    nook::registry::pull(store, &Client::from_env(), reference, &options, progress)
        .with_context(|| format!("cannot pull {}", reference.familiar()))
}

/// docker's closing lines: the digest and whether anything changed.
fn summary(reference: &Reference, pulled: &Pulled) -> String {
    let status = if pulled.up_to_date {
        "Image is up to date for"
    } else {
        "Downloaded newer image for"
    };
    format!(
        "Digest: {}\nStatus: {status} {}\n",
        pulled.digest,
        reference.familiar()
    )
}

/// Pulls `image` if the store has no such image and it is a reference (what `run` and `create`
/// do first); progress goes to stderr, as the container owns stdout.
pub fn ensure_image(ctx: &Context, image: &str) -> anyhow::Result<()> {
    let store = ctx.store()?;
    match store.resolve(image) {
        Ok(_) => return Ok(()),
        Err(StoreError::NoSuchImage(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let reference = match Reference::parse(image) {
        Ok(reference) => reference,
        // An id (prefix): the engine reports it as missing.
        Err(_) if is_id_like(image) => return Ok(()),
        // Neither: docker's "invalid reference format", and no registry is asked.
        Err(e) => return Err(e.into()),
    };
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "Unable to find image '{}' locally",
        reference.familiar()
    );
    let progress = Progress::new(Mode::auto(false), Box::new(std::io::stderr()));
    let pulled = pull_with(&store, &reference, Platform::host(), None, &progress)?;
    let _ = write!(err, "{}", summary(&reference, &pulled));
    Ok(())
}
