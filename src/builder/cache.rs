//! The step cache: each step's result keyed by a [`Key`] over everything that can change the files it
//! produces — its parent step, the instruction as expanded with the config state it runs in (argv, env,
//! user, workdir), and the content of the context files it reads. Instructions that only change the
//! config (LABEL, CMD, EXPOSE, …) make no layer and do not enter the chain. Entries are small JSON files written atomically; a hit is used only when
//! its layer blob is still in the store.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use layers::Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::store::Descriptor;

/// The key format, hashed first into every key. Bump it when what a step produces changes for the same
/// inputs, or when the encoding below changes: every key then changes, and old entries are never hit.
/// v3: layers are compressed with libdeflate as independent gzip members (`layers/src/gzip.rs`).
const KEY_FORMAT: &[u8] = b"kolla-oci step key v3";

/// What a cached step produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CachedStep {
    /// The layer, or `None` when the step changed no file.
    pub layer: Option<CachedLayer>,
    /// When the layer was made (seconds since the epoch): what its history entry and the image's
    /// `created` say when the step comes from the cache. Absent in entries older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
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

/// A step key: an explicit encoding of everything that can change what a step produces, hashed. Keys are
/// shared between machines (see `remote`), so they hold no host path, mtime, owner or umask, and their
/// encoding is spelled out here rather than derived from a type's `Debug` output (which changes when a
/// field is renamed). Each field is its name, a NUL, then its length-prefixed bytes; a list is its name,
/// a NUL, its item count, then each item length-prefixed. The first field is the step kind and the
/// parent key.
pub(crate) struct Key {
    hash: Sha256,
}

impl Key {
    /// A key for a step of `kind` (`from`, `scratch`, `run`, `copy`, `add`) on top of `parent`.
    pub(crate) fn new(kind: &str, parent: &Digest) -> Key {
        let mut hash = Sha256::new();
        hash.update((KEY_FORMAT.len() as u64).to_le_bytes());
        hash.update(KEY_FORMAT);
        Key { hash }.field("kind", kind).field("parent", parent.as_bytes())
    }

    /// Adds a named value.
    pub(crate) fn field(mut self, name: &str, value: impl AsRef<[u8]>) -> Key {
        self.name(name);
        self.bytes(value.as_ref());
        self
    }

    /// Adds a named list of values (order matters).
    pub(crate) fn list<T: AsRef<[u8]>>(mut self, name: &str, items: &[T]) -> Key {
        self.name(name);
        self.hash.update((items.len() as u64).to_le_bytes());
        for item in items {
            self.bytes(item.as_ref());
        }
        self
    }

    /// The key.
    pub(crate) fn finish(self) -> Digest {
        Digest::from_bytes(self.hash.finalize().into())
    }

    fn name(&mut self, name: &str) {
        self.hash.update(name.as_bytes());
        self.hash.update([0]);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.hash.update((b.len() as u64).to_le_bytes());
        self.hash.update(b);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are shared between machines and releases: these pins fail when the encoding changes by
    /// accident. Change them only together with `KEY_FORMAT`. (Both were also computed from the
    /// documented encoding with Python's hashlib.)
    #[test]
    fn keys_are_pinned() {
        let zero = Digest::from_bytes([0; 32]);
        let from = Key::new("from", &zero).field("manifest", "sha256:abc").field("platform", "linux/amd64").finish();
        let run = Key::new("run", &from)
            .list("argv", &["/bin/sh", "-c", "apt-get update"])
            .list("env", &["PATH=/usr/bin"])
            .field("user", "")
            .field("workdir", "/")
            .finish();
        assert_eq!(from.hex(), "ef10fdf1a9de8723028e23399851973edb5428b57108e20b959344fe6b49f2ef");
        assert_eq!(run.hex(), "002923133b37af27572daebc2660b8608d5f16d8058970256d648dfb5d7a54fa");
    }

    #[test]
    fn fields_do_not_run_into_each_other() {
        let zero = Digest::from_bytes([0; 32]);
        let a = Key::new("run", &zero).list("argv", &["ab", "c"]).finish();
        let b = Key::new("run", &zero).list("argv", &["a", "bc"]).finish();
        let c = Key::new("run", &zero).field("argv", "abc").finish();
        assert!(a != b && b != c && a != c);
        assert_ne!(Key::new("copy", &zero).finish(), Key::new("add", &zero).finish());
    }
}
