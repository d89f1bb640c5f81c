//! kolla-build's sources: before an image is built, its `[<image>]` section becomes
//! `<image>-archive` in its build context, and its `[<image>-plugin-*]` and `[<image>-additions-*]`
//! sections become `plugins-archive` and `additions-archive` (tars of a `plugins/` or `additions/`
//! folder holding every plugin's archive unpacked — created, empty, even when there is none), exactly
//! where kolla-build 23.0.0's `process_source` and `builder` put them, so that upstream templates
//! (`ADD keystone-base-archive /keystone-base-source`, `ADD plugins-archive /`) build unchanged.
//!
//! * `url`: downloaded (see [`download`]), checked against the section's `sha256` for the configured
//!   Debian arch, used as it is (normally a `.tar.gz`).
//! * `git`: cloned at `reference`, see [`git`].
//! * `local`: a directory is archived under its base name; a file is used as it is.
//!
//! Archives we write are byte-deterministic (see [`archive`]), and downloads and clones are cached in
//! the state directory, so an unchanged source keeps every layer digest and the step cache hits.

mod archive;
mod download;
mod git;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use layers::Digest;

use crate::config::{ImageSources, Source, SourceKind};
use crate::redact;

/// Why a source could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A filesystem operation failed.
    #[error("{op} {}: {error}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What we were doing.
        op: &'static str,
        /// The OS error.
        error: std::io::Error,
    },
    /// A download failed (after its retries). (Every URL shown goes through [`crate::redact::urls`].)
    #[error("downloading {}: {}", redact::urls(url), redact::urls(reason))]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The downloaded bytes are not the ones the section pins.
    #[error("{}: SHA256 checksum does not match (configured: {expected}, computed: {actual})", redact::urls(url))]
    Checksum {
        /// The URL.
        url: String,
        /// The `sha256` of the section for this arch.
        expected: String,
        /// What the download hashes to.
        actual: String,
    },
    /// The section pins sums, but none for the arch being built.
    #[error("[{section}] sha256 has no sum for arch {arch:?}")]
    NoChecksum {
        /// The section.
        section: String,
        /// `debian_arch`.
        arch: String,
    },
    /// Cloning or checking out failed.
    #[error("git source {}: {}", redact::urls(url), redact::urls(reason))]
    Git {
        /// The repository.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A plugin or addition is not a tar archive (kolla refuses it too).
    #[error("[{section}] {}: not a tar archive", redact::urls(location))]
    NotTar {
        /// The section.
        section: String,
        /// Where it came from.
        location: String,
    },
    /// Unpacking a plugin or addition archive failed (or an entry tried to leave its folder).
    #[error("[{section}] {}: unpacking: {error}", redact::urls(location))]
    Extract {
        /// The section.
        section: String,
        /// Where it came from.
        location: String,
        /// The applier's error, with its causes (names the entry).
        error: String,
    },
}

impl SourceError {
    fn io(path: &Path, op: &'static str, error: std::io::Error) -> SourceError {
        SourceError::Io { path: path.to_path_buf(), op, error }
    }
}

/// How sources are fetched; the same for every image of a run.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Where downloads, clones and git archives are cached (`<state>/sources`).
    pub cache_dir: PathBuf,
    /// kolla's `--timeout`: connecting and every read of a download.
    pub timeout: Duration,
    /// kolla's `debian_arch`: picks the sum of a `sha256` dict.
    pub debian_arch: String,
    /// `--nocache`: fetch again instead of trusting the cache.
    pub refetch: bool,
    /// Extra attempts after a transient download failure (kolla's `--retries`).
    pub retries: u32,
    /// Hosts on loopback or private networks a download may be redirected to besides its own
    /// (`--allow-private-host`, as for registries).
    pub allowed_private_hosts: Vec<String>,
}

/// One source that went into an image's context: what provenance and the SBOM record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedSource {
    /// Section name.
    pub name: String,
    /// How it was fetched.
    pub kind: SourceKind,
    /// URL, repository or local path.
    pub location: String,
    /// The git reference asked for.
    pub reference: Option<String>,
    /// The commit it resolved to (git only).
    pub commit: Option<String>,
    /// sha256 of the archive written into the context.
    pub sha256: Digest,
}

/// Write the archives of `sources` into the build context `ctx` (kolla's `builder` before the build);
/// returns what went in, for provenance.
pub fn prepare(ctx: &Path, sources: &ImageSources, opts: &SourceOptions) -> Result<Vec<PreparedSource>, SourceError> {
    let fetcher = Fetcher { opts, downloads: download::Downloader::new(opts)? };
    let mut done = Vec::new();
    if let Some(s) = &sources.source {
        done.extend(fetcher.archive(ctx, s)?);
    }
    for (items, folder) in [(&sources.plugins, "plugins"), (&sources.additions, "additions")] {
        done.extend(fetcher.folder_archive(ctx, items, folder)?);
    }
    Ok(done)
}

struct Fetcher<'a> {
    opts: &'a SourceOptions,
    downloads: download::Downloader,
}

impl Fetcher<'_> {
    /// kolla's `process_source`: `<ctx>/<section>-archive` for an enabled source.
    fn archive(&self, ctx: &Path, s: &Source) -> Result<Option<PreparedSource>, SourceError> {
        if !s.enabled {
            tracing::debug!(section = %s.name, "source disabled");
            return Ok(None);
        }
        let dest = ctx.join(format!("{}-archive", s.name));
        let mut commit = None;
        match s.kind {
            SourceKind::Url => {
                let digest = self.downloads.fetch(&s.location)?;
                if !s.sha256.is_empty() {
                    let expected = s.sha256.get(&self.opts.debian_arch).ok_or_else(|| SourceError::NoChecksum {
                        section: s.name.clone(),
                        arch: self.opts.debian_arch.clone(),
                    })?;
                    if !expected.eq_ignore_ascii_case(&digest.hex()) {
                        return Err(SourceError::Checksum {
                            url: s.location.clone(),
                            expected: expected.clone(),
                            actual: digest.hex(),
                        });
                    }
                }
                copy(&self.downloads.blob_path(&digest), &dest)?;
            }
            SourceKind::Git => {
                let reference = s.reference.as_deref().unwrap_or("HEAD");
                let folder = format!("{}-archive-{}", s.name, reference.replace('/', "-"));
                let c = git::checkout(&self.opts.cache_dir, &s.location, reference, &folder, self.opts.refetch)?;
                copy(&c.archive, &dest)?;
                commit = Some(c.commit);
            }
            SourceKind::Local => {
                let path = Path::new(&s.location);
                let meta = fs::metadata(path).map_err(|e| SourceError::io(path, "read local source", e))?;
                if meta.is_dir() {
                    let real = path.canonicalize().map_err(|e| SourceError::io(path, "resolve", e))?;
                    let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    let out = fs::File::create(&dest).map_err(|e| SourceError::io(&dest, "create", e))?;
                    archive::tar_dir(&real, &name, std::io::BufWriter::new(out))?;
                } else {
                    copy(path, &dest)?;
                }
            }
        }
        let sha256 = download::hash_file(&dest).map_err(|e| SourceError::io(&dest, "read", e))?;
        tracing::info!(section = %s.name, archive = %dest.display(), %sha256, "source ready");
        Ok(Some(PreparedSource {
            name: s.name.clone(),
            kind: s.kind,
            location: s.location.clone(),
            reference: s.reference.clone(),
            commit,
            sha256,
        }))
    }

    /// kolla's `make_an_archive`: every enabled item's archive unpacked into `<ctx>/<folder>/` (created
    /// even when there is none), then `<ctx>/<folder>-archive` made of it.
    fn folder_archive(&self, ctx: &Path, items: &[Source], folder: &str) -> Result<Vec<PreparedSource>, SourceError> {
        let dir = ctx.join(folder);
        fs::create_dir_all(&dir).map_err(|e| SourceError::io(&dir, "create directory", e))?;
        let mut done = Vec::new();
        for item in items {
            let Some(p) = self.archive(ctx, item)? else { continue };
            let archive = ctx.join(format!("{}-archive", item.name));
            let (section, location) = (item.name.clone(), item.location.clone());
            if !archive::is_tar(&archive)? {
                return Err(SourceError::NotTar { section, location });
            }
            archive::extract(&archive, &dir).map_err(|e| SourceError::Extract {
                section,
                location,
                error: crate::with_causes(&e),
            })?;
            done.push(p);
        }
        let dest = ctx.join(format!("{folder}-archive"));
        let out = fs::File::create(&dest).map_err(|e| SourceError::io(&dest, "create", e))?;
        archive::tar_dir(&dir, folder, std::io::BufWriter::new(out))?;
        Ok(done)
    }
}

fn copy(from: &Path, to: &Path) -> Result<(), SourceError> {
    fs::copy(from, to).map(drop).map_err(|e| SourceError::io(from, "copy", e))
}
