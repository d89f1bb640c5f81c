//! `type = git` sources, as kolla-build makes them: clone `location`, check out `reference`, drop the
//! `origin` remote, and archive the checkout — `.git` included, so that pbr can compute the version —
//! under the folder name `<section>-archive-<reference with / as ->`.
//!
//! Clones come from a mirror kept under the state directory (`<cache>/git/<sha256(url)>.git`),
//! fetched again before each use (re-validation) and used as it is when the remote cannot be reached.
//! The parts of `.git` that only record local history — reflogs, hooks, `FETCH_HEAD`, the index's file
//! stat data — are dropped or rebuilt, so that one commit always gives the same archive. Archives are
//! kept per (URL, commit, folder): a rebuild whose reference still names the same commit reuses the
//! exact bytes, and the step cache hits.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use layers::Digest;

use super::SourceError;
use super::archive::tar_dir;
use super::download::{hash_file, write_atomic};

/// What a checkout resolved to.
pub(crate) struct Checkout {
    /// The commit `reference` named.
    pub commit: String,
    /// The archive (a plain tar of the checkout) in the cache.
    pub archive: PathBuf,
}

/// Clone `url` at `reference` and archive it as `folder/…`; the archive is cached under `cache`.
pub(crate) fn checkout(
    cache: &Path,
    url: &str,
    reference: &str,
    folder: &str,
    refetch: bool,
) -> Result<Checkout, SourceError> {
    let key = Digest::of_bytes(url.as_bytes()).hex();
    let mirrors = cache.join("git");
    let archives = cache.join("git-archives");
    for d in [&mirrors, &archives] {
        fs::create_dir_all(d).map_err(|e| SourceError::io(d, "create directory", e))?;
    }
    let mirror = mirrors.join(format!("{key}.git"));
    update_mirror(&mirror, url, refetch)?;
    let commit = git(
        None,
        url,
        &["--git-dir", path_str(&mirror)?, "rev-parse", "--verify", "--quiet", &format!("{reference}^{{commit}}")],
    )
    .map_err(|_| SourceError::Git { url: url.into(), reason: format!("reference {reference:?} not found") })?;
    let archive =
        archives.join(format!("{}.tar", Digest::of_bytes(format!("{url}\0{commit}\0{folder}").as_bytes()).hex()));
    let digest_file = archive.with_extension("sha256");
    if let (Ok(want), Ok(have)) = (fs::read_to_string(&digest_file), hash_file(&archive))
        && want.trim() == have.hex()
    {
        return Ok(Checkout { commit, archive });
    }
    let tmp = tempfile::tempdir_in(&archives).map_err(|e| SourceError::io(&archives, "create temp dir", e))?;
    let work = tmp.path().join(folder);
    let (m, w) = (path_str(&mirror)?, path_str(&work)?);
    git(None, url, &["clone", "--quiet", "--no-checkout", "--template=", m, w])?;
    git(Some(&work), url, &["-c", "advice.detachedHead=false", "checkout", "--quiet", reference])?;
    git(Some(&work), url, &["remote", "remove", "origin"])?;
    normalize(&work, url)?;
    let tar = tmp.path().join("archive.tar");
    let out = fs::File::create(&tar).map_err(|e| SourceError::io(&tar, "create", e))?;
    tar_dir(&work, folder, std::io::BufWriter::new(&out))?;
    out.sync_all().map_err(|e| SourceError::io(&tar, "sync", e))?;
    let digest = hash_file(&tar).map_err(|e| SourceError::io(&tar, "read", e))?;
    fs::rename(&tar, &archive).map_err(|e| SourceError::io(&archive, "rename", e))?;
    write_atomic(&digest_file, digest.hex().as_bytes()).map_err(|e| SourceError::io(&digest_file, "write", e))?;
    Ok(Checkout { commit, archive })
}

/// Clone the mirror, or fetch into it; a fetch that fails leaves the mirror as it was (with a warning).
fn update_mirror(mirror: &Path, url: &str, refetch: bool) -> Result<(), SourceError> {
    if mirror.is_dir() && !refetch {
        // By URL, not `origin`: the mirror keeps no credentials (see below).
        let fetch = ["--git-dir", path_str(mirror)?, "fetch", "--quiet", "--prune", "--tags", url, "+refs/*:refs/*"];
        if let Err(e) = git(None, url, &fetch) {
            tracing::warn!(url = crate::redact::urls(url), "cannot update the cached clone ({e}); using it as it is");
        }
        return Ok(());
    }
    let parent = mirror.parent().expect("mirror lives in the cache");
    let tmp = tempfile::tempdir_in(parent).map_err(|e| SourceError::io(parent, "create temp dir", e))?;
    let fresh = tmp.path().join("m.git");
    git(None, url, &["clone", "--quiet", "--mirror", "--template=", url, path_str(&fresh)?])?;
    // A token in the URL must not stay in the mirror's config on disk: origin keeps the URL redacted.
    let shown = crate::redact::urls(url);
    if shown != url {
        git(None, url, &["--git-dir", path_str(&fresh)?, "remote", "set-url", "origin", &shown])?;
    }
    if mirror.exists() {
        fs::remove_dir_all(mirror).map_err(|e| SourceError::io(mirror, "remove", e))?;
    }
    fs::rename(&fresh, mirror).map_err(|e| SourceError::io(mirror, "rename", e))
}

/// Drop what records local history rather than content, and rebuild the index without file stat
/// data (`read-tree` writes zeros), so the same commit archives to the same bytes.
fn normalize(work: &Path, url: &str) -> Result<(), SourceError> {
    let dot_git = work.join(".git");
    for name in ["logs", "hooks", "info", "branches", "description", "FETCH_HEAD", "ORIG_HEAD", "index"] {
        let p = dot_git.join(name);
        let removed = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
        if let Err(e) = removed.map_err(|e| (e.kind(), e))
            && e.0 != std::io::ErrorKind::NotFound
        {
            return Err(SourceError::io(&p, "remove", e.1));
        }
    }
    git(Some(work), url, &["read-tree", "HEAD"]).map(drop)
}

fn path_str(p: &Path) -> Result<&str, SourceError> {
    p.to_str().ok_or_else(|| SourceError::io(p, "use", std::io::Error::other("path is not UTF-8")))
}

/// Run git (never prompting for credentials); its trimmed stdout, or its stderr in the error.
fn git(dir: Option<&Path>, url: &str, args: &[&str]) -> Result<String, SourceError> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| SourceError::Git { url: url.into(), reason: format!("running git: {e}") })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let cmd = args.iter().find(|a| !a.starts_with('-') && !a.contains('=') && !a.contains('/')).unwrap_or(&"git");
        return Err(SourceError::Git { url: url.into(), reason: format!("git {cmd}: {}", err.trim()) });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
