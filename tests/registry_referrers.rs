//! OCI 1.1 referrers (an SBOM and a provenance attestation of an image) pushed to and found in Debian's
//! real `docker-registry`, which has no referrers API: through the referrers tag schema, read back with
//! skopeo. Then the referrers API path, against our proxy playing an OCI 1.1 registry.

#[path = "support/registry.rs"]
mod support;

use kolla_oci::registry::{self, Reference, RegistryOptions, referrers_tag};
use kolla_oci::store::{self, Descriptor, Store};
use support::{Proxy, TestRegistry, make_image_set, run_ok, skopeo_digest};

const SPDX: &str = "application/spdx+json";
const IN_TOTO: &str = "application/vnd.in-toto+json";

/// Store an OCI 1.1 artifact manifest: `artifactType`, the empty config, one layer holding `doc`, and
/// `subject` = the image; returns its descriptor.
fn put_artifact(store: &Store, subject: &Descriptor, artifact_type: &str, doc: &[u8]) -> Descriptor {
    let (empty, empty_size) = store.put_bytes(b"{}").unwrap();
    let (layer, layer_size) = store.put_bytes(doc).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": store::MEDIA_OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": empty_size},
        "layers": [{"mediaType": artifact_type, "digest": layer.to_string(), "size": layer_size}],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest.to_string(), "size": subject.size},
        "annotations": {"org.opencontainers.image.title": format!("{artifact_type} document")},
    });
    let (digest, size) = store.put_json(&manifest).unwrap();
    Descriptor::new(store::MEDIA_OCI_MANIFEST, digest, size)
}

fn opts() -> RegistryOptions {
    RegistryOptions { threads: 2, retries: 1, ..RegistryOptions::default() }
}

#[test]
fn referrers_go_through_the_tag_schema_on_docker_registry() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("oci")).unwrap();
    let image = make_image_set(&store, &["keystone"], 20_000).remove(0);
    let target = registry::push_target(&image.tag, Some(&proxy.addr()), Some("openstack"), None).unwrap();
    registry::push(&store, &[(image.tag.clone(), target.clone())], &opts()).unwrap();

    let sbom = put_artifact(&store, &image.manifest, SPDX, br#"{"spdxVersion":"SPDX-2.3"}"#);
    let provenance = put_artifact(&store, &image.manifest, IN_TOTO, br#"{"_type":"https://in-toto.io/Statement/v1"}"#);
    let report = registry::push_referrers(&store, &target, &[sbom.clone(), provenance.clone()], &opts()).unwrap();
    assert_eq!((report.manifests, report.referrers_tags), (2, 1), "{report:?}");
    // The shared empty config went up once.
    assert_eq!(report.uploaded_blobs + report.mounted_blobs + report.existing_blobs, 3, "{report:?}");

    // skopeo reads the referrers tag: an index listing both, with their artifact types and annotations.
    let tag = referrers_tag(&image.manifest.digest);
    let repo = format!("{}/openstack/keystone", reg.addr());
    let raw = run_ok(std::process::Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{repo}:{tag}"),
    ]));
    let index: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(index["mediaType"], store::MEDIA_OCI_INDEX);
    let listed: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["digest"].as_str().unwrap().to_string(), m["artifactType"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(listed, [(sbom.digest.to_string(), SPDX.into()), (provenance.digest.to_string(), IN_TOTO.into())]);
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.title"],
        "application/spdx+json document"
    );
    // The artifacts themselves, fetched by digest with skopeo, are our bytes; the image's digest is unchanged.
    for a in [&sbom, &provenance] {
        let raw = run_ok(std::process::Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{repo}@{}", a.digest),
        ]));
        assert_eq!(raw.as_bytes(), store.read_blob_bytes(&a.digest, 1 << 20).unwrap());
    }
    assert_eq!(skopeo_digest(&format!("{repo}:test"), &[]), image.manifest.digest.to_string());

    // Our client finds them the same way: the API answers 404, the tag is read.
    proxy.clear();
    let found = registry::referrers(&target, &image.manifest.digest, None, &opts()).unwrap();
    assert_eq!(found.iter().map(|r| r.digest).collect::<Vec<_>>(), [sbom.digest, provenance.digest]);
    let events = proxy.events();
    assert!(events.iter().any(|e| e.path.contains("/referrers/") && e.status == 404), "{events:?}");
    assert!(events.iter().any(|e| e.path.ends_with(&format!("/manifests/{tag}")) && e.status == 200), "{events:?}");
    let spdx = registry::referrers(&target, &image.manifest.digest, Some(SPDX), &opts()).unwrap();
    assert_eq!(spdx.iter().map(|r| r.digest).collect::<Vec<_>>(), [sbom.digest]);

    // Pushing the same referrers again writes nothing; a new one is added to the others.
    let again = registry::push_referrers(&store, &target, std::slice::from_ref(&sbom), &opts()).unwrap();
    assert_eq!((again.uploaded_blobs, again.referrers_tags), (0, 0), "{again:?}");
    let signature = put_artifact(&store, &image.manifest, "application/vnd.example.signature", b"sig");
    let third = registry::push_referrers(&store, &target, std::slice::from_ref(&signature), &opts()).unwrap();
    assert_eq!(third.referrers_tags, 1);
    let found = registry::referrers(&target, &image.manifest.digest, None, &opts()).unwrap();
    assert_eq!(found.iter().map(|r| r.digest).collect::<Vec<_>>(), [sbom.digest, provenance.digest, signature.digest]);

    // An image without referrers has none; pushing a manifest without a subject as a referrer is refused.
    let other = Reference::parse(&format!("{}/openstack/keystone:other", proxy.addr())).unwrap();
    assert!(registry::referrers(&other, &sbom.digest, None, &opts()).unwrap().is_empty());
    let err = registry::push_referrers(&store, &target, std::slice::from_ref(&image.manifest), &opts()).unwrap_err();
    assert!(err.to_string().contains("no subject"), "{err}");
}

#[test]
fn referrers_go_through_the_api_where_the_registry_has_it() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    proxy.emulate_referrers_api();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("oci")).unwrap();
    let image = make_image_set(&store, &["glance"], 20_000).remove(0);
    let target = registry::push_target(&image.tag, Some(&proxy.addr()), Some("openstack"), None).unwrap();
    registry::push(&store, &[(image.tag.clone(), target.clone())], &opts()).unwrap();

    let sbom = put_artifact(&store, &image.manifest, SPDX, b"{}");
    let provenance = put_artifact(&store, &image.manifest, IN_TOTO, b"{\"x\":1}");
    let report = registry::push_referrers(&store, &target, &[sbom.clone(), provenance.clone()], &opts()).unwrap();
    // The registry answered OCI-Subject: no referrers tag is written.
    assert_eq!((report.manifests, report.referrers_tags), (2, 0), "{report:?}");
    let tag = referrers_tag(&image.manifest.digest);
    assert!(!proxy.events().iter().any(|e| e.path.ends_with(&tag)), "a referrers tag was touched");

    proxy.clear();
    let found = registry::referrers(&target, &image.manifest.digest, None, &opts()).unwrap();
    let mut digests: Vec<_> = found.iter().map(|r| (r.digest, r.artifact_type.clone().unwrap())).collect();
    digests.sort();
    let mut expected = vec![(sbom.digest, SPDX.to_string()), (provenance.digest, IN_TOTO.to_string())];
    expected.sort();
    assert_eq!(digests, expected);
    let filtered = registry::referrers(&target, &image.manifest.digest, Some(IN_TOTO), &opts()).unwrap();
    assert_eq!(filtered.iter().map(|r| r.digest).collect::<Vec<_>>(), [provenance.digest]);
    let events = proxy.events();
    assert!(events.iter().all(|e| !e.path.contains("/manifests/")), "fell back to the tag schema: {events:?}");
    assert_eq!(events.iter().filter(|e| e.path.contains("/referrers/") && e.status == 200).count(), 2);
}
