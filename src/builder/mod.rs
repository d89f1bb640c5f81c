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
mod fleet;
mod footprint;
mod gc;
mod handoff;
mod ignore;
pub mod kolla;
mod one_pass;
mod remote_cache;
mod rules;
pub mod scheduler;
mod squash;
mod summary;
pub(crate) mod view;
mod workspace;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use container::{ContainerOptions, run_container};
pub use executor::{BuildOutcome, BuildRequest, build_image};
pub use fleet::{CacheWait, FailureReport, Fleet, Phase};
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
    /// `--pull`: ask the registry (through registries.conf mirrors) for the current image of each `FROM`
    /// that came from one, and take it if it changed. Without it, a `FROM` image is pulled only when the
    /// store lacks it, as `docker build` does.
    pub pull: bool,
    /// `--bootstrap`: make `FROM debian:<suite>` with mmdebstrap instead of pulling it.
    pub bootstrap: bool,
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
    /// Labels set on the image's config after its last instruction, as `docker build --label` does
    /// (kolla-build passes its OCI labels this way). They make no layer and no step key.
    pub labels: BTreeMap<String, Label>,
    /// `--squash`: the image's own layers (those on top of its first `FROM`) become one.
    pub squash: bool,
    /// The platform built for (`--platform`): root images are pulled or bootstrapped for it, and RUN
    /// executes its binaries (through qemu-user when it is not this machine's).
    pub platform: crate::store::Platform,
    /// Tag each image beside the tag's images of other platforms (an image index, one image per
    /// platform) instead of replacing it: a build for several platforms, one platform at a time.
    pub keep_platforms: bool,
}

/// The value of a build-time label: text, or the image's creation time in one of two spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label {
    /// This text.
    Text(String),
    /// The image's `created` time, RFC 3339 (`2026-07-30T12:00:00Z`): `org.opencontainers.image.created`.
    Created,
    /// The day of the image's `created` time, `YYYYMMDD`: kolla's `build-date`.
    BuildDate,
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
            pull: false,
            bootstrap: false,
            ca_bundle: host_ca_bundle(),
            network: crate::sandbox::NetworkMode::default(),
            cache_repo: None,
            cache_wait: None,
            labels: BTreeMap::new(),
            squash: false,
            platform: crate::platform::host(),
            keep_platforms: false,
        }
    }
}

impl BuildOptions {
    /// When a layer made now is dated (its history entry, and the step cache remembers it):
    /// `SOURCE_DATE_EPOCH`, else the clock.
    pub fn layer_time(&self) -> i64 {
        self.source_date_epoch.unwrap_or_else(crate::attest::build::now)
    }

    /// The `created` time of an image (config, labels) or history entry whose newest layer was made at
    /// `newest`: `SOURCE_DATE_EPOCH`, else that time. An image whose layers all come from the cache keeps
    /// the time of the run that made them, so a rebuild that builds nothing keeps every digest.
    pub fn created(&self, newest: i64) -> String {
        rfc3339(self.source_date_epoch.unwrap_or(newest))
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

/// Seconds since the epoch of an RFC 3339 time (`2026-07-30T12:00:00Z`, fractions and offsets
/// allowed), as image configs write `created`; `None` if it is not one.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(rest.as_bytes()[0], b'+' | b'-') && rest.as_bytes()[3] == b':' => {
            let (h, m): (i64, i64) = (rest[1..3].parse().ok()?, rest[4..6].parse().ok()?);
            let minutes = h * 60 + m;
            if rest.starts_with('-') { -minutes } else { minutes }
        }
        _ => return None,
    };
    // Days since 1970-01-01 of the civil date (Howard Hinnant's algorithm, the inverse of `rfc3339`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset * 60)
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
    #[error("{what}: {}{}", crate::with_causes(error), layer_hint(error))]
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
    /// The target platform cannot run here (no qemu-user registration for it).
    #[error(transparent)]
    Platform(#[from] crate::platform::PlatformError),
    /// Giving a file its owner failed; when the ids are not mapped in our user namespace, the message says
    /// what to check, as podman's does.
    #[error("chown {} to {}:{}: {error}{}", path.display(), owner.0, owner.1, subuid_hint(error))]
    Chown {
        /// The file.
        path: PathBuf,
        /// The uid and gid it was to get.
        owner: (u32, u32),
        /// The OS error.
        error: std::io::Error,
    },
    /// Bad build input: a COPY source, a `--chown` user, an unsupported form.
    #[error("{0}")]
    Input(String),
    /// A RUN exited non-zero. The message leaves out its output, which the build log has shown (or
    /// which [`BuildError::output_tail`] gives, for a caller that showed none).
    #[error("`{}` returned a non-zero code: {code}", shorten(command))]
    RunFailed {
        /// The instruction as written (`RUN …`).
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
    /// Another shard, which builds this image, published that its build failed (`--shard`): waiting
    /// for its steps is pointless. The images that need it fail with the owner's own error.
    #[error("parent {image} failed on shard {shard}: {error}")]
    OwnerFailed {
        /// The image whose build failed.
        image: String,
        /// The shard that failed it, as `I/N (run ID)`.
        shard: String,
        /// The owner's error, located in its Dockerfile when it was an instruction's.
        error: String,
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
    /// The last lines of the output of the RUN that failed, if that is what this error is: for a caller
    /// whose log went elsewhere than the console, so that the output is shown once.
    pub fn output_tail(&self) -> Option<&str> {
        match self {
            BuildError::RunFailed { tail, .. } => Some(tail),
            BuildError::At { error, .. } => error.output_tail(),
            _ => None,
        }
    }

    /// An I/O error on `path`.
    pub(crate) fn io(path: &Path, op: &'static str, source: std::io::Error) -> BuildError {
        BuildError::Io { path: path.to_path_buf(), op, error: source }
    }
}

/// podman's advice for `EINVAL` from `chown`, which is how the kernel refuses an id that our user namespace
/// does not map: a rootless build without (enough) subordinate ids.
fn subuid_hint(e: &std::io::Error) -> &'static str {
    if e.raw_os_error() == Some(libc::EINVAL) {
        " (insufficient UIDs or GIDs available in the user namespace: check /etc/subuid and /etc/subgid, \
         which need a range for the user running kolla-oci, as for rootless podman)"
    } else {
        ""
    }
}

/// [`subuid_hint`] for a layer whose files could not be given their metadata (their owner first).
fn layer_hint(e: &layers::LayerError) -> &'static str {
    match e {
        layers::LayerError::Io { op, source, .. } if op.contains("metadata") => subuid_hint(source),
        _ => "",
    }
}

/// An instruction cut to its first 200 characters for a message (kolla's RUN lines run to kilobytes;
/// the message names its file and line).
fn shorten(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
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

    #[test]
    fn rfc3339_parses_what_configs_hold() {
        for secs in [0, 951_782_400, 1_700_000_000, 1_785_412_345] {
            assert_eq!(super::parse_rfc3339(&super::rfc3339(secs)), Some(secs));
        }
        assert_eq!(super::parse_rfc3339("2025-08-11T00:00:00.123456789Z"), Some(1_754_870_400));
        assert_eq!(super::parse_rfc3339("2025-08-11T02:00:00+02:00"), Some(1_754_870_400));
        for bad in ["", "2025-08-11", "2025-13-11T00:00:00Z", "2025-08-11T00:00:00", "2025-08-11T00:00:00+2"] {
            assert_eq!(super::parse_rfc3339(bad), None, "{bad}");
        }
    }
}
