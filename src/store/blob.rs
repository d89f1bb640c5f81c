//! Blobs: content-addressed files under `blobs/sha256/`, written lock-free through a hashed temp file
//! that is verified, fsynced and renamed into place (see the module docs of `store`).

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use layers::{Digest, HashingWriter, LayerInfo};
use serde::Serialize;

use super::{Result, Store, StoreError, io_err, not_regular, sync_dir, try_canonical_json};

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

/// Where blobs that `blobs/` does not hold can come back from: a layer kept only as its extracted directory
/// and tar-split skeleton (`builder::footprint`). The store asks it for what it lacks, and checks what it
/// writes against the digest.
pub trait BlobSource: Send + Sync + std::fmt::Debug {
    /// The size of blob `digest`, if this source can write it.
    fn size(&self, digest: &Digest) -> Option<u64>;
    /// Write blob `digest` to `out`; returns the digests and sizes of what was written (the compressed
    /// and the uncompressed stream), which the caller compares with what it expects.
    fn write(&self, digest: &Digest, out: &mut dyn Write) -> Result<LayerInfo>;
    /// Every blob this source can write, with its size.
    fn list(&self) -> Vec<(Digest, u64)>;
}

/// Mark an existing blob as recently used, so that [`Store::gc`]'s grace period protects it while the
/// caller goes on to reference it. Best effort: a read-only store still works.
pub(super) fn touch(path: &Path) {
    if let Err(e) = File::options().write(true).open(path).and_then(|f| f.set_modified(std::time::SystemTime::now())) {
        tracing::debug!("cannot update mtime of {}: {e}", path.display());
    }
}

impl Store {
    /// Whether the blob is present (as a regular file: a symlink in its place does not count), or can be
    /// written again by the store's [`BlobSource`].
    pub fn has_blob(&self, d: &Digest) -> bool {
        fs::symlink_metadata(self.blob_path(d)).is_ok_and(|m| m.is_file()) || self.source_size(d).is_some()
    }

    /// The size of `d` if the store's [`BlobSource`] can write it.
    pub(super) fn source_size(&self, d: &Digest) -> Option<u64> {
        self.source.as_ref().and_then(|s| s.size(d))
    }

    /// Every blob the store's [`BlobSource`] can write, with its size (those may be in `blobs/` too).
    pub fn source_blobs(&self) -> Vec<(Digest, u64)> {
        self.source.as_ref().map(|s| s.list()).unwrap_or_default()
    }

    /// Write blob `d` through the store's [`BlobSource`] to `out` (nothing is stored); the digests of what
    /// was written. `fsck` checks such blobs this way.
    pub fn source_write(&self, d: &Digest, out: &mut dyn Write) -> Result<LayerInfo> {
        match &self.source {
            Some(s) => s.write(d, out),
            None => Err(StoreError::BlobNotFound { digest: *d, path: self.blob_path(d) }),
        }
    }

    /// Put blob `d` back into `blobs/` from the store's [`BlobSource`], verified against its digest.
    fn restore(&self, d: &Digest) -> Result<()> {
        let mut w = self.blob_writer()?;
        let info = self.source_write(d, &mut w)?;
        if info.digest != *d {
            return Err(StoreError::Regenerate {
                digest: *d,
                reason: format!(
                    "written again, it is {} ({} uncompressed): its layer directory or the compressor changed",
                    info.digest, info.diff_id
                ),
            });
        }
        w.commit(Some(d))?;
        tracing::info!(digest = %d, "blob written again from its extracted layer");
        Ok(())
    }

    /// Whether the blob is present, marking it as used when it is (see [`touch`]): what a writer about to
    /// reference a blob it did not write calls, so that `gc`'s grace period keeps the blob until the writer
    /// has tagged what references it.
    pub fn reuse_blob(&self, d: &Digest) -> bool {
        let present = self.has_blob(d);
        if present {
            touch(&self.blob_path(d));
        }
        present
    }

    /// Whether blob `d` is a file in `blobs/` (not only writable by the store's [`BlobSource`]).
    pub fn holds_blob_file(&self, d: &Digest) -> bool {
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
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.source_size(d).is_some() => {
                self.restore(d)?;
                return self.open_blob(d);
            }
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

    /// Size of a blob in bytes (of the name itself: a symlink is not a blob; or as the store's [`BlobSource`]
    /// would write it).
    pub fn blob_size(&self, d: &Digest) -> Result<u64> {
        let path = self.blob_path(d);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => Ok(m.len()),
            Ok(m) => Err(not_regular(path, Some(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.source_size(d).ok_or(StoreError::BlobNotFound { digest: *d, path })
            }
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
}
