//! Consistency check of the layout.
//!
//! fsck (1) lists `blobs/sha256/`, flagging anything that is not a `<64 hex>` regular file; (2) walks every
//! descriptor reachable from `index.json` (indexes → manifests → config + layers), checking presence and
//! size, parsing the JSON documents (each read verified against its digest) and comparing each manifest's
//! layer count with its config's `rootfs.diff_ids`; (3) reads every blob once, in parallel: its sha256 is
//! compared with its name and, for a layer some config claims a diff_id for, the same read is decompressed
//! and its sha256 compared with every claim — extracted layers are shared by diff_id, so a lying config
//! would otherwise name another image's layer.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;

use layers::Digest;
use rayon::prelude::*;

use super::{Descriptor, DocKind, Index, Store, StoreError, is_nondistributable};

/// One inconsistency found by [`Store::fsck`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsckProblem {
    /// `oci-layout` or `index.json` is missing or unreadable.
    #[error("{}: {reason}", path.display())]
    BadLayout {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file under `blobs/` that is not a sha256-named blob (e.g. a leaked temp file).
    #[error("{}: not a blob (expected blobs/sha256/<64 lowercase hex>, a regular file)", path.display())]
    StrayFile {
        /// The file.
        path: PathBuf,
    },
    /// A blob whose content does not hash to its name.
    #[error("blob {digest}: content hashes to {actual}")]
    CorruptBlob {
        /// The name of the blob.
        digest: Digest,
        /// The sha256 of its content.
        actual: Digest,
    },
    /// A blob that could not be read.
    #[error("blob {digest}: {reason}")]
    Unreadable {
        /// The blob.
        digest: Digest,
        /// The I/O error.
        reason: String,
    },
    /// A referenced blob that is not in the store.
    #[error("blob {digest} ({media_type}) referenced by {referenced_by} is missing")]
    MissingBlob {
        /// The blob.
        digest: Digest,
        /// Its media type in the referencing descriptor.
        media_type: String,
        /// Who references it (`index.json tag ...`, `manifest sha256:...`).
        referenced_by: String,
    },
    /// A referenced blob whose size differs from the descriptor's.
    #[error("blob {digest} referenced by {referenced_by}: size {actual}, descriptor says {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Size in the descriptor.
        expected: u64,
        /// Size on disk.
        actual: u64,
        /// Who references it.
        referenced_by: String,
    },
    /// A reachable manifest, index or config that does not parse.
    #[error("blob {digest} referenced by {referenced_by}: {reason}")]
    BadDocument {
        /// The blob.
        digest: Digest,
        /// Who references it.
        referenced_by: String,
        /// The parse error.
        reason: String,
    },
    /// A layer blob that does not decompress to the diff_id an image config claims for it.
    #[error("layer {layer} of manifest {manifest}: uncompressed content is {actual}, config claims diff_id {claimed}")]
    DiffIdMismatch {
        /// The layer blob.
        layer: Digest,
        /// The manifest pairing it with the claim.
        manifest: Digest,
        /// The diff_id its config claims.
        claimed: Digest,
        /// What it decompresses to.
        actual: Digest,
    },
    /// A manifest whose layer count differs from its config's `rootfs.diff_ids`.
    #[error("manifest {manifest}: {layers} layers but config has {diff_ids} diff_ids")]
    LayerCount {
        /// The manifest.
        manifest: Digest,
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
}

/// What [`Store::fsck`] found. `problems` are inconsistencies; the rest is informational.
#[derive(Debug, Default, Clone)]
pub struct FsckReport {
    /// Blob files hashed.
    pub blobs: u64,
    /// Bytes hashed.
    pub bytes: u64,
    /// Tags in `index.json`.
    pub tags: usize,
    /// Distinct blobs reachable from `index.json`.
    pub reachable: usize,
    /// Inconsistencies.
    pub problems: Vec<FsckProblem>,
    /// Blobs not in `blobs/` but kept as their extracted layer, written again and checked.
    pub kept_as_layers: usize,
    /// Blobs present but reachable from no tag (removable by [`Store::gc`]), with their sizes.
    pub unreferenced: Vec<(Digest, u64)>,
    /// Informational remarks (e.g. an absent non-distributable layer, an unverified digest algorithm).
    pub notes: Vec<String>,
}

impl FsckReport {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A blob file found under `blobs/sha256/`.
pub(super) struct BlobFile {
    pub(super) digest: Digest,
    pub(super) size: u64,
    pub(super) path: PathBuf,
}

/// List `blobs/`: well-named blob files, and problems for everything else.
pub(super) fn list_blobs(store: &Store, report: &mut FsckReport) -> Result<Vec<BlobFile>, StoreError> {
    let blobs_root = store.root().join("blobs");
    let mut found = Vec::new();
    for entry in fs::read_dir(&blobs_root).map_err(super::io_err(&blobs_root))? {
        let entry = entry.map_err(super::io_err(&blobs_root))?;
        let path = entry.path();
        let is_dir = entry.file_type().map_err(super::io_err(&path))?.is_dir();
        if !is_dir {
            report.problems.push(FsckProblem::StrayFile { path });
        } else if entry.file_name() != "sha256" {
            report.notes.push(format!("{}: digest algorithm not verified", path.display()));
        }
    }
    let dir = store.blobs_dir();
    for entry in fs::read_dir(&dir).map_err(super::io_err(&dir))? {
        let entry = entry.map_err(super::io_err(&dir))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(super::io_err(&path))?;
        let name = entry.file_name();
        let digest = name
            .to_str()
            .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok());
        match digest {
            Some(digest) if meta.file_type().is_file() => found.push(BlobFile { digest, size: meta.len(), path }),
            _ => report.problems.push(FsckProblem::StrayFile { path }),
        }
    }
    found.sort_by_key(|b| b.digest.hex());
    Ok(found)
}

/// The reachability walk from `index.json`.
struct Walk<'a> {
    store: &'a Store,
    /// Present blobs and their sizes.
    present: &'a BTreeMap<Digest, u64>,
    reachable: BTreeSet<Digest>,
    /// `rootfs.diff_ids` of every reachable image config.
    diff_ids: BTreeSet<Digest>,
    /// (layer blob, claimed diff_id) → the first manifest pairing them, for layers present and intact.
    claims: BTreeMap<(Digest, Digest), Digest>,
    parsed: BTreeSet<Digest>,
    /// Reachable documents whose content does not hash to their name, with what it hashes to.
    corrupt_docs: BTreeMap<Digest, Digest>,
    problems: Vec<FsckProblem>,
    notes: Vec<String>,
}

impl Walk<'_> {
    /// Check one reference; returns whether the blob is present with the right size.
    fn check(&mut self, desc: &Descriptor, from: &str) -> bool {
        self.reachable.insert(desc.digest);
        match self.present.get(&desc.digest) {
            None if is_nondistributable(&desc.media_type) => {
                self.notes.push(format!("non-distributable layer {} referenced by {from} is not stored", desc.digest));
                false
            }
            None => {
                self.problems.push(FsckProblem::MissingBlob {
                    digest: desc.digest,
                    media_type: desc.media_type.clone(),
                    referenced_by: from.to_owned(),
                });
                false
            }
            Some(&size) if size != desc.size => {
                self.problems.push(FsckProblem::SizeMismatch {
                    digest: desc.digest,
                    expected: desc.size,
                    actual: size,
                    referenced_by: from.to_owned(),
                });
                false
            }
            Some(_) => true,
        }
    }

    /// A document that could not be read: corrupt (its content hashes to another digest, which the blob
    /// pass reports), or unreadable or unparsable.
    fn bad_doc(&mut self, desc: &Descriptor, from: &str, e: StoreError) {
        if let StoreError::DigestMismatch { actual, .. } = e {
            self.corrupt_docs.insert(desc.digest, actual);
            return;
        }
        self.problems.push(FsckProblem::BadDocument {
            digest: desc.digest,
            referenced_by: from.to_owned(),
            reason: e.to_string(),
        });
    }

    /// Visit a manifest or index descriptor and everything below it.
    fn visit(&mut self, desc: &Descriptor, from: &str, depth: usize) {
        if !self.check(desc, from) || !self.parsed.insert(desc.digest) {
            return;
        }
        let here = format!("manifest {}", desc.digest);
        match self.store.doc_kind(desc) {
            Ok(DocKind::Manifest) => {}
            Ok(DocKind::Other) => return, // some other artifact: presence is all we can check
            Err(e) => return self.bad_doc(desc, from, e),
            Ok(DocKind::Index) if depth >= super::MAX_INDEX_DEPTH => {
                return self.problems.push(FsckProblem::BadDocument {
                    digest: desc.digest,
                    referenced_by: from.to_owned(),
                    reason: "index nesting too deep".into(),
                });
            }
            Ok(DocKind::Index) => {
                match self.store.read_index(desc) {
                    Ok(index) => {
                        for child in &index.manifests {
                            self.visit(child, &format!("index {}", desc.digest), depth + 1);
                        }
                    }
                    Err(e) => self.bad_doc(desc, from, e),
                }
                return;
            }
        }
        let manifest = match self.store.read_manifest(desc) {
            Ok(m) => m,
            Err(e) => return self.bad_doc(desc, from, e),
        };
        let intact: Vec<bool> = manifest.layers.iter().map(|layer| self.check(layer, &here)).collect();
        // An artifact's config (the empty `{}` of an SBOM, say) is not an image config: presence only.
        let image_config =
            manifest.config.media_type != super::MEDIA_OCI_EMPTY && !manifest.extra.contains_key("artifactType");
        if self.check(&manifest.config, &here) && image_config {
            match self.store.read_config(&manifest.config) {
                Ok(config) if config.rootfs.diff_ids.len() != manifest.layers.len() => {
                    self.problems.push(FsckProblem::LayerCount {
                        manifest: desc.digest,
                        layers: manifest.layers.len(),
                        diff_ids: config.rootfs.diff_ids.len(),
                    });
                }
                Ok(config) => {
                    for ((layer, ok), diff_id) in manifest.layers.iter().zip(intact).zip(&config.rootfs.diff_ids) {
                        if ok {
                            self.claims.entry((layer.digest, *diff_id)).or_insert(desc.digest);
                        }
                    }
                    self.diff_ids.extend(config.rootfs.diff_ids)
                }
                Err(e) => self.bad_doc(&manifest.config, &here, e),
            }
        }
    }
}

/// What a walk from `index.json` reached.
pub(super) struct Walked {
    /// Every blob referenced.
    pub(super) reachable: BTreeSet<Digest>,
    /// `rootfs.diff_ids` of every image config reached.
    pub(super) diff_ids: BTreeSet<Digest>,
    /// (layer blob, claimed diff_id) → a manifest making the claim, for every layer reached and present.
    pub(super) claims: BTreeMap<(Digest, Digest), Digest>,
    /// Reachable documents whose content does not hash to their name → what it hashes to.
    pub(super) corrupt_docs: BTreeMap<Digest, Digest>,
}

/// Walk from `index.json`; fills `report.reachable`, `tags`, problems and notes.
pub(super) fn walk(
    store: &Store,
    index: Result<Index, StoreError>,
    present: &BTreeMap<Digest, u64>,
    report: &mut FsckReport,
) -> Walked {
    let layout = store.root().join("oci-layout");
    match fs::read(&layout) {
        Ok(bytes) => {
            if let Err(e) = super::check_oci_layout(&layout, &bytes) {
                report.problems.push(FsckProblem::BadLayout { path: layout, reason: e.to_string() });
            }
        }
        Err(e) => report.problems.push(FsckProblem::BadLayout { path: layout, reason: e.to_string() }),
    }
    let index = match index {
        Ok(index) => index,
        Err(e) => {
            report.problems.push(FsckProblem::BadLayout { path: store.index_path(), reason: e.to_string() });
            return Walked {
                reachable: BTreeSet::new(),
                diff_ids: BTreeSet::new(),
                claims: BTreeMap::new(),
                corrupt_docs: BTreeMap::new(),
            };
        }
    };
    let mut w = Walk {
        store,
        present,
        reachable: BTreeSet::new(),
        diff_ids: BTreeSet::new(),
        claims: BTreeMap::new(),
        parsed: BTreeSet::new(),
        corrupt_docs: BTreeMap::new(),
        problems: Vec::new(),
        notes: Vec::new(),
    };
    for (i, desc) in index.manifests.iter().enumerate() {
        let from = match desc.ref_name() {
            Some(tag) => {
                report.tags += 1;
                format!("index.json tag {tag:?}")
            }
            None => format!("index.json entry {i}"),
        };
        w.visit(desc, &from, 0);
    }
    report.problems.append(&mut w.problems);
    report.notes.append(&mut w.notes);
    report.reachable = w.reachable.len();
    Walked { reachable: w.reachable, diff_ids: w.diff_ids, claims: w.claims, corrupt_docs: w.corrupt_docs }
}

/// [`Store::fsck`].
pub(super) fn fsck(store: &Store) -> Result<FsckReport, StoreError> {
    let mut report = FsckReport::default();
    // The index first, then the blobs: a build running meanwhile commits a tag's blobs before the tag,
    // and only `gc` (under the lock) deletes blobs, so everything this index names is already listed.
    let index = store.index();
    let files = list_blobs(store, &mut report)?;
    let present = present_blobs(store, &files);
    let walked = walk(store, index, &present, &mut report);
    // Each layer blob with the diff_ids claimed for it (and a manifest making each claim).
    let mut claims: BTreeMap<Digest, Vec<(Digest, Digest)>> = BTreeMap::new();
    for (&(layer, diff_id), &manifest) in &walked.claims {
        claims.entry(layer).or_default().push((diff_id, manifest));
    }
    // Blobs kept only as their extracted layer are written again (to nowhere) and checked the same way.
    let in_files: BTreeSet<Digest> = files.iter().map(|b| b.digest).collect();
    let kept: Vec<Digest> = present.keys().filter(|d| !in_files.contains(d)).copied().collect();
    report.kept_as_layers = kept.len();
    let read: Vec<(Digest, io::Result<Read>)> = files
        .par_iter()
        .map(|b| (b.digest, read_blob(&b.path, claims.contains_key(&b.digest))))
        .chain(kept.par_iter().map(|d| (*d, regenerate_blob(store, d))))
        .collect();
    for (digest, result) in read {
        let (actual, size, uncompressed) = match result {
            Ok(Read { digest, size, uncompressed }) => (digest, size, uncompressed),
            Err(e) => {
                report.problems.push(FsckProblem::Unreadable { digest, reason: e.to_string() });
                continue;
            }
        };
        report.blobs += 1;
        report.bytes += size;
        if actual != digest {
            report.problems.push(FsckProblem::CorruptBlob { digest, actual });
            continue;
        }
        let Some(claimed) = claims.get(&digest) else { continue };
        match uncompressed {
            Some(Ok(actual)) => {
                report.problems.extend(claimed.iter().filter(|(d, _)| *d != actual).map(|&(claimed, manifest)| {
                    FsckProblem::DiffIdMismatch { layer: digest, manifest, claimed, actual }
                }))
            }
            Some(Err(e)) => {
                report.problems.push(FsckProblem::Unreadable { digest, reason: format!("decompressing: {e}") })
            }
            None => {}
        }
    }
    let reachable = walked.reachable;
    report.unreferenced = files.iter().filter(|b| !reachable.contains(&b.digest)).map(|b| (b.digest, b.size)).collect();
    Ok(report)
}

/// What one read of a blob found.
struct Read {
    /// sha256 of the file.
    digest: Digest,
    /// Its length.
    size: u64,
    /// For a layer: the sha256 of its uncompressed stream, or why it could not be decompressed.
    uncompressed: Option<io::Result<Digest>>,
}

/// Write blob `d` again through the store's blob source, hashing both streams.
fn regenerate_blob(store: &Store, d: &Digest) -> io::Result<Read> {
    let info = store.source_write(d, &mut io::sink()).map_err(io::Error::other)?;
    Ok(Read { digest: info.digest, size: info.size, uncompressed: Some(Ok(info.diff_id)) })
}

/// The blobs present: the files of `blobs/`, and those the store's blob source can write.
pub(super) fn present_blobs(store: &Store, files: &[BlobFile]) -> BTreeMap<Digest, u64> {
    let mut present: BTreeMap<Digest, u64> = store.source_blobs().into_iter().collect();
    present.extend(files.iter().map(|b| (b.digest, b.size)));
    present
}

/// Hash the blob at `path`; for a `layer`, also decompress the same read and hash what comes out.
fn read_blob(path: &std::path::Path, layer: bool) -> io::Result<Read> {
    let mut file = layers::HashingReader::new(io::BufReader::with_capacity(1 << 20, File::open(path)?));
    let uncompressed = layer.then(|| layers::uncompressed_digest(&mut file).map(|(d, _)| d));
    // The rest of the file, if the decompressor stopped short of its end (or failed), is still hashed.
    io::copy(&mut file, &mut io::sink())?;
    let (digest, size) = file.finish();
    Ok(Read { digest, size, uncompressed })
}
