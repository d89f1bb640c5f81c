//! The step cache: each step's result keyed by a [`Key`] over everything that can change the layer it
//! produces, so that a hit is always the layer a fresh build would make. Instructions that only change
//! the config (LABEL, CMD, EXPOSE, …) make no layer and do not enter the chain. Entries are small JSON
//! files written atomically; a hit is used only when its layer blob is still in the store.
//!
//! **Every input that shapes a layer's bytes**, and where the key takes it (each has a test below that
//! flips it and sees the key change):
//!
//! | input | key |
//! |---|---|
//! | how layers are written: tar encoding | [`KEY_FORMAT`] (bumped when it changes) |
//! | the compressor and its version (`Compression::engine`: libdeflate 1.26, zstd 1.5.x) | [`chain_start`] |
//! | the base image's layers (diff_ids), or none (`FROM scratch`); the platform | [`chain_start`] |
//! | `--compression` algorithm and level (the blob's bytes) | [`chain_start`] |
//! | `SOURCE_DATE_EPOCH` (clamps mtimes) | [`chain_start`] |
//! | every earlier step of the image | each key's `parent` |
//! | RUN: argv after SHELL, heredoc script, env (config Env + ARGs in effect), user, workdir | [`RunInputs`] |
//! | COPY/ADD: source patterns; their names, types, **full modes**, sizes, bytes, link targets (`BuildContext::digest`, without what `.dockerignore` leaves out); heredocs; absolute dest; `--chown`; `--chmod` | [`CopyInputs`] |
//! | `--squash`: the merge of an image's own layers | [`squash_key`] of its last step's key |
//!
//! Left out, as they do not change the layer: the network mode, host paths, the mtimes and owners of
//! context files (COPY stamps its own), undeclared proxy build args, the machine and its umask (RUN
//! runs with umask 022). A context file's mode is in whole, as COPY keeps it: two checkouts made under
//! different umasks (0644 vs 0666 files) share no COPY step — the price of never handing back a
//! world-writable file for a 0644 one.

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
/// v4: compression and `SOURCE_DATE_EPOCH` in [`chain_start`]; full modes of context files.
/// v5: the compressor's name and version in [`chain_start`] (libdeflate 1.14 → 1.26 changed some members'
/// bytes at the same level; a newer compressor now changes the keys by itself).
const KEY_FORMAT: &[u8] = b"kolla-oci step key v5";

/// The build-wide inputs that shape every layer of a chain.
pub(crate) struct LayerShaping {
    /// `--compression`.
    pub compression: layers::Compression,
    /// `SOURCE_DATE_EPOCH`, if set.
    pub source_date_epoch: Option<i64>,
}

/// The key of a chain's first step: `FROM` a base with these layers, or `FROM scratch` (`None`).
pub(crate) fn chain_start(base_diff_ids: Option<&[String]>, platform: &str, shaping: &LayerShaping) -> Digest {
    let zero = Digest::from_bytes([0; 32]);
    let key = match base_diff_ids {
        Some(diff_ids) => Key::new("from", &zero).list("diff_ids", diff_ids),
        None => Key::new("scratch", &zero),
    };
    let epoch = shaping.source_date_epoch.map(|e| e.to_string()).unwrap_or_default();
    key.field("platform", platform)
        .field("compression", shaping.compression.to_string())
        .field("compressor", shaping.compression.engine())
        .field("source-date-epoch", epoch)
        .finish()
}

/// The key of `--squash`'s merged layer: the image's own layers are those of the chain ending at
/// `last` (the key of its last step), merged.
pub(crate) fn squash_key(last: &Digest) -> Digest {
    Key::new("squash", last).finish()
}

/// What a RUN's layer depends on besides its parent.
pub(crate) struct RunInputs<'a> {
    /// The command as executed (after SHELL).
    pub argv: &'a [String],
    /// A heredoc script's file name and content, or nothing.
    pub script_file: &'a [&'a str],
    /// The environment the command sees.
    pub env: &'a [String],
    /// `USER`.
    pub user: &'a str,
    /// `WORKDIR`.
    pub workdir: &'a str,
}

impl RunInputs<'_> {
    /// The step key on top of `parent`.
    pub(crate) fn key(&self, parent: &Digest) -> Digest {
        Key::new("run", parent)
            .list("argv", self.argv)
            .list("script-file", self.script_file)
            .list("env", self.env)
            .field("user", self.user)
            .field("workdir", self.workdir)
            .finish()
    }
}

/// What a COPY's or ADD's layer depends on besides its parent.
pub(crate) struct CopyInputs<'a> {
    /// ADD rather than COPY.
    pub add: bool,
    /// The source patterns as written.
    pub sources: &'a [String],
    /// `BuildContext::digest` of what they matched.
    pub content: &'a Digest,
    /// Heredoc names and contents.
    pub heredocs: &'a [&'a str],
    /// The absolute destination.
    pub dest: &'a str,
    /// `--chown`, as written.
    pub chown: &'a str,
    /// `--chmod`, as written.
    pub chmod: &'a str,
}

impl CopyInputs<'_> {
    /// The step key on top of `parent`.
    pub(crate) fn key(&self, parent: &Digest) -> Digest {
        Key::new(if self.add { "add" } else { "copy" }, parent)
            .list("sources", self.sources)
            .field("content", self.content.as_bytes())
            .list("heredocs", self.heredocs)
            .field("dest", self.dest)
            .field("chown", self.chown)
            .field("chmod", self.chmod)
            .finish()
    }
}

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
struct Key {
    hash: Sha256,
}

impl Key {
    /// A key for a step of `kind` (`from`, `scratch`, `run`, `copy`, `add`) on top of `parent`.
    fn new(kind: &str, parent: &Digest) -> Key {
        let mut hash = Sha256::new();
        hash.update((KEY_FORMAT.len() as u64).to_le_bytes());
        hash.update(KEY_FORMAT);
        Key { hash }.field("kind", kind).field("parent", parent.as_bytes())
    }

    /// Adds a named value.
    fn field(mut self, name: &str, value: impl AsRef<[u8]>) -> Key {
        self.name(name);
        self.bytes(value.as_ref());
        self
    }

    /// Adds a named list of values (order matters).
    fn list<T: AsRef<[u8]>>(mut self, name: &str, items: &[T]) -> Key {
        self.name(name);
        self.hash.update((items.len() as u64).to_le_bytes());
        for item in items {
            self.bytes(item.as_ref());
        }
        self
    }

    /// The key.
    fn finish(self) -> Digest {
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
        let shaping = LayerShaping { compression: layers::Compression::Gzip { level: 4 }, source_date_epoch: None };
        let from = chain_start(Some(&["sha256:abc".to_owned()]), "linux/amd64", &shaping);
        let run = RunInputs {
            argv: &["/bin/sh".into(), "-c".into(), "apt-get update".into()],
            script_file: &[],
            env: &["PATH=/usr/bin".into()],
            user: "",
            workdir: "/",
        }
        .key(&from);
        assert_eq!(from.hex(), FROM_PIN);
        assert_eq!(run.hex(), RUN_PIN);
    }

    const FROM_PIN: &str = "1f429188c62c0939d09bab64090c78af9f1fd97a7ffac0ee36247fd4540ab123";
    const RUN_PIN: &str = "741fbaa55d5c2a6eef584578e72a9616e81853dbc83dbd6d03679e639bfb12d9";

    #[test]
    fn fields_do_not_run_into_each_other() {
        let zero = Digest::from_bytes([0; 32]);
        let a = Key::new("run", &zero).list("argv", &["ab", "c"]).finish();
        let b = Key::new("run", &zero).list("argv", &["a", "bc"]).finish();
        let c = Key::new("run", &zero).field("argv", "abc").finish();
        assert!(a != b && b != c && a != c);
        assert_ne!(Key::new("copy", &zero).finish(), Key::new("add", &zero).finish());
    }

    /// Each layer-shaping input of the module doc's table, flipped alone, changes the key.
    #[test]
    fn every_layer_shaping_input_is_in_the_key() {
        use layers::Compression::{Gzip, None as Plain, Zstd};
        let gzip = LayerShaping { compression: Gzip { level: 4 }, source_date_epoch: None };
        let ids = ["sha256:a".to_owned()];
        let base = chain_start(Some(&ids), "linux/amd64", &gzip);
        let shaped = |compression, source_date_epoch| {
            chain_start(Some(&ids), "linux/amd64", &LayerShaping { compression, source_date_epoch })
        };
        let starts = [
            base,
            chain_start(None, "linux/amd64", &gzip),
            chain_start(Some(&["sha256:b".to_owned()]), "linux/amd64", &gzip),
            chain_start(Some(&ids), "linux/arm64", &gzip),
            shaped(Gzip { level: 6 }, None),
            shaped(Zstd { level: 4 }, None),
            shaped(Plain, None),
            shaped(Gzip { level: 4 }, Some(1_700_000_000)),
            shaped(Gzip { level: 4 }, Some(0)),
        ];
        assert_all_differ(&starts);

        let (argv, env) = (["sh".to_owned(), "-c".into(), "true".into()], ["A=1".to_owned()]);
        let run = RunInputs { argv: &argv, script_file: &[], env: &env, user: "", workdir: "/" };
        let runs = [
            run.key(&base),
            run.key(&starts[1]),
            RunInputs { argv: &["sh".into(), "-c".into(), "false".into()], ..run }.key(&base),
            RunInputs { script_file: &["f", "echo"], ..run }.key(&base),
            RunInputs { env: &["A=2".into()], ..run }.key(&base),
            RunInputs { user: "kolla", ..run }.key(&base),
            RunInputs { workdir: "/tmp", ..run }.key(&base),
        ];
        assert_all_differ(&runs);

        let (content, other) = (Digest::from_bytes([1; 32]), Digest::from_bytes([2; 32]));
        let srcs = ["a".to_owned()];
        let copy = CopyInputs {
            add: false,
            sources: &srcs,
            content: &content,
            heredocs: &[],
            dest: "/",
            chown: "",
            chmod: "",
        };
        let copies = [
            copy.key(&base),
            copy.key(&starts[1]),
            CopyInputs { add: true, ..copy }.key(&base),
            CopyInputs { sources: &["b".into()], ..copy }.key(&base),
            CopyInputs { content: &other, ..copy }.key(&base),
            CopyInputs { heredocs: &["x", "y"], ..copy }.key(&base),
            CopyInputs { dest: "/app/", ..copy }.key(&base),
            CopyInputs { chown: "kolla", ..copy }.key(&base),
            CopyInputs { chmod: "0755", ..copy }.key(&base),
        ];
        assert_all_differ(&copies);
        assert_all_differ(&[squash_key(&base), squash_key(&starts[1]), base]);
    }

    fn assert_all_differ(keys: &[Digest]) {
        for (i, a) in keys.iter().enumerate() {
            for (j, b) in keys.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "keys {i} and {j} are equal");
            }
        }
    }
}
