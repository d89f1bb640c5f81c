//! Export images as one tar that is both a docker-archive and an OCI image layout (the format `docker save`
//! writes since Docker 25).
//!
//! Contents: `manifest.json` (docker-archive: `Config`, `RepoTags`, `Layers` per image), `oci-layout`,
//! `index.json` (one entry per name, with the ref.name annotation) and `blobs/sha256/<hex>` for every
//! manifest, config and layer, each written once even when shared. Layers are copied *as stored*
//! (compressed): `docker load` and containers/image (`skopeo copy docker-archive:`) both sniff and
//! decompress layer files, and the OCI side keeps the original manifest digests (`skopeo copy
//! oci-archive:`). Every blob is streamed from the store and its sha256 verified on the way.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};

use layers::{Digest, HashingWriter};
use serde::Serialize;

use super::{ANNOTATION_REF_NAME, Descriptor, Index, MEDIA_OCI_MANIFEST, Platform, Store, StoreError, canonical_json};

/// What [`write_docker_archive`] wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Distinct images (manifests).
    pub images: usize,
    /// Distinct blobs written.
    pub blobs: usize,
    /// Blob bytes written (tar framing excluded).
    pub bytes: u64,
}

/// One `manifest.json` entry of a docker-archive.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// A `Read` adapter that sha256-hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hash: HashingWriter<io::Sink>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// The docker `RepoTags` form of a store tag: `repo:tag` (`:latest` added when there is no tag); `None`
/// for digest references, which docker-archive cannot name.
fn repo_tag(name: &str) -> Option<String> {
    if name.contains('@') {
        return None;
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    Some(if last.contains(':') { name.to_owned() } else { format!("{name}:latest") })
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// A tar header for a read-only regular file with fixed metadata, so equal input gives equal archives.
fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o444);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Write the images tagged `names` (of a multi-platform tag, the image for `platform`) to `out` as a
/// docker-archive / OCI-layout tar. Memory use does not depend on layer sizes.
pub fn write_docker_archive<W: Write>(
    store: &Store,
    names: &[String],
    platform: &Platform,
    out: W,
) -> Result<ArchiveStats, StoreError> {
    let mut index = Index::default();
    let mut entries: BTreeMap<Digest, (usize, ArchiveEntry)> = BTreeMap::new();
    // Blobs to write, in order, with the size their descriptor promises.
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut want = |d: &Descriptor| {
        if seen.insert(d.digest) {
            blobs.push((d.digest, d.size));
        }
    };
    for name in names {
        let desc = store
            .resolve(name)?
            .ok_or_else(|| StoreError::TagNotFound { name: name.clone(), root: store.root().to_path_buf() })?;
        let image = store.load_image_from(&desc, platform)?;
        let manifest_size = store.blob_size(&image.manifest_digest)?;
        let media_type = image.manifest.media_type.clone().unwrap_or_else(|| MEDIA_OCI_MANIFEST.to_owned());
        let mut manifest_desc = Descriptor::new(media_type, image.manifest_digest, manifest_size);
        manifest_desc.platform = Some(image.config.platform());
        want(&manifest_desc);
        want(&image.manifest.config);
        image.manifest.layers.iter().for_each(&mut want);
        let mut entry_desc = manifest_desc.clone();
        entry_desc.annotations.insert(ANNOTATION_REF_NAME.to_owned(), name.clone());
        index.manifests.push(entry_desc);
        let n = entries.len();
        let (_, entry) = entries.entry(image.manifest_digest).or_insert_with(|| {
            let entry = ArchiveEntry {
                config: blob_name(&image.manifest.config.digest),
                repo_tags: Vec::new(),
                layers: image.manifest.layers.iter().map(|l| blob_name(&l.digest)).collect(),
            };
            (n, entry)
        });
        entry.repo_tags.extend(repo_tag(name));
    }

    let mut tar = tar::Builder::new(out);
    let mut stats = ArchiveStats { images: entries.len(), ..ArchiveStats::default() };
    let append_bytes = |tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]| {
        tar.append_data(&mut file_header(bytes.len() as u64), path, bytes)
            .map_err(|e| StoreError::Io { path: path.into(), source: e })
    };
    append_bytes(&mut tar, "oci-layout", &canonical_json(&serde_json::json!({"imageLayoutVersion": "1.0.0"})))?;
    for (digest, size) in &blobs {
        let file = store.open_blob(digest)?;
        let path = store.blob_path(digest);
        let actual = file.metadata().map_err(super::io_err(&path))?.len();
        if actual != *size {
            return Err(StoreError::SizeMismatch { digest: *digest, expected: *size, actual });
        }
        let mut reader = HashingReader { inner: file.take(*size), hash: HashingWriter::new(io::sink()) };
        tar.append_data(&mut file_header(*size), blob_name(digest), &mut reader)
            .map_err(|e| StoreError::Io { path: path.clone(), source: e })?;
        let (_, got, n) = reader.hash.finish();
        if got != *digest || n != *size {
            return Err(StoreError::DigestMismatch { expected: *digest, actual: got, size: n });
        }
        stats.blobs += 1;
        stats.bytes += size;
    }
    append_bytes(&mut tar, "index.json", &canonical_json(&index))?;
    let mut manifest: Vec<(usize, ArchiveEntry)> = entries.into_values().collect();
    manifest.sort_by_key(|(n, _)| *n);
    let manifest: Vec<ArchiveEntry> = manifest.into_iter().map(|(_, e)| e).collect();
    append_bytes(&mut tar, "manifest.json", &canonical_json(&manifest))?;
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| StoreError::Io { path: "archive output".into(), source: e })?;
    Ok(stats)
}
