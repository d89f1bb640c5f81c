//! Push and pull against Debian's real `docker-registry` on 127.0.0.1, checked with skopeo and with a
//! counting proxy in front of the registry.

#[path = "support/registry.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::Command;

use kolla_oci::registry::{self, Client, MountOutcome, Reference, RegistryError, RegistryOptions};
use kolla_oci::store::Store;
use support::{Proxy, TestRegistry, make_image_set, run_ok, skopeo_digest};

fn opts(threads: usize) -> RegistryOptions {
    RegistryOptions { threads, retries: 2, ..RegistryOptions::default() }
}

fn targets(images: &[support::FixtureImage], registry: &str, namespace: &str) -> Vec<(String, Reference)> {
    images
        .iter()
        .map(|i| (i.tag.clone(), registry::push_target(&i.tag, Some(registry), Some(namespace), None).unwrap()))
        .collect()
}

#[test]
fn push_uploads_shared_blobs_once_then_pull_round_trips() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("oci")).unwrap();
    let images = make_image_set(&store, &["alpha", "beta", "gamma"], 300_000);
    let pushes = targets(&images, &proxy.addr(), "kolla");

    let report = registry::push(&store, &pushes, &opts(3)).unwrap();

    // Every distinct blob's bytes reached the registry exactly once.
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for img in &images {
        expected.insert(img.config.to_string(), store.blob_size(&img.config).unwrap());
        for l in &img.layers {
            expected.insert(l.digest.to_string(), l.size);
        }
    }
    assert_eq!(expected.len(), 2 + 3 + 3, "2 shared base layers, 3 own layers, 3 configs");
    assert_eq!(proxy.uploaded_bytes(), expected, "bytes received per digest");
    let upload_puts = proxy.events().iter().filter(|e| e.method == "PUT" && e.param("digest").is_some()).count();
    assert_eq!(upload_puts, expected.len(), "one completed upload per distinct blob");

    // The other two repositories got both base layers by cross-repository mount.
    let base: Vec<String> = images[0].layers[..2].iter().map(|l| l.digest.to_string()).collect();
    let mut mounts = proxy.mounts();
    mounts.sort();
    assert_eq!(mounts.len(), 4, "{mounts:?}");
    for (repo, digest, from, status) in &mounts {
        assert_eq!(*status, 201, "mount of {digest} into {repo} from {from}");
        assert!(base.contains(digest), "only base layers are shared: {digest}");
        assert_ne!(repo, from);
    }
    assert_eq!(
        report,
        registry::PushReport {
            uploaded_blobs: 8,
            uploaded_bytes: expected.values().sum(),
            mounted_blobs: 4,
            existing_blobs: 0,
            manifests: 3,
            referrers_tags: 0,
        }
    );

    // skopeo sees the manifests we stored, byte for byte (same digest), and can copy them.
    let copy_dir = tempfile::tempdir().unwrap();
    for (img, (_, target)) in images.iter().zip(&pushes) {
        let name = format!("{}/{}:{}", reg.addr(), target.repository(), target.tag().unwrap());
        assert_eq!(skopeo_digest(&name, &[]), img.manifest.digest.to_string(), "{name}");
        run_ok(
            Command::new("skopeo").args(["copy", "--src-tls-verify=false", &format!("docker://{name}")]).arg(format!(
                "oci:{}:{}",
                copy_dir.path().display(),
                target.tag().unwrap()
            )),
        );
    }

    // A second push uploads nothing.
    proxy.clear();
    let again = registry::push(&store, &pushes, &opts(3)).unwrap();
    assert_eq!(again, registry::PushReport { existing_blobs: 12, manifests: 3, ..Default::default() }, "second push");
    assert!(proxy.uploaded_bytes().is_empty());
    assert!(
        proxy.events().iter().all(|e| e.method != "PATCH" && e.method != "POST"),
        "no upload sessions on the second push: {:?}",
        proxy.events()
    );

    // Pulling into an empty store gives the same digests and a usable image.
    let pulled_dir = tempfile::tempdir().unwrap();
    let pulled = Store::open(&pulled_dir.path().join("oci")).unwrap();
    for (img, (_, target)) in images.iter().zip(&pushes) {
        let desc = registry::pull(&pulled, target, None, &opts(2)).unwrap();
        assert_eq!(desc.digest, img.manifest.digest);
        let loaded = pulled.load_image(&target.to_string()).unwrap();
        assert_eq!(loaded.manifest_digest, img.manifest.digest);
        for l in &img.layers {
            assert_eq!(pulled.blob_size(&l.digest).unwrap(), l.size);
        }
    }
    assert!(pulled.fsck().unwrap().is_ok());
    // Pulling by digest works and checks the pin.
    let by_digest = Reference::parse(&format!(
        "{}@{}",
        pushes[0].1.to_string().split(':').take(2).collect::<Vec<_>>().join(":"),
        images[0].manifest.digest
    ))
    .unwrap();
    assert_eq!(registry::pull(&pulled, &by_digest, None, &opts(1)).unwrap().digest, images[0].manifest.digest);
}

#[test]
fn corrupted_blob_is_refused_and_not_stored() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("oci")).unwrap();
    let images = make_image_set(&store, &["one"], 50_000);
    let pushes = targets(&images, &proxy.addr(), "corrupt");
    registry::push(&store, &pushes, &opts(2)).unwrap();

    let victim = images[0].layers[2].digest;
    proxy.corrupt_blob(Some(victim.to_string()));
    let empty_dir = tempfile::tempdir().unwrap();
    let empty = Store::open(&empty_dir.path().join("oci")).unwrap();
    let err = registry::pull(&empty, &pushes[0].1, None, &opts(1)).unwrap_err();
    assert!(matches!(&err, RegistryError::DigestMismatch { expected, .. } if *expected == victim.to_string()), "{err}");
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert!(!empty.has_blob(&victim), "the corrupted blob must not be in the store");
    assert!(empty.resolve(&pushes[0].1.to_string()).unwrap().is_none(), "no tag after a failed pull");
    assert!(!empty.has_blob(&images[0].manifest.digest), "no manifest after a failed pull");
    // Nothing was left behind in the store's temp dir either.
    let leftovers: Vec<_> = std::fs::read_dir(empty_dir.path().join("oci/.tmp"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // With honest bytes the same pull succeeds.
    proxy.corrupt_blob(None);
    assert_eq!(registry::pull(&empty, &pushes[0].1, None, &opts(1)).unwrap().digest, images[0].manifest.digest);
}

#[test]
fn chunked_upload_and_refused_mount_fallback() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("oci")).unwrap();
    let images = make_image_set(&store, &["chunky"], 200_000);
    let pushes = targets(&images, &proxy.addr(), "chunked");
    let chunk = 64 << 10;
    let report = registry::push(&store, &pushes, &RegistryOptions { chunk_size: Some(chunk), ..opts(2) }).unwrap();
    assert_eq!(report.uploaded_blobs, 4);
    let patches = proxy.events().iter().filter(|e| e.method == "PATCH").count() as u64;
    let expected_patches: u64 = std::iter::once(store.blob_size(&images[0].config).unwrap())
        .chain(images[0].layers.iter().map(|l| l.size))
        .map(|s| s.div_ceil(chunk))
        .sum();
    assert_eq!(patches, expected_patches);
    assert!(proxy.events().iter().filter(|e| e.method == "PATCH").all(|e| e.request_bytes <= chunk));
    let name = format!("{}/{}:test", reg.addr(), pushes[0].1.repository());
    assert_eq!(skopeo_digest(&name, &[]), images[0].manifest.digest.to_string());

    // A mount from a repository that lacks the blob is refused with 202 + an upload session, which we use.
    let client = Client::new(&proxy.addr(), &proxy.addr(), &opts(1)).unwrap();
    let layer = &images[0].layers[2];
    let session = match client.mount_blob("other/repo", &layer.digest, "no/such-repo").unwrap() {
        MountOutcome::Upload(url) => url,
        MountOutcome::Mounted => panic!("registry mounted from a repository that does not hold the blob"),
    };
    client.upload_blob("other/repo", &layer.digest, &store, layer.size, Some(session), None).unwrap();
    assert!(client.blob_exists("other/repo", &layer.digest).unwrap());
    assert!(!client.blob_exists("other/repo", &images[0].config).unwrap());
}

#[test]
fn registry_errors_are_reported_with_their_code() {
    let reg = TestRegistry::start();
    let client = Client::new(&reg.addr(), &reg.addr(), &opts(1)).unwrap();
    let err = client.get_manifest("nothing/here", "latest").unwrap_err().to_string();
    assert!(err.contains("404") && err.contains("MANIFEST_UNKNOWN"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("oci")).unwrap();
    let err = registry::push(
        &store,
        &[("kolla/absent:x".into(), Reference::parse(&format!("{}/a:b", reg.addr())).unwrap())],
        &opts(1),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("kolla/absent:x"), "{err}");
}

#[test]
fn transient_failures_are_retried_within_the_limit() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("oci")).unwrap();
    let images = make_image_set(&store, &["flaky"], 30_000);
    let pushes = targets(&images, &proxy.addr(), "retry");

    // Two 503s on blob uploads and one 429 on the manifest: absorbed by 3 retries.
    proxy.fail_next("PUT", 503, 2);
    let report = registry::push(&store, &pushes, &RegistryOptions { retries: 3, ..opts(1) }).unwrap();
    assert_eq!((report.uploaded_blobs, report.manifests), (4, 1));
    let injected = proxy.events().iter().filter(|e| e.status == 503).count();
    assert_eq!(injected, 2);
    assert_eq!(skopeo_digest(&format!("{}/retry/flaky:test", reg.addr()), &[]), images[0].manifest.digest.to_string());

    // More failures than retries: the push fails with the registry's status and error code.
    let fresh = targets(&images, &proxy.addr(), "retry2");
    proxy.fail_next("POST", 503, 10);
    let err = registry::push(&store, &fresh, &RegistryOptions { retries: 2, ..opts(1) }).unwrap_err().to_string();
    assert!(err.contains("503") && err.contains("UNAVAILABLE: injected failure"), "{err}");
    proxy.fail_next("POST", 503, 0);
    let posts = proxy.events().iter().filter(|e| e.method == "POST" && e.status == 503).count();
    assert_eq!(posts, 3, "1 attempt + 2 retries");

    // 429 on the manifest PUT is retried too.
    proxy.fail_next("PUT", 429, 1);
    let again = registry::push(&store, &pushes, &RegistryOptions { retries: 1, ..opts(1) }).unwrap();
    assert_eq!(again.existing_blobs, 4);
}
