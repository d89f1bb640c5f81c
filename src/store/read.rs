//! Reading the documents a descriptor names (manifests, indexes, image configs) with their size and
//! digest checked, choosing a platform's manifest from an index, and writing an image's config and
//! manifest.

use layers::Digest;

use super::{
    Descriptor, Image, ImageConfig, Index, MAX_CONFIG_SIZE, MAX_INDEX_DEPTH, MAX_MANIFEST_SIZE, MEDIA_OCI_CONFIG,
    MEDIA_OCI_MANIFEST, Manifest, Platform, Result, Store, StoreError, is_index, is_manifest, oci_layer_media_type,
};

/// The kinds of blob a descriptor from `index.json` or an index may designate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DocKind {
    Manifest,
    Index,
    Other,
}

/// Interpret a parsed manifest document, rejecting Docker schema 1 and indexes.
pub(super) fn parse_manifest(digest: Digest, value: serde_json::Value) -> Result<Manifest> {
    let version = value.get("schemaVersion").and_then(|v| v.as_u64());
    if version != Some(2) {
        return Err(StoreError::Unsupported { digest, what: format!("manifest schemaVersion {version:?}") });
    }
    if value.get("manifests").is_some() {
        return Err(StoreError::Unsupported { digest, what: "index where a manifest was expected".into() });
    }
    serde_json::from_value(value).map_err(|source| StoreError::Json { what: format!("manifest {digest}"), source })
}

impl Store {
    /// Read a whole blob of at most `max` bytes, checking it against the descriptor's digest and size.
    pub(super) fn read_described(&self, desc: &Descriptor, max: u64) -> Result<Vec<u8>> {
        let bytes = self.read_blob_bytes(&desc.digest, max)?;
        if bytes.len() as u64 != desc.size {
            return Err(StoreError::SizeMismatch {
                digest: desc.digest,
                expected: desc.size,
                actual: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// Read and parse a JSON blob of at most `max` bytes, checking it against the descriptor's size.
    pub(super) fn read_json(&self, desc: &Descriptor, max: u64) -> Result<serde_json::Value> {
        let bytes = self.read_described(desc, max)?;
        serde_json::from_slice(&bytes)
            .map_err(|source| StoreError::Json { what: format!("blob {}", desc.digest), source })
    }

    /// Parse a manifest blob (OCI or Docker v2 schema 2).
    pub fn read_manifest(&self, desc: &Descriptor) -> Result<Manifest> {
        let value = self.read_json(desc, MAX_MANIFEST_SIZE)?;
        parse_manifest(desc.digest, value)
    }

    /// Parse an index / manifest-list blob.
    pub fn read_index(&self, desc: &Descriptor) -> Result<Index> {
        let value = self.read_json(desc, MAX_MANIFEST_SIZE)?;
        let index: Index = serde_json::from_value(value)
            .map_err(|source| StoreError::Json { what: format!("index {}", desc.digest), source })?;
        if index.schema_version != 2 {
            return Err(StoreError::Unsupported {
                digest: desc.digest,
                what: format!("index schemaVersion {}", index.schema_version),
            });
        }
        Ok(index)
    }

    /// Parse an image config blob.
    pub fn read_config(&self, desc: &Descriptor) -> Result<ImageConfig> {
        let value = self.read_json(desc, MAX_CONFIG_SIZE)?;
        serde_json::from_value(value)
            .map_err(|source| StoreError::Json { what: format!("config {}", desc.digest), source })
    }

    /// The image tagged `name`; a tag that points at an index yields the manifest for the host platform.
    pub fn load_image(&self, name: &str) -> Result<Image> {
        let desc = self
            .resolve(name)?
            .ok_or_else(|| StoreError::TagNotFound { name: name.to_owned(), root: self.root.clone() })?;
        self.load_image_from(&desc, &Platform::host())
    }

    /// The image `desc` designates (a manifest, or an index from which the manifest for `platform` is chosen).
    pub fn load_image_from(&self, desc: &Descriptor, platform: &Platform) -> Result<Image> {
        let manifest_desc = self.select_manifest(desc, platform, 0)?;
        let manifest = self.read_manifest(&manifest_desc)?;
        let config = self.read_config(&manifest.config)?;
        Ok(Image { manifest_digest: manifest_desc.digest, manifest, config })
    }

    /// The image tag `name` holds for `platform`: `None` when there is no such tag, or it holds no image
    /// of that platform (an index without one, or a single image of another platform).
    pub fn image_for(&self, name: &str, platform: &Platform) -> Result<Option<Image>> {
        let Some(desc) = self.resolve(name)? else { return Ok(None) };
        let image = match self.load_image_from(&desc, platform) {
            Err(StoreError::NoPlatform { .. }) => return Ok(None),
            image => image?,
        };
        Ok(platform.matches(&image.config.platform()).then_some(image))
    }

    /// Follow indexes down to the manifest for `platform`.
    pub(super) fn select_manifest(&self, desc: &Descriptor, platform: &Platform, depth: usize) -> Result<Descriptor> {
        if self.doc_kind(desc)? != DocKind::Index {
            // A manifest, or something the manifest parser will refuse with a precise error.
            return Ok(desc.clone());
        }
        if depth >= MAX_INDEX_DEPTH {
            return Err(StoreError::Unsupported { digest: desc.digest, what: "index nesting deeper than 4".into() });
        }
        let index = self.read_index(desc)?;
        let candidates: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|d| !d.annotations.contains_key("vnd.docker.reference.type")) // buildkit attestations
            .collect();
        let exact = candidates.iter().find(|d| d.platform.as_ref().is_some_and(|p| p == platform));
        let loose = || candidates.iter().find(|d| d.platform.as_ref().is_some_and(|p| p.matches(platform)));
        let single = || match candidates.as_slice() {
            [only] if only.platform.is_none() => Some(only),
            _ => None,
        };
        match exact.or_else(loose).or_else(single) {
            Some(chosen) => self.select_manifest(chosen, platform, depth + 1),
            None => Err(StoreError::NoPlatform {
                digest: desc.digest,
                want: platform.to_string(),
                available: candidates
                    .iter()
                    .map(|d| d.platform.as_ref().map_or_else(|| "unspecified".to_owned(), Platform::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// What kind of document `desc` designates: by media type, else (unknown or empty label, as some
    /// registries serve) by sniffing the JSON for `manifests` or `config` + `layers`.
    pub(super) fn doc_kind(&self, desc: &Descriptor) -> Result<DocKind> {
        if is_manifest(&desc.media_type) {
            return Ok(DocKind::Manifest);
        }
        if is_index(&desc.media_type) {
            return Ok(DocKind::Index);
        }
        if !desc.media_type.is_empty() && !desc.media_type.ends_with("json") {
            return Ok(DocKind::Other);
        }
        let value = self.read_json(desc, MAX_MANIFEST_SIZE)?;
        Ok(if value.get("manifests").is_some() {
            DocKind::Index
        } else if value.get("config").is_some() && value.get("layers").is_some() {
            DocKind::Manifest
        } else {
            DocKind::Other
        })
    }

    /// Write `config` and an OCI manifest over it and `layers` (which must already be in the store, one per
    /// `config.rootfs.diff_ids` entry). Returns the manifest descriptor with the config's platform; tag it
    /// with [`Store::set_tag`]. Docker layer media types are relabelled to their OCI twins (same bytes).
    pub fn write_image(&self, config: &ImageConfig, layers: &[Descriptor]) -> Result<Descriptor> {
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(StoreError::InvalidImage(format!(
                "{} layers but {} rootfs.diff_ids",
                layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let mut oci_layers = Vec::with_capacity(layers.len());
        for layer in layers {
            let size = self.blob_size(&layer.digest)?;
            if size != layer.size {
                return Err(StoreError::SizeMismatch { digest: layer.digest, expected: layer.size, actual: size });
            }
            let mut l = layer.clone();
            l.media_type = oci_layer_media_type(&l.media_type).to_owned();
            l.platform = None;
            oci_layers.push(l);
        }
        let (config_digest, config_size) = self.put_json(config)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_MANIFEST.to_owned()),
            config: Descriptor::new(MEDIA_OCI_CONFIG, config_digest, config_size),
            layers: oci_layers,
            annotations: Default::default(),
            extra: Default::default(),
        };
        let (digest, size) = self.put_json(&manifest)?;
        let mut desc = Descriptor::new(MEDIA_OCI_MANIFEST, digest, size);
        if !config.architecture.is_empty() && !config.os.is_empty() {
            desc.platform = Some(config.platform());
        }
        Ok(desc)
    }
}
