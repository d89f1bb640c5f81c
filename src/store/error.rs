//! The store's error type, and the shorthands that attach a path to an I/O error.

use std::fs;
use std::io;
use std::path::PathBuf;

use layers::Digest;

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
    /// A blob kept only as its extracted layer (see [`super::BlobSource`]) could not be written again.
    #[error("blob {digest} (kept as its extracted layer): {reason}")]
    Regenerate {
        /// The blob.
        digest: Digest,
        /// Why it could not be written again.
        reason: String,
    },
    /// The arguments describe an inconsistent image.
    #[error("invalid image: {0}")]
    InvalidImage(String),
}

/// Shorthand used by this module.
pub(super) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attach a path to an `io::Error`.
pub(super) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { path, source }
}

/// The error for a blob name that is not a regular file.
pub(super) fn not_regular(path: PathBuf, meta: Option<&fs::Metadata>) -> StoreError {
    let what = if meta.is_none_or(|m| m.file_type().is_symlink()) { "a symbolic link" } else { "not a regular file" };
    StoreError::NotRegular { path, what }
}
