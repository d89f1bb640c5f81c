//! OCI 1.1 artifacts that refer to an image (an SBOM, a provenance statement), kept in the layout.
//!
//! An artifact is an image manifest with `artifactType`, the empty config (`{}`,
//! `application/vnd.oci.empty.v1+json`), one layer holding the document, and `subject` = the image's
//! manifest descriptor — the form the registry referrers API and the referrers tag schema serve. The
//! image's own manifest is untouched, so its digest does not change.
//!
//! Each artifact gets an untagged `index.json` entry carrying `artifactType` and the subject digest (in
//! [`ANNOTATION_REFERRER_SUBJECT`]), as oras' OCI-layout store keeps referrers: fsck sees it as reachable,
//! tools that look images up by `ref.name` (skopeo, umoci) ignore it, and finding an image's referrers
//! needs no scan of every manifest. There is one entry per (subject, artifact type): a new document
//! replaces the old one, whose blobs `gc` then frees. `gc` keeps a referrer while its subject is
//! reachable from a tag and drops the entry once it is not.

use layers::Digest;

use super::{Descriptor, MEDIA_OCI_MANIFEST, Manifest, Result, Store, StoreError};

/// Media type of the OCI empty descriptor (`{}`), the config of artifacts that have none.
pub const MEDIA_OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The annotation on an `index.json` entry that marks it as a referrer of the digest it holds.
pub const ANNOTATION_REFERRER_SUBJECT: &str = "org.kolla-oci.referrer.subject";
/// The standard annotation naming a layer's file (`oras pull` writes the layer under this name).
const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
/// Largest artifact document read into memory.
pub const MAX_DOCUMENT_SIZE: u64 = 256 << 20;

impl Descriptor {
    /// The subject digest of a referrer entry of `index.json`, if this entry is one.
    pub fn referrer_subject(&self) -> Option<&str> {
        self.annotations.get(ANNOTATION_REFERRER_SUBJECT).map(String::as_str)
    }
}

impl Store {
    /// Store `document` (of media type `artifact_type`, named `title` for whoever pulls it) as an artifact
    /// referring to the manifest `subject`, replacing an earlier one of the same type for the same subject.
    /// Returns the artifact manifest's descriptor (with `artifactType`, as a referrers index lists it).
    pub fn put_referrer(
        &self,
        subject: &Descriptor,
        artifact_type: &str,
        title: &str,
        document: &[u8],
    ) -> Result<Descriptor> {
        if !self.has_blob(&subject.digest) {
            return Err(StoreError::BlobNotFound { digest: subject.digest, path: self.blob_path(&subject.digest) });
        }
        let (doc_digest, doc_size) = self.put_bytes(document)?;
        let (empty_digest, empty_size) = self.put_bytes(b"{}")?;
        let mut layer = Descriptor::new(artifact_type, doc_digest, doc_size);
        layer.annotations.insert(ANNOTATION_TITLE.to_owned(), title.to_owned());
        let subject_desc = Descriptor::new(subject.media_type.clone(), subject.digest, subject.size);
        let mut manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_MANIFEST.to_owned()),
            config: Descriptor::new(MEDIA_OCI_EMPTY, empty_digest, empty_size),
            layers: vec![layer],
            annotations: Default::default(),
            extra: Default::default(),
        };
        manifest.extra.insert("artifactType".into(), artifact_type.into());
        manifest.extra.insert("subject".into(), serde_json::to_value(&subject_desc).expect("descriptor is JSON"));
        let (digest, size) = self.put_json(&manifest)?;
        let mut desc = Descriptor::new(MEDIA_OCI_MANIFEST, digest, size);
        desc.artifact_type = Some(artifact_type.to_owned());

        let mut entry = desc.clone();
        entry.annotations.insert(ANNOTATION_REFERRER_SUBJECT.to_owned(), subject.digest.to_string());
        let _lock = self.lock()?;
        let mut index = self.index()?;
        let subject_str = subject.digest.to_string();
        index.manifests.retain(|d| {
            !(d.referrer_subject() == Some(subject_str.as_str()) && d.artifact_type.as_deref() == Some(artifact_type))
        });
        index.manifests.push(entry);
        self.write_index(&index)?;
        tracing::debug!(subject = %subject.digest, artifact_type, %digest, "referrer stored");
        Ok(desc)
    }

    /// The artifacts stored for the manifest `subject` (as a referrers index lists them: manifest
    /// descriptors with `artifactType`), optionally only those of `artifact_type`; sorted by digest.
    pub fn referrers(&self, subject: &Digest, artifact_type: Option<&str>) -> Result<Vec<Descriptor>> {
        let subject = subject.to_string();
        let mut out: Vec<Descriptor> = self
            .index()?
            .manifests
            .into_iter()
            .filter(|d| d.referrer_subject() == Some(subject.as_str()))
            .filter(|d| artifact_type.is_none() || d.artifact_type.as_deref() == artifact_type)
            .map(|mut d| {
                d.annotations.remove(ANNOTATION_REFERRER_SUBJECT);
                d
            })
            .collect();
        out.sort_by_key(|d| d.digest.hex());
        Ok(out)
    }

    /// The document an artifact manifest carries (its single layer), verified against its digest.
    pub fn read_referrer_document(&self, artifact: &Descriptor) -> Result<Vec<u8>> {
        let manifest = self.read_manifest(artifact)?;
        let [layer] = manifest.layers.as_slice() else {
            return Err(StoreError::Unsupported {
                digest: artifact.digest,
                what: format!("artifact with {} layers (expected 1)", manifest.layers.len()),
            });
        };
        self.read_described(layer, MAX_DOCUMENT_SIZE)
    }
}
