//! The build's state directory: the OCI store plus what is derived from it and can be rebuilt from it —
//! each layer extracted once (in overlayfs form, shared by every image built on it) and the step cache.
//!
//! ```text
//! <state>/oci/                  the OCI image layout (the only thing worth backing up)
//! <state>/layers/<diff_id hex>/ one directory per layer, overlayfs lowerdir format
//! <state>/cache/<key hex>.json  step cache: which layer (if any) a step produced
//! <state>/split/                layer skeletons and blob records: how a blob kept only as its layer
//!                               directory is written again (see `footprint`)
//! <state>/sources/              kolla sources: downloads, git mirrors and archives
//! <state>/tmp/                  run and staging dirs; removed when done
//! <state>/gc.lock               held shared by every process using the state dir, exclusive by gc
//! <state>/locks/                one lock file per root image being pulled or bootstrapped
//! ```
//!
//! Each dir in `tmp/` (and each temp file of the step cache) is `flock`ed by the process using it, so
//! that [`Workspace::open`] can remove the ones a killed process left behind (a RUN's upper dir may be
//! large) without touching those of another build running on the same state directory.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use layers::{ApplyOptions, Digest, WhiteoutMode};

use super::BuildError;
use super::footprint::Footprint;
use crate::store::{Descriptor, Image, Store};

/// A private directory under `<state>/tmp` (see [`Workspace::temp_dir`]).
pub(crate) struct ScratchDir {
    // Fields drop in order: the directory is removed while the lock is still held.
    dir: tempfile::TempDir,
    _lock: fs::File,
}

impl ScratchDir {
    /// Where it is.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Remove the entries of `dir` chosen by `pick` that no live process holds locked: temp dirs and files
/// that killed builds left behind.
fn remove_unlocked(dir: &Path, pick: impl Fn(&fs::DirEntry) -> bool) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten().filter(|e| pick(e)) {
        let path = entry.path();
        let Ok(held) = fs::File::open(&path) else { continue };
        if held.try_lock().is_err() {
            continue; // in use by a running build
        }
        // Remove only what we locked, not a newer entry that took its name.
        let meta = match (held.metadata(), fs::symlink_metadata(&path)) {
            (Ok(a), Ok(b)) if a.ino() == b.ino() && a.dev() == b.dev() => a,
            _ => continue,
        };
        let removed = if meta.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        match removed {
            Ok(()) => tracing::debug!("removed stale temp entry {}", path.display()),
            Err(e) => tracing::warn!("cannot remove stale temp entry {}: {e}", path.display()),
        }
    }
}

/// How [`hold`] locks its file.
#[derive(Clone, Copy)]
enum Hold {
    Shared,
    Exclusive,
}

/// Open (creating) the lock file `path` and `flock` it, saying `why` at info level when it has to wait.
fn hold(path: &Path, how: Hold, why: impl FnOnce() -> String) -> Result<fs::File, BuildError> {
    let file = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| BuildError::io(path, "open", e))?;
    let tried = match how {
        Hold::Shared => file.try_lock_shared(),
        Hold::Exclusive => file.try_lock(),
    };
    match tried {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            tracing::info!("{}", why());
            match how {
                Hold::Shared => file.lock_shared(),
                Hold::Exclusive => file.lock(),
            }
            .map_err(|e| BuildError::io(path, "lock", e))?;
        }
        Err(fs::TryLockError::Error(e)) => return Err(BuildError::io(path, "lock", e)),
    }
    Ok(file)
}

/// Makes `dir` (one of ours) mode 0700 unless it is already.
fn private(dir: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(dir).map_err(|e| BuildError::io(dir, "stat", e))?;
    if meta.permissions().mode() & 0o7777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| BuildError::io(dir, "chmod 0700", e))?;
    }
    Ok(())
}

/// The state directory of a build (see the module docs).
#[derive(Debug, Clone)]
pub struct Workspace {
    store: Store,
    dir: PathBuf,
    /// `<state>/gc.lock`, locked shared while this process uses the state dir (see [`Workspace::open`]).
    in_use: Arc<fs::File>,
    /// Whether this process added a layer directory (built or extracted) and so marked the state dir as
    /// to be trimmed (see [`Workspace::mark_changed`]).
    changed: Arc<AtomicBool>,
}

impl Workspace {
    /// Open the state directory at `dir`, creating it if needed. Holds `gc.lock` shared for as long as
    /// the workspace (or a clone) lives, so a `gc` waits for this process — and this call waits for a
    /// running `gc`: a build never sees a layer or blob vanish under it.
    pub fn open(dir: &Path) -> Result<Workspace, BuildError> {
        let store = Store::open(&dir.join("oci"))?;
        // Private, as containers/storage keeps its overlay dirs: extracted layers, RUN upper dirs and
        // unpacked sources hold the images' setuid-root binaries and device nodes, which no other host
        // user may reach. (`oci/` holds only compressed blobs and JSON, readable by tools like skopeo.)
        for sub in ["layers", "cache", "tmp", "sources", "split", "locks"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| BuildError::io(&p, "create directory", e))?;
            private(&p)?;
        }
        let in_use =
            hold(&dir.join("gc.lock"), Hold::Shared, || format!("waiting for a gc of {} to finish", dir.display()))?;
        remove_unlocked(&dir.join("tmp"), |e| e.file_type().is_ok_and(|t| t.is_dir()));
        for sub in ["cache", "split"] {
            remove_unlocked(&dir.join(sub), |e| e.file_name().as_encoded_bytes().starts_with(b".tmp"));
        }
        let in_use = Arc::new(in_use);
        let store = store.with_source(Arc::new(Footprint::new(dir, Arc::clone(&in_use))));
        Ok(Workspace { store, dir: dir.to_path_buf(), in_use, changed: Arc::new(AtomicBool::new(false)) })
    }

    /// The OCI store of the state dir `dir` for a command that only reads and writes images (push, save,
    /// fsck, …): like a workspace, it holds `gc.lock` shared while it lives, and gives back the blobs kept
    /// only as layer directories.
    pub fn open_store(dir: &Path) -> Result<Store, BuildError> {
        Ok(Workspace::open(dir)?.store)
    }

    /// The state directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// This process's hold on `gc.lock`.
    pub(crate) fn in_use(&self) -> Arc<fs::File> {
        Arc::clone(&self.in_use)
    }

    /// `<state>/split/untrimmed`: present while some layer was added since the state dir was last trimmed.
    pub(crate) fn untrimmed_marker(&self) -> PathBuf {
        self.dir.join("split").join("untrimmed")
    }

    /// Note that a layer directory was added: the state dir is to be trimmed by whichever build finishes
    /// last (this one may not: see `Workspace::trim_after_build`).
    fn mark_changed(&self) {
        if !self.changed.swap(true, Ordering::Relaxed)
            && let Err(e) = fs::File::create(self.untrimmed_marker())
        {
            tracing::warn!("{}: {e}", self.untrimmed_marker().display());
        }
    }

    /// Turn this process's hold on `gc.lock` exclusive, waiting for every other process using the state
    /// dir to finish (only `gc` does this).
    pub(crate) fn lock_exclusive(&self) -> Result<(), BuildError> {
        let path = self.dir.join("gc.lock");
        match self.in_use.try_lock() {
            Ok(()) => Ok(()),
            Err(fs::TryLockError::WouldBlock) => {
                tracing::info!("waiting for the builds and runs using {} to finish", self.dir.display());
                self.in_use.lock().map_err(|e| BuildError::io(&path, "lock", e))
            }
            Err(fs::TryLockError::Error(e)) => Err(BuildError::io(&path, "lock", e)),
        }
    }

    /// Hold the lock of root image `name` for `platform` (`<state>/locks/`), waiting while another build
    /// on this state dir holds it: builds that start together fetch or bootstrap a root image once (an
    /// emulated mmdebstrap takes minutes), the others then find it in the store. Released on drop.
    pub(crate) fn lock_root_image(&self, name: &str, platform: &str) -> Result<fs::File, BuildError> {
        hold(&self.root_image_lock(name, platform), Hold::Exclusive, || {
            format!("waiting for another build on this state dir to get {name} ({platform})")
        })
    }

    /// The lock file of root image `name` for `platform` (names hold `/` and `:`, so a digest of them).
    fn root_image_lock(&self, name: &str, platform: &str) -> PathBuf {
        let key = Digest::of_bytes(format!("{name}\n{platform}").as_bytes());
        self.dir.join("locks").join(format!("root-{}", &key.hex()[..16]))
    }

    /// Where extracted layers live (`<state>/layers`).
    pub(crate) fn layers_root(&self) -> PathBuf {
        self.dir.join("layers")
    }

    /// The OCI image layout.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where kolla sources are cached: downloads, git mirrors, archives (see [`crate::sources`]).
    pub fn sources_dir(&self) -> PathBuf {
        self.dir.join("sources")
    }

    /// Where the step cache keeps its entries.
    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// A fresh private directory under `<state>/tmp`, locked while it lives, removed when the guard drops.
    pub(crate) fn temp_dir(&self, prefix: &str) -> Result<ScratchDir, BuildError> {
        let parent = self.dir.join("tmp");
        for _ in 0..8 {
            let dir = tempfile::Builder::new()
                .prefix(prefix)
                .tempdir_in(&parent)
                .map_err(|e| BuildError::io(&parent, "create temp dir", e))?;
            let lock = match fs::File::open(dir.path()) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // taken by a cleaner
                Err(e) => return Err(BuildError::io(dir.path(), "open temp dir", e)),
            };
            lock.lock().map_err(|e| BuildError::io(dir.path(), "lock temp dir", e))?;
            // A cleaner may have removed it between creation and our lock: then it has no link any more.
            if lock.metadata().map_err(|e| BuildError::io(dir.path(), "stat temp dir", e))?.nlink() > 0 {
                return Ok(ScratchDir { dir, _lock: lock });
            }
        }
        Err(BuildError::io(&parent, "create temp dir", io::Error::other("temp dirs keep disappearing")))
    }

    /// The extracted directory of the layer with this diff_id (it may not exist yet).
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join("layers").join(diff_id.hex())
    }

    /// The extracted dirs of `image`'s layers, top layer first (overlayfs lowerdir order), extracting
    /// those not there yet.
    pub fn lower_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, BuildError> {
        let mut dirs = image
            .manifest
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
            .map(|(layer, diff_id)| self.ensure_layer_dir(layer, diff_id))
            .collect::<Result<Vec<_>, _>>()?;
        dirs.reverse();
        Ok(dirs)
    }

    /// Make `dir` (a RUN's overlay upper dir or a COPY staging dir, already in lowerdir format) the
    /// extracted form of layer `diff_id`, by rename: no copy. If another build got there first, ours is
    /// dropped — both hold the same content.
    pub(crate) fn adopt_layer_dir(&self, dir: &Path, diff_id: &Digest) -> Result<PathBuf, BuildError> {
        let dest = self.layer_dir(diff_id);
        if !dest.exists() {
            match fs::rename(dir, &dest) {
                Ok(()) => {
                    self.mark_changed();
                    return Ok(dest);
                }
                Err(e) if dest.exists() => tracing::debug!("layer dir raced: {e}"),
                Err(e) => return Err(BuildError::io(&dest, "rename layer dir", e)),
            }
        }
        Ok(dest)
    }

    /// The extracted directory of a layer, applying its blob first if it is not there yet (a layer that
    /// was pulled, or whose directory was removed). Extraction goes to a temp dir that is renamed into
    /// place, so a killed process never leaves a half-extracted layer behind, and only once the stream
    /// it read hashes to `diff_id`.
    pub fn ensure_layer_dir(&self, layer: &Descriptor, diff_id: &Digest) -> Result<PathBuf, BuildError> {
        let dest = self.layer_dir(diff_id);
        if dest.exists() {
            self.footprint().mark_used(diff_id);
            return Ok(dest);
        }
        self.extract_layer(layer, diff_id)
    }

    /// [`Workspace::ensure_layer_dir`] for a pairing of blob and diff_id that comes from elsewhere (a
    /// `--cache-repo` entry): the blob is hashed against `diff_id` even when a dir of that name exists —
    /// the name alone would lend an evil blob the honest layer's files, which later steps and `run` would
    /// see while the manifest (and `push`) carried the blob.
    pub(crate) fn verified_layer_dir(&self, layer: &Descriptor, diff_id: &Digest) -> Result<PathBuf, BuildError> {
        let dest = self.layer_dir(diff_id);
        if !dest.exists() {
            return self.extract_layer(layer, diff_id);
        }
        let blob = self.store.open_blob(&layer.digest)?;
        let (actual, _) = layers::uncompressed_digest(io::BufReader::with_capacity(1 << 20, blob))
            .map_err(|e| BuildError::io(&self.store.blob_path(&layer.digest), "decompress layer", e))?;
        if actual != *diff_id {
            return Err(BuildError::DiffIdMismatch { layer: layer.digest, claimed: *diff_id, actual });
        }
        Ok(dest)
    }

    /// Apply `layer`'s blob into a temp dir and adopt it as layer `diff_id` if the stream hashed to it.
    fn extract_layer(&self, layer: &Descriptor, diff_id: &Digest) -> Result<PathBuf, BuildError> {
        let tmp = self.temp_dir("extract-")?;
        let root = tmp.path().join("root");
        fs::create_dir(&root).map_err(|e| BuildError::io(&root, "create directory", e))?;
        let blob = self.store.open_blob(&layer.digest)?;
        let opts = ApplyOptions { whiteouts: WhiteoutMode::Overlay, same_owner: true, ..Default::default() };
        let stats = layers::apply_layer(io::BufReader::with_capacity(1 << 20, blob), &root, &opts)
            .map_err(|e| BuildError::Layer { what: format!("extracting layer {}", layer.digest), error: e })?;
        // The name is shared by every image with this layer: adopt the directory only under the diff_id
        // its content has. (The temp dir goes away with `tmp`.)
        if stats.diff_id != *diff_id {
            return Err(BuildError::DiffIdMismatch { layer: layer.digest, claimed: *diff_id, actual: stats.diff_id });
        }
        self.adopt_layer_dir(&root, diff_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One root image lock per name and platform, held until dropped, also against this process's own
    /// other opens of it (flock locks open files, not processes).
    #[test]
    fn root_image_lock_is_per_name_and_platform() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = Workspace::open(tmp.path()).unwrap();
        let held = ws.lock_root_image("debian:trixie", "linux/arm64/v8").unwrap();
        let other = |name, platform| fs::File::open(ws.root_image_lock(name, platform)).unwrap();
        let same = other("debian:trixie", "linux/arm64/v8");
        assert!(matches!(same.try_lock(), Err(fs::TryLockError::WouldBlock)));
        let amd64 = ws.lock_root_image("debian:trixie", "linux/amd64").unwrap();
        let bookworm = ws.lock_root_image("debian:bookworm", "linux/arm64/v8").unwrap();
        drop((held, amd64, bookworm));
        assert!(same.try_lock().is_ok(), "free once dropped");
    }
}
