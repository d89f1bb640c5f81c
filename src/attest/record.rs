//! Making an image's documents and keeping them in the store as its referrers: what `kolla-oci sbom` and
//! `kolla-oci provenance` do, and what a build calls once an image is tagged.

use layers::Digest;

use super::provenance::{self, ProvenanceInput};
use super::{
    AttestError, ImageContents, ImageRef, MEDIA_CYCLONEDX, MEDIA_IN_TOTO, MEDIA_SPDX, SbomInput, SourceArchive,
};
use super::{cyclonedx, spdx};
use crate::builder::Workspace;
use crate::store::{Descriptor, Image, MEDIA_OCI_MANIFEST, Platform, Store, canonical_json};

/// The OCI annotation naming an image's base image digest (set by builders that know it).
const ANNOTATION_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
/// The OCI annotation naming an image's base image.
const ANNOTATION_BASE_NAME: &str = "org.opencontainers.image.base.name";

/// The SBOM formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SbomFormat {
    /// SPDX 2.3 JSON.
    Spdx,
    /// CycloneDX 1.6 JSON.
    Cyclonedx,
}

impl SbomFormat {
    /// The artifact type (and document media type) it is stored under.
    pub fn media_type(self) -> &'static str {
        match self {
            SbomFormat::Spdx => MEDIA_SPDX,
            SbomFormat::Cyclonedx => MEDIA_CYCLONEDX,
        }
    }

    /// The file name the document gets (`org.opencontainers.image.title`).
    fn title(self) -> &'static str {
        match self {
            SbomFormat::Spdx => "sbom.spdx.json",
            SbomFormat::Cyclonedx => "sbom.cdx.json",
        }
    }
}

/// An image in the store that documents are about: its name, manifest and descriptor.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The name it was asked for by.
    pub name: String,
    /// Manifest and config (for a multi-platform tag: the host platform's).
    pub image: Image,
    /// The manifest's descriptor: what an artifact's `subject` names.
    pub descriptor: Descriptor,
}

impl Subject {
    /// The image tagged `name` (the host platform's manifest of a multi-platform tag).
    pub fn load(store: &Store, name: &str) -> Result<Subject, AttestError> {
        let tagged = store.resolve(name)?.ok_or_else(|| crate::store::StoreError::TagNotFound {
            name: name.to_owned(),
            root: store.root().to_path_buf(),
        })?;
        let image = store.load_image_from(&tagged, &Platform::host())?;
        let media_type = image.manifest.media_type.clone().unwrap_or_else(|| MEDIA_OCI_MANIFEST.to_owned());
        let descriptor = Descriptor::new(media_type, image.manifest_digest, store.blob_size(&image.manifest_digest)?);
        Ok(Subject { name: name.to_owned(), image, descriptor })
    }

    /// How the documents name it.
    pub fn image_ref(&self) -> ImageRef {
        ImageRef { name: self.name.clone(), digest: self.image.manifest_digest }
    }

    /// The stored document of `artifact_type` about this image, if any.
    pub fn stored(&self, store: &Store, artifact_type: &str) -> Result<Option<Vec<u8>>, AttestError> {
        match store.referrers(&self.descriptor.digest, Some(artifact_type))?.first() {
            Some(artifact) => Ok(Some(store.read_referrer_document(artifact)?)),
            None => Ok(None),
        }
    }

    /// The image this one was built on: from the OCI base-image annotations when the manifest has them,
    /// else the tagged image in the store whose layers are the longest proper prefix of this one's.
    pub fn base_image(&self, store: &Store) -> Result<Option<ImageRef>, AttestError> {
        let a = &self.image.manifest.annotations;
        if let Some(digest) = a.get(ANNOTATION_BASE_DIGEST).and_then(|d| d.parse::<Digest>().ok()) {
            let name = a.get(ANNOTATION_BASE_NAME).cloned().unwrap_or_else(|| digest.to_string());
            return Ok(Some(ImageRef { name, digest }));
        }
        let ours = &self.image.manifest.layers;
        let mut best: Option<(usize, ImageRef)> = None;
        for (tag, desc) in store.tags()? {
            let Ok(other) = store.load_image_from(&desc, &Platform::host()) else { continue };
            let n = other.manifest.layers.len();
            let is_prefix = n > 0 && n < ours.len() && ours[..n] == other.manifest.layers[..];
            // Longest prefix wins; among equals the first tag by name, so the answer does not vary.
            if is_prefix && best.as_ref().is_none_or(|(m, _)| n > *m) {
                best = Some((n, ImageRef { name: tag, digest: other.manifest_digest }));
            }
        }
        Ok(best.map(|(_, r)| r))
    }
}

/// Compute the SBOM of `subject` from its layers, store it as its referrer (replacing an earlier one of
/// the same format) and return the document. `base` and `sources` are what the caller knows (a build
/// knows its `FROM` image; `kolla-oci sbom` looks it up with [`Subject::base_image`]).
pub fn record_sbom(
    ws: &Workspace,
    subject: &Subject,
    format: SbomFormat,
    base: Option<ImageRef>,
    sources: Vec<SourceArchive>,
    source_date_epoch: Option<i64>,
) -> Result<Vec<u8>, AttestError> {
    let contents = ImageContents::read(&ws.lower_dirs(&subject.image)?)?;
    let input = SbomInput { image: subject.image_ref(), base, sources, contents: &contents, source_date_epoch };
    let doc = match format {
        SbomFormat::Spdx => spdx::document(&input),
        SbomFormat::Cyclonedx => cyclonedx::document(&input),
    };
    let bytes = canonical_json(&doc);
    ws.store().put_referrer(&subject.descriptor, format.media_type(), format.title(), &bytes)?;
    Ok(bytes)
}

/// Store the provenance statement of `input` as a referrer of `subject` and return it.
pub fn record_provenance(store: &Store, subject: &Descriptor, input: &ProvenanceInput) -> Result<Vec<u8>, AttestError> {
    let bytes = canonical_json(&provenance::statement(input));
    store.put_referrer(subject, MEDIA_IN_TOTO, "provenance.intoto.json", &bytes)?;
    Ok(bytes)
}
