//! Garbage collection of a state dir: the store's unreachable blobs and orphaned referrers
//! ([`Store::gc_plan`](crate::store::Store::gc_plan)) and the extracted layer dirs that no reachable
//! image lists.
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

use super::{BuildError, Workspace};
use crate::store::GcReport;

/// How to collect.
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Only what was last written (or, for blobs, reused) longer ago than this is removed.
    pub grace: Duration,
    /// Plan only: report what would be removed, change nothing.
    pub dry_run: bool,
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
}

impl GcOutcome {
    /// Bytes freed: blobs plus layer dirs.
    pub fn bytes(&self) -> u64 {
        self.store.bytes + self.layer_dirs.iter().map(|(_, n)| n).sum::<u64>()
    }
}

/// Disk space under `dir` (allocated blocks, each inode once), as `du` counts it.
fn disk_usage(dir: &Path) -> u64 {
    let mut seen = BTreeSet::new();
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| seen.insert((m.dev(), m.ino())))
        .map(|m| m.blocks() * 512)
        .sum()
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
        let now = SystemTime::now();
        let root = self.layers_root();
        let mut outcome = GcOutcome::default();
        let entries = fs::read_dir(&root).map_err(|e| BuildError::io(&root, "list", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| BuildError::io(&root, "list", e))?;
            let name = entry.file_name();
            let Some(diff_id) = name.to_str().and_then(|n| format!("sha256:{n}").parse::<Digest>().ok()) else {
                continue; // not a layer dir of ours
            };
            if plan.live_diff_ids.contains(&diff_id) {
                continue;
            }
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(|e| BuildError::io(&path, "stat", e))?;
            if age(&meta, now) < opts.grace {
                outcome.kept_recent_dirs += 1;
                continue;
            }
            let size = disk_usage(&path);
            outcome.layer_dirs.push((path, size));
        }
        outcome.layer_dirs.sort();
        if !opts.dry_run {
            store.gc_sweep(&lock, &plan)?;
            drop(lock);
            for (path, _) in &outcome.layer_dirs {
                self.remove_layer_dir(path)?;
            }
        }
        outcome.store = plan;
        Ok(outcome)
    }

    /// Remove an extracted layer dir: first renamed into a private dir under `tmp/` (atomic, so the
    /// layer is either there whole or gone), then deleted; a killed gc leaves only that private dir,
    /// which the next [`Workspace::open`] removes.
    fn remove_layer_dir(&self, path: &Path) -> Result<(), BuildError> {
        let scratch = self.temp_dir("gc-")?;
        let doomed = scratch.path().join("layer");
        fs::rename(path, &doomed).map_err(|e| BuildError::io(path, "move out of layers/", e))?;
        fs::remove_dir_all(&doomed).map_err(|e| BuildError::io(&doomed, "remove", e))?;
        tracing::debug!("gc removed layer dir {}", path.display());
        Ok(())
    }
}
