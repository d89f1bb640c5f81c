//! Garbage collection of the layout: blobs no tag reaches, and referrers whose image no tag reaches.
//!
//! Roots are the tagged `index.json` entries and any untagged entry that is not a referrer (another
//! tool's). A referrer entry (see `referrers`) is kept while its subject is reachable from the roots —
//! and so are its own referrers, transitively; otherwise the entry is dropped and its blobs are garbage.
//! Planning and sweeping are separate so that `gc --dry-run` prints exactly what a `gc` under the same
//! lock removes.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::time::{Duration, SystemTime};

use layers::Digest;

use super::fsck::{self, FsckProblem, FsckReport};
use super::{Descriptor, Index, Store, StoreError, StoreLock};

/// What [`Store::gc`] removed, or what [`Store::gc_plan`] would remove.
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    /// Blobs (to be) removed with their sizes, in digest order.
    pub removed: Vec<(Digest, u64)>,
    /// Bytes freed (the sum of `removed`).
    pub bytes: u64,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub kept_recent: usize,
    /// Referrer entries of `index.json` (to be) dropped because their subject is gone.
    pub dropped_referrers: Vec<Descriptor>,
    /// The `rootfs.diff_ids` of every image config still reachable: the extracted layers to keep.
    pub live_diff_ids: BTreeSet<Digest>,
}

/// Plan a collection (nothing is changed). The caller holds the store lock.
pub(super) fn plan(store: &Store, min_age: Duration) -> Result<GcReport, StoreError> {
    let mut scratch = FsckReport::default();
    let files = fsck::list_blobs(store, &mut scratch)?;
    let present = fsck::present_blobs(store, &files);
    // Unknown reachability → refuse, naming the cause.
    let index = store
        .index()
        .map_err(|e| StoreError::Layout { path: store.index_path(), reason: format!("gc refused: {e}") })?;
    let (roots, mut referrers): (Vec<Descriptor>, Vec<Descriptor>) =
        index.manifests.into_iter().partition(|d| d.ref_name().is_some() || d.referrer_subject().is_none());
    let now = SystemTime::now();
    let recent = |path: &std::path::Path| {
        fs::metadata(path).and_then(|m| m.modified()).is_ok_and(|t| now.duration_since(t).unwrap_or_default() < min_age)
    };
    let mut kept = roots;
    let mut walked = fsck::walk(store, Ok(index_of(&kept)), &present, &mut scratch);
    // A referrer stays while its subject is reachable, or while its subject is younger than the grace
    // period (a writer may store an image's documents before tagging it); so do referrers of kept
    // referrers (a signature of an SBOM): repeat until nothing changes.
    loop {
        let (live, rest): (Vec<Descriptor>, Vec<Descriptor>) = referrers.into_iter().partition(|d| {
            let subject = d.referrer_subject().and_then(|s| s.parse::<Digest>().ok());
            subject.is_some_and(|s| walked.reachable.contains(&s) || recent(&store.blob_path(&s)))
        });
        referrers = rest;
        if live.is_empty() {
            break;
        }
        kept.extend(live);
        scratch = FsckReport::default();
        walked = fsck::walk(store, Ok(index_of(&kept)), &present, &mut scratch);
    }
    if let Some(p) =
        scratch.problems.iter().find(|p| matches!(p, FsckProblem::BadLayout { .. } | FsckProblem::BadDocument { .. }))
    {
        return Err(StoreError::Layout { path: store.root().to_path_buf(), reason: format!("gc refused: {p}") });
    }
    if let Some((digest, actual)) = walked.corrupt_docs.iter().next() {
        let reason = format!("gc refused: reachable document {digest} is corrupt (its content is {actual})");
        return Err(StoreError::Layout { path: store.root().to_path_buf(), reason });
    }
    let mut report = GcReport { dropped_referrers: referrers, live_diff_ids: walked.diff_ids, ..GcReport::default() };
    for blob in files.iter().filter(|b| !walked.reachable.contains(&b.digest)) {
        let mtime = fs::metadata(&blob.path).and_then(|m| m.modified()).map_err(super::io_err(&blob.path))?;
        if now.duration_since(mtime).unwrap_or_default() < min_age {
            report.kept_recent += 1;
            continue;
        }
        report.removed.push((blob.digest, blob.size));
        report.bytes += blob.size;
    }
    Ok(report)
}

/// An index holding `entries`, for the reachability walk.
fn index_of(entries: &[Descriptor]) -> Index {
    Index { manifests: entries.to_vec(), ..Index::default() }
}

/// Carry out `plan`: drop its referrer entries from `index.json` first (so that no entry ever names a
/// removed blob), then remove its blobs. The caller holds the store lock it planned under.
pub(super) fn sweep(store: &Store, plan: &GcReport) -> Result<(), StoreError> {
    if !plan.dropped_referrers.is_empty() {
        let mut index = store.index()?;
        index.manifests.retain(|d| !plan.dropped_referrers.contains(d));
        store.write_index(&index)?;
    }
    for (digest, _) in &plan.removed {
        let path = store.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => tracing::debug!(%digest, "gc removed blob"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::Io { path, source: e }),
        }
    }
    if !plan.removed.is_empty() {
        super::sync_dir(&store.blobs_dir())?;
    }
    Ok(())
}

impl Store {
    /// Remove blobs no tag reaches and that were not written or reused within `min_age` (the grace period
    /// protects a writer that has stored blobs but not tagged them yet), and referrers whose image no tag
    /// reaches. Takes the lock; refuses to run when a reachable document cannot be parsed, since then
    /// reachability is unknown.
    pub fn gc(&self, min_age: Duration) -> Result<GcReport, StoreError> {
        let lock = self.lock()?;
        let plan = self.gc_plan(&lock, min_age)?;
        self.gc_sweep(&lock, &plan)?;
        Ok(plan)
    }

    /// What [`Store::gc`] would remove, changing nothing; `lock` proves the caller holds the store lock,
    /// so that a [`Store::gc_sweep`] under the same lock removes exactly this.
    pub fn gc_plan(&self, lock: &StoreLock, min_age: Duration) -> Result<GcReport, StoreError> {
        let _ = lock;
        plan(self, min_age)
    }

    /// Remove what `plan` lists (see [`Store::gc_plan`]).
    pub fn gc_sweep(&self, lock: &StoreLock, plan: &GcReport) -> Result<(), StoreError> {
        let _ = lock;
        sweep(self, plan)
    }
}
