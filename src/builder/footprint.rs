//! The state dir's footprint: each layer kept once on disk.
//!
//! A layer can be in the state dir in two forms: its blob (`oci/blobs/`, compressed: what the OCI layout and
//! registries hold) and its extracted directory (`layers/<diff_id>`, what overlayfs mounts for RUN and
//! `run`). Keeping both, as kolla-oci did until this module, took upstream kolla's base + memcached + cron
//! 445.7 MB where buildah, which keeps extracted diffs only, took 334.3 MB (`benches/kolla-vs-buildah.sh`).
//! Which form each layer keeps is chosen by what it is used for (figures in the README):
//!
//! - a layer of an image that another image is built on (its diff_ids are a strict prefix of another
//!   image's: the root image, `base`, `openstack-base`, …) is kept as its **directory**, since every build of
//!   a child mounts it — re-extracting Debian's root layer alone costs more than a whole leaf rebuild. Its
//!   blob is dropped once the directory and the layer's tar-split skeleton are checked to give it back; it
//!   is written again when something needs it (push, save, fsck, a `--cache-repo` upload), verified against
//!   its digest by the store;
//! - every other layer (the top layers of images nothing is built on) is kept as its **blob**: its directory
//!   is removed, and extracted again (checked against its diff_id) when a build or `run` needs it.
//!
//! [`Workspace::trim`] applies this at the end of each build (when no other process uses the state dir) and
//! in `gc`, which can also cap the directories (`--max-extracted`): beyond the cap the least recently used go,
//! their blobs written back first.
//!
//! What makes a blob come back (`<state>/split/`):
//! - `<diff_id hex>.skel`: the tar-split skeleton of the layer (see [`layers::regenerate`]), recorded while
//!   the layer is written from its directory, or derived from the blob and the directory ([`layers::split_layer`]);
//! - `<blob hex>.json`: a [`BlobRecord`], whether and how (which compression, which compressor) the blob is
//!   written again from the skeleton and the directory. It is `regenerable` only when that is known to give
//!   these very bytes: the blob was written so by this compressor, or a trial gave its digest.
//!
//! A blob whose directory or skeleton is gone is never dropped: a directory is removed only once every blob
//! of its layer is back in `oci/blobs/`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use layers::{Compression, Digest, LayerInfo};
use serde::{Deserialize, Serialize};

use super::{BuildError, Workspace};
use crate::store::{BlobSource, Descriptor, Platform, Store, StoreError};

/// What is known about writing a blob again from its layer's directory and skeleton.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobRecord {
    /// The layer (its skeleton and directory are named by it).
    pub diff_id: Digest,
    /// The blob's size.
    pub size: u64,
    /// How it is compressed (`gzip:4`, `zstd:3`, `none`).
    pub compression: String,
    /// The compressor that wrote it (or failed to), as [`Compression::engine`] names it.
    pub engine: String,
    /// Whether the skeleton and the directory, compressed as `compression` by `engine`, give these bytes.
    pub regenerable: bool,
}

/// The blobs of a state dir that its layer directories can give back: the store's [`BlobSource`].
#[derive(Debug, Clone)]
pub(crate) struct Footprint {
    state: PathBuf,
    /// `<state>/gc.lock`, held shared while this lives: `gc` never removes a directory being read.
    _in_use: Arc<File>,
}

impl Footprint {
    /// The footprint of the state dir `state`, whose `gc.lock` the caller holds shared through `in_use`.
    pub(crate) fn new(state: &Path, in_use: Arc<File>) -> Footprint {
        Footprint { state: state.to_path_buf(), _in_use: in_use }
    }

    fn split_dir(&self) -> PathBuf {
        self.state.join("split")
    }

    fn record_path(&self, blob: &Digest) -> PathBuf {
        self.split_dir().join(format!("{}.json", blob.hex()))
    }

    fn skeleton_path(&self, diff_id: &Digest) -> PathBuf {
        self.split_dir().join(format!("{}.skel", diff_id.hex()))
    }

    fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.state.join("layers").join(diff_id.hex())
    }

    /// Note that layer `diff_id`'s dir was used now, for `gc --max-extracted` (least recently used first):
    /// the mtime of its skeleton, not of the dir, which may be mounted (overlayfs wants its lower dirs left
    /// alone).
    pub(crate) fn mark_used(&self, diff_id: &Digest) {
        let path = self.skeleton_path(diff_id);
        if let Ok(f) = File::options().write(true).open(&path)
            && let Err(e) = f.set_modified(std::time::SystemTime::now())
        {
            tracing::debug!("cannot update mtime of {}: {e}", path.display());
        }
    }

    /// When layer `diff_id`'s dir was last used (see [`Footprint::mark_used`]), in seconds since the epoch:
    /// its skeleton's mtime, else the dir's.
    fn last_used(&self, diff_id: &Digest) -> Option<i64> {
        fs::metadata(self.skeleton_path(diff_id))
            .or_else(|_| fs::metadata(self.layer_dir(diff_id)))
            .ok()
            .map(|m| m.mtime())
    }

    /// The record of `blob`, if there is one that parses.
    pub(crate) fn record(&self, blob: &Digest) -> Option<BlobRecord> {
        let bytes = fs::read(self.record_path(blob)).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("{}: unreadable record, ignored: {e}", self.record_path(blob).display());
                None
            }
        }
    }

    /// The record of `blob` if its directory and skeleton can give it back now.
    fn usable(&self, blob: &Digest) -> Option<BlobRecord> {
        self.record(blob).filter(|r| {
            r.regenerable && self.skeleton_path(&r.diff_id).is_file() && self.layer_dir(&r.diff_id).is_dir()
        })
    }

    /// Write `record` of `blob` (temp, fsync, rename, fsync dir): it must outlive a crash before the blob
    /// file it allows to drop is removed.
    fn write_record(&self, blob: &Digest, record: &BlobRecord) -> Result<(), BuildError> {
        let dir = self.split_dir();
        let bytes = serde_json::to_vec(record).map_err(|e| BuildError::Input(format!("record of {blob}: {e}")))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-record-")
            .tempfile_in(&dir)
            .map_err(|e| BuildError::io(&dir, "create temp file", e))?;
        tmp.write_all(&bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| BuildError::io(tmp.path(), "write", e))?;
        let dest = self.record_path(blob);
        tmp.persist(&dest).map_err(|e| BuildError::io(&dest, "rename", e.error))?;
        sync_dir(&dir)
    }

    /// Write blob `blob` again from its layer's skeleton and directory to `out`.
    fn regenerate(
        &self,
        blob: &Digest,
        compression_override: Option<Compression>,
        out: &mut dyn Write,
    ) -> Result<LayerInfo, String> {
        let record = self.record(blob).ok_or("no record of how to write it again")?;
        let compression = match compression_override {
            Some(c) => c,
            None => record.compression.parse::<Compression>().map_err(|e| format!("record: {e}"))?,
        };
        let skeleton = self.skeleton_path(&record.diff_id);
        let file = File::open(&skeleton).map_err(|e| format!("{}: {e}", skeleton.display()))?;
        let dir = self.layer_dir(&record.diff_id);
        layers::regenerate(io::BufReader::new(file), &dir, compression, None, out)
            .map_err(|e| format!("from {}: {}", dir.display(), crate::with_causes(&e)))
    }
}

impl BlobSource for Footprint {
    fn size(&self, digest: &Digest) -> Option<u64> {
        self.usable(digest).map(|r| r.size)
    }

    fn write(&self, digest: &Digest, out: &mut dyn Write) -> Result<LayerInfo, StoreError> {
        let record = self.usable(digest).ok_or_else(|| StoreError::Regenerate {
            digest: *digest,
            reason: "its layer directory or skeleton is gone".into(),
        })?;
        if record.engine != record.compression.parse::<Compression>().map(|c| c.engine()).unwrap_or_default() {
            tracing::warn!(
                %digest,
                "blob written by {}, this binary compresses with another version: it may not come back",
                record.engine
            );
        }
        self.regenerate(digest, None, out).map_err(|reason| StoreError::Regenerate { digest: *digest, reason })
    }

    fn list(&self) -> Vec<(Digest, u64)> {
        let Ok(entries) = fs::read_dir(self.split_dir()) else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let hex = name.to_str()?.strip_suffix(".json")?;
                let digest: Digest = format!("sha256:{hex}").parse().ok()?;
                Some((digest, self.usable(&digest)?.size))
            })
            .collect()
    }
}

/// fsync a directory, so that a rename into it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), BuildError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| BuildError::io(dir, "sync", e))
}

/// A skeleton being recorded (a locked temp file in `<state>/split/`), kept with [`Workspace::keep_split`].
pub(crate) struct SkeletonFile {
    file: io::BufWriter<File>,
    path: tempfile::TempPath,
}

impl Write for SkeletonFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// How [`Workspace::trim`] trims.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrimOptions {
    /// At most this many bytes of extracted layer directories (least recently used removed first).
    pub max_extracted: Option<u64>,
    /// Report what would be done, change nothing. Blobs whose regeneration has not been tried yet are
    /// not counted (trying is work a dry run does not do).
    pub dry_run: bool,
    /// Measure the directories removed (a walk of each; reports only).
    pub measure: bool,
}

/// What [`Workspace::trim`] did (or, dry, would do).
#[derive(Debug, Default, Clone)]
pub struct TrimReport {
    /// Blobs removed from `oci/blobs/` (kept as their layer directory), with their sizes.
    pub dropped_blobs: Vec<(Digest, u64)>,
    /// Layer directories removed, with the bytes they took (0 when not measured).
    pub removed_dirs: Vec<(PathBuf, u64)>,
    /// Blobs written back into `oci/blobs/` before their directory went.
    pub restored_blobs: Vec<Digest>,
    /// Blobs of kept directories that cannot be written again from them (another compressor made them):
    /// these layers stay twice.
    pub kept_twice: Vec<Digest>,
}

/// The layers of the tagged images: by blob, its diff_id; and the diff_ids of images others build on.
struct Live {
    /// Every (blob, diff_id) of every tagged image.
    layers: BTreeSet<(Digest, Digest, String)>,
    /// Diff_ids of the layers of images whose diff_ids are a strict prefix of another image's.
    parents: BTreeSet<Digest>,
}

/// The tagged images' layers and which of them are parents' (see the module docs).
fn live_layers(store: &Store) -> Result<Live, BuildError> {
    let mut images: Vec<(Vec<Digest>, Vec<Descriptor>)> = Vec::new();
    for (_, desc) in store.tags()? {
        // Each platform's image of a multi-platform tag is mounted by the builds for that platform.
        let manifests = if crate::store::is_index(&desc.media_type) {
            store.read_index(&desc).map(|index| index.manifests).unwrap_or_default()
        } else {
            vec![desc]
        };
        for m in manifests {
            // Artifacts are no images a build or `run` mounts.
            let Ok(image) = store.load_image_from(&m, &Platform::host()) else { continue };
            if image.config.rootfs.diff_ids.len() == image.manifest.layers.len() {
                images.push((image.config.rootfs.diff_ids, image.manifest.layers));
            }
        }
    }
    let prefixes: HashSet<&[Digest]> =
        images.iter().flat_map(|(ids, _)| (1..ids.len()).map(move |n| &ids[..n])).collect();
    let mut live = Live { layers: BTreeSet::new(), parents: BTreeSet::new() };
    for (ids, layers) in &images {
        if prefixes.contains(&ids[..]) {
            live.parents.extend(ids.iter().copied());
        }
        for (layer, diff_id) in layers.iter().zip(ids) {
            live.layers.insert((layer.digest, *diff_id, layer.media_type.clone()));
        }
    }
    Ok(live)
}

/// The compression to try when a blob we did not write is to be written again: what its media type says,
/// at our default level (a blob another kolla-oci wrote that way comes back; any other does not).
fn candidate(media_type: &str) -> Compression {
    if media_type.ends_with("+zstd") {
        Compression::Zstd { level: 3 }
    } else if media_type.ends_with("gzip") {
        Compression::default()
    } else {
        Compression::None
    }
}

/// Whether blob `blob` may be one our compressor wrote as `compression` (a cheap look at its start).
fn may_be_ours(store: &Store, blob: &Digest, compression: Compression) -> bool {
    store.open_blob(blob).is_ok_and(|f| layers::may_regenerate(io::BufReader::new(f), compression))
}

/// Disk space under `dir` (allocated blocks, each inode once), as `du` counts it.
pub(crate) fn disk_usage(dir: &Path) -> u64 {
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

impl Workspace {
    /// A temp file in `<state>/split/` to record a layer's skeleton into while it is written.
    pub(crate) fn skeleton_file(&self) -> Result<SkeletonFile, BuildError> {
        let dir = self.footprint().split_dir();
        let (file, path) = tempfile::Builder::new()
            .prefix(".tmp-skel-")
            .tempfile_in(&dir)
            .map_err(|e| BuildError::io(&dir, "create temp file", e))?
            .into_parts();
        file.lock().map_err(|e| BuildError::io(&path, "lock", e))?;
        Ok(SkeletonFile { file: io::BufWriter::new(file), path })
    }

    /// Keep the skeleton recorded while layer `info` was written from its directory with `compression`:
    /// its blob, now in the store, can then be dropped and written again.
    pub(crate) fn keep_split(
        &self,
        skeleton: SkeletonFile,
        info: &LayerInfo,
        compression: Compression,
    ) -> Result<(), BuildError> {
        let fp = self.footprint();
        let SkeletonFile { file, path } = skeleton;
        let file = file.into_inner().map_err(|e| BuildError::io(&path, "write", e.into_error()))?;
        let dest = fp.skeleton_path(&info.diff_id);
        if !dest.exists() {
            file.sync_all().map_err(|e| BuildError::io(&path, "sync", e))?;
            path.persist(&dest).map_err(|e| BuildError::io(&dest, "rename", e.error))?;
        }
        let record = BlobRecord {
            diff_id: info.diff_id,
            size: info.size,
            compression: compression.to_string(),
            engine: compression.engine(),
            regenerable: true,
        };
        fp.write_record(&info.digest, &record)
    }

    /// Keep each layer once (see the module docs): drop the blobs of the layers other images build on
    /// where their directories give them back, remove the directories of the other layers, then cap the
    /// directories at `opts.max_extracted`. The caller holds `gc.lock` exclusively: no other process is
    /// using a directory.
    pub fn trim(&self, opts: &TrimOptions) -> Result<TrimReport, BuildError> {
        let store = self.store();
        let live = live_layers(store)?;
        let mut report = TrimReport::default();
        // Blobs by layer, to know what must be in `oci/blobs/` before a directory goes.
        let mut blobs_of: BTreeMap<Digest, Vec<Digest>> = BTreeMap::new();
        for (blob, diff_id, _) in &live.layers {
            blobs_of.entry(*diff_id).or_default().push(*blob);
        }
        for (blob, diff_id, media_type) in &live.layers {
            let dir = self.layer_dir(diff_id);
            if !live.parents.contains(diff_id) || !dir.is_dir() || !store.holds_blob_file(blob) {
                continue;
            }
            match self.droppable(blob, diff_id, media_type, opts.dry_run)? {
                Some(true) => {
                    let size = store.blob_size(blob)?;
                    if !opts.dry_run {
                        self.drop_blob(blob, diff_id)?;
                    }
                    report.dropped_blobs.push((*blob, size));
                }
                Some(false) => report.kept_twice.push(*blob),
                None => {}
            }
        }
        // The directories of the other layers, once their blobs are all in `oci/blobs/`.
        let leaves: BTreeSet<Digest> =
            blobs_of.keys().filter(|d| !live.parents.contains(d) && self.layer_dir(d).is_dir()).copied().collect();
        for diff_id in &leaves {
            self.remove_dir_keeping_blobs(diff_id, &blobs_of[diff_id], opts, &mut report)?;
        }
        if !opts.dry_run {
            let _ = fs::remove_file(self.untrimmed_marker());
        }
        if let Some(max) = opts.max_extracted {
            let fp = self.footprint();
            let mut kept: Vec<(i64, Digest, u64)> = blobs_of
                .keys()
                .filter(|d| !leaves.contains(d) && self.layer_dir(d).is_dir())
                .filter_map(|d| Some((fp.last_used(d)?, *d, disk_usage(&self.layer_dir(d)))))
                .collect();
            let mut total: u64 = kept.iter().map(|k| k.2).sum();
            kept.sort();
            for (_, diff_id, size) in kept {
                if total <= max {
                    break;
                }
                if self.remove_dir_keeping_blobs(&diff_id, &blobs_of[&diff_id], opts, &mut report)? {
                    total -= size;
                }
            }
        }
        Ok(report)
    }

    /// Whether blob `blob` of layer `diff_id` may be dropped: its record says the layer's directory and
    /// skeleton give it back (trying it once, and recording the answer, for a blob we did not write), and
    /// the directory still holds the layer. `None`: unknown (a dry run does not try).
    fn droppable(
        &self,
        blob: &Digest,
        diff_id: &Digest,
        media_type: &str,
        dry_run: bool,
    ) -> Result<Option<bool>, BuildError> {
        let fp = self.footprint();
        let record = match fp.record(blob) {
            Some(r) => r,
            None if dry_run => return Ok(None),
            None => self.try_split(blob, diff_id, media_type)?,
        };
        let current = record.compression.parse::<Compression>().map(|c| c.engine()).unwrap_or_default();
        if !record.regenerable || record.engine != current || !fp.skeleton_path(diff_id).is_file() {
            return Ok(Some(false));
        }
        if dry_run {
            return Ok(Some(true));
        }
        // The directory must still give the layer back: its uncompressed stream hashes to the diff_id.
        match fp.regenerate(blob, Some(Compression::None), &mut io::sink()) {
            Ok(info) if info.diff_id == *diff_id => Ok(Some(true)),
            other => {
                let why = match other {
                    Ok(info) => format!("it gives {} now", info.diff_id),
                    Err(e) => e,
                };
                // The dir changed, or the skeleton never described it (a tar naming a file twice): the dir goes,
                // extracted again from the blob when needed, and the blob is no longer dropped.
                tracing::warn!(
                    "layer directory {} does not give layer {diff_id} back ({why}): it is removed, to be extracted \
                     again, and its blob kept",
                    self.layer_dir(diff_id).display()
                );
                fp.write_record(blob, &BlobRecord { regenerable: false, ..record })?;
                self.remove_layer_dir(&self.layer_dir(diff_id))?;
                Ok(Some(false))
            }
        }
    }

    /// Derive the skeleton of a blob we did not write from its directory, and find out whether our
    /// compressor gives the blob back (recorded either way, so this is done once per blob).
    fn try_split(&self, blob: &Digest, diff_id: &Digest, media_type: &str) -> Result<BlobRecord, BuildError> {
        let fp = self.footprint();
        let store = self.store();
        let compression = candidate(media_type);
        let mut record = BlobRecord {
            diff_id: *diff_id,
            size: store.blob_size(blob)?,
            compression: compression.to_string(),
            engine: compression.engine(),
            regenerable: false,
        };
        if !may_be_ours(store, blob, compression) {
            tracing::debug!(%blob, "not written by our compressor: kept as blob and directory");
            fp.write_record(blob, &record)?;
            return Ok(record);
        }
        let started = std::time::Instant::now();
        let mut skeleton = self.skeleton_file()?;
        let file = store.open_blob(blob)?;
        let split = layers::split_layer(
            io::BufReader::with_capacity(1 << 20, file),
            &self.layer_dir(diff_id),
            compression,
            None,
            &mut skeleton,
        );
        match split {
            Ok(s) if s.blob.0 == *blob && s.regenerated.digest == *blob && s.regenerated.diff_id == *diff_id => {
                let dest = fp.skeleton_path(diff_id);
                let SkeletonFile { file, path } = skeleton;
                let file = file.into_inner().map_err(|e| BuildError::io(&path, "write", e.into_error()))?;
                if !dest.exists() {
                    file.sync_all().map_err(|e| BuildError::io(&path, "sync", e))?;
                    path.persist(&dest).map_err(|e| BuildError::io(&dest, "rename", e.error))?;
                }
                record.regenerable = true;
            }
            Ok(s) => {
                tracing::debug!(%blob, again = %s.regenerated.digest, "our compressor gives other bytes: kept as blob and directory")
            }
            Err(e) => {
                tracing::info!(%blob, "layer directory {} cannot give the blob back: {}", self.layer_dir(diff_id).display(), crate::with_causes(&e))
            }
        }
        tracing::debug!(%blob, regenerable = record.regenerable, secs = started.elapsed().as_secs_f64(), "split tried");
        fp.write_record(blob, &record)?;
        Ok(record)
    }

    /// Remove blob `blob` from `oci/blobs/`: its record says how it comes back.
    fn drop_blob(&self, blob: &Digest, diff_id: &Digest) -> Result<(), BuildError> {
        let path = self.store().blob_path(blob);
        fs::remove_file(&path).map_err(|e| BuildError::io(&path, "remove", e))?;
        tracing::debug!(%blob, %diff_id, "blob dropped: kept as its layer directory");
        Ok(())
    }

    /// Remove the directory of layer `diff_id`, first writing back into `oci/blobs/` those of `blobs` that
    /// are not there; whether it was (or, dry, would be) removed: not when a blob cannot come back.
    fn remove_dir_keeping_blobs(
        &self,
        diff_id: &Digest,
        blobs: &[Digest],
        opts: &TrimOptions,
        report: &mut TrimReport,
    ) -> Result<bool, BuildError> {
        let store = self.store();
        let dir = self.layer_dir(diff_id);
        if let Some(lost) = blobs.iter().find(|b| !store.has_blob(b)) {
            // Not in the store and not writable again (a non-distributable layer): its dir is all there is.
            tracing::debug!(%lost, "layer dir {} kept: its blob is not in the store", dir.display());
            return Ok(false);
        }
        for blob in blobs.iter().filter(|b| !store.holds_blob_file(b)) {
            if !opts.dry_run {
                // Opening it writes it back, verified against its digest.
                store.open_blob(blob)?;
            }
            report.restored_blobs.push(*blob);
        }
        let size = if opts.measure { disk_usage(&dir) } else { 0 };
        if !opts.dry_run {
            self.remove_layer_dir(&dir)?;
        }
        report.removed_dirs.push((dir, size));
        Ok(true)
    }

    /// The footprint of this state dir.
    pub(crate) fn footprint(&self) -> Footprint {
        Footprint::new(self.dir(), self.in_use())
    }

    /// [`Workspace::trim`] at the end of a build, if a layer dir was added since the last trim (by this
    /// build or another) and no other process uses the state dir then. Consumes the workspace: a process that
    /// finds another one still using the state dir lets go of it, so that the last one to finish trims (of two
    /// finishing together, one sees the other gone). Failures are warnings: the build is done.
    pub fn trim_after_build(self) {
        if !self.untrimmed_marker().exists() {
            return;
        }
        match self.in_use().try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                tracing::debug!("another process uses the state dir: the last one to finish trims it");
                return;
            }
            Err(fs::TryLockError::Error(e)) => {
                tracing::warn!("cannot trim the state dir: {e}");
                return;
            }
        }
        let started = std::time::Instant::now();
        match self.trim(&TrimOptions::default()) {
            Ok(r) => {
                tracing::info!(
                    blobs_dropped = r.dropped_blobs.len(),
                    blob_bytes = r.dropped_blobs.iter().map(|b| b.1).sum::<u64>(),
                    dirs_removed = r.removed_dirs.len(),
                    kept_twice = r.kept_twice.len(),
                    secs = format!("{:.2}", started.elapsed().as_secs_f64()),
                    "each layer kept once: blobs of the layers images are built on dropped (their dirs give them \
                     back), dirs of the other layers removed"
                )
            }
            Err(e) => tracing::warn!("trimming the state dir failed (kolla-oci gc does it again): {e}"),
        }
    }
}

/// Disk use of one kind of content of a state dir.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KindUsage {
    /// How many there are (files, directories, entries).
    pub count: usize,
    /// Disk space they take (allocated blocks, as `du` counts).
    pub bytes: u64,
    /// What `gc` (with its default grace period) would free of it.
    pub reclaimable: u64,
}

/// What a state dir holds, by kind, and what `gc` would free ([`Workspace::usage`], `kolla-oci df`).
#[derive(Debug, Default, Clone)]
pub struct Usage {
    /// Blob files of the OCI layout (`oci/blobs/`).
    pub blobs: KindUsage,
    /// Blobs not in `oci/blobs/`, kept as their layer dirs: `bytes` is what they would take written back.
    pub kept_as_layers: KindUsage,
    /// Extracted layer dirs (`layers/`).
    pub extracted: KindUsage,
    /// Layer skeletons and blob records (`split/`).
    pub skeletons: KindUsage,
    /// The step cache (`cache/`).
    pub cache: KindUsage,
    /// Kolla sources: downloads, git mirrors, archives (`sources/`).
    pub sources: KindUsage,
    /// Scratch space of running (or killed) builds (`tmp/`, `oci/.tmp/`).
    pub temporary: KindUsage,
}

impl Usage {
    /// Every kind on disk, summed (`kept_as_layers` takes no space).
    pub fn total(&self) -> KindUsage {
        [self.blobs, self.extracted, self.skeletons, self.cache, self.sources, self.temporary].iter().fold(
            KindUsage::default(),
            |a, k| KindUsage {
                count: a.count + k.count,
                bytes: a.bytes + k.bytes,
                reclaimable: a.reclaimable + k.reclaimable,
            },
        )
    }
}

/// Entries directly in `dir` and the disk space under it.
fn kind_usage(dir: &Path) -> KindUsage {
    let count = fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    KindUsage { count, bytes: if count == 0 { 0 } else { disk_usage(dir) }, reclaimable: 0 }
}

impl Workspace {
    /// What the state dir holds by kind, and what a `gc` with grace period `grace` would free: its plan
    /// and a dry trim, made without waiting for builds (a snapshot while they run).
    pub fn usage(&self, grace: std::time::Duration) -> Result<Usage, BuildError> {
        let store = self.store();
        let plan = {
            let lock = store.lock()?;
            store.gc_plan(&lock, grace)?
        };
        let (unused_dirs, _) = self.unused_layer_dirs(&plan.live_diff_ids, grace)?;
        let trim = self.trim(&TrimOptions { dry_run: true, measure: true, ..TrimOptions::default() })?;
        let oci = store.root();
        let mut usage = Usage {
            blobs: kind_usage(&oci.join("blobs/sha256")),
            extracted: kind_usage(&self.layers_root()),
            skeletons: kind_usage(&self.footprint().split_dir()),
            cache: kind_usage(&self.cache_dir()),
            sources: kind_usage(&self.sources_dir()),
            ..Usage::default()
        };
        let (tmp, oci_tmp) = (kind_usage(&self.dir().join("tmp")), kind_usage(&oci.join(".tmp")));
        usage.temporary =
            KindUsage { count: tmp.count + oci_tmp.count, bytes: tmp.bytes + oci_tmp.bytes, reclaimable: 0 };
        usage.blobs.reclaimable = plan.bytes + trim.dropped_blobs.iter().map(|b| b.1).sum::<u64>();
        usage.extracted.reclaimable = unused_dirs.iter().chain(&trim.removed_dirs).map(|d| d.1).sum();
        for (digest, size) in store.source_blobs() {
            if !store.holds_blob_file(&digest) {
                usage.kept_as_layers.count += 1;
                usage.kept_as_layers.bytes += size;
            }
        }
        Ok(usage)
    }
}
