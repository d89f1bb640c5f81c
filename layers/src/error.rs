//! The error type of the layer engine.

use std::io;

/// Everything that can go wrong while writing, compressing or applying a layer. Every variant
/// that concerns one tar entry or one file names it (`path`), so a bad layer can be diagnosed
/// from the message alone.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// An I/O operation on a file of the tree, or on an entry being applied, failed.
    #[error("{path}: {op} failed")]
    Io {
        /// The file or tar entry path concerned.
        path: String,
        /// What was being done (e.g. "create file", "read directory").
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A tar entry tries to reach outside the root (traversal, escaping link, whiteout of `..`).
    #[error("{path}: refused: {reason}")]
    Unsafe {
        /// The entry path as written in the layer.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// A tar entry is malformed or of a kind that cannot be applied.
    #[error("{path}: invalid entry: {reason}")]
    Invalid {
        /// The entry path as written in the layer.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The layer stream itself is unreadable: corrupt or truncated compression or tar framing.
    #[error("layer stream is corrupt or truncated (at or after entry {entry:?})")]
    Stream {
        /// The entry being read, or the last one read, if any.
        entry: Option<String>,
        /// The decoder or tar parser error.
        #[source]
        source: io::Error,
    },
    /// Writing the compressed output failed, or the compressor failed.
    #[error("writing the layer output failed")]
    Output(#[source] io::Error),
    /// An extracted layer directory does not hold what its layer does (a file differs, is missing or
    /// changed size), so the layer cannot be split off it or written again from it.
    #[error("{path}: the layer directory does not hold the layer's file: {reason}")]
    Split {
        /// The file's path in the layer.
        path: String,
        /// What differs.
        reason: String,
    },
    /// A tar-split skeleton that cannot be read.
    #[error("corrupt layer skeleton: {0}")]
    Skeleton(String),
    /// A digest string is not `sha256:` followed by 64 lowercase hex digits.
    #[error("invalid digest {0:?}: expected \"sha256:\" and 64 lowercase hex digits")]
    Digest(String),
    /// A compression level outside the range of the algorithm.
    #[error("invalid {algo} compression level {level}")]
    Level {
        /// "gzip" or "zstd".
        algo: &'static str,
        /// The level asked for.
        level: i64,
    },
}

impl LayerError {
    /// Shorthand for [`LayerError::Io`].
    pub(crate) fn io(path: impl Into<String>, op: &'static str, source: io::Error) -> LayerError {
        LayerError::Io { path: path.into(), op, source }
    }
}

/// Lossy display form of raw path bytes for error messages.
pub(crate) fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}
