//! `kolla-oci pull`: fetch an image from a registry into the store. Like a build, a pull holds the state
//! dir in use while it runs, so a `kolla-oci gc` waits for it rather than removing a blob it reuses or has
//! fetched before the image is tagged.

use std::process::ExitCode;

use anyhow::Context as _;
use kolla_oci::builder::Workspace;
use kolla_oci::registry::{self, Reference};

/// Options of `kolla-oci pull`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image reference (`debian:bookworm`, `host:port/ns/name:tag`, `name@sha256:…`).
    pub reference: String,
    /// Platform to take from a multi-platform index (`os/arch[/variant]`; default: this host's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Parallel blob downloads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    #[command(flatten)]
    pub connection: super::RegistryArgs,
}

/// Run the subcommand.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let ws = Workspace::open(&ctx.store_dir).with_context(|| format!("opening {}", ctx.store_dir.display()))?;
    let reference = Reference::parse(&args.reference)?;
    let platform = args.platform.as_deref().map(registry::parse_platform).transpose()?;
    let opts = args.connection.options(args.threads)?;
    let desc = registry::pull(ws.store(), &reference, platform.as_ref(), &opts)
        .with_context(|| format!("pulling {reference}"))?;
    println!("{reference} {}", desc.digest);
    Ok(ExitCode::SUCCESS)
}
