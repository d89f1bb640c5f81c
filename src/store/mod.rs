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
//! Every JSON document the store writes goes through [`canonical_json`] (sorted keys, compact), so equal
//! content has an equal digest.

mod archive;
mod fsck;
mod gc;
mod image;
mod referrers;

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use layers::{Digest, HashingWriter};
use serde::Serialize;

pub use archive::{ArchiveStats, write_docker_archive};
pub use fsck::{FsckProblem, FsckReport};
pub use gc::GcReport;
pub use image::*;
pub use referrers::{ANNOTATION_REFERRER_SUBJECT, MEDIA_OCI_EMPTY};

/// Largest manifest or index blob we read (containerd uses the same 4 MiB limit).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Largest image config blob we read.
pub const MAX_CONFIG_SIZE: u64 = 32 << 20;
/// Nesting limit for indexes that point at indexes.
const MAX_INDEX_DEPTH: usize = 4;

/// Errors of the store; each names the file or digest concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The blob is not in the store.
    #[error("blob {digest} not found ({})", path.display())]
    BlobNotFound {
        /// The missing blob.
        digest: Digest,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Written or read content does not hash to the digest it should have.
    #[error("digest mismatch: expected {expected}, content is {actual} ({size} bytes)")]
    DigestMismatch {
        /// The digest the caller or the blob's name promised.
        expected: Digest,
        /// The sha256 of the bytes actually seen.
        actual: Digest,
        /// Number of bytes seen.
        size: u64,
    },
    /// A blob's size differs from its descriptor's.
    #[error("blob {digest}: size is {actual} bytes, descriptor says {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Size in the descriptor.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// A manifest/config blob is larger than we are willing to read into memory.
    #[error("blob {digest}: {size} bytes is over the {max}-byte limit for a JSON document")]
    TooLarge {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A JSON document of the layout (`index.json`, `oci-layout`, a manifest or a config) does not parse.
    #[error("{what}: invalid JSON: {source}")]
    Json {
        /// `index.json` path, or `manifest sha256:...`.
        what: String,
        /// The parse error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// The directory is not a usable OCI image layout.
    #[error("{}: not an OCI image layout: {reason}", path.display())]
    Layout {
        /// The offending file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No `index.json` entry carries this tag.
    #[error("no image tagged {name:?} in {}", root.display())]
    TagNotFound {
        /// The tag asked for.
        name: String,
        /// The store root.
        root: PathBuf,
    },
    /// A tag that cannot be stored.
    #[error("invalid tag {name:?}: {reason}")]
    InvalidTag {
        /// The tag.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// An index / manifest list has no manifest for the wanted platform.
    #[error("index {digest}: no manifest for platform {want} (has: {available})")]
    NoPlatform {
        /// The index blob.
        digest: Digest,
        /// The platform asked for (`os/arch[/variant]`).
        want: String,
        /// The platforms listed.
        available: String,
    },
    /// A blob is not a kind of document we can use here.
    #[error("blob {digest}: unsupported {what}")]
    Unsupported {
        /// The blob.
        digest: Digest,
        /// What it is (e.g. `manifest schemaVersion 1`).
        what: String,
    },
    /// A blob's name holds a symlink, FIFO or directory, which is never read as the blob.
    #[error("{}: {what}, refused as a blob", path.display())]
    NotRegular {
        /// The blob's path.
        path: PathBuf,
        /// What is there instead.
        what: &'static str,
    },
    /// The arguments describe an inconsistent image.
    #[error("invalid image: {0}")]
    InvalidImage(String),
}

/// Shorthand used by this module.
type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attach a path to an `io::Error`.
fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { path, source }
}

/// The error for a blob name that is not a regular file.
fn not_regular(path: PathBuf, meta: Option<&fs::Metadata>) -> StoreError {
    let what = if meta.is_none_or(|m| m.file_type().is_symlink()) { "a symbolic link" } else { "not a regular file" };
    StoreError::NotRegular { path, what }
}

/// Serialize `v` with every object's keys sorted (by bytes) and no whitespace.
///
/// The keys are sorted here explicitly rather than trusting `serde_json::Map` order, which becomes
/// insertion order when any crate in the build enables serde_json's `preserve_order`.
///
/// # Panics
/// If `v` cannot be represented as JSON (a map with non-string keys); none of the store's types can fail.
pub fn canonical_json<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    try_canonical_json(v).expect("value is representable as JSON")
}

/// [`canonical_json`] that reports serialization errors instead of panicking.
pub fn try_canonical_json<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(v)?;
    let mut out = Vec::with_capacity(256);
    write_canonical(&value, &mut out)?;
    Ok(out)
}

fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k)?;
                out.push(b':');
                write_canonical(val, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

/// fsync a directory, so that a rename into it survives a crash.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Mark an existing blob as recently used, so that [`Store::gc`]'s grace period protects it while the
/// caller goes on to reference it. Best effort: a read-only store still works.
fn touch(path: &Path) {
    if let Err(e) = File::options().write(true).open(path).and_then(|f| f.set_modified(std::time::SystemTime::now())) {
        tracing::debug!("cannot update mtime of {}: {e}", path.display());
    }
}

/// Tag names are stored verbatim as the ref.name annotation; refuse only what no tool could match.
fn check_tag(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > 512 {
        "longer than 512 bytes"
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidTag { name: name.to_owned(), reason })
}

/// An OCI image layout directory. Cheap to clone; all methods take `&self` and are safe to call from
/// several threads and processes at once (see the module docs for the locking rules).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// The exclusive store lock; released when dropped. See [`Store::lock`].
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// A blob being written: a temp file inside the store, hashed as it is written. [`BlobWriter::commit`]
/// makes it visible under its digest; dropping it without commit removes the temp file.
pub struct BlobWriter {
    out: HashingWriter<BufWriter<File>>,
    temp: tempfile::TempPath,
    blobs: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter {
    /// Verify what was written (against `expected` when given), fsync it, rename it to
    /// `blobs/sha256/<hex>` and fsync the directory. On a digest mismatch nothing becomes visible and the
    /// temp file is removed. If the blob already exists it is left as it is (and the temp file removed).
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let BlobWriter { out, temp, blobs } = self;
        let (buf, digest, size) = out.finish();
        let file = buf.into_inner().map_err(|e| StoreError::Io { path: temp.to_path_buf(), source: e.into_error() })?;
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(StoreError::DigestMismatch { expected: *expected, actual: digest, size });
        }
        let dest = blobs.join(digest.hex());
        // Anything but a regular file under the name (a planted symlink) is replaced by the rename.
        if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_file()) {
            touch(&dest);
            return Ok((digest, size));
        }
        file.set_permissions(fs::Permissions::from_mode(0o644)).map_err(io_err(&*temp))?;
        file.sync_all().map_err(io_err(&*temp))?;
        temp.persist(&dest).map_err(|e| StoreError::Io { path: dest.clone(), source: e.error })?;
        drop(file); // releases the temp-file flock only once the name is gone from .tmp/
        sync_dir(&blobs)?;
        tracing::debug!(%digest, size, "blob committed");
        Ok((digest, size))
    }
}

impl Store {
    /// Open the layout at `root`, creating the directories, `oci-layout` and an empty `index.json` if they
    /// are missing. An existing `oci-layout` must declare `imageLayoutVersion` 1.0.x.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Store { root: root.to_path_buf() };
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

    /// Take the exclusive store lock (`flock` on `<root>/.lock`), waiting for it. Needed for every
    /// `index.json` read-modify-write; the store's own methods take it themselves, so callers only need it
    /// to make several updates atomic together. Not re-entrant: do not call `set_tag` while holding it.
    pub fn lock(&self) -> Result<StoreLock> {
        let file = self.lock_file()?;
        file.lock().map_err(io_err(self.root.join(".lock")))?;
        self.clean_tmp();
        Ok(StoreLock { _file: file })
    }

    /// Take the store lock if nobody holds it; `Ok(None)` if another holder has it.
    pub fn try_lock(&self) -> Result<Option<StoreLock>> {
        let file = self.lock_file()?;
        match file.try_lock() {
            Ok(()) => {
                self.clean_tmp();
                Ok(Some(StoreLock { _file: file }))
            }
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(StoreError::Io { path: self.root.join(".lock"), source: e }),
        }
    }

    fn lock_file(&self) -> Result<File> {
        let path = self.root.join(".lock");
        File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err(path))
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

    /// Whether the blob is present (as a regular file: a symlink in its place does not count).
    pub fn has_blob(&self, d: &Digest) -> bool {
        fs::symlink_metadata(self.blob_path(d)).is_ok_and(|m| m.is_file())
    }

    /// Where the blob lives (whether or not it exists).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.hex())
    }

    /// Open a blob for reading: never through a symlink, and only a regular file (a link or FIFO planted
    /// in `blobs/` must not make us read, or push, anything from elsewhere).
    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.blob_path(d);
        // O_NONBLOCK: opening a FIFO must not hang; it changes nothing for a regular file.
        let opened = File::options().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&path);
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::BlobNotFound { digest: *d, path }),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(not_regular(path, None)),
            Err(e) => return Err(StoreError::Io { path, source: e }),
        };
        match file.metadata() {
            Ok(m) if m.is_file() => Ok(file),
            Ok(m) => Err(not_regular(path, Some(&m))),
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// Size of a blob in bytes (of the name itself: a symlink is not a blob).
    pub fn blob_size(&self, d: &Digest) -> Result<u64> {
        let path = self.blob_path(d);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => Ok(m.len()),
            Ok(m) => Err(not_regular(path, Some(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::BlobNotFound { digest: *d, path }),
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// Start writing a blob of unknown digest (e.g. a layer being compressed). No lock needed.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let (file, temp) = self.temp_file("blob-")?;
        Ok(BlobWriter {
            out: HashingWriter::new(BufWriter::with_capacity(256 << 10, file)),
            temp,
            blobs: self.blobs_dir(),
        })
    }

    /// Copy `r` into a blob. When `expected` is given and already present, `r` is not read at all.
    pub fn put_blob(&self, mut r: impl Read, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        if let Some(d) = expected
            && let Ok(size) = self.blob_size(d)
        {
            touch(&self.blob_path(d));
            return Ok((*d, size));
        }
        let mut w = self.blob_writer()?;
        io::copy(&mut r, &mut w).map_err(|e| StoreError::Io { path: w.temp.to_path_buf(), source: e })?;
        w.commit(expected)
    }

    /// Store `v` as a canonical-JSON blob.
    pub fn put_json<T: Serialize + ?Sized>(&self, v: &T) -> Result<(Digest, u64)> {
        let bytes =
            try_canonical_json(v).map_err(|source| StoreError::Json { what: "value to store".into(), source })?;
        self.put_bytes(&bytes)
    }

    /// Store a small in-memory blob (a manifest or config fetched verbatim).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(Digest, u64)> {
        let digest = Digest::of_bytes(bytes);
        if self.has_blob(&digest) {
            touch(&self.blob_path(&digest));
            return Ok((digest, bytes.len() as u64));
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes).map_err(|e| StoreError::Io { path: w.temp.to_path_buf(), source: e })?;
        w.commit(Some(&digest))
    }

    /// Read a whole small blob, refusing blobs over `max` bytes, and verify its sha256.
    pub fn read_blob_bytes(&self, d: &Digest, max: u64) -> Result<Vec<u8>> {
        let file = self.open_blob(d)?;
        let path = self.blob_path(d);
        let size = file.metadata().map_err(io_err(&path))?.len();
        if size > max {
            return Err(StoreError::TooLarge { digest: *d, size, max });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(max + 1).read_to_end(&mut bytes).map_err(io_err(&path))?;
        let actual = Digest::of_bytes(&bytes);
        if actual != *d {
            return Err(StoreError::DigestMismatch { expected: *d, actual, size: bytes.len() as u64 });
        }
        Ok(bytes)
    }

    /// The layout's `index.json`.
    pub fn index(&self) -> Result<Index> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|source| StoreError::Json { what: path.display().to_string(), source })?;
        if index.schema_version != 2 {
            return Err(StoreError::Layout { path, reason: format!("schemaVersion {}", index.schema_version) });
        }
        Ok(index)
    }

    /// Replace `index.json`; the caller holds the lock.
    fn write_index(&self, index: &Index) -> Result<()> {
        self.replace_file(&self.index_path(), &canonical_json(index))
    }

    /// Point tag `name` at `manifest` (a manifest or index descriptor): the `index.json` entry of that name
    /// is replaced, or appended. Takes the store lock.
    pub fn set_tag(&self, name: &str, manifest: &Descriptor) -> Result<()> {
        check_tag(name)?;
        let mut entry = manifest.clone();
        entry.annotations.insert(ANNOTATION_REF_NAME.to_owned(), name.to_owned());
        let _lock = self.lock()?;
        let mut index = self.index()?;
        // Keep the tag's place in the index; drop any duplicate entries of the same name.
        let at = index.manifests.iter().position(|d| d.ref_name() == Some(name));
        index.manifests.retain(|d| d.ref_name() != Some(name));
        index.manifests.insert(at.unwrap_or(index.manifests.len()), entry);
        self.write_index(&index)?;
        tracing::debug!(name, digest = %manifest.digest, "tagged");
        Ok(())
    }

    /// Remove tag `name`; returns whether it existed. The blobs stay (see [`Store::gc`]). Takes the lock.
    pub fn untag(&self, name: &str) -> Result<bool> {
        let _lock = self.lock()?;
        let mut index = self.index()?;
        let before = index.manifests.len();
        index.manifests.retain(|d| d.ref_name() != Some(name));
        if index.manifests.len() == before {
            return Ok(false);
        }
        self.write_index(&index)?;
        Ok(true)
    }

    /// The descriptor tagged `name`, if any.
    pub fn resolve(&self, name: &str) -> Result<Option<Descriptor>> {
        Ok(self.index()?.manifests.into_iter().find(|d| d.ref_name() == Some(name)))
    }

    /// Every tag with its descriptor, sorted by tag.
    pub fn tags(&self) -> Result<Vec<(String, Descriptor)>> {
        let mut tags: Vec<(String, Descriptor)> = self
            .index()?
            .manifests
            .into_iter()
            .filter_map(|d| d.ref_name().map(str::to_owned).map(|n| (n, d)))
            .collect();
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(tags)
    }

    /// Read a whole blob of at most `max` bytes, checking it against the descriptor's digest and size.
    fn read_described(&self, desc: &Descriptor, max: u64) -> Result<Vec<u8>> {
        let bytes = self.read_blob_bytes(&desc.digest, max)?;
        if bytes.len() as u64 != desc.size {
            return Err(StoreError::SizeMismatch {
                digest: desc.digest,
                expected: desc.size,
                actual: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// Read and parse a JSON blob of at most `max` bytes, checking it against the descriptor's size.
    fn read_json(&self, desc: &Descriptor, max: u64) -> Result<serde_json::Value> {
        let bytes = self.read_described(desc, max)?;
        serde_json::from_slice(&bytes)
            .map_err(|source| StoreError::Json { what: format!("blob {}", desc.digest), source })
    }

    /// Parse a manifest blob (OCI or Docker v2 schema 2).
    pub fn read_manifest(&self, desc: &Descriptor) -> Result<Manifest> {
        let value = self.read_json(desc, MAX_MANIFEST_SIZE)?;
        parse_manifest(desc.digest, value)
    }

    /// Parse an index / manifest-list blob.
    pub fn read_index(&self, desc: &Descriptor) -> Result<Index> {
        let value = self.read_json(desc, MAX_MANIFEST_SIZE)?;
        let index: Index = serde_json::from_value(value)
            .map_err(|source| StoreError::Json { what: format!("index {}", desc.digest), source })?;
        if index.schema_version != 2 {
            return Err(StoreError::Unsupported {
                digest: desc.digest,
                what: format!("index schemaVersion {}", index.schema_version),
            });
        }
        Ok(index)
    }

    /// Parse an image config blob.
    pub fn read_config(&self, desc: &Descriptor) -> Result<ImageConfig> {
        let value = self.read_json(desc, MAX_CONFIG_SIZE)?;
        serde_json::from_value(value)
            .map_err(|source| StoreError::Json { what: format!("config {}", desc.digest), source })
    }

    /// The image tagged `name`; a tag that points at an index yields the manifest for the host platform.
    pub fn load_image(&self, name: &str) -> Result<Image> {
        let desc = self
            .resolve(name)?
            .ok_or_else(|| StoreError::TagNotFound { name: name.to_owned(), root: self.root.clone() })?;
        self.load_image_from(&desc, &Platform::host())
    }

    /// The image `desc` designates (a manifest, or an index from which the manifest for `platform` is chosen).
    pub fn load_image_from(&self, desc: &Descriptor, platform: &Platform) -> Result<Image> {
        let manifest_desc = self.select_manifest(desc, platform, 0)?;
        let manifest = self.read_manifest(&manifest_desc)?;
        let config = self.read_config(&manifest.config)?;
        Ok(Image { manifest_digest: manifest_desc.digest, manifest, config })
    }

    /// Follow indexes down to the manifest for `platform`.
    fn select_manifest(&self, desc: &Descriptor, platform: &Platform, depth: usize) -> Result<Descriptor> {
        if self.doc_kind(desc)? != DocKind::Index {
            // A manifest, or something the manifest parser will refuse with a precise error.
            return Ok(desc.clone());
        }
        if depth >= MAX_INDEX_DEPTH {
            return Err(StoreError::Unsupported { digest: desc.digest, what: "index nesting deeper than 4".into() });
        }
        let index = self.read_index(desc)?;
        let candidates: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|d| !d.annotations.contains_key("vnd.docker.reference.type")) // buildkit attestations
            .collect();
        let exact = candidates.iter().find(|d| d.platform.as_ref().is_some_and(|p| p == platform));
        let loose = || candidates.iter().find(|d| d.platform.as_ref().is_some_and(|p| p.matches(platform)));
        let single = || match candidates.as_slice() {
            [only] if only.platform.is_none() => Some(only),
            _ => None,
        };
        match exact.or_else(loose).or_else(single) {
            Some(chosen) => self.select_manifest(chosen, platform, depth + 1),
            None => Err(StoreError::NoPlatform {
                digest: desc.digest,
                want: platform.to_string(),
                available: candidates
                    .iter()
                    .map(|d| d.platform.as_ref().map_or_else(|| "unspecified".to_owned(), Platform::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// What kind of document `desc` designates: by media type, else (unknown or empty label, as some
    /// registries serve) by sniffing the JSON for `manifests` or `config` + `layers`.
    fn doc_kind(&self, desc: &Descriptor) -> Result<DocKind> {
        if is_manifest(&desc.media_type) {
            return Ok(DocKind::Manifest);
        }
        if is_index(&desc.media_type) {
            return Ok(DocKind::Index);
        }
        if !desc.media_type.is_empty() && !desc.media_type.ends_with("json") {
            return Ok(DocKind::Other);
        }
        let value = self.read_json(desc, MAX_MANIFEST_SIZE)?;
        Ok(if value.get("manifests").is_some() {
            DocKind::Index
        } else if value.get("config").is_some() && value.get("layers").is_some() {
            DocKind::Manifest
        } else {
            DocKind::Other
        })
    }

    /// Write `config` and an OCI manifest over it and `layers` (which must already be in the store, one per
    /// `config.rootfs.diff_ids` entry). Returns the manifest descriptor with the config's platform; tag it
    /// with [`Store::set_tag`]. Docker layer media types are relabelled to their OCI twins (same bytes).
    pub fn write_image(&self, config: &ImageConfig, layers: &[Descriptor]) -> Result<Descriptor> {
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(StoreError::InvalidImage(format!(
                "{} layers but {} rootfs.diff_ids",
                layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let mut oci_layers = Vec::with_capacity(layers.len());
        for layer in layers {
            let size = self.blob_size(&layer.digest)?;
            if size != layer.size {
                return Err(StoreError::SizeMismatch { digest: layer.digest, expected: layer.size, actual: size });
            }
            let mut l = layer.clone();
            l.media_type = oci_layer_media_type(&l.media_type).to_owned();
            l.platform = None;
            oci_layers.push(l);
        }
        let (config_digest, config_size) = self.put_json(config)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_MANIFEST.to_owned()),
            config: Descriptor::new(MEDIA_OCI_CONFIG, config_digest, config_size),
            layers: oci_layers,
            annotations: Default::default(),
            extra: Default::default(),
        };
        let (digest, size) = self.put_json(&manifest)?;
        let mut desc = Descriptor::new(MEDIA_OCI_MANIFEST, digest, size);
        if !config.architecture.is_empty() && !config.os.is_empty() {
            desc.platform = Some(config.platform());
        }
        Ok(desc)
    }

    /// Check every blob and every reference; see [`FsckReport`].
    pub fn fsck(&self) -> Result<FsckReport> {
        fsck::fsck(self)
    }
}

/// The kinds of blob a descriptor from `index.json` or an index may designate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DocKind {
    Manifest,
    Index,
    Other,
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

/// Interpret a parsed manifest document, rejecting Docker schema 1 and indexes.
fn parse_manifest(digest: Digest, value: serde_json::Value) -> Result<Manifest> {
    let version = value.get("schemaVersion").and_then(|v| v.as_u64());
    if version != Some(2) {
        return Err(StoreError::Unsupported { digest, what: format!("manifest schemaVersion {version:?}") });
    }
    if value.get("manifests").is_some() {
        return Err(StoreError::Unsupported { digest, what: "index where a manifest was expected".into() });
    }
    serde_json::from_value(value).map_err(|source| StoreError::Json { what: format!("manifest {digest}"), source })
}
