//! The step cache: each step's result keyed by a chain digest over everything that can change it — the
//! base image, every earlier instruction as expanded, the instruction itself, and the content of the
//! context files it reads. Entries are small JSON files written atomically; a hit is used only when
//! its layer blob is still in the store.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use layers::Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::store::Descriptor;

/// Version of the key derivation: bump it when what a step produces changes for the same inputs.
const KEY_VERSION: &[u8] = b"kolla-oci step cache v1\0";

/// What a cached step produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CachedStep {
    /// The layer, or `None` when the step changed no file.
    pub layer: Option<CachedLayer>,
}

/// A layer a step produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CachedLayer {
    /// The compressed blob in the store.
    pub descriptor: Descriptor,
    /// Its uncompressed digest (names the extracted layer dir).
    pub diff_id: Digest,
}

/// The cache directory, or a disabled cache (`--nocache`) that never hits but still records.
pub(crate) struct StepCache {
    dir: PathBuf,
    read: bool,
}

/// The next link of a cache chain: `parent` plus the parts that describe one step.
pub(crate) fn chain(parent: &Digest, parts: &[&[u8]]) -> Digest {
    let mut h = Sha256::new();
    h.update(KEY_VERSION);
    h.update(parent.to_string().as_bytes());
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    Digest::from_bytes(h.finalize().into())
}

impl StepCache {
    /// A cache in `dir`; with `read == false` lookups always miss (results are still recorded).
    pub fn new(dir: PathBuf, read: bool) -> StepCache {
        StepCache { dir, read }
    }

    /// The recorded result of step `key`, if any.
    pub fn get(&self, key: &Digest) -> Option<CachedStep> {
        if !self.read {
            return None;
        }
        let bytes = fs::read(self.dir.join(format!("{}.json", key.hex()))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Record the result of step `key` (temp file + fsync + rename: never half-written). The temp file is
    /// locked while written, so that a killed writer's leftover can be told from a live one
    /// (see [`super::Workspace::open`]).
    pub fn put(&self, key: &Digest, step: &CachedStep) -> std::io::Result<()> {
        let mut tmp = self.locked_temp_file()?;
        tmp.write_all(&crate::store::canonical_json(step))?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.dir.join(format!("{}.json", key.hex())))?;
        Ok(())
    }

    fn locked_temp_file(&self) -> std::io::Result<tempfile::NamedTempFile> {
        for _ in 0..8 {
            let tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            tmp.as_file().lock()?;
            // A cleaner may have removed it between creation and our lock: then it has no link any more.
            if std::os::unix::fs::MetadataExt::nlink(&tmp.as_file().metadata()?) > 0 {
                return Ok(tmp);
            }
        }
        Err(std::io::Error::other("temp files keep disappearing"))
    }
}
