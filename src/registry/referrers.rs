//! OCI 1.1 referrers: manifests that point at another manifest through their `subject` (an SBOM, a
//! provenance attestation, a signature), so that what describes an image travels with it without changing
//! the image's own digest.
//!
//! A registry with the referrers API lists them at `GET /v2/<name>/referrers/<digest>` and answers the
//! `PUT` of a manifest with a subject with an `OCI-Subject` header. Where it has not (Debian's
//! docker-registry 2.8 answers 404), the distribution spec's referrers tag schema stands in: the tag
//! `sha256-<hex>` of the subject holds an image index listing its referrers, which the pusher keeps up to
//! date. Two pushers adding referrers to one subject at the same moment can lose one entry (the spec's
//! read-modify-write has no lock); pushing again repairs it.

use std::collections::BTreeMap;

use layers::Digest;
use reqwest::StatusCode;
use reqwest::header;
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::client::{Client, MAX_MANIFEST, pull_scope};
use super::transport::{Retry, header_str, read_limited};
use super::{Reference, RegistryError, RegistryOptions};
use crate::store::{self, Manifest};

/// Most pages of a paginated referrers answer we follow.
const MAX_PAGES: usize = 64;

/// One referrer of a manifest, as the referrers API and the referrers tag schema list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    /// Media type of the referrer manifest.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// What it is (`application/spdx+json`, `application/vnd.in-toto+json`, …): the manifest's
    /// `artifactType`, else its config media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The referrer manifest's annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Fields we do not model, kept when the tag schema's index is rewritten.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Referrer {
    /// The index entry for a referrer manifest `bytes` of `media_type`: the spec's rules for
    /// `artifactType` and annotations.
    pub(crate) fn of_manifest(media_type: &str, bytes: &[u8], manifest: &Manifest) -> Referrer {
        let artifact_type = match manifest.extra.get("artifactType") {
            Some(serde_json::Value::String(t)) => Some(t.clone()),
            _ => Some(manifest.config.media_type.clone()),
        };
        Referrer {
            media_type: media_type.to_string(),
            digest: Digest::of_bytes(bytes),
            size: bytes.len() as u64,
            artifact_type,
            annotations: (!manifest.annotations.is_empty()).then(|| manifest.annotations.clone()),
            extra: BTreeMap::new(),
        }
    }
}

/// The image index both the referrers API and the tag schema use.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReferrersIndex {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Referrer>>,
    #[serde(flatten)]
    extra: BTreeMap<String, serde_json::Value>,
}

impl ReferrersIndex {
    fn empty() -> ReferrersIndex {
        ReferrersIndex {
            schema_version: 2,
            media_type: Some(store::MEDIA_OCI_INDEX.to_string()),
            manifests: Some(Vec::new()),
            extra: BTreeMap::new(),
        }
    }

    fn parse(what: &str, bytes: &[u8]) -> Result<ReferrersIndex, RegistryError> {
        let index: ReferrersIndex = serde_json::from_slice(bytes).map_err(|e| RegistryError::Protocol {
            what: what.to_string(),
            reason: format!("not an image index: {e}"),
        })?;
        if index.schema_version != 2 || index.media_type.as_deref().is_some_and(|m| m != store::MEDIA_OCI_INDEX) {
            return Err(RegistryError::Protocol {
                what: what.to_string(),
                reason: format!(
                    "not an OCI image index (schemaVersion {}, mediaType {:?})",
                    index.schema_version, index.media_type
                ),
            });
        }
        Ok(index)
    }
}

/// The referrers tag schema's tag for `subject`: `sha256-<hex>`.
pub fn referrers_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// The referrers of `subject` in `reference`'s repository, of `artifact_type` only when given: through the
/// referrers API, else the referrers tag schema.
pub fn referrers(
    reference: &Reference,
    subject: &Digest,
    artifact_type: Option<&str>,
    opts: &RegistryOptions,
) -> Result<Vec<Referrer>, RegistryError> {
    let client = Client::new(reference.registry(), reference.api_host(), opts)?;
    client.referrers(reference.repository(), subject, artifact_type)
}

impl Client {
    /// See [`referrers`].
    pub fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, RegistryError> {
        let all = match self.referrers_api(repo, subject, artifact_type)? {
            Some(list) => list,
            None => {
                debug!(repo, %subject, "no referrers API: reading the referrers tag");
                self.referrers_tag_index(repo, subject)?.manifests.unwrap_or_default()
            }
        };
        // The registry may ignore the filter (it says so in OCI-Filters-Applied); apply it again here.
        Ok(all.into_iter().filter(|r| artifact_type.is_none_or(|t| r.artifact_type.as_deref() == Some(t))).collect())
    }

    /// `GET /v2/<repo>/referrers/<digest>` and its next pages; `None` when the registry has no such API.
    fn referrers_api(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Referrer>>, RegistryError> {
        let mut url = self.url(&format!("v2/{repo}/referrers/{subject}"));
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        let what = format!("GET referrers of {subject} in {}/{repo}", self.registry());
        let mut out = Vec::new();
        for page in 0..MAX_PAGES {
            let resp = self.send(&what, &[pull_scope(repo)], Retry::Transient, &|| {
                Ok(self.http.get(url.clone()).header(header::ACCEPT, store::MEDIA_OCI_INDEX))
            })?;
            match resp.status() {
                StatusCode::NOT_FOUND if page == 0 => return Ok(None),
                s if s.is_success() => {}
                _ => return Err(self.status_error(&what, resp)),
            }
            let next = header_str(resp.headers(), header::LINK.as_str()).and_then(next_link).map(str::to_string);
            let bytes =
                read_limited(resp, MAX_MANIFEST).map_err(|e| RegistryError::Io { what: what.clone(), source: e })?;
            out.extend(ReferrersIndex::parse(&what, &bytes)?.manifests.unwrap_or_default());
            match next {
                Some(link) => {
                    url = self.url(&link);
                    // A next page elsewhere is held to the same rules as any redirect.
                    self.check_destination(&what, &url)?;
                }
                None => return Ok(Some(out)),
            }
        }
        Err(RegistryError::Protocol { what, reason: format!("more than {MAX_PAGES} pages of referrers") })
    }

    /// The index the subject's referrers tag holds; an empty one when there is no such tag.
    fn referrers_tag_index(&self, repo: &str, subject: &Digest) -> Result<ReferrersIndex, RegistryError> {
        let tag = referrers_tag(subject);
        match self.get_manifest(repo, &tag) {
            Ok((bytes, _, _)) => {
                ReferrersIndex::parse(&format!("referrers tag {}/{repo}:{tag}", self.registry()), &bytes)
            }
            Err(RegistryError::Status { status: 404, .. }) => Ok(ReferrersIndex::empty()),
            Err(e) => Err(e),
        }
    }

    /// Add `new` to the subject's referrers tag (creating it); returns whether the tag was written (not
    /// when every entry was listed already).
    pub(crate) fn add_to_referrers_tag(
        &self,
        repo: &str,
        subject: &Digest,
        new: &[Referrer],
    ) -> Result<bool, RegistryError> {
        let mut index = self.referrers_tag_index(repo, subject)?;
        let list = index.manifests.get_or_insert_with(Vec::new);
        let before = list.len();
        for r in new {
            if !list.iter().any(|x| x.digest == r.digest) {
                list.push(r.clone());
            }
        }
        if list.len() == before {
            return Ok(false);
        }
        let bytes = store::canonical_json(&index);
        let tag = referrers_tag(subject);
        self.put_manifest(repo, &tag, store::MEDIA_OCI_INDEX, &bytes, &Digest::of_bytes(&bytes))?;
        info!(repo, %subject, tag, referrers = index.manifests.as_ref().map_or(0, Vec::len), "referrers tag written");
        Ok(true)
    }
}

/// The target of `Link: <url>; rel="next"`.
fn next_link(link: &str) -> Option<&str> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p == "rel=\"next\"" || p == "rel=next"
        });
        is_next.then(|| target.trim().trim_start_matches('<').trim_end_matches('>'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_schema_names() {
        let d = Digest::of_bytes(b"");
        assert_eq!(referrers_tag(&d), "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert!(Reference::parse(&format!("r.io/a/b:{}", referrers_tag(&d))).is_ok(), "a valid tag");
    }

    #[test]
    fn links() {
        assert_eq!(
            next_link(r#"</v2/a/referrers/sha256:x?n=2&last=y>; rel="next""#),
            Some("/v2/a/referrers/sha256:x?n=2&last=y")
        );
        assert_eq!(next_link(r#"<https://r/p1>; rel="prev", <https://r/p3>; rel=next"#), Some("https://r/p3"));
        assert_eq!(next_link(r#"<https://r/p1>; rel="prev""#), None);
    }

    #[test]
    fn index_entries_follow_the_spec() {
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "artifactType":"application/spdx+json",
            "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},
            "layers":[],"annotations":{"org.opencontainers.image.created":"1970-01-01T00:00:00Z"}}"#;
        let m: Manifest = serde_json::from_slice(body).unwrap();
        let r = Referrer::of_manifest(store::MEDIA_OCI_MANIFEST, body, &m);
        assert_eq!(r.artifact_type.as_deref(), Some("application/spdx+json"));
        assert_eq!(r.digest, Digest::of_bytes(body));
        assert_eq!(r.annotations.unwrap()["org.opencontainers.image.created"], "1970-01-01T00:00:00Z");
        // Without artifactType the config media type stands in.
        let mut m2 = m.clone();
        m2.extra.clear();
        assert_eq!(
            Referrer::of_manifest(store::MEDIA_OCI_MANIFEST, body, &m2).artifact_type.as_deref(),
            Some("application/vnd.oci.empty.v1+json")
        );
        // Unknown entry fields survive a rewrite of the tag's index; a non-index is refused.
        let idx = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"m","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"data":"e30="}]}"#;
        let parsed = ReferrersIndex::parse("t", idx).unwrap();
        assert!(String::from_utf8(store::canonical_json(&parsed)).unwrap().contains(r#""data":"e30=""#));
        assert!(
            ReferrersIndex::parse(
                "t",
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#
            )
            .is_err()
        );
        assert!(ReferrersIndex::parse("t", b"[]").is_err());
    }
}
