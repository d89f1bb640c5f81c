//! `--cache-repo`: machines share their step cache through a real `docker-registry`. A fresh store with
//! the cache builds nothing and gets the same image (a RUN that writes a random UUID proves the layer came
//! from the cache, not from a rebuild); a changed context file rebuilds exactly its step and what follows;
//! entries are write-once; other people's tools (skopeo) read the entries as plain images. An entry that
//! pairs an evil blob with an honest diff_id is refused, even where that diff_id is extracted already.

#[path = "support/busybox.rs"]
mod busybox;
#[path = "support/registry.rs"]
mod registry;

use std::path::Path;
use std::process::{Command, Output};

use kolla_oci::store::{
    Descriptor, ImageConfig, MEDIA_OCI_CONFIG, MEDIA_OCI_MANIFEST, Manifest, RootFs, Store, canonical_json,
};
use registry::{TestRegistry, put_layer, run_ok};

/// The annotation of an entry naming its layer's diff_id.
const DIFF_ID: &str = "dev.kolla-oci.step.diff-id";

const DOCKERFILE: &str = "FROM scratch
COPY rootfs/ /
ENV PATH=/bin
RUN cat /proc/sys/kernel/random/uuid > /stamp && echo built > /one
COPY app.txt /app.txt
RUN cat /app.txt /stamp > /copied
LABEL org.example.test=remote-cache
";

fn kolla(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kolla-oci"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env("HOME", store)
        .env("DOCKER_CONFIG", store)
        .env_remove("KOLLA_OCI_LOG")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

/// `build-file` of `ctx` into `store` with the cache; returns (image digest, layers built).
fn build(store: &Path, ctx: &Path, cache: &str, extra: &[&str]) -> (String, u64) {
    let mut args = vec!["build-file", "-t", "app:1", "--cache-repo", cache, "--no-attestations"];
    args.extend(extra);
    args.push(ctx.to_str().unwrap());
    let out = kolla(store, &args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build-file failed:\n{stderr}");
    let built = stderr
        .split("layers_built=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no layers_built in:\n{stderr}"));
    (String::from_utf8_lossy(&out.stdout).trim().to_owned(), built)
}

fn context(dir: &Path, app: &str) {
    busybox::write_busybox_context(dir);
    std::fs::write(dir.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(dir.join("app.txt"), app).unwrap();
}

fn cache_tags(reg: &TestRegistry) -> Vec<String> {
    let out = run_ok(
        Command::new("skopeo")
            .args(["list-tags", "--tls-verify=false"])
            .arg(format!("docker://{}/ci/cache", reg.addr())),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut tags: Vec<String> = v["Tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect();
    tags.sort();
    tags
}

/// A registry, its cache repository `ci/cache`, and a temp dir with the context (`app.txt` = `v1`) in it.
fn machines() -> (TestRegistry, String, tempfile::TempDir, std::path::PathBuf) {
    let reg = TestRegistry::start();
    let cache = format!("{}/ci/cache", reg.addr());
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    context(&ctx, "v1\n");
    (reg, cache, tmp, ctx)
}

/// The manifest of `reference` as `skopeo inspect --raw` reads it.
fn raw_manifest(reference: &str) -> serde_json::Value {
    let raw = run_ok(
        Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("docker://{reference}")),
    );
    serde_json::from_str(&raw).unwrap()
}

#[test]
fn machines_share_steps_through_a_registry() {
    let (reg, cache, tmp, ctx) = machines();

    // Machine A builds everything and publishes each step that made a layer.
    let (a, built) = build(&tmp.path().join("a"), &ctx, &cache, &[]);
    assert_eq!(built, 4, "COPY, RUN, COPY, RUN");
    let tags = cache_tags(&reg);
    assert_eq!(tags.len(), 4, "one entry per layer-making step: {tags:?}");
    // Each entry is a plain image manifest that skopeo reads.
    let manifest = raw_manifest(&format!("{cache}:{}", tags[0]));
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");

    // Machine B: a fresh store, a fresh copy of the context (other mtimes) and a proxy of its own (as in
    // BuildKit, undeclared proxy arguments are not part of a step) — nothing runs, same image.
    let ctx_b = tmp.path().join("ctx-b");
    context(&ctx_b, "v1\n");
    let proxy = ["--build-arg", "http_proxy=http://proxy.example:3128"];
    let (b, built) = build(&tmp.path().join("b"), &ctx_b, &cache, &proxy);
    assert_eq!(built, 0, "every step came from the registry");
    assert_eq!(b, a, "digest-identical (the RUN's UUID came from A)");

    // Machine C: one context file changed — exactly its COPY and the RUN after it are built.
    let ctx_c = tmp.path().join("ctx-c");
    context(&ctx_c, "v2\n");
    let (c, built) = build(&tmp.path().join("c"), &ctx_c, &cache, &[]);
    assert_eq!(built, 2);
    assert_ne!(c, a);
    assert_eq!(cache_tags(&reg).len(), 6);

    // Machine D rebuilds without reading the cache: its (different) results do not replace A's entries.
    let (d, built) = build(&tmp.path().join("d"), &ctx, &cache, &["--no-cache"]);
    assert_eq!(built, 4);
    assert_ne!(d, a, "a real rebuild writes a new UUID");
    assert_eq!(cache_tags(&reg).len(), 6);
    let (e, built) = build(&tmp.path().join("e"), &ctx, &cache, &[]);
    assert_eq!((e, built), (a, 0), "write-once: the first machine's entries stay");
}

#[test]
fn an_unreachable_cache_is_a_miss_not_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    context(&ctx, "v1\n");
    let port = registry::free_port();
    let (_, built) = build(&tmp.path().join("a"), &ctx, &format!("127.0.0.1:{port}/ci/cache"), &["--retries", "0"]);
    assert_eq!(built, 4);
    let out = kolla(
        &tmp.path().join("a"),
        &["build-file", "-t", "x:1", "--cache-repo", "127.0.0.1:1/c:tag", ctx.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no tag or digest"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_poisoned_entry_is_refused_even_when_its_diff_id_is_extracted_here() {
    let (reg, cache, tmp, ctx) = machines();
    let (a, _) = build(&tmp.path().join("a"), &ctx, &cache, &[]);
    // Machine B takes everything from the cache, so every layer is extracted here; then it forgets its
    // step cache (as a store that got the same layers through other images).
    let b = tmp.path().join("b");
    assert_eq!(build(&b, &ctx, &cache, &[]), (a.clone(), 0));
    for entry in std::fs::read_dir(b.join("cache")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let store = Store::open(&b.join("oci")).unwrap();
    let image = store.load_image("app:1").unwrap();
    let honest = image.config.rootfs.diff_ids[1];
    // The build kept app's own layers as blobs only; extract it as a `run` of it would.
    let ws = kolla_oci::builder::Workspace::open(&b).unwrap();
    let honest_dir = ws.ensure_layer_dir(&image.manifest.layers[1], &honest).unwrap();
    drop(ws);
    let honest_files = std::fs::read_to_string(honest_dir.join("one")).unwrap();

    // Someone with push rights replaces the first RUN's entry: an evil blob under the honest diff_id.
    let tag = cache_tags(&reg)
        .into_iter()
        .find(|t| raw_manifest(&format!("{cache}:{t}"))["annotations"][DIFF_ID] == honest.to_string())
        .expect("an entry for the first RUN");
    let forger = Store::open(&tmp.path().join("forger")).unwrap();
    let (evil, evil_diff_id) = put_layer(&forger, &[("one", b"planted\n".to_vec())]);
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs { typ: "layers".into(), diff_ids: vec![honest] },
        ..ImageConfig::default()
    };
    let (config_digest, config_size) = forger.put_json(&config).unwrap();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_MANIFEST.into()),
        config: Descriptor::new(MEDIA_OCI_CONFIG, config_digest, config_size),
        layers: vec![evil.clone()],
        annotations: [(DIFF_ID.to_owned(), honest.to_string())].into(),
        extra: Default::default(),
    };
    let (digest, size) = forger.put_bytes(&canonical_json(&manifest)).unwrap();
    forger.set_tag("poison", &Descriptor::new(MEDIA_OCI_MANIFEST, digest, size)).unwrap();
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:poison", tmp.path().join("forger").display()))
            .arg(format!("docker://{cache}:{tag}")),
    );

    // B refuses it, naming the entry and both digests; its image and the extracted layer are untouched.
    let out =
        kolla(&b, &["build-file", "-t", "app:1", "--cache-repo", &cache, "--no-attestations", ctx.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the poisoned entry was used:\n{stderr}");
    for needed in [format!("{cache}:{tag}"), honest.to_string(), evil_diff_id.to_string(), "refused".into()] {
        assert!(stderr.contains(&needed), "{needed} is not in:\n{stderr}");
    }
    assert_eq!(store.resolve("app:1").unwrap().unwrap().digest.to_string(), a);
    assert_eq!(std::fs::read_to_string(honest_dir.join("one")).unwrap(), honest_files);
    let image = store.load_image("app:1").unwrap();
    assert!(image.manifest.layers.iter().all(|l| l.digest != evil.digest));
}
