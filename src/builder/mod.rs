//! Building images: one Dockerfile into one image ([`build_image`]), and a whole image graph, parents
//! first and independent images in parallel ([`scheduler`]).
//!
//! A build reads a parsed Dockerfile instruction by instruction. Config-only instructions (ENV, LABEL,
//! USER, …) change the image config and add a history entry with `empty_layer`. COPY/ADD stage context
//! files into a directory laid out like the image root; RUN runs in the sandbox on an overlay of the
//! image's extracted layers with a fresh upper dir. Either directory then becomes the step's layer
//! (`layers::write_layer` into the store) *and*, renamed, its extracted form: nothing is copied per image.
//! A COPY/ADD of one source writes its layer while it stages it, reading each file once (`one_pass`).

mod background;
mod bootstrap;
mod cache;
mod container;
mod context;
mod executor;
mod footprint;
mod gc;
mod handoff;
pub mod kolla;
mod one_pass;
mod remote_cache;
mod rules;
pub mod scheduler;
pub(crate) mod view;
mod workspace;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use container::{ContainerOptions, run_container};
pub use executor::{BuildOutcome, BuildRequest, build_image};
pub use footprint::{BlobRecord, KindUsage, TrimOptions, TrimReport, Usage};
pub use gc::{GcOptions, GcOutcome};
pub use handoff::InRun;
pub use remote_cache::RemoteCache;
pub use workspace::Workspace;

use crate::store::StoreError;
use layers::Digest;

/// How images are built; the same for every image of a run.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Layer compression (`--compression`).
    pub compression: layers::Compression,
    /// Compression threads per layer; `None` = all cores. Does not change the output.
    pub threads: Option<usize>,
    /// `SOURCE_DATE_EPOCH`: clamps file mtimes and sets every `created` time, for reproducible images.
    pub source_date_epoch: Option<i64>,
    /// `--build-args`: values for `ARG`.
    pub build_args: BTreeMap<String, String>,
    /// Use the step cache (`--nocache` turns it off; results are still recorded).
    pub cache: bool,
    /// Debian mirror for bootstrapping root images (`KOLLA_OCI_DEBIAN_MIRROR`; mmdebstrap's default when unset).
    pub debian_mirror: Option<String>,
    /// How `FROM` images are pulled: the run's registry options, so the user's flags apply there too.
    pub registry: crate::registry::RegistryOptions,
    /// Pull `FROM` images that name a registry and are not in the store.
    pub pull: bool,
    /// A CA bundle RUN steps trust (see [`host_ca_bundle`]); never captured into a layer.
    pub ca_bundle: Option<PathBuf>,
    /// The network RUN steps see (`--network`): private by default, so that a RUN cannot reach the
    /// build host's loopback services. Left out of the step cache key: same layers in every mode.
    pub network: crate::sandbox::NetworkMode,
    /// `--cache-repo`: the step cache shared with other machines through a registry.
    pub cache_repo: Option<std::sync::Arc<RemoteCache>>,
    /// Set for an image another shard builds (`--shard`): take every step from `cache_repo`, waiting
    /// for its owner to publish it, instead of building it.
    pub cache_wait: Option<CacheWait>,
}

/// How long to wait for another shard's steps, and who that is (for the timeout's message).
#[derive(Debug, Clone)]
pub struct CacheWait {
    /// The shard that builds the image, as `I/N`.
    pub owner: String,
    /// Give up after this long (`--shard-wait`).
    pub timeout: std::time::Duration,
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            compression: layers::Compression::default(),
            threads: None,
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.trim().parse().ok()),
            build_args: BTreeMap::new(),
            cache: true,
            debian_mirror: std::env::var("KOLLA_OCI_DEBIAN_MIRROR").ok().filter(|m| !m.is_empty()),
            registry: crate::registry::RegistryOptions::default(),
            pull: true,
            ca_bundle: host_ca_bundle(),
            network: crate::sandbox::NetworkMode::default(),
            cache_repo: None,
            cache_wait: None,
        }
    }
}

impl BuildOptions {
    /// The `created` time written into configs and history: `SOURCE_DATE_EPOCH`, else the Unix epoch.
    /// A fixed default keeps an unchanged rebuild digest-identical (a wall-clock time would not).
    pub fn created(&self) -> String {
        rfc3339(self.source_date_epoch.unwrap_or(0))
    }
}

/// The CA bundle the host's own tools are told to use (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `PIP_CERT`,
/// `CURL_CA_BUNDLE`), if any. kolla-build forwards the host's proxy variables to builds; behind a
/// TLS-inspecting proxy the proxy's CA is needed as well, or `pip install` in a RUN fails certificate
/// checks. RUN steps see it at [`RUN_CA_BUNDLE`] through the same variables, for that step only.
pub fn host_ca_bundle() -> Option<PathBuf> {
    ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE"]
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Where RUN steps find [`BuildOptions::ca_bundle`]: under the sandbox's private `/dev` tmpfs, so the
/// mount point never lands in a layer (BuildKit keeps its `/dev/pipes` there for the same reason).
pub const RUN_CA_BUNDLE: &str = "/dev/kolla-oci-ca/ca-certificates.crt";

/// Seconds since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub(crate) fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A filesystem operation failed.
    // The cause is part of the message and deliberately not exposed as `source()`: the CLI prints the
    // whole chain, which would repeat it.
    #[error("{op} {}: {error}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What we were doing.
        op: &'static str,
        /// The OS error.
        error: std::io::Error,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Making or applying a layer failed (the message has the layer error's causes, e.g. the OS error).
    #[error("{what}: {}", crate::with_causes(error))]
    Layer {
        /// Which layer.
        what: String,
        /// The layer engine's error.
        error: layers::LayerError,
    },
    /// The Dockerfile could not be parsed or expanded (the message has `path:line`).
    #[error(transparent)]
    Dockerfile(#[from] crate::dockerfile::DockerfileError),
    /// The sandbox could not run a command.
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// A layer blob does not decompress to the diff_id its image config claims: filing it under that
    /// name would plant its content in every image that shares the real layer.
    #[error("layer {layer}: uncompressed content is {actual}, but the image config claims diff_id {claimed}")]
    DiffIdMismatch {
        /// The layer blob.
        layer: Digest,
        /// The diff_id the config claims.
        claimed: Digest,
        /// The sha256 of what the blob decompresses to.
        actual: Digest,
    },
    /// Pulling the `FROM` image failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// Bad build input: a COPY source, a `--chown` user, an unsupported form.
    #[error("{0}")]
    Input(String),
    /// A RUN exited non-zero.
    #[error("RUN {command:?} returned a non-zero code: {code}\n--- last lines of its output ---\n{tail}")]
    RunFailed {
        /// The command as written.
        command: String,
        /// Its exit code (128+N for signal N).
        code: i32,
        /// The last lines of its output.
        tail: String,
    },
    /// An external tool (mmdebstrap) failed.
    #[error("{tool}: {message}")]
    Tool {
        /// The tool.
        tool: String,
        /// What went wrong, with its output's tail.
        message: String,
    },
    /// The `FROM` image could not be found or fetched.
    #[error("FROM {image}: {reason}")]
    BaseImage {
        /// The image as named.
        image: String,
        /// Why it is not available.
        reason: String,
    },
    /// An error of one instruction, located in its Dockerfile.
    #[error("{}:{line}: {error}", path.display())]
    At {
        /// The Dockerfile.
        path: PathBuf,
        /// The instruction's first line.
        line: usize,
        /// What went wrong.
        error: Box<BuildError>,
    },
}

impl BuildError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: &Path, op: &'static str, source: std::io::Error) -> BuildError {
        BuildError::Io { path: path.to_path_buf(), op, error: source }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
