//! Subcommand bodies: the CLI edge, where library errors get `anyhow` context and exit codes are chosen.

pub mod build;
pub mod build_file;
pub mod df;
pub mod fsck;
pub mod gc;
pub mod images;
pub mod provenance;
pub mod pull;
pub mod push;
pub mod run;
pub mod save;
pub mod sbom;

use std::path::{Path, PathBuf};

/// What every subcommand gets from the global options.
pub struct Context {
    /// State directory (see `--store`).
    pub store_dir: PathBuf,
}

impl Context {
    /// The OCI image layout inside the state directory.
    pub fn layout_dir(&self) -> PathBuf {
        self.store_dir.join("oci")
    }

    /// Open (creating if needed) the OCI image layout, holding the state dir in use (a `gc` waits) and able
    /// to give back the blobs kept only as extracted layers.
    pub fn open_store(&self) -> anyhow::Result<kolla_oci::store::Store> {
        use anyhow::Context as _;
        kolla_oci::builder::Workspace::open_store(&self.store_dir)
            .with_context(|| format!("opening store {}", self.layout_dir().display()))
    }
}

/// Write a stored JSON document to stdout, newline-terminated (`sbom`, `provenance`).
pub fn print_document(doc: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(doc).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()).context("writing to stdout")
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

/// Logs go to stderr; stdout is kept for results (summaries, listings).
pub fn init_logging(filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// `--compression gzip|gzip:LEVEL|zstd|zstd:LEVEL|none`.
pub fn parse_compression(s: &str) -> Result<layers::Compression, String> {
    let (kind, level) = match s.split_once(':') {
        Some((k, l)) => (k, Some(l.parse::<i32>().map_err(|_| format!("bad compression level in {s:?}"))?)),
        None => (s, None),
    };
    match kind {
        "gzip" => {
            Ok(layers::Compression::Gzip { level: level.map_or(layers::DEFAULT_GZIP_LEVEL, |l| l.clamp(0, 12) as u32) })
        }
        "zstd" => Ok(layers::Compression::Zstd { level: level.unwrap_or(3) }),
        "none" => Ok(layers::Compression::None),
        _ => Err(format!("unknown compression {s:?}: expected gzip, zstd or none")),
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
    /// User name for the registry (password from --password-stdin).
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password for --username from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}

impl RegistryArgs {
    /// Registry options with `threads` parallel transfers; reads the password from stdin when asked.
    pub fn options(&self, threads: u16) -> anyhow::Result<kolla_oci::registry::RegistryOptions> {
        use anyhow::Context as _;
        use std::io::Read as _;
        let credential = match (&self.username, self.password_stdin) {
            (Some(user), true) => {
                let mut password = String::new();
                std::io::stdin().read_to_string(&mut password).context("reading the password from standard input")?;
                let password = password.trim_end_matches(['\n', '\r']).to_string();
                anyhow::ensure!(!password.is_empty(), "--password-stdin: standard input held no password");
                let password = kolla_oci::registry::Secret::new(password);
                Some(kolla_oci::registry::Credential::Basic { username: user.clone(), password })
            }
            _ => None,
        };
        Ok(kolla_oci::registry::RegistryOptions {
            insecure_registries: self.insecure_registries.clone(),
            allowed_private_hosts: self.allowed_private_hosts.clone(),
            retries: self.retries,
            timeouts: kolla_oci::registry::Timeouts {
                connect: std::time::Duration::from_secs(self.connect_timeout),
                stall: std::time::Duration::from_secs(self.read_timeout),
            },
            credential,
            threads: usize::from(threads),
            ..kolla_oci::registry::RegistryOptions::default()
        })
    }
}
