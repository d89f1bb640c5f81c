//! `kolla-oci run IMAGE [-e K=V] [-v HOST:CTR[:ro]] [-- CMD…]`.

use std::process::ExitCode;

use anyhow::Context as _;
use kolla_oci::builder::{ContainerOptions, run_container};
use kolla_oci::sandbox::{Bind, NetworkMode};

/// Options of `kolla-oci run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image (a tag in the store, as `kolla-oci images` lists it).
    pub image: String,
    /// Set an environment variable (`KEY=value`); repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Bind-mount a host path: `HOST:CONTAINER[:ro]`; repeatable.
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volumes: Vec<String>,
    /// Run as this user instead of the image's `USER`.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Replace the image's entrypoint (an empty string clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// The container's network: `host` (default here, unlike builds: a service started with
    /// `kolla-oci run` is tested from the host, on its 127.0.0.1), `private` (its own namespace with
    /// outbound access through slirp4netns) or `none` (loopback only).
    #[arg(long, value_enum, default_value_t = NetworkMode::Host)]
    pub network: NetworkMode,
    /// The command and its arguments (replace the image's `CMD`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// Parse `HOST:CONTAINER[:ro|:rw]`.
fn parse_volume(v: &str) -> anyhow::Result<Bind> {
    let mut parts = v.splitn(3, ':');
    let (Some(host), Some(target)) = (parts.next(), parts.next()) else {
        anyhow::bail!("bad volume {v:?}: expected HOST:CONTAINER[:ro]");
    };
    let readonly = match parts.next() {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(o) => anyhow::bail!("bad volume option {o:?} in {v:?}: expected ro or rw"),
    };
    anyhow::ensure!(target.starts_with('/'), "bad volume {v:?}: the container path must be absolute");
    let source = std::fs::canonicalize(host).with_context(|| format!("volume source {host}"))?;
    Ok(Bind { source, target: target.to_owned(), readonly })
}

/// Run the image and exit with its command's exit code.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let ws = ctx.open_workspace()?;
    let binds = args.volumes.iter().map(|v| parse_volume(v)).collect::<anyhow::Result<Vec<_>>>()?;
    let opts = ContainerOptions {
        env: args.env,
        binds,
        args: args.args,
        entrypoint: args.entrypoint.map(|e| if e.is_empty() { vec![] } else { vec![e] }),
        user: args.user,
        network: args.network,
    };
    let mut out = std::io::stdout().lock();
    let code = run_container(&ws, &args.image, &opts, &mut out).with_context(|| format!("running {}", args.image))?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}
