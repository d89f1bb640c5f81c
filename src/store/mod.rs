//! The content-addressed OCI image layout that every image of kolla-oci lives in.
//!
//! Layout (the OCI image-layout spec, readable by skopeo `oci:DIR:REF`, umoci and oci-image-tool):
//! `oci-layout`, `index.json` (one entry per tag, named by the `org.opencontainers.image.ref.name`
//! annotation) and `blobs/sha256/<hex>`. Two extra entries, which those tools ignore: `.tmp/` (temp files,
//! on the same filesystem so that `rename` into `blobs/` is atomic) and `.lock` (the store lock).
//!
//! Concurrency model:
//! - **Blob writes are lock-free.** A blob is written to a temp file in `.tmp/`, hashed while written,
//!   verified, fsynced and renamed to its digest name; the directory is then fsynced. A name in `blobs/`
//!   therefore always holds complete, correct content, and two writers of the same blob both succeed (the
//!   second rename replaces identical bytes). Each temp file is `flock`ed by its writer, so a cleaner can
//!   tell a live temp file from one left by a killed process.
//! - **`index.json` updates need the store lock** ([`Store::lock`], taken by [`Store::set_tag`],
//!   [`Store::untag`], [`Store::gc`] and by [`Store::open`] when it creates the index): read-modify-write
//!   under the lock, then an atomic replace (temp + fsync + rename + fsync dir). Readers never lock: they
//!   see the old or the new index, never a torn one.
//! - Whoever takes the lock first removes stale temp files (unlocked ones) from `.tmp/`.
//!
//! A blob may be absent from `blobs/` when a [`BlobSource`] can write it again (a layer the state dir keeps
//! only as its extracted directory, see `builder::footprint`): the store then counts it as present, and
//! [`Store::open_blob`] writes it back into `blobs/`, verified against its digest, before opening it. Other
//! tools reading the layout need every blob in `blobs/`: `kolla-oci gc --max-extracted 0` puts them back.
//!
//! Every JSON document the store writes goes through [`canonical_json`] (sorted keys, compact), so equal
//! content has an equal digest.
//!
//! [`Store`] is the front type; its methods live beside the concern they serve: `blob` (writing and
//! reading blobs), `index` (tags and the lock), `read` (documents a descriptor names, platform
//! selection, writing an image), `json` (canonical JSON), `image` (the OCI types), `error`, and the
//! whole-store passes `fsck`, `gc`, `referrers` and `archive` (`docker save` output).

mod archive;
mod blob;
mod error;
mod fsck;
mod gc;
mod image;
mod index;
mod json;
mod read;
mod referrers;

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use archive::{ArchiveStats, write_docker_archive};
pub use blob::{BlobSource, BlobWriter};
pub use error::StoreError;
use error::{Result, io_err, not_regular};
pub use fsck::{FsckProblem, FsckReport};
pub use gc::GcReport;
pub use image::*;
pub use index::StoreLock;
pub use json::{canonical_json, try_canonical_json};
use read::DocKind;
pub use referrers::{ANNOTATION_REFERRER_SUBJECT, MEDIA_OCI_EMPTY};

/// Largest manifest or index blob we read (containerd uses the same 4 MiB limit).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Largest image config blob we read.
pub const MAX_CONFIG_SIZE: u64 = 32 << 20;
/// Nesting limit for indexes that point at indexes.
const MAX_INDEX_DEPTH: usize = 4;

/// fsync a directory, so that a rename into it survives a crash.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// An OCI image layout directory. Cheap to clone; all methods take `&self` and are safe to call from
/// several threads and processes at once (see the module docs for the locking rules).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Where the blobs that `blobs/` does not hold can come back from (see [`BlobSource`]).
    source: Option<std::sync::Arc<dyn BlobSource>>,
}

impl Store {
    /// Open the layout at `root`, creating the directories, `oci-layout` and an empty `index.json` if they
    /// are missing. An existing `oci-layout` must declare `imageLayoutVersion` 1.0.x.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Store { root: root.to_path_buf(), source: None };
        for dir in [store.blobs_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let layout = root.join("oci-layout");
        match fs::read(&layout) {
            Ok(bytes) => check_oci_layout(&layout, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Identical content from every writer: no lock needed, rename is atomic.
                store.replace_file(&layout, &canonical_json(&serde_json::json!({"imageLayoutVersion": "1.0.0"})))?;
            }
            Err(e) => return Err(StoreError::Io { path: layout, source: e }),
        }
        if !store.index_path().exists() {
            let _lock = store.lock()?;
            if !store.index_path().exists() {
                store.write_index(&Index::default())?;
            }
        }
        Ok(store)
    }

    /// The same store, giving back the blobs `source` can write when `blobs/` does not hold them.
    pub fn with_source(self, source: std::sync::Arc<dyn BlobSource>) -> Store {
        Store { source: Some(source), ..self }
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(".tmp")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// Remove temp files whose writer is gone (their flock is free). Called with the store lock held.
    fn clean_tmp(&self) {
        let dir = self.tmp_dir();
        let Ok(entries) = fs::read_dir(&dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(file) = File::open(&path) else { continue };
            if file.try_lock().is_err() {
                continue; // a live writer holds it (or it vanished meanwhile)
            }
            // Remove only the file we locked, not a newer one that took its name.
            let same = match (file.metadata(), fs::symlink_metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if same && fs::remove_file(&path).is_ok() {
                tracing::debug!("removed stale temp file {}", path.display());
            }
        }
    }

    /// A new temp file in `.tmp/`, flocked for as long as it lives.
    fn temp_file(&self, prefix: &str) -> Result<(File, tempfile::TempPath)> {
        let dir = self.tmp_dir();
        for _ in 0..8 {
            let (file, path) =
                tempfile::Builder::new().prefix(prefix).tempfile_in(&dir).map_err(io_err(&dir))?.into_parts();
            file.lock().map_err(io_err(&*path))?;
            // A cleaner may have removed it between creation and our lock: then it has no name any more.
            if file.metadata().map_err(io_err(&*path))?.nlink() > 0 {
                return Ok((file, path));
            }
        }
        Err(StoreError::Io { path: dir, source: io::Error::other("temp files keep disappearing") })
    }

    /// Atomically replace `dest` with `bytes` (temp in `.tmp/`, fsync, rename, fsync dir).
    fn replace_file(&self, dest: &Path, bytes: &[u8]) -> Result<()> {
        let (mut file, temp) = self.temp_file("meta-")?;
        file.write_all(bytes).map_err(io_err(&*temp))?;
        file.set_permissions(fs::Permissions::from_mode(0o644)).map_err(io_err(&*temp))?;
        file.sync_all().map_err(io_err(&*temp))?;
        temp.persist(dest).map_err(|e| StoreError::Io { path: dest.to_path_buf(), source: e.error })?;
        drop(file);
        sync_dir(dest.parent().unwrap_or(&self.root))
    }

    /// Check every blob and every reference; see [`FsckReport`].
    pub fn fsck(&self) -> Result<FsckReport> {
        fsck::fsck(self)
    }
}

/// Check the `oci-layout` file.
fn check_oci_layout(path: &Path, bytes: &[u8]) -> Result<()> {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|source| StoreError::Json { what: path.display().to_string(), source })?;
    match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some(ver) if ver.starts_with("1.0.") => Ok(()),
        other => Err(StoreError::Layout { path: path.to_path_buf(), reason: format!("imageLayoutVersion {other:?}") }),
    }
}
