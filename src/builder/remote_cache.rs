//! The step cache of a fleet, kept in a registry repository (`--cache-repo REGISTRY/REPO`): machines that
//! build the same tree share every step's layer through the registry they already run, with no
//! coordinator of their own.
//!
//! Each entry is a plain OCI image manifest tagged with the step key's hex ([`super::cache::Key`]): its
//! config is a minimal image config whose `rootfs.diff_ids` lists the step's layer (none for a step that
//! changed no file), and the manifest annotation [`ANNOTATION_DIFF_ID`] repeats the diff_id so that a
//! lookup is one `GET`. No referrers API, no custom media types: any Distribution-compatible registry
//! holds it. Entries are write-once — an existing tag is never replaced — so two machines racing on one
//! key leave one valid entry. A layer taken from the cache is used only once its blob has hashed,
//! uncompressed, to the diff_id the entry claims, whether or not a layer of that diff_id is extracted
//! here already (see `Workspace::verified_layer_dir`).
//!
//! A fleet (`--shard`) keeps its heartbeats and failures here too, as records: entries with no layer
//! whose annotations say what they record, replaced as they change (see [`super::fleet`]).
//!
//! Root images that kolla-oci bootstraps itself (`debian:<suite>` with mmdebstrap) are shared the same
//! way under the tag `root-<os>-<arch>-<name>`, so that every machine builds on the same base bytes and
//! their keys agree.

use std::collections::BTreeMap;

use layers::Digest;
use tracing::{debug, info};

use super::cache::{CachedLayer, CachedStep};
use crate::registry::{self, Client, Reference, RegistryError, RegistryOptions};
use crate::store::{
    Descriptor, ImageConfig, MAX_MANIFEST_SIZE, MEDIA_OCI_CONFIG, MEDIA_OCI_MANIFEST, Manifest, Platform, RootFs,
    Store, canonical_json,
};

/// Manifest annotation naming the diff_id of an entry's layer.
pub const ANNOTATION_DIFF_ID: &str = "dev.kolla-oci.step.diff-id";
/// Manifest annotation with the time (seconds since the epoch) the entry's layer was made, so that
/// every machine dates the images built on it alike.
pub const ANNOTATION_CREATED: &str = "dev.kolla-oci.step.created";

/// A record read from the cache repository (see [`RemoteCache::record`]).
pub(crate) struct Record {
    /// The digest of its manifest: a new one at every write.
    pub digest: Digest,
    /// What it records.
    pub fields: BTreeMap<String, String>,
}

/// A registry repository used as a shared step cache.
pub struct RemoteCache {
    client: Client,
    repo: String,
    /// `REGISTRY/REPO`, for messages.
    name: String,
    /// The registry options, for pulling root images.
    opts: RegistryOptions,
}

impl std::fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteCache({})", self.name)
    }
}

impl RemoteCache {
    /// The cache at `spec` (`REGISTRY/REPO`, no tag), reached with `opts`.
    pub fn new(spec: &str, opts: &RegistryOptions) -> Result<RemoteCache, RegistryError> {
        let reference = Reference::parse(spec)?;
        if spec.rsplit('/').next().is_some_and(|last| last.contains(':') || last.contains('@')) {
            return Err(RegistryError::InvalidReference {
                reference: spec.into(),
                reason: "a cache repository takes no tag or digest (REGISTRY/REPO)".into(),
            });
        }
        let client = Client::new(reference.registry(), reference.api_host(), opts)?;
        let name = format!("{}/{}", reference.registry(), reference.repository());
        Ok(RemoteCache { client, repo: reference.repository().to_string(), name, opts: opts.clone() })
    }

    /// `REGISTRY/REPO`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The entry of step `key`, if the registry has one; its layer blob is fetched into `store`.
    pub(crate) fn lookup(&self, store: &Store, key: &Digest) -> Result<Option<CachedStep>, RegistryError> {
        let Some(manifest) = self.manifest(&key.hex())? else { return Ok(None) };
        let bad = |reason: String| RegistryError::Protocol {
            what: format!("cache entry {}:{}", self.name, key.hex()),
            reason,
        };
        let layer = match (manifest.layers.as_slice(), manifest.annotations.get(ANNOTATION_DIFF_ID)) {
            ([], None) => None,
            ([layer], Some(diff_id)) => {
                let diff_id: Digest = diff_id.parse().map_err(|e| bad(format!("{ANNOTATION_DIFF_ID}: {e}")))?;
                if !store.has_blob(&layer.digest) {
                    registry::fetch_blob(store, &self.client, &self.repo, layer)?;
                }
                Some(CachedLayer { descriptor: layer.clone(), diff_id })
            }
            (layers, _) => {
                return Err(bad(format!("{} layers; an entry has at most one, with its diff_id", layers.len())));
            }
        };
        let created = manifest.annotations.get(ANNOTATION_CREATED).and_then(|t| t.parse().ok());
        debug!(key = %key.hex(), hit = true, "remote step cache");
        Ok(Some(CachedStep { layer, created }))
    }

    /// Publish step `key`'s result (its layer blob must be in `store`), unless an entry exists already.
    pub(crate) fn publish(
        &self,
        store: &Store,
        key: &Digest,
        step: &CachedStep,
        platform: &Platform,
    ) -> Result<(), RegistryError> {
        let tag = key.hex();
        if self.manifest(&tag)?.is_some() {
            return Ok(()); // write-once: the first machine's entry stays
        }
        let (layers, diff_ids, mut annotations) = match &step.layer {
            None => (vec![], vec![], BTreeMap::new()),
            Some(l) => {
                self.upload(store, &l.descriptor)?;
                let annotations = BTreeMap::from([(ANNOTATION_DIFF_ID.to_string(), l.diff_id.to_string())]);
                (vec![l.descriptor.clone()], vec![l.diff_id], annotations)
            }
        };
        if let Some(t) = step.created.filter(|_| step.layer.is_some()) {
            annotations.insert(ANNOTATION_CREATED.to_string(), t.to_string());
        }
        self.put_entry(store, &tag, platform, diff_ids, layers, annotations)?;
        debug!(key = %tag, "published to the remote step cache");
        Ok(())
    }

    /// Tag `tag` with a plain image manifest of `layers` (already uploaded), whose minimal config lists
    /// `diff_ids`.
    fn put_entry(
        &self,
        store: &Store,
        tag: &str,
        platform: &Platform,
        diff_ids: Vec<Digest>,
        layers: Vec<Descriptor>,
        annotations: BTreeMap<String, String>,
    ) -> Result<(), RegistryError> {
        let config = ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            rootfs: RootFs { typ: "layers".into(), diff_ids },
            ..ImageConfig::default()
        };
        let (config_digest, config_size) = store.put_json(&config)?;
        let config = Descriptor::new(MEDIA_OCI_CONFIG, config_digest, config_size);
        self.upload(store, &config)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_MANIFEST.to_owned()),
            config,
            layers,
            annotations,
            extra: Default::default(),
        };
        let bytes = canonical_json(&manifest);
        self.client.put_manifest(&self.repo, tag, MEDIA_OCI_MANIFEST, &bytes, &Digest::of_bytes(&bytes))?;
        Ok(())
    }

    /// The tag under which a root image `name` (e.g. `debian:trixie`) is shared.
    fn root_tag(name: &str, platform: &Platform) -> String {
        let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
        format!("root-{}-{}-{clean}", platform.os, platform.architecture)
    }

    /// Fetch the shared root image `name` into `store` (tagged `name`) if the cache has it.
    pub(crate) fn fetch_root(&self, store: &Store, name: &str, platform: &Platform) -> Result<bool, RegistryError> {
        let tag = Self::root_tag(name, platform);
        if self.manifest(&tag)?.is_none() {
            return Ok(false);
        }
        let reference = Reference::parse(&format!("{}:{tag}", self.name))?;
        let desc = registry::pull(store, &reference, Some(platform), &self.opts)?;
        store.set_platform_tag(name, &desc)?;
        info!(image = name, cache = %self.name, "root image taken from the remote step cache");
        Ok(true)
    }

    /// Share root image `name` (just bootstrapped into `store`), unless the cache has one already.
    pub(crate) fn publish_root(&self, store: &Store, name: &str, platform: &Platform) -> Result<(), RegistryError> {
        let tag = Self::root_tag(name, platform);
        if self.manifest(&tag)?.is_some() {
            return Ok(());
        }
        let tagged = store.resolve(name)?.ok_or_else(|| RegistryError::Protocol {
            what: format!("root image {name}"),
            reason: "not in the store".into(),
        })?;
        let image = store.load_image_from(&tagged, platform)?;
        for blob in image.manifest.layers.iter().chain([&image.manifest.config]) {
            self.upload(store, blob)?;
        }
        let bytes = store.read_blob_bytes(&image.manifest_digest, MAX_MANIFEST_SIZE)?;
        let media_type = image.manifest.media_type.as_deref().unwrap_or(MEDIA_OCI_MANIFEST);
        self.client.put_manifest(&self.repo, &tag, media_type, &bytes, &image.manifest_digest)?;
        info!(image = name, cache = %self.name, "root image shared through the remote step cache");
        Ok(())
    }

    /// Write the record `tag` (a fleet's heartbeat or failure, see [`super::fleet`]): an entry with no
    /// layer whose annotations are `fields`. Unlike step entries, records are replaced.
    pub(crate) fn put_record(
        &self,
        store: &Store,
        tag: &str,
        fields: BTreeMap<String, String>,
    ) -> Result<(), RegistryError> {
        self.put_entry(store, tag, &Platform::host(), vec![], vec![], fields)
    }

    /// The record `tag` — the digest of its manifest (which changes with every write) and its fields —
    /// or `None` when there is none.
    pub(crate) fn record(&self, tag: &str) -> Result<Option<Record>, RegistryError> {
        Ok(self.read_manifest(tag)?.map(|(manifest, digest)| Record { digest, fields: manifest.annotations }))
    }

    /// The manifest tagged `tag`, or `None` when the registry has no such tag.
    fn manifest(&self, tag: &str) -> Result<Option<Manifest>, RegistryError> {
        Ok(self.read_manifest(tag)?.map(|(manifest, _)| manifest))
    }

    /// The manifest tagged `tag` and the digest of its bytes, or `None` when the registry has no such tag.
    fn read_manifest(&self, tag: &str) -> Result<Option<(Manifest, Digest)>, RegistryError> {
        match self.client.get_manifest(&self.repo, tag) {
            Ok((bytes, _, _)) => match serde_json::from_slice(&bytes) {
                Ok(manifest) => Ok(Some((manifest, Digest::of_bytes(&bytes)))),
                Err(e) => Err(RegistryError::Protocol {
                    what: format!("cache entry {}:{tag}", self.name),
                    reason: format!("invalid manifest JSON: {e}"),
                }),
            },
            Err(RegistryError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Upload a blob of `store` unless the repository has it.
    fn upload(&self, store: &Store, blob: &Descriptor) -> Result<(), RegistryError> {
        if !self.client.blob_exists(&self.repo, &blob.digest)? {
            self.client.upload_blob(&self.repo, &blob.digest, store, blob.size, None, None)?;
        }
        Ok(())
    }
}
