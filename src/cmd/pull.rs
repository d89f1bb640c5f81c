//! `kolla-oci pull`: fetch an image from a registry into the store.

use std::process::ExitCode;

use anyhow::Context as _;
use kolla_oci::registry::{self, Reference, RegistryOptions};

/// Options of `kolla-oci pull`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image reference (`debian:bookworm`, `host:port/ns/name:tag`, `name@sha256:…`).
    pub reference: String,
    /// Platform to take from a multi-platform index (`os/arch[/variant]`; default: this host's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Speak plain http to this registry (loopback registries always are); repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Parallel blob downloads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// Extra attempts after a transient failure (connection error, HTTP 5xx or 429).
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// User name for the registry (password from --password-stdin).
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password for --username from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}

/// Run the subcommand.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let reference = Reference::parse(&args.reference)?;
    let platform = args.platform.as_deref().map(registry::parse_platform).transpose()?;
    let opts = RegistryOptions {
        insecure_registries: args.insecure_registries.clone(),
        retries: args.retries,
        credential: super::push::credential_from_stdin(args.username.as_deref(), args.password_stdin)?,
        threads: usize::from(args.threads),
        chunk_size: None,
    };
    let desc =
        registry::pull(&store, &reference, platform.as_ref(), &opts).with_context(|| format!("pulling {reference}"))?;
    println!("{reference} {}", desc.digest);
    Ok(ExitCode::SUCCESS)
}
