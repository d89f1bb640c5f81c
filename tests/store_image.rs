//! Real images written through the store, checked with other people's tools: skopeo (oci:, docker-archive:,
//! oci-archive:), umoci (unpacks and checks diff_ids) and oci-image-tool; plus tags, index platform
//! selection, Docker v2s2 manifests, and the `images` / `save` commands.

#[path = "support/store.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use kolla_oci::store::{
    self, Descriptor, Index, MEDIA_DOCKER_CONFIG, MEDIA_DOCKER_LAYER_GZIP, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_MANIFEST, Manifest, Platform, Store, StoreError,
};
use layers::Digest;
use serde_json::Value;
use support::{busybox_rootfs, busybox_store, config_for, kolla_oci, make_image, put_layer, require_tool, run, run_ok};

const TAG: &str = "kolla/base:2026.2-debian-bookworm";
const APP: &str = "kolla/keystone:2026.2-debian-bookworm";

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

#[test]
fn busybox_image_is_read_by_skopeo_umoci_and_oci_image_tool() {
    let skopeo = require_tool("skopeo");
    let umoci = require_tool("umoci");
    let oit = require_tool("oci-image-tool");
    let dir = tempfile::tempdir().unwrap();
    let (store, desc, diff_ids) = busybox_store(dir.path(), TAG);
    let layout = store.root().to_str().unwrap();
    let image = store.load_image(TAG).unwrap();
    assert_eq!(image.manifest_digest, desc.digest);
    assert_eq!(image.config.rootfs.diff_ids, diff_ids);
    assert_eq!(image.manifest.media_type.as_deref(), Some(MEDIA_OCI_MANIFEST));

    // skopeo: the whole name after `oci:DIR:` is the ref.
    let inspect = json(&run_ok(Command::new(&skopeo).args(["inspect", &format!("oci:{layout}:{TAG}")])));
    assert_eq!(inspect["Digest"], desc.digest.to_string());
    let layer_digests: Vec<String> = image.manifest.layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(strings(&inspect["Layers"]), layer_digests);
    assert_eq!(inspect["Architecture"], Platform::host().architecture);
    let raw = run_ok(Command::new(&skopeo).args(["inspect", "--raw", &format!("oci:{layout}:{TAG}")]));
    assert_eq!(Digest::of_bytes(raw.as_bytes()), desc.digest, "skopeo --raw returns the stored manifest bytes");

    // umoci verifies every layer's digest and diff_id while unpacking.
    let bundle = dir.path().join("bundle");
    run_ok(Command::new(&umoci).args(["unpack", "--rootless", "--image", &format!("{layout}:{TAG}")]).arg(&bundle));
    let rootfs = bundle.join("rootfs");
    assert_eq!(std::fs::read(rootfs.join("bin/busybox")).unwrap(), std::fs::read("/bin/busybox").unwrap());
    assert_eq!(std::fs::read_link(rootfs.join("bin/sh")).unwrap(), Path::new("busybox"));
    assert_eq!(std::fs::read_to_string(rootfs.join("etc/os-release")).unwrap(), "ID=busybox\n");

    // oci-image-tool 1.0.0-rc1: `--type image` validates the layout, refs, manifests, configs and layer digests.
    run_ok(Command::new(&oit).args(["validate", "--type", "image", "--ref", &format!("name={TAG}"), layout]));
    run_ok(Command::new(&oit).args(["validate", "--type", "image", layout]));
    let nope = run(Command::new(&oit).args(["validate", "--type", "image", "--ref", "name=nope", layout]));
    assert!(!nope.status.success(), "oci-image-tool accepted a missing ref; the check above proves nothing");

    // skopeo's own docker-archive of it reads back with our diff_ids.
    let archive = dir.path().join("skopeo.tar");
    run_ok(Command::new(&skopeo).args([
        "copy",
        "-q",
        &format!("oci:{layout}:{TAG}"),
        &format!("docker-archive:{}:{TAG}", archive.display()),
    ]));
    let inspect =
        json(&run_ok(Command::new(&skopeo).arg("inspect").arg(format!("docker-archive:{}", archive.display()))));
    let want: Vec<String> = diff_ids.iter().map(Digest::to_string).collect();
    assert_eq!(strings(&inspect["Layers"]), want);
    assert!(store.fsck().unwrap().is_ok());
}

/// Two images sharing the base layer; `save` through the library and the CLI, read back by skopeo.
#[test]
fn save_writes_a_docker_archive_that_skopeo_reads() {
    let skopeo = require_tool("skopeo");
    let dir = tempfile::tempdir().unwrap();
    let (store, base_desc, base_ids) = busybox_store(dir.path(), TAG);
    let base_root = dir.path().join("rootfs-base");
    let app_root = dir.path().join("rootfs-app");
    support::add_files(&app_root, &[("etc/keystone/keystone.conf", "[DEFAULT]\n")]);
    let (app_desc, app_ids) = make_image(&store, APP, &[&base_root, &app_root]);
    assert_eq!(app_ids[0], base_ids[0], "same tree, same layer");

    let lib_tar = dir.path().join("lib.tar");
    let names = vec![TAG.to_owned(), APP.to_owned()];
    let stats =
        store::write_docker_archive(&store, &names, &Platform::host(), std::fs::File::create(&lib_tar).unwrap())
            .unwrap();
    // 2 manifests + 2 configs + 2 distinct layers: the shared base layer is written once.
    assert_eq!((stats.images, stats.blobs), (2, 6), "{stats:?}");

    let cli_tar = dir.path().join("cli.tar");
    run_ok(kolla_oci(dir.path()).args(["save", TAG, APP, "-o"]).arg(&cli_tar));
    assert_eq!(std::fs::read(&cli_tar).unwrap(), std::fs::read(&lib_tar).unwrap(), "save is deterministic");

    // Entries: each blob once; manifest.json lists both images.
    let mut archive = tar::Archive::new(std::fs::File::open(&cli_tar).unwrap());
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        assert!(files.insert(path.clone(), bytes).is_none(), "{path} written twice");
    }
    assert_eq!(files.keys().filter(|p| p.starts_with("blobs/sha256/")).count(), 6, "{:?}", files.keys());
    for (path, bytes) in &files {
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            assert_eq!(Digest::of_bytes(bytes).hex(), hex, "{path}");
        }
    }
    let manifest = json(std::str::from_utf8(&files["manifest.json"]).unwrap());
    assert_eq!(manifest.as_array().unwrap().len(), 2);
    assert_eq!(strings(&manifest[1]["RepoTags"]), [APP]);
    assert_eq!(manifest[1]["Layers"].as_array().unwrap().len(), 2);

    for (name, desc, ids) in [(TAG, &base_desc, &base_ids), (APP, &app_desc, &app_ids)] {
        let want: Vec<String> = ids.iter().map(Digest::to_string).collect();
        let inspect = json(&run_ok(
            Command::new(&skopeo).arg("inspect").arg(format!("docker-archive:{}:{name}", cli_tar.display())),
        ));
        assert_eq!(strings(&inspect["Layers"]), want, "{name}");
        // The OCI side of the same tar keeps the original manifest digest.
        let inspect = json(&run_ok(
            Command::new(&skopeo).arg("inspect").arg(format!("oci-archive:{}:{name}", cli_tar.display())),
        ));
        assert_eq!(inspect["Digest"], desc.digest.to_string(), "{name}");
    }

    // A full copy out of the docker-archive gives an image with the same rootfs.
    let copy = dir.path().join("copy");
    run_ok(Command::new(&skopeo).args([
        "copy",
        "-q",
        &format!("docker-archive:{}:{APP}", cli_tar.display()),
        &format!("oci:{}:app", copy.display()),
    ]));
    let copied = Store::open(&copy).unwrap().load_image("app").unwrap();
    assert_eq!(copied.config.rootfs.diff_ids, app_ids);

    // Unknown names fail, and no partial output is left behind.
    let bad = dir.path().join("bad.tar");
    let out = run(kolla_oci(dir.path()).args(["save", TAG, "kolla/nope:1", "-o"]).arg(&bad));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("kolla/nope:1"), "{out:?}");
    assert!(!bad.exists());
    assert_eq!(support::list(dir.path()).iter().filter(|n| n.starts_with(".kolla-oci-save")).count(), 0);
}

#[test]
fn tags_are_replaced_listed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, first, _) = busybox_store(dir.path(), TAG);
    let other_root = dir.path().join("other");
    busybox_rootfs(&other_root, &[("etc/other", "x\n")]);
    let (second, _) = make_image(&store, "kolla/other:1", &[&other_root]);
    assert_ne!(first.digest, second.digest);
    store.set_tag(TAG, &second).unwrap();
    let tags = store.tags().unwrap();
    assert_eq!(tags.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), [TAG, "kolla/other:1"]);
    assert_eq!(store.resolve(TAG).unwrap().unwrap().digest, second.digest);
    assert_eq!(store.resolve(TAG).unwrap().unwrap().ref_name(), Some(TAG));
    let index: Index = serde_json::from_slice(&std::fs::read(store.root().join("index.json")).unwrap()).unwrap();
    assert_eq!(index.manifests.len(), 2, "the tag was replaced, not duplicated");
    assert_eq!(index.manifests[0].platform, Some(Platform::host()));

    assert!(store.untag(TAG).unwrap());
    assert!(!store.untag(TAG).unwrap());
    assert!(store.resolve(TAG).unwrap().is_none());
    assert!(matches!(store.load_image(TAG), Err(StoreError::TagNotFound { .. })));
    for bad in ["", "has space", "tab\there"] {
        assert!(matches!(store.set_tag(bad, &second), Err(StoreError::InvalidTag { .. })), "{bad:?}");
    }
}

#[test]
fn write_image_checks_its_inputs_and_relabels_docker_layers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let root = dir.path().join("rootfs");
    busybox_rootfs(&root, &[]);
    let (layer, diff_id) = put_layer(&store, &root);
    let err = store.write_image(&config_for(&[]), std::slice::from_ref(&layer)).unwrap_err();
    assert!(matches!(err, StoreError::InvalidImage(_)), "{err}");
    let absent = Descriptor::new(MEDIA_OCI_LAYER_GZIP, Digest::of_bytes(b"absent"), 6);
    let err = store.write_image(&config_for(&[diff_id]), &[absent]).unwrap_err();
    assert!(matches!(err, StoreError::BlobNotFound { .. }), "{err}");
    let mut wrong_size = layer.clone();
    wrong_size.size += 1;
    assert!(matches!(store.write_image(&config_for(&[diff_id]), &[wrong_size]), Err(StoreError::SizeMismatch { .. })));

    let mut docker_layer = layer.clone();
    docker_layer.media_type = MEDIA_DOCKER_LAYER_GZIP.into();
    let desc = store.write_image(&config_for(&[diff_id]), &[docker_layer]).unwrap();
    let manifest = store.read_manifest(&desc).unwrap();
    assert_eq!(manifest.layers, [layer]);
    // The stored bytes are canonical JSON.
    let bytes = store.read_blob_bytes(&desc.digest, 1 << 20).unwrap();
    assert_eq!(store::canonical_json(&json(std::str::from_utf8(&bytes).unwrap())), bytes);
}

/// Registry pulls store Docker v2s2 manifests and manifest lists verbatim; `load_image` follows a list to
/// the host platform's manifest.
#[test]
fn docker_manifest_list_resolves_to_the_host_platform() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let root = dir.path().join("rootfs");
    busybox_rootfs(&root, &[]);
    let (layer, diff_id) = put_layer(&store, &root);
    let host = Platform::host();

    // A Docker config + v2s2 manifest, pretty-printed as a registry might serve them (not canonical).
    let mut manifests = Vec::new();
    for arch in [host.architecture.as_str(), "s390x"] {
        let config = serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Env": null, "Cmd": ["/bin/sh"], "Labels": null},
            "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
            "docker_version": "20.10.7"
        });
        let config_bytes = serde_json::to_vec_pretty(&config).unwrap();
        let (config_digest, config_size) = store.put_bytes(&config_bytes).unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_DOCKER_MANIFEST,
            "config": {"mediaType": MEDIA_DOCKER_CONFIG, "size": config_size, "digest": config_digest.to_string()},
            "layers": [{"mediaType": MEDIA_DOCKER_LAYER_GZIP, "size": layer.size, "digest": layer.digest.to_string()}]
        });
        let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
        let (digest, size) = store.put_bytes(&bytes).unwrap();
        let mut desc = Descriptor::new(MEDIA_DOCKER_MANIFEST, digest, size);
        desc.platform = Some(Platform { architecture: arch.into(), os: "linux".into(), ..Platform::default() });
        manifests.push(desc);
    }
    manifests.reverse(); // the host is not first
    let list = serde_json::json!({"schemaVersion": 2, "mediaType": MEDIA_DOCKER_LIST, "manifests": manifests});
    let (list_digest, list_size) = store.put_bytes(&serde_json::to_vec_pretty(&list).unwrap()).unwrap();
    store.set_tag("debian:bookworm", &Descriptor::new(MEDIA_DOCKER_LIST, list_digest, list_size)).unwrap();

    let image = store.load_image("debian:bookworm").unwrap();
    assert_eq!(image.manifest_digest, manifests[1].digest);
    assert_eq!(image.config.architecture, host.architecture);
    assert_eq!(image.config.config.cmd, Some(vec!["/bin/sh".to_owned()]));
    assert!(image.config.config.env.is_empty() && image.config.config.labels.is_empty(), "null reads as empty");
    assert_eq!(image.config.extra["docker_version"], "20.10.7");
    let manifest: &Manifest = &image.manifest;
    assert_eq!(manifest.media_type.as_deref(), Some(MEDIA_DOCKER_MANIFEST));
    assert_eq!(manifest.layers[0].digest, layer.digest);

    let err = store.load_image_from(
        &Descriptor::new(MEDIA_DOCKER_LIST, list_digest, list_size),
        &Platform { architecture: "riscv64".into(), os: "linux".into(), ..Platform::default() },
    );
    match err {
        Err(e @ StoreError::NoPlatform { .. }) => assert!(e.to_string().contains("linux/s390x"), "{e}"),
        other => panic!("expected NoPlatform, got {other:?}"),
    }
    let report = store.fsck().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.reachable, 6, "list + 2 manifests + 2 configs + 1 layer");
}

#[test]
fn images_command_lists_tags() {
    let dir = tempfile::tempdir().unwrap();
    let (store, desc, _) = busybox_store(dir.path(), TAG);
    let out = run_ok(kolla_oci(dir.path()).arg("images"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("TAG") && lines[0].contains("DIGEST") && lines[0].contains("LAYERS"), "{out}");
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    let image = store.load_image(TAG).unwrap();
    assert_eq!(cols[0], TAG);
    assert_eq!(cols[1], &desc.digest.hex()[..12]);
    assert!(cols[2].ends_with("MB") || cols[2].ends_with("kB"), "{out}");
    assert_eq!(cols[3], "1");
    assert_eq!(cols[4..].join(" "), "2024-01-02 03:04:05");
    assert_eq!(image.manifest.layers.len(), 1);
}

/// `set_platform_tag`: one image per platform under a tag, as an index once there are two; the same
/// platform again replaces its entry; `load_image_from` picks each.
#[test]
fn platform_tags_keep_one_image_per_platform() {
    let dir = tempfile::tempdir().unwrap();
    let (store, host_image, diff_ids) = busybox_store(dir.path(), TAG);
    let layer = store.read_manifest(&host_image).unwrap().layers;
    let arm64 = Platform {
        architecture: "arm64".into(),
        os: "linux".into(),
        variant: Some("v8".into()),
        ..Platform::default()
    };
    let arm_image = |created: &str| {
        let mut config = config_for(&diff_ids);
        (config.architecture, config.variant) = (arm64.architecture.clone(), arm64.variant.clone());
        config.created = Some(created.into());
        store.write_image(&config, &layer).unwrap()
    };
    let first_arm = arm_image("2025-01-01T00:00:00Z");
    let tagged = store.set_platform_tag(TAG, &first_arm).unwrap();
    let index = store.read_index(&tagged).unwrap();
    let platforms: Vec<String> = index.manifests.iter().map(|d| d.platform.as_ref().unwrap().to_string()).collect();
    assert_eq!(platforms, [Platform::host().to_string(), arm64.to_string()]);
    assert!(index.manifests.iter().all(|d| d.ref_name().is_none()));
    assert_eq!(store.load_image_from(&tagged, &arm64).unwrap().manifest_digest, first_arm.digest);
    assert_eq!(store.load_image(TAG).unwrap().manifest_digest, host_image.digest);

    let second_arm = arm_image("2025-02-01T00:00:00Z");
    let tagged = store.set_platform_tag(TAG, &second_arm).unwrap();
    let index = store.read_index(&tagged).unwrap();
    assert_eq!(index.manifests.len(), 2, "the arm64 entry was replaced");
    assert_eq!(store.load_image_from(&tagged, &arm64).unwrap().manifest_digest, second_arm.digest);
    // Alone under a tag, an image is tagged as itself.
    assert_eq!(store.set_platform_tag("kolla/arm-only:1", &second_arm).unwrap().digest, second_arm.digest);
}
