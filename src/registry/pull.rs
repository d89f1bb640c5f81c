//! Pull: manifest (choosing a platform from an index), then the config, then the layers streamed into the
//! store with both digests checked in the same read — the blob's as it is written, the uncompressed
//! stream's (decompressed on the way) against the diff_id the config claims — then the manifest bytes
//! verbatim, then the tag. A layer already in the store is read once to check its claim instead.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use layers::Digest;
use tracing::{debug, info, warn};

use super::client::Client;
use super::transport::is_timeout;
use super::{RegistryError, RegistryOptions};
use crate::registry::Reference;
use crate::store::{self, Descriptor, Index, Manifest, Platform, Store};

/// Pull `reference` into `store` and tag it there as `reference.to_string()` (the fully qualified name,
/// e.g. `docker.io/library/debian:bookworm`). For an index / manifest list the manifest for `platform`
/// (default: the host's) is taken. Blobs already in the store are not fetched. Returns the tagged
/// manifest descriptor (with its platform).
pub fn pull(
    store: &Store,
    reference: &Reference,
    platform: Option<&Platform>,
    opts: &RegistryOptions,
) -> Result<Descriptor, RegistryError> {
    pull_as(store, reference, &reference.to_string(), platform, opts)
}

/// [`pull`], tagging the image `tag` in the store (a mirror's image under the name it mirrors). A
/// manifest the store holds already with all its blobs is only tagged: re-resolving an unchanged tag
/// costs its manifest requests, not its layers.
pub fn pull_as(
    store: &Store,
    reference: &Reference,
    tag: &str,
    platform: Option<&Platform>,
    opts: &RegistryOptions,
) -> Result<Descriptor, RegistryError> {
    let host = Platform::host();
    let platform = platform.unwrap_or(&host);
    let client = Client::new(reference.registry(), reference.api_host(), opts)?;
    let repo = reference.repository();
    let (bytes, media_type, digest) = fetch_manifest(&client, reference, &reference.manifest_reference())?;
    if let Some(pinned) = reference.digest()
        && *pinned != digest
    {
        return Err(RegistryError::DigestMismatch {
            what: format!("manifest of {reference}"),
            expected: pinned.to_string(),
            actual: digest.to_string(),
        });
    }
    let (bytes, media_type, digest) = if is_index_doc(&media_type, &bytes) {
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
            what: format!("index {digest} of {reference}"),
            reason: format!("invalid JSON: {e}"),
        })?;
        let chosen = select_platform(&index, platform).ok_or_else(|| RegistryError::NoPlatform {
            reference: reference.to_string(),
            wanted: platform.to_string(),
            available: index
                .manifests
                .iter()
                .map(|d| d.platform.as_ref().map_or_else(|| "unspecified".to_string(), Platform::to_string))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        info!(%reference, platform = %platform, manifest = %chosen.digest, "selected platform from index");
        let (b, m, d) = fetch_manifest(&client, reference, &chosen.digest.to_string())?;
        if d != chosen.digest || b.len() as u64 != chosen.size {
            return Err(RegistryError::DigestMismatch {
                what: format!("platform manifest of {reference}"),
                expected: format!("{} ({} bytes)", chosen.digest, chosen.size),
                actual: format!("{d} ({} bytes)", b.len()),
            });
        }
        if is_index_doc(&m, &b) {
            return Err(RegistryError::Protocol {
                what: format!("manifest {d} of {reference}"),
                reason: "nested index where an image manifest was expected".into(),
            });
        }
        (b, if m.is_empty() { chosen.media_type.clone() } else { m }, d)
    } else {
        (bytes, media_type, digest)
    };
    let manifest = parse_manifest(reference, &digest, &bytes)?;
    let media_type = manifest.media_type.clone().filter(|m| !m.is_empty()).unwrap_or(media_type);
    if !store::is_manifest(&media_type) {
        return Err(RegistryError::Protocol {
            what: format!("manifest {digest} of {reference}"),
            reason: format!("unsupported manifest media type {media_type:?}"),
        });
    }
    let threads = opts.threads.max(1);
    let fetched = usize::from(get_blob(store, &client, repo, &manifest.config, &[])?);
    let config = store.read_config(&manifest.config)?;
    let fetched = fetched + get_layers(store, &client, reference, &manifest, &config.rootfs.diff_ids, threads)?;
    store.put_blob(&bytes[..], Some(&digest)).map_err(RegistryError::Store)?;
    let mut desc = Descriptor::new(media_type, digest, bytes.len() as u64);
    if !config.os.is_empty() && !config.architecture.is_empty() {
        desc.platform = Some(config.platform());
    }
    store.set_tag(tag, &desc)?;
    info!(%reference, %digest, blobs = manifest.layers.len() + 1, fetched, "pulled");
    Ok(desc)
}

/// The image `reference` names, pulling it only when the store has no tag of that name yet. This is what
/// a build's `FROM` of an image that is not in the store calls.
pub fn ensure_image(
    store: &Store,
    reference: &Reference,
    platform: Option<&Platform>,
    opts: &RegistryOptions,
) -> Result<Descriptor, RegistryError> {
    if let Some(desc) = store.resolve(&reference.to_string())? {
        debug!(%reference, "already in the store");
        return Ok(desc);
    }
    pull(store, reference, platform, opts)
}

/// GET a manifest and check its sha256 against `Docker-Content-Digest` (when the registry sends one).
fn fetch_manifest(
    client: &Client,
    reference: &Reference,
    what: &str,
) -> Result<(Vec<u8>, String, Digest), RegistryError> {
    let (bytes, media_type, header) = client.get_manifest(reference.repository(), what)?;
    let digest = Digest::of_bytes(&bytes);
    if let Some(h) = header
        && h.starts_with("sha256:")
        && h != digest.to_string()
    {
        return Err(RegistryError::DigestMismatch {
            what: format!("manifest {what} of {reference} (Docker-Content-Digest)"),
            expected: h,
            actual: digest.to_string(),
        });
    }
    Ok((bytes, media_type, digest))
}

fn is_index_doc(media_type: &str, bytes: &[u8]) -> bool {
    if store::is_index(media_type) {
        return true;
    }
    if store::is_manifest(media_type) {
        return false;
    }
    // No or generic Content-Type: look at the document.
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|v| {
        v.get("mediaType").and_then(|m| m.as_str()).is_some_and(store::is_index)
            || (v.get("mediaType").is_none() && v.get("manifests").is_some())
    })
}

fn parse_manifest(reference: &Reference, digest: &Digest, bytes: &[u8]) -> Result<Manifest, RegistryError> {
    let what = format!("manifest {digest} of {reference}");
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::Protocol { what: what.clone(), reason: format!("invalid JSON: {e}") })?;
    let version = value.get("schemaVersion").and_then(|v| v.as_u64());
    if version != Some(2) {
        return Err(RegistryError::Protocol {
            what,
            reason: format!("unsupported schemaVersion {version:?} (only v2 schema 2 and OCI manifests)"),
        });
    }
    serde_json::from_value(value)
        .map_err(|e| RegistryError::Protocol { what, reason: format!("invalid manifest: {e}") })
}

/// The index entry for `want`: exact platform, then a compatible one, then the only entry of an index
/// without platforms. Attestation entries (`vnd.docker.reference.type`) never count.
fn select_platform<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    let candidates: Vec<&Descriptor> =
        index.manifests.iter().filter(|d| !d.annotations.contains_key("vnd.docker.reference.type")).collect();
    let exact = candidates.iter().find(|d| d.platform.as_ref().is_some_and(|p| p == want));
    let loose = || candidates.iter().find(|d| d.platform.as_ref().is_some_and(|p| p.matches(want)));
    let single = || match candidates.as_slice() {
        [only] if only.platform.is_none() => Some(only),
        _ => None,
    };
    exact.or_else(loose).or_else(single).copied()
}

/// Fetch the layers not yet in the store, `threads` at a time, each checked against the diff_ids the config
/// claims for it while it streams in; check the claims on those already there by reading them once. Extracted
/// layers are shared by diff_id across all images of the store, so an image that lies about one must never get
/// a name. Returns how many blobs were fetched.
fn get_layers(
    store: &Store,
    client: &Client,
    reference: &Reference,
    manifest: &Manifest,
    diff_ids: &[Digest],
    threads: usize,
) -> Result<usize, RegistryError> {
    if diff_ids.len() != manifest.layers.len() {
        return Err(RegistryError::Protocol {
            what: format!("config {} of {reference}", manifest.config.digest),
            reason: format!("{} rootfs.diff_ids for {} layers", diff_ids.len(), manifest.layers.len()),
        });
    }
    // One check per blob, of every claim made about it (a manifest may list a blob twice).
    let mut claims: BTreeMap<Digest, (&Descriptor, Vec<Digest>)> = BTreeMap::new();
    for (layer, diff_id) in manifest.layers.iter().zip(diff_ids) {
        claims.entry(layer.digest).or_insert_with(|| (layer, Vec::new())).1.push(*diff_id);
    }
    let todo: Vec<(&Descriptor, Vec<Digest>)> = claims.into_values().collect();
    let fetched = std::sync::atomic::AtomicUsize::new(0);
    super::parallel(threads, &todo, |(layer, claimed)| {
        if get_blob(store, client, reference.repository(), layer, claimed)? {
            fetched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    })?;
    Ok(fetched.into_inner())
}

/// Make blob `desc` present: fetched (see [`fetch_checked`]) if the store lacks it, else marked as used (so
/// that a `gc` with a grace period keeps it until the image is tagged) and, for a layer, read once to check
/// the diff_ids claimed for it. Returns whether it was fetched.
fn get_blob(
    store: &Store,
    client: &Client,
    repo: &str,
    desc: &Descriptor,
    diff_ids: &[Digest],
) -> Result<bool, RegistryError> {
    if !store.reuse_blob(&desc.digest) {
        fetch_checked(store, client, repo, desc, diff_ids)?;
        return Ok(true);
    }
    if let Some(claimed) = diff_ids.first() {
        let what = format!("layer {} from {}/{repo}", desc.digest, client.registry());
        let blob = store.open_blob(&desc.digest).map_err(RegistryError::Store)?;
        let actual = layers::uncompressed_digest(io::BufReader::with_capacity(1 << 20, blob))
            .map(|(d, _)| d)
            .map_err(|e| RegistryError::Io { what: format!("decompressing {what}"), source: e });
        check_claims(&what, actual, diff_ids)?;
        debug!(layer = %desc.digest, %claimed, "layer already in the store, diff_id checked");
    }
    Ok(false)
}

/// Whether the uncompressed digest `actual` of a layer meets every diff_id claimed for it.
fn check_claims(what: &str, actual: Result<Digest, RegistryError>, claimed: &[Digest]) -> Result<(), RegistryError> {
    let actual = actual?;
    match claimed.iter().find(|c| **c != actual) {
        Some(c) => Err(RegistryError::DigestMismatch {
            what: format!("uncompressed {what} (its diff_id)"),
            expected: c.to_string(),
            actual: actual.to_string(),
        }),
        None => Ok(()),
    }
}

/// Stream one blob into a store temp file; `commit` verifies the digest (nothing becomes visible on a
/// mismatch). A transfer that fails to start (connection error, 5xx, 429 with its `Retry-After`), breaks
/// off or stalls is restarted, at most `retries` times, as uploads are; its temp file goes with it.
pub(crate) fn fetch_blob(store: &Store, client: &Client, repo: &str, desc: &Descriptor) -> Result<(), RegistryError> {
    fetch_checked(store, client, repo, desc, &[])
}

/// [`fetch_blob`], also decompressing the stream on its way to the store and checking that it hashes to
/// every diff_id in `diff_ids` (none: no check) — one read of the download for both checks. The blob is
/// stored (it is what its digest names) even when a claim fails; the caller then refuses the image.
fn fetch_checked(
    store: &Store,
    client: &Client,
    repo: &str,
    desc: &Descriptor,
    diff_ids: &[Digest],
) -> Result<(), RegistryError> {
    let what = format!("blob {} from {}/{repo}", desc.digest, client.registry());
    let mut attempt = 0;
    loop {
        match download(store, client, repo, desc, diff_ids, &what) {
            Err(e) if e.is_transient() && attempt < client.retries() => {
                let wait = e.retry_after().unwrap_or_else(|| client.backoff(attempt));
                warn!(what, error = %e, attempt = attempt + 1, of = client.retries(), ?wait, "retrying download");
                std::thread::sleep(wait);
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The body of a blob download on its way into a store temp file: every byte read through it is written
/// to the blob, and the first failure (transport, size, disk) is kept to be reported as such, rather than
/// as whatever the decompressor reading through it makes of it.
struct Incoming<'a, R> {
    body: R,
    blob: &'a mut store::BlobWriter,
    desc: &'a Descriptor,
    got: u64,
    failure: Option<RegistryError>,
    stall: std::time::Duration,
    what: &'a str,
}

impl<R: Read> Read for Incoming<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failure.is_some() {
            return Err(io::Error::other("download failed"));
        }
        let n = loop {
            match self.body.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let (got, size) = (self.got, self.desc.size);
                    let reason = if is_timeout(&e) {
                        format!(
                            "no data for {} s after {got} of {size} bytes (stalled transfer)",
                            self.stall.as_secs_f32()
                        )
                    } else {
                        format!("transfer broke off after {got} of {size} bytes: {e}")
                    };
                    return Err(self.fail(RegistryError::Transfer { what: self.what.to_string(), reason }));
                }
            }
        };
        self.got += n as u64;
        if self.got > self.desc.size {
            let reason = format!("registry sent more than the descriptor's {} bytes", self.desc.size);
            return Err(self.fail(RegistryError::Protocol { what: self.what.to_string(), reason }));
        }
        if let Err(e) = self.blob.write_all(&buf[..n]) {
            return Err(self.fail(RegistryError::Io { what: format!("storing {}", self.what), source: e }));
        }
        Ok(n)
    }
}

impl<R> Incoming<'_, R> {
    fn fail(&mut self, e: RegistryError) -> io::Error {
        let err = io::Error::other(e.to_string());
        self.failure = Some(e);
        err
    }
}

/// One attempt of [`fetch_checked`].
fn download(
    store: &Store,
    client: &Client,
    repo: &str,
    desc: &Descriptor,
    diff_ids: &[Digest],
    what: &str,
) -> Result<(), RegistryError> {
    let resp = client.get_blob(repo, &desc.digest)?;
    let mut writer = store.blob_writer()?;
    let mut incoming =
        Incoming { body: resp, blob: &mut writer, desc, got: 0, failure: None, stall: client.stall_timeout(), what };
    let uncompressed = (!diff_ids.is_empty()).then(|| layers::uncompressed_digest(&mut incoming));
    // What the decompressor left unread (all of it when there is no claim to check) still goes to the blob.
    let rest = io::copy(&mut incoming, &mut io::sink());
    let (got, failure) = (incoming.got, incoming.failure.take());
    if let Some(e) = failure {
        return Err(e);
    }
    rest.map_err(|e| RegistryError::Io { what: format!("storing {what}"), source: e })?;
    if got != desc.size {
        return Err(RegistryError::Protocol {
            what: what.to_string(),
            reason: format!("descriptor says {} bytes, registry sent {got}", desc.size),
        });
    }
    writer.flush().map_err(|e| RegistryError::Io { what: format!("storing {what}"), source: e })?;
    let (digest, size) = writer.commit(Some(&desc.digest)).map_err(|e| match e {
        store::StoreError::DigestMismatch { expected, actual, .. } => RegistryError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        },
        other => RegistryError::Store(other),
    })?;
    if let Some(actual) = uncompressed {
        let actual = actual.map(|(d, _)| d).map_err(|e| RegistryError::Protocol {
            what: what.to_string(),
            reason: format!("not a layer this tool can read (decompressing it failed: {e})"),
        });
        check_claims(what, actual, diff_ids)?;
    }
    debug!(%digest, size, checked = !diff_ids.is_empty(), "blob fetched");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str, variant: Option<&str>) -> Descriptor {
        let mut d = Descriptor::new(store::MEDIA_OCI_MANIFEST, Digest::of_bytes(arch.as_bytes()), 1);
        d.platform = Some(Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.map(Into::into),
            ..Platform::default()
        });
        d
    }

    #[test]
    fn platform_selection() {
        let index = Index {
            schema_version: 2,
            media_type: Some(store::MEDIA_OCI_INDEX.into()),
            manifests: vec![entry("arm", Some("v7")), entry("arm64", Some("v8")), entry("amd64", None)],
            annotations: Default::default(),
            extra: Default::default(),
        };
        let want = |a: &str, v: Option<&str>| Platform {
            architecture: a.into(),
            os: "linux".into(),
            variant: v.map(Into::into),
            ..Platform::default()
        };
        assert_eq!(select_platform(&index, &want("amd64", None)).unwrap().digest, index.manifests[2].digest);
        assert_eq!(select_platform(&index, &want("arm64", None)).unwrap().digest, index.manifests[1].digest);
        assert!(select_platform(&index, &want("arm", Some("v6"))).is_none());
        assert!(select_platform(&index, &want("s390x", None)).is_none());
    }

    #[test]
    fn index_detection() {
        assert!(is_index_doc(store::MEDIA_DOCKER_LIST, b"{}"));
        assert!(!is_index_doc(store::MEDIA_DOCKER_MANIFEST, br#"{"manifests":[]}"#));
        assert!(is_index_doc("application/json", br#"{"schemaVersion":2,"manifests":[]}"#));
        assert!(!is_index_doc("", br#"{"schemaVersion":2,"config":{}}"#));
    }
}
