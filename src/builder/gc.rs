//! Garbage collection of a state dir: the store's unreachable blobs and orphaned referrers
//! ([`Store::gc_plan`](crate::store::Store::gc_plan)), the extracted layer dirs and layer skeletons that no
//! reachable image lists; then each remaining layer kept once ([`Workspace::trim`]), the layer dirs capped
//! at `--max-extracted`.
//!
//! Safety with builds on the same state dir: every process that uses it holds `gc.lock` shared
//! ([`Workspace::open`]); gc first turns its hold exclusive, so it waits for running builds and runs to
//! finish and new ones wait for it. A build therefore never loses a layer dir it has mounted or a blob
//! it has written but not tagged yet; `kolla-oci pull` holds the state dir the same way. The grace period
//! (only what is older is removed) covers writers that do not go through a workspace — another tool
//! writing into the layout, or a program using [`crate::registry::pull`] on a bare store, which marks the
//! blobs it reuses as it finds them present.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use layers::Digest;

use super::footprint::{TrimOptions, TrimReport, disk_usage};
use super::{BuildError, Workspace};
use crate::store::GcReport;

/// How to collect.
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Only what was last written (or, for blobs, reused) longer ago than this is removed.
    pub grace: Duration,
    /// Plan only: report what would be removed, change nothing.
    pub dry_run: bool,
    /// At most this many bytes of extracted layer dirs: beyond it, the least recently used are removed
    /// (their blobs written back first). `Some(0)` leaves a plain OCI layout, every blob in `oci/blobs/`.
    pub max_extracted: Option<u64>,
}

/// What [`Workspace::gc`] removed (or, dry, would remove).
#[derive(Debug, Default, Clone)]
pub struct GcOutcome {
    /// The store's part: blobs and referrer entries.
    pub store: GcReport,
    /// Extracted layer dirs with the bytes they occupy, in path order.
    pub layer_dirs: Vec<(PathBuf, u64)>,
    /// Unreachable layer dirs kept because they are younger than the grace period.
    pub kept_recent_dirs: usize,
    /// Skeletons and blob records of layers no longer reachable, removed.
    pub split_files: usize,
    /// What keeping each reachable layer once did.
    pub trim: TrimReport,
}

impl GcOutcome {
    /// Bytes freed: blobs, layer dirs, blobs kept as their layer dirs only, layer dirs trimmed (blobs
    /// written back are not subtracted).
    pub fn bytes(&self) -> u64 {
        self.store.bytes
            + self.layer_dirs.iter().map(|(_, n)| n).sum::<u64>()
            + self.trim.dropped_blobs.iter().map(|(_, n)| n).sum::<u64>()
            + self.trim.removed_dirs.iter().map(|(_, n)| n).sum::<u64>()
    }
}

/// Seconds since `meta` last changed: the newer of mtime and ctime, since a layer dir is put in place
/// by a rename, which updates only the ctime.
fn age(meta: &fs::Metadata, now: SystemTime) -> Duration {
    let changed = meta.mtime().max(meta.ctime());
    let now = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    Duration::from_secs(now.saturating_sub(changed).max(0) as u64)
}

impl Workspace {
    /// Collect garbage (see the module docs). Waits for other processes using the state dir.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcOutcome, BuildError> {
        self.lock_exclusive()?;
        let store = self.store();
        let lock = store.lock()?;
        let plan = store.gc_plan(&lock, opts.grace)?;
        let mut outcome = GcOutcome::default();
        (outcome.layer_dirs, outcome.kept_recent_dirs) = self.unused_layer_dirs(&plan.live_diff_ids, opts.grace)?;
        if !opts.dry_run {
            store.gc_sweep(&lock, &plan)?;
            drop(lock);
            for (path, _) in &outcome.layer_dirs {
                self.remove_layer_dir(path)?;
            }
            outcome.split_files = self.remove_stale_splits(&plan.live_diff_ids)?;
        }
        outcome.store = plan;
        let trim = TrimOptions { max_extracted: opts.max_extracted, dry_run: opts.dry_run, measure: true };
        outcome.trim = self.trim(&trim)?;
        Ok(outcome)
    }

    /// The layer dirs no reachable image lists (not in `live`) and older than `grace`, with their sizes,
    /// in path order; and how many younger ones there are.
    pub(crate) fn unused_layer_dirs(
        &self,
        live: &BTreeSet<Digest>,
        grace: Duration,
    ) -> Result<(Vec<(PathBuf, u64)>, usize), BuildError> {
        let now = SystemTime::now();
        let root = self.layers_root();
        let (mut old, mut recent) = (Vec::new(), 0);
        let entries = fs::read_dir(&root).map_err(|e| BuildError::io(&root, "list", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| BuildError::io(&root, "list", e))?;
            let name = entry.file_name();
            let Some(diff_id) = name.to_str().and_then(|n| format!("sha256:{n}").parse::<Digest>().ok()) else {
                continue; // not a layer dir of ours
            };
            if live.contains(&diff_id) {
                continue;
            }
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(|e| BuildError::io(&path, "stat", e))?;
            if age(&meta, now) < grace {
                recent += 1;
                continue;
            }
            let size = disk_usage(&path);
            old.push((path, size));
        }
        old.sort();
        Ok((old, recent))
    }

    /// Remove the skeletons of layers no reachable image has and whose directory is gone, and the
    /// records of blobs whose layer is one of those.
    fn remove_stale_splits(&self, live: &BTreeSet<Digest>) -> Result<usize, BuildError> {
        let dir = self.dir().join("split");
        let entries = fs::read_dir(&dir).map_err(|e| BuildError::io(&dir, "list", e))?;
        let fp = self.footprint();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let layer = match name.split_once('.') {
                Some((hex, "skel")) => format!("sha256:{hex}").parse::<Digest>().ok(),
                Some((hex, "json")) => {
                    format!("sha256:{hex}").parse::<Digest>().ok().and_then(|b| fp.record(&b)).map(|r| r.diff_id)
                }
                _ => None,
            };
            if let Some(d) = layer
                && !live.contains(&d)
                && !self.layer_dir(&d).exists()
            {
                let path = entry.path();
                fs::remove_file(&path).map_err(|e| BuildError::io(&path, "remove", e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Remove an extracted layer dir: first renamed into a private dir under `tmp/` (atomic, so the
    /// layer is either there whole or gone), then deleted; a killed gc leaves only that private dir,
    /// which the next [`Workspace::open`] removes.
    pub(crate) fn remove_layer_dir(&self, path: &Path) -> Result<(), BuildError> {
        let scratch = self.temp_dir("gc-")?;
        let doomed = scratch.path().join("layer");
        fs::rename(path, &doomed).map_err(|e| BuildError::io(path, "move out of layers/", e))?;
        fs::remove_dir_all(&doomed).map_err(|e| BuildError::io(&doomed, "remove", e))?;
        tracing::debug!("gc removed layer dir {}", path.display());
        Ok(())
    }
}
