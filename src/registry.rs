//! OCI distribution API client: references, authentication, pull into the store and push out of it.
//!
//! A thin client of our own on `reqwest::blocking` (see `shared/notes/rust-stack.md` §5): it streams blobs
//! from and to the store's files, mounts shared blobs across repositories with a token that covers both,
//! falls back to uploading when a mount is refused, skips blobs the registry has, retries transient
//! failures with backoff, gives up on stalled transfers, and keeps credentials to the registry's own host.
//! OCI 1.1 referrers (SBOMs, provenance) are pushed and found through the referrers API, or the referrers
//! tag schema where the registry lacks it.

mod auth;
mod client;
mod mirrors;
mod plan;
mod progress;
mod pull;
mod push;
mod reference;
mod referrers;
mod tls;
mod token;
pub(crate) mod transport;

pub use auth::{Credential, Secret, auth_file, forget_credential, lookup_credential, save_credential};
pub use client::{Client, MountOutcome};
pub use mirrors::{Mirrors, Source};
pub(crate) use pull::fetch_blob;
pub use pull::{ensure_image, pull, pull_as};
pub use push::{BlobLocations, PushReport, push, push_referrers, push_referrers_of, push_remembering};
pub use reference::{DOCKER_HUB, Reference, host_is_loopback};
pub use referrers::{Referrer, referrers, referrers_tag};
pub use tls::{TlsOptions, default_certs_dirs};
pub use transport::{Backoff, Timeouts, http_client, is_timeout};

use crate::store::{Platform, StoreError};

/// Errors of the registry client. Messages name the registry, repository and operation, and carry the
/// registry's own error codes; they never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A reference that does not parse.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The text given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request could not be sent or its answer not received (after retries). The message has the
    /// innermost cause (`Connection refused`, the certificate problem) once, not reqwest's layers.
    #[error("{what}: {}", transport::describe(error))]
    Http {
        /// The operation.
        what: String,
        /// The transport error.
        error: reqwest::Error,
    },
    /// A registry's TLS certificates (`--cert-dir`, `certs.d`) could not be used.
    #[error("{}: {reason}", path.display())]
    Tls {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry answered with an unexpected status.
    #[error("{what}: registry answered HTTP {status}: {detail}")]
    Status {
        /// The operation.
        what: String,
        /// HTTP status code.
        status: u16,
        /// The registry's `{"errors":[…]}` codes and messages, or the start of the body.
        detail: String,
        /// The answer's `Retry-After`, honoured by retries that happen above [`Client::send`].
        retry_after: Option<std::time::Duration>,
    },
    /// 401/403 even after authenticating.
    #[error("{what}: UNAUTHORIZED (HTTP {status}): {detail}")]
    Unauthorized {
        /// The operation.
        what: String,
        /// 401 or 403.
        status: u16,
        /// The registry's error codes and a hint about credentials.
        detail: String,
    },
    /// Stored credentials could not be read.
    #[error("credentials for {registry}: {detail}")]
    Credentials {
        /// The registry.
        registry: String,
        /// What went wrong (never the secret).
        detail: String,
    },
    /// Content does not have the digest it should have.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// The digest promised.
        expected: String,
        /// The digest seen.
        actual: String,
    },
    /// A transfer broke off midway: no bytes for the stall timeout, or the connection dropped.
    #[error("{what}: {reason}")]
    Transfer {
        /// The transfer.
        what: String,
        /// What happened (`no data for 60 s (stalled transfer)`, the connection error).
        reason: String,
    },
    /// The registry broke the protocol (no Location, bad JSON, unsupported manifest, …).
    #[error("{what}: {reason}")]
    Protocol {
        /// The operation.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// An index has no manifest for the wanted platform.
    #[error("{reference}: no manifest for platform {wanted} (available: {available})")]
    NoPlatform {
        /// The reference pulled.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms the index lists.
        available: String,
    },
    /// A local tag to push is not in the store.
    #[error("image {0:?} is not in the store")]
    NotInStore(String),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A local I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    /// Worth retrying: a transport failure, a broken-off transfer, a 5xx or a 429.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Http { error, .. } => transport::transient(error),
            RegistryError::Transfer { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            RegistryError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }

    /// The wait the registry asked for (`Retry-After`) before trying again, if it did.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            RegistryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Settings shared by push and pull: one value per run, handed to everything that reaches a registry
/// (`push`, `pull`, a build's `FROM`), so the user's flags apply everywhere.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) spoken to over plain http even though they are not loopback.
    pub insecure_registries: Vec<String>,
    /// Hosts (`host` or `host:port`) on loopback or private networks that a registry may send us to (an
    /// upload session, a redirect), e.g. its S3 storage; any other such host is refused.
    pub allowed_private_hosts: Vec<String>,
    /// Extra attempts after a transient failure (connection error, stalled transfer, 5xx, 429).
    pub retries: u32,
    /// The waits between attempts.
    pub backoff: Backoff,
    /// Connect and stalled-transfer timeouts.
    pub timeouts: Timeouts,
    /// Credentials for every registry of the run; `None`: look them up per registry.
    pub credential: Option<Credential>,
    /// Certificate checks and the certificates to use (`--tls-verify`, `--cert-dir`, `certs.d`).
    pub tls: TlsOptions,
    /// Parallel blob transfers.
    pub threads: usize,
    /// Upload in `PATCH` chunks of this many bytes instead of one `PUT` (for registries capping body size).
    pub chunk_size: Option<u64>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_registries: Vec::new(),
            allowed_private_hosts: Vec::new(),
            retries: 3,
            backoff: Backoff::default(),
            timeouts: Timeouts::default(),
            credential: None,
            tls: TlsOptions::default(),
            threads: 4,
            chunk_size: None,
        }
    }
}

/// Run `f` over `items` on at most `threads` workers; stops taking new items after the first error, which
/// it returns.
fn parallel<T: Sync>(
    threads: usize,
    items: &[T],
    f: impl Fn(&T) -> Result<(), RegistryError> + Sync,
) -> Result<(), RegistryError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1).min(items.len()) {
            s.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let Some(item) = items.get(next.fetch_add(1, Ordering::SeqCst)) else { break };
                    if let Err(e) = f(item) {
                        failed.store(true, Ordering::SeqCst);
                        first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Where `kolla-oci push` / `build --push` sends a local image, following kolla-build's options.
///
/// The local tag is parsed as a reference (`kolla/nova-api:master` → `docker.io/kolla/nova-api:master`).
/// Then: the registry is `registry` if given, else the local tag's; the repository is
/// `<namespace>/<last path component>` if `namespace` is given, else the local repository path; the tag is
/// `tag` if given, else the local tag. So `kolla/nova-api:T` with `--registry R --namespace N` goes to
/// `R/N/nova-api:T`.
pub fn push_target(
    local: &str,
    registry: Option<&str>,
    namespace: Option<&str>,
    tag: Option<&str>,
) -> Result<Reference, RegistryError> {
    let l = Reference::parse(local)?;
    let registry = registry.map(|r| r.trim_end_matches('/')).unwrap_or(l.registry());
    let name = l.repository().rsplit('/').next().unwrap_or(l.repository());
    let repository = match namespace.map(|n| n.trim_matches('/')) {
        Some(n) if !n.is_empty() => format!("{n}/{name}"),
        _ => l.repository().to_string(),
    };
    let tag = tag.or(l.tag()).unwrap_or("latest");
    Reference::from_parts(registry, &repository, tag)
}

/// Parse `os/arch[/variant]` (`linux/amd64`, `linux/arm64/v8`).
pub fn parse_platform(s: &str) -> Result<Platform, RegistryError> {
    let parts: Vec<&str> = s.split('/').collect();
    let bad = || RegistryError::InvalidReference {
        reference: s.to_string(),
        reason: "platform must be os/arch or os/arch/variant".into(),
    };
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
        return Err(bad());
    }
    Ok(Platform {
        os: parts[0].to_string(),
        architecture: parts[1].to_string(),
        variant: parts.get(2).map(|v| v.to_string()),
        ..Platform::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_targets() {
        let t = |l, r, n, tag| push_target(l, r, n, tag).unwrap().to_string();
        assert_eq!(t("kolla/nova-api:T", Some("r.io"), Some("n"), None), "r.io/n/nova-api:T");
        assert_eq!(
            t("kolla/nova-api:master", Some("127.0.0.1:5000"), Some("openstack"), Some("2024.1")),
            "127.0.0.1:5000/openstack/nova-api:2024.1"
        );
        assert_eq!(t("kolla/base:master", Some("quay.io"), None, None), "quay.io/kolla/base:master");
        assert_eq!(t("kolla/base:master", None, None, None), "docker.io/kolla/base:master");
        assert_eq!(t("localhost:5000/a/b:x", None, Some("n/m"), None), "localhost:5000/n/m/b:x");
        assert!(push_target("kolla/base", Some("bad host!"), None, None).is_err());
    }

    #[test]
    fn platforms() {
        let p = parse_platform("linux/arm64/v8").unwrap();
        assert_eq!((p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()), ("linux", "arm64", Some("v8")));
        assert_eq!(parse_platform("linux/amd64").unwrap().to_string(), "linux/amd64");
        for bad in ["linux", "linux/", "a/b/c/d", ""] {
            assert!(parse_platform(bad).is_err(), "{bad}");
        }
    }
}
