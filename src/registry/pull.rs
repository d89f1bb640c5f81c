//! Pull: manifest (choosing a platform from an index), then config and layers streamed into the store with
//! their digests verified, each layer's uncompressed digest checked against the config's diff_id, then the
//! manifest bytes verbatim, then the tag.

use std::io::{Read, Write};

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
    let blobs: Vec<&Descriptor> = std::iter::once(&manifest.config).chain(manifest.layers.iter()).collect();
    // A stored manifest was written only after its blobs were fetched and checked.
    let stored = store.has_blob(&digest) && blobs.iter().all(|b| store.has_blob(&b.digest));
    let fetched = if stored { 0 } else { fetch_blobs(store, &client, repo, &blobs, opts.threads.max(1))? };
    let config = store.read_config(&manifest.config)?;
    if !stored {
        check_diff_ids(store, reference, &manifest, &config.rootfs.diff_ids, opts.threads.max(1))?;
        store.put_blob(&bytes[..], Some(&digest)).map_err(RegistryError::Store)?;
    }
    let mut desc = Descriptor::new(media_type, digest, bytes.len() as u64);
    if !config.os.is_empty() && !config.architecture.is_empty() {
        desc.platform = Some(config.platform());
    }
    store.set_tag(tag, &desc)?;
    info!(%reference, %digest, blobs = blobs.len(), fetched, "pulled");
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

/// Fetch the blobs not yet in the store, `threads` at a time; returns how many were fetched.
fn fetch_blobs(
    store: &Store,
    client: &Client,
    repo: &str,
    blobs: &[&Descriptor],
    threads: usize,
) -> Result<usize, RegistryError> {
    let mut todo: Vec<&Descriptor> = blobs.iter().copied().filter(|d| !store.has_blob(&d.digest)).collect();
    todo.sort_by_key(|d| d.digest);
    todo.dedup_by_key(|d| d.digest);
    super::parallel(threads, &todo, |desc| fetch_blob(store, client, repo, desc))?;
    Ok(todo.len())
}

/// Check that every layer decompresses to the diff_id the config claims, before the image is tagged.
/// Extracted layers are shared by diff_id across all images of the store, so an image that lies about one
/// must never get a name. (A layer whose blob is absent — non-distributable — is checked when extracted.)
fn check_diff_ids(
    store: &Store,
    reference: &Reference,
    manifest: &Manifest,
    diff_ids: &[Digest],
    threads: usize,
) -> Result<(), RegistryError> {
    if diff_ids.len() != manifest.layers.len() {
        return Err(RegistryError::Protocol {
            what: format!("config {} of {reference}", manifest.config.digest),
            reason: format!("{} rootfs.diff_ids for {} layers", diff_ids.len(), manifest.layers.len()),
        });
    }
    let pairs: Vec<(&Descriptor, &Digest)> =
        manifest.layers.iter().zip(diff_ids).filter(|(l, _)| store.has_blob(&l.digest)).collect();
    super::parallel(threads, &pairs, |&(layer, claimed)| {
        let what = format!("layer {} of {reference}", layer.digest);
        let blob = store.open_blob(&layer.digest).map_err(RegistryError::Store)?;
        let (actual, _) = layers::uncompressed_digest(std::io::BufReader::with_capacity(1 << 20, blob))
            .map_err(|e| RegistryError::Io { what: format!("decompressing {what}"), source: e })?;
        if actual != *claimed {
            return Err(RegistryError::DigestMismatch {
                what: format!("uncompressed {what} (its diff_id)"),
                expected: claimed.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    })
}

/// Stream one blob into a store temp file; `commit` verifies the digest (nothing becomes visible on a
/// mismatch). A transfer that fails to start (connection error, 5xx, 429 with its `Retry-After`), breaks
/// off or stalls is restarted, at most `retries` times, as uploads are; its temp file goes with it.
pub(crate) fn fetch_blob(store: &Store, client: &Client, repo: &str, desc: &Descriptor) -> Result<(), RegistryError> {
    let what = format!("blob {} from {}/{repo}", desc.digest, client.registry());
    let mut attempt = 0;
    loop {
        match download(store, client, repo, desc, &what) {
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

/// One attempt of [`fetch_blob`].
fn download(store: &Store, client: &Client, repo: &str, desc: &Descriptor, what: &str) -> Result<(), RegistryError> {
    let mut resp = client.get_blob(repo, &desc.digest)?;
    let mut writer = store.blob_writer()?;
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let reason = if is_timeout(&e) {
                    format!(
                        "no data for {} s after {got} of {} bytes (stalled transfer)",
                        client.stall_timeout().as_secs_f32(),
                        desc.size
                    )
                } else {
                    format!("transfer broke off after {got} of {} bytes: {e}", desc.size)
                };
                return Err(RegistryError::Transfer { what: what.to_string(), reason });
            }
        };
        got += n as u64;
        if got > desc.size {
            return Err(RegistryError::Protocol {
                what: what.to_string(),
                reason: format!("registry sent more than the descriptor's {} bytes", desc.size),
            });
        }
        writer.write_all(&buf[..n]).map_err(|e| RegistryError::Io { what: format!("storing {what}"), source: e })?;
    }
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
    debug!(%digest, size, "blob fetched");
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
