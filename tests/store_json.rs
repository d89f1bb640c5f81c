//! Canonical JSON (sorted keys, compact, independent of map insertion order) and the lossless round trip
//! of pulled image configs, including the Docker fields oci-spec drops.

#[path = "support/store.rs"]
mod support;

use std::collections::HashMap;

use kolla_oci::store::{self, Healthcheck, ImageConfig, Store, canonical_json};
use layers::Digest;
use serde_json::Value;

/// An independent oracle: Python's `json.dumps(sort_keys=True)` (code-point order = UTF-8 byte order).
fn python_canonical(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let python = support::require_tool("python3");
    let script = "import json,sys; sys.stdout.write(json.dumps(json.load(sys.stdin), sort_keys=True, \
                  separators=(',', ':'), ensure_ascii=False))";
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn canonical_json_sorts_keys_at_every_level() {
    let v = serde_json::json!({"b": 1, "a": {"d": [{"z": 1, "y": [true, null]}], "c": null}, "A": "x y"});
    assert_eq!(canonical_json(&v), br#"{"A":"x y","a":{"c":null,"d":[{"y":[true,null],"z":1}]},"b":1}"#);
    // Byte order, not locale order; escapes as serde_json writes them.
    let v = serde_json::json!({"é": 1, "z": "\u{1}\"\n/", "Z": 2, "_": 3, "\u{1F600}": 4, "\u{FFFD}": 5});
    let bytes = canonical_json(&v);
    assert_eq!(
        String::from_utf8(bytes.clone()).unwrap(),
        "{\"Z\":2,\"_\":3,\"z\":\"\\u0001\\\"\\n/\",\"é\":1,\"\u{FFFD}\":5,\"\u{1F600}\":4}"
    );
    assert_eq!(python_canonical(&bytes), bytes);
}

#[test]
fn same_config_in_any_insertion_order_has_one_encoding() {
    let labels: Vec<(String, String)> = (0..50).map(|i| (format!("org.kolla.label-{i:02}"), format!("v{i}"))).collect();
    let mut encodings = std::collections::BTreeSet::new();
    let mut digests = std::collections::BTreeSet::new();
    for round in 0..20 {
        // HashMap: a new random iteration order each time; insertion order rotated too.
        let mut map: HashMap<String, String> = HashMap::new();
        for i in 0..labels.len() {
            let (k, v) = &labels[(i + round * 7) % labels.len()];
            map.insert(k.clone(), v.clone());
        }
        // Through our config type (labels in `extra` too, where they are serde_json maps) ...
        let mut config: ImageConfig = support::config_for(&[]);
        config.config.labels = map.clone().into_iter().collect();
        config.extra.insert("x-labels".into(), serde_json::to_value(&map).unwrap());
        let ours = canonical_json(&config);
        // ... and through oci-spec's HashMap-based config, whose own to_string() order is random.
        let theirs = oci_spec::image::ConfigBuilder::default().labels(map).build().unwrap();
        encodings.insert((ours.clone(), canonical_json(&theirs)));
        digests.insert(Digest::of_bytes(&ours));
    }
    assert_eq!(encodings.len(), 1, "canonical_json gave {} encodings", encodings.len());
    assert_eq!(digests.len(), 1);
    let (ours, theirs) = encodings.into_iter().next().unwrap();
    assert_eq!(python_canonical(&ours), ours);
    assert_eq!(python_canonical(&theirs), theirs);
    let text = String::from_utf8(ours).unwrap();
    assert!(text.find("org.kolla.label-00").unwrap() < text.find("org.kolla.label-49").unwrap());

    // put_json stores exactly those bytes.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (d, n) = store.put_json(&serde_json::from_str::<Value>(&text).unwrap()).unwrap();
    assert_eq!(store.read_blob_bytes(&d, n).unwrap(), text.as_bytes());
}

/// A Docker-built config as a registry serves it: Healthcheck, Shell, OnBuild, ArgsEscaped, nulls, and
/// top-level fields no spec names.
const DOCKER_CONFIG: &str = r##"{
  "architecture": "amd64",
  "os": "linux",
  "os.version": "10.0",
  "variant": "v1",
  "created": "2024-05-06T07:08:09.123456789Z",
  "author": "kolla",
  "docker_version": "24.0.7",
  "container": "0123abcd",
  "container_config": {"Hostname": "0123abcd", "Cmd": ["/bin/sh", "-c", "#(nop) HEALTHCHECK"]},
  "moby.buildkit.buildinfo.v1": "eyJmcm9udGVuZCI6ImRvY2tlcmZpbGUudjAifQ==",
  "config": {
    "Hostname": "",
    "User": "keystone",
    "Env": ["PATH=/usr/bin:/bin", "KOLLA_BASE_DISTRO=debian"],
    "Cmd": ["kolla_start"],
    "Entrypoint": null,
    "WorkingDir": "/",
    "Labels": {"maintainer": "Kolla Project", "build-date": "20240506"},
    "ExposedPorts": {"5000/tcp": {}},
    "Volumes": {"/var/lib/kolla": {}},
    "Healthcheck": {"Test": ["CMD-SHELL", "healthcheck_curl http://localhost:5000"], "Interval": 30000000000,
                    "Timeout": 30000000000, "StartPeriod": 5000000000, "Retries": 3, "FutureField": 1},
    "StopSignal": "SIGTERM",
    "Shell": ["/bin/bash", "-o", "pipefail", "-c"],
    "OnBuild": ["RUN echo child"],
    "ArgsEscaped": true,
    "OnBuildNull": null
  },
  "rootfs": {"type": "layers", "diff_ids": []},
  "history": [{"created": "2024-05-06T07:08:09Z", "created_by": "HEALTHCHECK ...", "empty_layer": true}]
}"##;

#[test]
fn pulled_config_round_trips_through_the_store() {
    let original: Value = serde_json::from_str(DOCKER_CONFIG).unwrap();
    let config: ImageConfig = serde_json::from_str(DOCKER_CONFIG).unwrap();
    let hc: &Healthcheck = config.config.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, ["CMD-SHELL", "healthcheck_curl http://localhost:5000"]);
    assert_eq!((hc.interval, hc.retries), (Some(30_000_000_000), Some(3)));
    assert_eq!(config.config.shell.as_deref().unwrap()[0], "/bin/bash");
    assert_eq!(config.config.on_build.as_deref(), Some(&["RUN echo child".to_owned()][..]));
    assert_eq!(config.config.extra["ArgsEscaped"], true);
    assert_eq!(config.extra["docker_version"], "24.0.7");
    assert_eq!(config.history[0].empty_layer, Some(true));

    // Through write_image / load_image (a config without layers is a valid empty image).
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let desc = store.write_image(&config, &[]).unwrap();
    store.set_tag("kolla/keystone:rt", &desc).unwrap();
    let loaded = store.load_image("kolla/keystone:rt").unwrap();
    assert_eq!(loaded.config, config);
    assert_eq!(desc.platform.as_ref().unwrap().os_version.as_deref(), Some("10.0"));

    // Byte level: the stored config is the original document, keys sorted, minus only the `null`s of
    // modelled fields (Entrypoint); unknown fields keep even their nulls.
    let stored = store.read_blob_bytes(&loaded.manifest.config.digest, 1 << 20).unwrap();
    let mut want = original.clone();
    let cfg = want["config"].as_object_mut().unwrap();
    cfg.remove("Entrypoint");
    assert_eq!(serde_json::from_slice::<Value>(&stored).unwrap(), want);
    assert_eq!(stored, canonical_json(&want));
    assert_eq!(python_canonical(&stored), stored);
    assert_eq!(loaded.manifest.config.media_type, store::MEDIA_OCI_CONFIG);

    // Modify and save again: the unknown fields are still there.
    let mut child = loaded.config.clone();
    child.config.labels.insert("org.opencontainers.image.title".into(), "keystone".into());
    let desc2 = store.write_image(&child, &[]).unwrap();
    let again: Value = serde_json::from_slice(
        &store.read_blob_bytes(&store.read_manifest(&desc2).unwrap().config.digest, 1 << 20).unwrap(),
    )
    .unwrap();
    assert_eq!(again["config"]["Healthcheck"]["FutureField"], 1);
    assert_eq!(again["container_config"]["Hostname"], "0123abcd");
    assert_eq!(again["moby.buildkit.buildinfo.v1"], original["moby.buildkit.buildinfo.v1"]);
    assert_eq!(again["config"]["Labels"]["org.opencontainers.image.title"], "keystone");
}

#[test]
fn bad_json_is_reported_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bad = br#"{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:XYZ", "size": 1}}"#;
    let (d, n) = store.put_bytes(bad).unwrap();
    let err = store.read_manifest(&kolla_oci::store::Descriptor::new(store::MEDIA_OCI_MANIFEST, d, n)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&d.to_string()) && msg.contains("sha256:XYZ"), "{msg}");
    std::fs::write(dir.path().join("index.json"), "{\"schemaVersion\": 2, \"manifests\": [").unwrap();
    let msg = store.tags().unwrap_err().to_string();
    assert!(msg.contains("index.json") && msg.contains("line 1"), "{msg}");
}
