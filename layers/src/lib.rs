//! Deterministic OCI layer engine.
//!
//! * [`write_layer`]: directory tree (or overlayfs upper dir) → reproducible tar → parallel
//!   gzip/zstd, with the diff_id and the blob digest computed in the same pass.
//! * [`LayerBuilder`]: the same layer written entry by entry, for a caller that creates the tree
//!   and can feed each file to the layer as it writes it (one read per file instead of two).
//! * [`compress_tar`]: the same for a tar stream that already exists.
//! * [`regenerate`] / [`split_layer`]: a layer kept once on disk, as its extracted directory and a
//!   tar-split skeleton, written again bit for bit when its blob is needed.
//! * [`apply_layer`]: unpacks a layer onto a root directory, confined to it (every path is
//!   resolved with `openat2(RESOLVE_IN_ROOT)`), handling OCI whiteouts.
//!
//! Linux only (openat2 needs Linux 5.6, unprivileged whiteout devices Linux 5.8).

mod apply;
mod compress;
mod digest;
mod error;
mod gzip;
mod split;
mod tree;

pub use apply::{
    ApplyOptions, ApplyStats, METADATA_BUDGET, WhiteoutMode, apply_layer, decompress, is_tar, uncompressed_digest,
};
pub use compress::{Compression, DEFAULT_GZIP_LEVEL, LayerInfo, compress_tar};
pub use digest::{Digest, HashingReader, HashingWriter, digest_reader};
pub use error::LayerError;
pub use split::{SkeletonWriter, Split, compress_tar_split, may_regenerate, regenerate, split_layer};
pub use tree::{Entry, EntryKind, LayerBuilder, TreeOptions, write_layer, write_layer_split};
