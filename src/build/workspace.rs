//! The build's state directory: the OCI store plus what is derived from it and can be rebuilt from it —
//! each layer extracted once (in overlayfs form, shared by every image built on it) and the step cache.
//!
//! ```text
//! <state>/oci/                  the OCI image layout (the only thing worth backing up)
//! <state>/layers/<diff_id hex>/ one directory per layer, overlayfs lowerdir format
//! <state>/cache/<key hex>.json  step cache: which layer (if any) a step produced
//! <state>/tmp/                  run and staging dirs; removed when done
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use layers::{ApplyOptions, Digest, WhiteoutMode};

use super::BuildError;
use crate::store::{Descriptor, Store};

/// The state directory of a build (see the module docs).
#[derive(Debug, Clone)]
pub struct Workspace {
    store: Store,
    dir: PathBuf,
}

impl Workspace {
    /// Open the state directory at `dir`, creating it if needed.
    pub fn open(dir: &Path) -> Result<Workspace, BuildError> {
        let store = Store::open(&dir.join("oci"))?;
        for sub in ["layers", "cache", "tmp"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| BuildError::io(&p, "create directory", e))?;
        }
        Ok(Workspace { store, dir: dir.to_path_buf() })
    }

    /// The OCI image layout.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where the step cache keeps its entries.
    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// A fresh private directory under `<state>/tmp`, removed when the guard drops.
    pub(crate) fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir, BuildError> {
        let parent = self.dir.join("tmp");
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&parent)
            .map_err(|e| BuildError::io(&parent, "create temp dir", e))
    }

    /// The extracted directory of the layer with this diff_id (it may not exist yet).
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join("layers").join(diff_id.hex())
    }

    /// Make `dir` (a RUN's overlay upper dir or a COPY staging dir, already in lowerdir format) the
    /// extracted form of layer `diff_id`, by rename: no copy. If another build got there first, ours is
    /// dropped — both hold the same content.
    pub(crate) fn adopt_layer_dir(&self, dir: &Path, diff_id: &Digest) -> Result<PathBuf, BuildError> {
        let dest = self.layer_dir(diff_id);
        if !dest.exists() {
            match fs::rename(dir, &dest) {
                Ok(()) => return Ok(dest),
                Err(e) if dest.exists() => tracing::debug!("layer dir raced: {e}"),
                Err(e) => return Err(BuildError::io(&dest, "rename layer dir", e)),
            }
        }
        Ok(dest)
    }

    /// The extracted directory of a layer, applying its blob first if it is not there yet (a layer that
    /// was pulled, or whose directory was removed). Extraction goes to a temp dir that is renamed into
    /// place, so a killed process never leaves a half-extracted layer behind.
    pub fn ensure_layer_dir(&self, layer: &Descriptor, diff_id: &Digest) -> Result<PathBuf, BuildError> {
        let dest = self.layer_dir(diff_id);
        if dest.exists() {
            return Ok(dest);
        }
        let tmp = self.temp_dir("extract-")?;
        let root = tmp.path().join("root");
        fs::create_dir(&root).map_err(|e| BuildError::io(&root, "create directory", e))?;
        let blob = self.store.open_blob(&layer.digest)?;
        let opts = ApplyOptions { whiteouts: WhiteoutMode::Overlay, same_owner: true };
        layers::apply_layer(io::BufReader::with_capacity(1 << 20, blob), &root, &opts)
            .map_err(|e| BuildError::Layer { what: format!("extracting layer {}", layer.digest), source: e })?;
        self.adopt_layer_dir(&root, diff_id)
    }
}
