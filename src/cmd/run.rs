//! `kolla-oci run [OPTIONS] IMAGE [CMD…]`: podman's `run` for the rootless sandbox.

use std::process::ExitCode;

use anyhow::Context as _;
use kolla_oci::builder::{BuildError, ContainerOptions, run_container};
use kolla_oci::registry::{self, Reference};
use kolla_oci::sandbox::{Bind, NetworkMode, SandboxError};
use kolla_oci::store::Platform;

/// When `run` pulls its image (podman's `--pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Pull when the store does not have the image.
    Missing,
    /// Pull every time (the store keeps what did not change).
    Always,
    /// Never pull: an image not in the store is an error.
    Never,
}

/// Options of `kolla-oci run`. As with podman, options come before the image; everything after it is
/// the command (`--` before it still works).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Set an environment variable: `KEY=value`, or `KEY` alone for this shell's value of it (left out when
    /// unset); repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Bind-mount a host path: `HOST:CONTAINER[:ro]`; repeatable.
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volumes: Vec<String>,
    /// Run as this user (`name`, `uid`, `uid:gid`) instead of the image's `USER`.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// The working directory inside the container instead of the image's `WORKDIR`.
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Replace the image's entrypoint: a command, or a JSON array (`'["/bin/sh","-c"]'`); an empty string
    /// clears it.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Remove the container when it exits. kolla-oci always does (its containers live in a scratch dir
    /// for the run only); accepted so that podman command lines work unchanged.
    #[arg(long)]
    pub rm: bool,
    /// Pull the image: `missing` (default, as podman), `always` or `never`.
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,
    /// The container's network: `host` (default here, unlike builds: a service started with
    /// `kolla-oci run` is tested from the host, on its 127.0.0.1), `private` (its own namespace with
    /// outbound access through slirp4netns) or `none` (loopback only).
    #[arg(long, value_enum, default_value_t = NetworkMode::Host)]
    pub network: NetworkMode,
    /// Keep standard input open for the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the command a terminal (with `-i`: an interactive shell, `kolla-oci run -it IMAGE bash`).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The platform to run, `os/arch[/variant]`: picks it from an image index (default: this machine's),
    /// pulls it from a registry's. Another architecture runs through qemu-user (binfmt_misc).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// How the image is pulled.
    #[command(flatten)]
    pub connection: super::RegistryArgs,
    /// The image: a store tag (`:latest` when none is given), a digest, or a registry reference.
    pub image: String,
    /// The command and its arguments (replace the image's `CMD`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
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

/// `-e` values: `KEY=value` as given, `KEY` with `host`'s value (dropped when it has none), as podman does.
fn environment(given: &[String], host: impl Fn(&str) -> Option<String>) -> Vec<String> {
    given
        .iter()
        .filter_map(|e| match e.split_once('=') {
            Some(_) => Some(e.clone()),
            None => host(e).map(|v| format!("{e}={v}")),
        })
        .collect()
}

/// `--entrypoint`: a JSON array of strings, or one command; empty clears the image's.
fn entrypoint(e: &str) -> anyhow::Result<Vec<String>> {
    if e.is_empty() {
        return Ok(vec![]);
    }
    if e.trim_start().starts_with('[') {
        return serde_json::from_str(e).with_context(|| format!("--entrypoint {e:?}: not a JSON array of strings"));
    }
    Ok(vec![e.to_owned()])
}

/// The store tag to run: the image if the store has it (and `--pull always` was not asked), else pulled
/// as podman pulls it (a name without registry is Docker Hub's; without tag, `:latest`).
fn image_to_run(ctx: &super::Context, args: &Args, platform: Option<&Platform>) -> anyhow::Result<String> {
    let store = ctx.open_store()?;
    if args.pull != PullPolicy::Always
        && let Some(found) = super::find_image(&store, &args.image)?
    {
        return Ok(found.tag);
    }
    if args.pull == PullPolicy::Never {
        return Err(super::not_known(ctx, &args.image));
    }
    let reference = Reference::parse(&args.image)?;
    let opts = args.connection.options(4)?;
    tracing::info!("pulling {reference}");
    registry::pull(&store, &reference, platform, &opts).with_context(|| format!("pulling {reference}"))?;
    Ok(reference.to_string())
}

/// Run the image and exit with its command's exit code.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let binds = args.volumes.iter().map(|v| parse_volume(v)).collect::<anyhow::Result<Vec<_>>>()?;
    let platform = args.platform.as_deref().map(kolla_oci::platform::parse).transpose()?;
    let image = image_to_run(ctx, &args, platform.as_ref())?;
    let ws = ctx.open_workspace()?;
    let opts = ContainerOptions {
        env: environment(&args.env, |k| std::env::var(k).ok()),
        binds,
        args: args.args,
        entrypoint: args.entrypoint.as_deref().map(entrypoint).transpose()?,
        user: args.user,
        workdir: args.workdir,
        network: args.network,
        interactive: args.interactive,
        tty: args.tty,
        platform,
    };
    let mut out = std::io::stdout().lock();
    let code = match run_container(&ws, &image, &opts, &mut out) {
        Ok(code) => code,
        // A command that is not there (127) or cannot run (126): the shell's status, as podman returns.
        Err(BuildError::Sandbox(SandboxError::Exec { code, message })) => {
            eprintln!("error: running {image}: {message}");
            code
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("running {image}"))),
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn env_without_value_takes_the_hosts() {
        let host = |k: &str| (k == "HOME").then(|| "/root".to_owned());
        let given = ["A=1", "HOME", "UNSET", "B="].map(String::from);
        assert_eq!(super::environment(&given, host), ["A=1", "HOME=/root", "B="]);
    }

    #[test]
    fn entrypoints() {
        assert_eq!(super::entrypoint("/bin/sh").unwrap(), ["/bin/sh"]);
        assert_eq!(super::entrypoint(r#"["/bin/sh", "-c"]"#).unwrap(), ["/bin/sh", "-c"]);
        assert!(super::entrypoint("").unwrap().is_empty());
        assert!(super::entrypoint("[1]").is_err());
    }
}
