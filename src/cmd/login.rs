//! `kolla-oci login` / `logout`: credentials kept where podman keeps them (`$REGISTRY_AUTH_FILE`, else
//! `$XDG_RUNTIME_DIR/containers/auth.json`), so that `push`, `pull`, `build --push` and podman itself use
//! them.

use std::process::ExitCode;

use anyhow::Context as _;
use kolla_oci::registry::{self, Client, Reference};

/// Options of `kolla-oci login`.
#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// The registry (`host[:port]`; a reference's registry part also works).
    pub registry: String,
    /// The user name.
    #[arg(short = 'u', long)]
    pub username: String,
    /// Read the password from standard input.
    #[arg(long, required = true)]
    pub password_stdin: bool,
    /// The auth file to write (default: podman's).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<std::path::PathBuf>,
    /// TLS.
    #[command(flatten)]
    pub tls: super::TlsArgs,
    /// Speak plain http to the registry.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
}

/// Options of `kolla-oci logout`.
#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    /// The registry to forget.
    #[arg(required_unless_present = "all")]
    pub registry: Option<String>,
    /// Forget every registry.
    #[arg(short = 'a', long, conflicts_with = "registry")]
    pub all: bool,
    /// The auth file (default: podman's).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<std::path::PathBuf>,
}

/// `docker.io/library/x` or `quay.io` → the registry as references name it (`docker.io`, `quay.io`).
fn registry_of(s: &str) -> anyhow::Result<String> {
    let s = s.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
    let host = s.split('/').next().unwrap_or(s);
    let r = Reference::parse(&format!("{host}/x")).with_context(|| format!("registry {s:?}"))?;
    Ok(r.registry().to_owned())
}

/// Check the credentials with the registry, then save them.
pub fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let registry = registry_of(&args.registry)?;
    let credential = super::password_from_stdin(&args.username)?;
    let opts = registry::RegistryOptions {
        credential: Some(credential.clone()),
        insecure_registries: args.insecure_registries,
        tls: args.tls.options(),
        ..registry::RegistryOptions::default()
    };
    let api = Reference::parse(&format!("{registry}/x"))?;
    Client::new(&registry, api.api_host(), &opts)
        .and_then(|c| c.check_credentials())
        .with_context(|| format!("logging in to {registry}"))?;
    let file = args.authfile.unwrap_or_else(registry::auth_file);
    registry::save_credential(&file, &registry, &credential)?;
    tracing::debug!(file = %file.display(), "credentials saved");
    println!("Login Succeeded!");
    Ok(ExitCode::SUCCESS)
}

/// Remove the saved credentials.
pub fn logout(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let file = args.authfile.unwrap_or_else(registry::auth_file);
    let registry = args.registry.as_deref().map(registry_of).transpose()?;
    if registry::forget_credential(&file, registry.as_deref())? {
        match &registry {
            Some(r) => println!("Removed login credentials for {r}"),
            None => println!("Removed login credentials for all registries"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let what = registry.unwrap_or_else(|| "any registry".into());
    anyhow::bail!("not logged into {what} (no entry in {})", file.display())
}
