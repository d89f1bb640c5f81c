//! Subcommand bodies: the CLI edge, where library errors get `anyhow` context and exit codes are chosen.

pub mod build;
pub mod build_file;
pub mod df;
pub mod fsck;
pub mod gc;
pub mod history;
pub mod images;
pub mod inspect;
pub mod login;
pub mod provenance;
pub mod pull;
pub mod push;
pub mod rmi;
pub mod run;
pub mod save;
pub mod sbom;
pub mod tag;

use std::path::{Path, PathBuf};

/// What every subcommand gets from the global options.
pub struct Context {
    /// State directory (see `--store`).
    pub store_dir: PathBuf,
}

impl Context {
    /// Open (creating if needed) the OCI image layout, holding the state dir in use (a `gc` waits) and able
    /// to give back the blobs kept only as extracted layers.
    pub fn open_store(&self) -> anyhow::Result<kolla_oci::store::Store> {
        use anyhow::Context as _;
        kolla_oci::builder::Workspace::open_store(&self.store_dir).with_context(|| self.store_named())
    }

    /// Open (creating if needed) the whole state directory: the store and what builds derive from it.
    pub fn open_workspace(&self) -> anyhow::Result<kolla_oci::builder::Workspace> {
        use anyhow::Context as _;
        kolla_oci::builder::Workspace::open(&self.store_dir).with_context(|| self.store_named())
    }

    /// What an error opening the store says first: which store, and how it was chosen.
    fn store_named(&self) -> String {
        format!("opening the store {} (--store or KOLLA_OCI_STORE)", self.store_dir.display())
    }
}

/// `name` with `:latest` when it names no tag or digest (`nova-api` → `nova-api:latest`, `host:5000/x` →
/// `host:5000/x:latest`), as podman and docker read a name without a tag.
pub fn with_latest(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') { name.to_owned() } else { format!("{name}:latest") }
}

/// An image named on the command line, as found in the store.
pub struct Found {
    /// A store tag of the image.
    pub tag: String,
    /// It was named by its digest (so every tag of it is meant), not by a name.
    pub by_digest: bool,
}

/// The store tag an image named on the command line is, found as podman finds it: the tag as written;
/// with `:latest` when it has none; as a normalized registry reference (`debian:trixie` →
/// `docker.io/library/debian:trixie`, the name `pull` gives it); or by a manifest digest (`sha256:…`) or an
/// unambiguous prefix of one (as `images` shows it). `Ok(None)`: not in the store.
pub fn find_image(store: &kolla_oci::store::Store, name: &str) -> anyhow::Result<Option<Found>> {
    use anyhow::Context as _;
    let tags = store.tags().context("reading the store's index.json")?;
    let mut candidates = vec![name.to_owned(), with_latest(name)];
    if let Ok(r) = kolla_oci::registry::Reference::parse(name) {
        candidates.push(r.to_string());
    }
    if let Some(tag) = candidates.iter().find(|c| tags.iter().any(|(t, _)| t == *c)) {
        return Ok(Some(Found { tag: tag.clone(), by_digest: false }));
    }
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if hex.len() < 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let hits: Vec<&(String, kolla_oci::store::Descriptor)> =
        tags.iter().filter(|(_, d)| d.digest.hex().starts_with(hex)).collect();
    let distinct: std::collections::BTreeSet<_> = hits.iter().map(|(_, d)| d.digest).collect();
    match (hits.first(), distinct.len()) {
        (None, _) => Ok(None),
        (Some((tag, _)), 1) => Ok(Some(Found { tag: tag.clone(), by_digest: true })),
        (_, n) => anyhow::bail!("{name:?} is the start of {n} images' digests: give more of it"),
    }
}

/// [`find_image`], with an error naming the store when the image is not there.
pub fn require_image(ctx: &Context, store: &kolla_oci::store::Store, name: &str) -> anyhow::Result<String> {
    find_image(store, name)?.map(|f| f.tag).ok_or_else(|| not_known(ctx, name))
}

/// The error for an image the store does not have.
pub fn not_known(ctx: &Context, name: &str) -> anyhow::Error {
    anyhow::anyhow!("{name}: image not known in the store {} (`kolla-oci images` lists it)", ctx.store_dir.display())
}

/// Write a stored JSON document to stdout, newline-terminated (`sbom`, `provenance`).
pub fn print_document(doc: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(doc).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()).context("writing to stdout")
}

/// A build's error for the console: a failed RUN's last lines come with it unless its output was
/// `shown` there already (so that it is printed once).
pub fn build_error(e: kolla_oci::builder::BuildError, shown: bool) -> anyhow::Error {
    match e.output_tail().filter(|t| !shown && !t.is_empty()) {
        Some(tail) => anyhow::anyhow!("{e}\n--- last lines of its output ---\n{tail}"),
        None => e.into(),
    }
}

/// `$XDG_DATA_HOME/kolla-oci`, else `~/.local/share/kolla-oci`, else `./kolla-oci-store`.
pub fn default_store_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Path::new(&d).join("kolla-oci");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Path::new(&h).join(".local/share/kolla-oci"),
        None => PathBuf::from("kolla-oci-store"),
    }
}

/// Logs go to stderr; stdout is kept for results (summaries, listings). `quiet` (kolla-build's
/// `--quiet`) leaves out the lines about one image (events with an `image` field) below ERROR, as
/// kolla-build silences its per-image loggers on the console; `--logs-dir` still gets them.
pub fn init_logging(filter: &str, quiet: bool) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let per_image = tracing_subscriber::filter::filter_fn(move |meta| {
        !(quiet && *meta.level() > tracing::Level::ERROR && meta.fields().field("image").is_some())
    });
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    tracing_subscriber::registry().with(filter).with(tracing_subscriber::Layer::with_filter(console, per_image)).init();
}

/// `--compression gzip|gzip:LEVEL|zstd|zstd:LEVEL|none` (gzip's level defaults to
/// [`layers::DEFAULT_GZIP_LEVEL`], zstd's to 3).
pub fn parse_compression(s: &str) -> Result<layers::Compression, String> {
    match s {
        "gzip" => Ok(layers::Compression::Gzip { level: layers::DEFAULT_GZIP_LEVEL }),
        "zstd" => Ok(layers::Compression::Zstd { level: 3 }),
        _ => s.parse(),
    }
}

/// How `push`, `pull` and `build-file` reach a registry.
#[derive(clap::Args, Debug)]
pub struct RegistryArgs {
    /// Speak plain http to this registry (loopback registries always are); repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// A host on a loopback or private network the registry may send us to (an upload session or a
    /// redirect, e.g. its S3 storage); other such hosts are refused. Repeatable.
    #[arg(long = "allow-private-host", value_name = "HOST[:PORT]")]
    pub allowed_private_hosts: Vec<String>,
    /// Extra attempts after a transient failure (connection error, stalled transfer, HTTP 5xx or 429).
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Seconds to wait for a connection to open.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,
    /// Seconds a transfer may go without receiving a byte before it is given up (and retried).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub read_timeout: u64,
    /// TLS and credentials.
    #[command(flatten)]
    pub access: AccessArgs,
}

impl RegistryArgs {
    /// Registry options with `threads` parallel transfers; reads the password from stdin when asked.
    pub fn options(&self, threads: u16) -> anyhow::Result<kolla_oci::registry::RegistryOptions> {
        Ok(kolla_oci::registry::RegistryOptions {
            insecure_registries: self.insecure_registries.clone(),
            allowed_private_hosts: self.allowed_private_hosts.clone(),
            retries: self.retries,
            timeouts: kolla_oci::registry::Timeouts {
                connect: std::time::Duration::from_secs(self.connect_timeout),
                stall: std::time::Duration::from_secs(self.read_timeout),
            },
            threads: usize::from(threads),
            ..self.access.options()?
        })
    }
}

/// How registries are trusted and logged in to, spelled as podman, buildah and skopeo spell it: every
/// command that reaches a registry takes these (`build` too, beside kolla-build's own options).
#[derive(clap::Args, Debug)]
pub struct AccessArgs {
    /// TLS.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// User name for the registry (password from --password-stdin); default: the credentials `login`
    /// stored, or docker's.
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password for --username from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}

impl AccessArgs {
    /// Registry options with this TLS set-up and credential; reads the password from stdin when asked.
    pub fn options(&self) -> anyhow::Result<kolla_oci::registry::RegistryOptions> {
        let credential = match (&self.username, self.password_stdin) {
            (Some(user), true) => Some(password_from_stdin(user)?),
            _ => None,
        };
        Ok(kolla_oci::registry::RegistryOptions {
            credential,
            tls: self.tls.options(),
            ..kolla_oci::registry::RegistryOptions::default()
        })
    }
}

/// Registry TLS as podman and skopeo spell it.
#[derive(clap::Args, Debug)]
pub struct TlsArgs {
    /// Require HTTPS and check the registry's certificate, loopback registries too (default: checked, but
    /// a loopback registry without certificates in --cert-dir or certs.d speaks plain HTTP);
    /// `--tls-verify=false`: accept any certificate, and allow plain HTTP.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// CA certificates (`*.crt`) and a client certificate (`*.cert` + `*.key`) for the registry, instead
    /// of `$HOME/.config/containers/certs.d/HOST:PORT/` or `/etc/containers/certs.d/HOST:PORT/`.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
}

impl TlsArgs {
    /// The TLS options these flags give.
    pub fn options(&self) -> kolla_oci::registry::TlsOptions {
        kolla_oci::registry::TlsOptions {
            verify: self.tls_verify,
            cert_dir: self.cert_dir.clone(),
            ..kolla_oci::registry::TlsOptions::default()
        }
    }
}

/// `user` with the password on standard input (one line; its line end dropped).
pub fn password_from_stdin(user: &str) -> anyhow::Result<kolla_oci::registry::Credential> {
    use anyhow::Context as _;
    use std::io::Read as _;
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password).context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    anyhow::ensure!(!password.is_empty(), "--password-stdin: standard input held no password");
    let password = kolla_oci::registry::Secret::new(password);
    Ok(kolla_oci::registry::Credential::Basic { username: user.to_owned(), password })
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_without_a_tag_mean_latest() {
        for (name, want) in [
            ("nova-api", "nova-api:latest"),
            ("kolla/nova-api:T", "kolla/nova-api:T"),
            ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest"),
            ("127.0.0.1:5000/x:1", "127.0.0.1:5000/x:1"),
            ("x@sha256:ab", "x@sha256:ab"),
        ] {
            assert_eq!(super::with_latest(name), want);
        }
    }
}
