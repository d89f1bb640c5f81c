//! Registry faults, through the CLI, with a fault-injecting proxy of ours in front of the real
//! `docker-registry`: connection resets mid-upload (monolithic and chunked), slow answers, 500/502/503,
//! 429 with `Retry-After` (on manifests and on blob uploads), and a wrong blob on pull. A push rides them out and the registry serves the
//! right digests; retries are bounded and reported at `--log-level debug`; a corrupt pull is refused with
//! nothing stored; a stalled download times out, is retried and leaves nothing behind; credentials never
//! follow an upload session or a redirect to another host; a symlinked blob is not pushed; a `gc --grace 0`
//! started while a pull that reuses blobs is stalled leaves a complete, fsck-clean image.

#[path = "support/registry.rs"]
mod registry;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kolla_oci::registry::{self as client, Credential, RegistryOptions, Secret};
use kolla_oci::store::Store;
use registry::{FixtureImage, Proxy, TestRegistry, make_image_set, skopeo_digest};

/// `kolla-oci --store <state> --log-level debug <args>`, with a clean credential environment.
fn kolla(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kolla-oci"))
        .arg("--store")
        .arg(state)
        .args(["--log-level", "debug"])
        .args(args)
        .env("HOME", state)
        .env("DOCKER_CONFIG", state)
        .env_remove("KOLLA_OCI_LOG")
        .env_remove("RUST_LOG")
        .env_remove("REGISTRY_AUTH_FILE")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "kolla-oci failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    out
}

/// A state dir whose store holds three images sharing two 300 kB base layers.
fn state_with_images() -> (tempfile::TempDir, Vec<FixtureImage>) {
    let state = tempfile::tempdir().unwrap();
    let store = Store::open(&state.path().join("oci")).unwrap();
    let images = make_image_set(&store, &["nova-api", "nova-compute", "glance-api"], 300_000);
    (state, images)
}

/// Push every image to `<proxy>/<ns>` (extra args appended); returns the output.
fn push(state: &Path, proxy: &Proxy, ns: &str, extra: &[&str]) -> Output {
    let addr = proxy.addr();
    let mut args = vec!["push", "--registry", &addr, "--namespace", ns];
    if !extra.contains(&"--push-threads") {
        args.extend(["--push-threads", "2"]);
    }
    args.extend(extra);
    kolla(state, &args)
}

/// The registry serves every image of the set under `ns` with its local digest.
fn assert_pushed(reg: &TestRegistry, images: &[FixtureImage], ns: &str) {
    for img in images {
        let name = img.tag.trim_start_matches("kolla/");
        assert_eq!(
            skopeo_digest(&format!("{}/{ns}/{name}", reg.addr()), &[]),
            img.manifest.digest.to_string(),
            "{name}"
        );
    }
}

/// How many log lines say a request is being retried.
fn retries_logged(log: &str) -> usize {
    log.lines().filter(|l| l.contains("WARN") && l.contains("retrying")).count()
}

#[test]
fn connection_resets_mid_upload_are_retried() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let (state, images) = state_with_images();

    // Monolithic PUTs cut after 64 KiB of a 300 kB body, three times.
    proxy.reset_uploads(64 << 10, 3);
    let out = ok(push(state.path(), &proxy, "reset", &["--retries", "3"]));
    let log = stderr(&out);
    let cut: Vec<u64> =
        proxy.events().iter().filter(|e| e.method == "PUT" && e.status == 0).map(|e| e.request_bytes).collect();
    // Cut after 64 KiB, or (a blob smaller than that) after its whole body, before the answer.
    assert_eq!(cut.len(), 3, "{cut:?}");
    assert!(cut.iter().all(|&n| n <= 64 << 10) && cut.contains(&(64 << 10)), "{cut:?}");
    assert!(log.contains("retrying blob upload"), "{log}");
    assert!(retries_logged(&log) >= 3, "{log}");
    assert_pushed(&reg, &images, "reset");

    // Chunked uploads: a PATCH cut mid-chunk restarts the upload from a fresh session.
    proxy.clear();
    proxy.reset_uploads(10_000, 2);
    let out = ok(push(state.path(), &proxy, "reset-chunked", &["--retries", "3", "--chunk-size", "128K"]));
    let cut = proxy.events().iter().filter(|e| e.method == "PATCH" && e.status == 0).count();
    assert_eq!(cut, 2);
    assert!(stderr(&out).contains("retrying blob upload"), "{}", stderr(&out));
    assert_pushed(&reg, &images, "reset-chunked");
}

#[test]
fn slow_answers_do_not_break_a_push() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let (state, images) = state_with_images();
    proxy.delay_answers(Duration::from_millis(1500), 8);
    let start = Instant::now();
    let out = ok(push(state.path(), &proxy, "slow", &[]));
    assert!(start.elapsed() >= Duration::from_millis(1500), "the answers were not delayed");
    assert_eq!(retries_logged(&stderr(&out)), 0, "a slow answer is not a failure: {}", stderr(&out));
    assert_pushed(&reg, &images, "slow");
}

#[test]
fn server_errors_bad_gateway_and_unavailable_are_retried() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let (state, images) = state_with_images();

    let cases =
        [("internal", "PUT", 500), ("bad-gateway", "PUT", 502), ("unavailable", "HEAD", 503), ("post", "POST", 503)];
    for (ns, method, status) in cases {
        proxy.fail_next(method, status, 2);
        let out = ok(push(state.path(), &proxy, ns, &["--retries", "3"]));
        let log = stderr(&out);
        let said = |l: &str| l.contains(&format!("status={status}")) || l.contains(&format!("HTTP {status}"));
        assert!(log.lines().any(|l| l.contains("retrying") && said(l)), "{log}");
        let injected = proxy.events().iter().filter(|e| e.method == method && e.status == status).count();
        assert!(injected >= 2, "{ns}: {injected} injected");
        assert_pushed(&reg, &images, ns);
        proxy.clear();
    }
}

#[test]
fn too_many_requests_with_retry_after_is_honoured() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let (state, images) = state_with_images();
    proxy.set_retry_after(2);
    let honoured = |log: &str| {
        log.lines()
            .any(|l| l.contains("retrying") && l.contains("429") && (l.contains("wait=2s") || l.contains("wait=2.")))
    };

    // On a manifest PUT (the blobs are there already, so the first PUT is a manifest's).
    ok(push(state.path(), &proxy, "throttled", &[]));
    proxy.fail_next("PUT", 429, 1);
    let start = Instant::now();
    let log = stderr(&ok(push(state.path(), &proxy, "throttled", &["--retries", "3"])));
    assert!(
        start.elapsed() >= Duration::from_secs(2) && honoured(&log),
        "manifest PUT: Retry-After: 2 ignored:\n{log}"
    );
    assert_pushed(&reg, &images, "throttled");

    // On a blob upload PUT (a fresh repository: the first PUT is a blob's).
    proxy.fail_next("PUT", 429, 1);
    let start = Instant::now();
    let log = stderr(&ok(push(state.path(), &proxy, "throttled-blob", &["--retries", "3"])));
    assert!(start.elapsed() >= Duration::from_secs(2) && honoured(&log), "blob upload: Retry-After: 2 ignored:\n{log}");
    assert_pushed(&reg, &images, "throttled-blob");
}

#[test]
fn retries_are_bounded_and_the_failure_is_reported() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let (state, _images) = state_with_images();

    // A registry that never recovers: 503 forever on starting uploads.
    proxy.fail_next("POST", 503, usize::MAX);
    let start = Instant::now();
    let out = push(state.path(), &proxy, "down", &["--retries", "2", "--push-threads", "1"]);
    assert!(!out.status.success(), "push succeeded against a dead registry");
    assert!(start.elapsed() < Duration::from_secs(60), "took {:?}", start.elapsed());
    let log = stderr(&out);
    assert!(log.contains("503") && log.contains("UNAVAILABLE"), "{log}");
    assert!(log.contains("attempt=2 of=2") && !log.contains("attempt=3"), "{log}");
    // Each blob task: 1 attempt + 2 retries, no more.
    let posts = proxy.events().iter().filter(|e| e.method == "POST").count();
    assert!(posts > 0 && posts % 3 == 0, "{posts} POSTs");
    proxy.fail_next("POST", 503, 0);

    // Every upload cut: the blob upload gives up after its retries.
    proxy.clear();
    proxy.reset_uploads(1000, usize::MAX);
    let out = push(state.path(), &proxy, "cut", &["--retries", "2", "--push-threads", "1"]);
    assert!(!out.status.success(), "push succeeded although every upload was cut");
    let log = stderr(&out);
    assert!(log.contains("retrying blob upload") && log.contains("attempt=2 of=2"), "{log}");
    assert!(!log.contains("attempt=3"), "{log}");
    proxy.reset_uploads(0, 0);
}

#[test]
fn wrong_blob_on_pull_is_refused_and_nothing_is_stored() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let (state, images) = state_with_images();
    ok(push(state.path(), &proxy, "src", &[]));
    let victim = images[0].layers[0].digest.to_string();
    proxy.corrupt_blob(Some(victim.clone()));
    let other = tempfile::tempdir().unwrap();
    let name = format!("{}/src/nova-api:test", proxy.addr());
    let out = kolla(other.path(), &["pull", &name]);
    assert!(!out.status.success(), "a corrupt blob was accepted");
    let log = stderr(&out);
    assert!(log.contains(&victim), "the error names the blob: {log}");
    let store = Store::open(&other.path().join("oci")).unwrap();
    assert!(!store.has_blob(&images[0].layers[0].digest), "the corrupt blob was stored");
    assert!(store.tags().unwrap().is_empty(), "a tag was set for a failed pull");
    ok(kolla(other.path(), &["fsck"]));
    assert!(std::fs::read_dir(other.path().join("oci/.tmp")).unwrap().next().is_none(), "temp files left");
    // Without the fault the same pull works.
    proxy.corrupt_blob(None);
    let out = ok(kolla(other.path(), &["pull", &name]));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&images[0].manifest.digest.to_string()));
}

/// An htpasswd registry behind proxy `front`, a second listener `other` (another proxy in front of the
/// same registry), and a store with one image; `opts` carries the credentials.
fn authenticated_setup() -> (TestRegistry, Proxy, Proxy, tempfile::TempDir, Vec<FixtureImage>, RegistryOptions) {
    let reg = TestRegistry::start_with_htpasswd("kolla", "s3cret-pw");
    let front = Proxy::start(reg.port);
    let other = Proxy::start(reg.port);
    let state = tempfile::tempdir().unwrap();
    let store = Store::open(&state.path().join("oci")).unwrap();
    let images = make_image_set(&store, &["keystone"], 50_000);
    let opts = RegistryOptions {
        credential: Some(Credential::Basic { username: "kolla".into(), password: Secret::new("s3cret-pw") }),
        retries: 1,
        threads: 1,
        ..RegistryOptions::default()
    };
    (reg, front, other, state, images, opts)
}

#[test]
fn credentials_stay_with_the_registry_host() {
    let (_reg, front, other, state, images, opts) = authenticated_setup();
    let store = Store::open(&state.path().join("oci")).unwrap();
    let target = client::push_target(&images[0].tag, Some(&front.addr()), Some("ns"), None).unwrap();
    let push = |opts: &RegistryOptions| client::push(&store, &[(images[0].tag.clone(), target.clone())], opts);

    // The registry answers the upload session with a Location on another loopback port: refused.
    front.send_uploads_to(Some(other.port));
    let err = format!("{:#}", anyhow::Error::from(push(&opts).unwrap_err()));
    assert!(err.contains("refused") && err.contains(&other.addr()), "{err}");
    assert!(other.events().is_empty(), "a refused session was contacted: {:?}", other.events());

    // Allowed by the user: the upload goes there, but without our credentials, and fails clearly.
    let allowed = RegistryOptions { allowed_private_hosts: vec![other.addr()], ..opts.clone() };
    let err = push(&allowed).unwrap_err().to_string();
    assert!(err.contains("UNAUTHORIZED") && err.contains("not the registry"), "{err}");
    let seen = other.events();
    assert!(!seen.is_empty() && seen.iter().all(|e| !e.authorized), "credentials leaked: {seen:?}");
    assert!(front.events().iter().any(|e| e.method == "POST" && e.authorized), "the registry itself got none");

    // Blob downloads redirected to the other listener: refused, or followed without credentials.
    front.send_uploads_to(None);
    push(&opts).unwrap();
    front.redirect_blob_downloads_to(Some(other.port));
    other.clear();
    for (opts, expect) in [(&opts, "refused"), (&allowed, "not the registry")] {
        let empty = tempfile::tempdir().unwrap();
        let fresh = Store::open(empty.path()).unwrap();
        let err = format!("{:#}", anyhow::Error::from(client::pull(&fresh, &target, None, opts).unwrap_err()));
        assert!(err.contains(expect), "{err}");
        assert!(fresh.tags().unwrap().is_empty());
    }
    let seen = other.events();
    assert!(!seen.is_empty() && seen.iter().all(|e| !e.authorized && e.method == "GET"), "{seen:?}");
}

#[test]
fn a_stalled_download_times_out_is_retried_and_leaves_nothing() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let (state, images) = state_with_images();
    ok(push(state.path(), &proxy, "stall", &[]));
    let name = format!("{}/stall/nova-api:test", proxy.addr());

    // Every blob download (the smallest, the config, has some 400 bytes) sends its headers and 100 bytes,
    // then nothing.
    proxy.stall_blob_downloads(100, usize::MAX);
    proxy.clear();
    let other = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out = kolla(other.path(), &["pull", &name, "--threads", "1", "--retries", "1", "--read-timeout", "1"]);
    let took = start.elapsed();
    assert!(!out.status.success(), "a stalled pull succeeded");
    let log = stderr(&out);
    assert!(log.contains("stalled transfer") && log.contains("retrying download"), "{log}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(20), "took {took:?}");
    // One blob, tried 1 + 1 times, each cut after 100 bytes; nothing else asked for.
    let gets: Vec<_> = proxy.events().into_iter().filter(|e| e.method == "GET" && e.path.contains("/blobs/")).collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert!(gets.iter().all(|e| e.path == gets[0].path && e.response_bytes == 100), "{gets:?}");
    // Nothing partial: no blob, no temp file, no manifest, no tag.
    let store = Store::open(&other.path().join("oci")).unwrap();
    assert!(store.tags().unwrap().is_empty(), "a tag was set");
    let entries = |d: &str| std::fs::read_dir(other.path().join("oci").join(d)).unwrap().count();
    assert_eq!((entries("blobs/sha256"), entries(".tmp")), (0, 0), "blobs or temp files left");
    ok(kolla(other.path(), &["fsck"]));

    // A transfer that stalls once is retried and the pull completes with the right digests.
    proxy.stall_blob_downloads(100, 1);
    let out = ok(kolla(other.path(), &["pull", &name, "--retries", "2", "--read-timeout", "1"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&images[0].manifest.digest.to_string()));
    assert!(stderr(&out).contains("retrying download"), "{}", stderr(&out));
    ok(kolla(other.path(), &["fsck"]));
}

#[test]
fn gc_during_a_pull_that_reuses_blobs_leaves_a_complete_image() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let (state, images) = state_with_images();
    ok(push(state.path(), &proxy, "race", &[]));
    let name = |i: usize| format!("{}/race/{}", proxy.addr(), images[i].tag.trim_start_matches("kolla/"));

    // A store holding nova-api, then untagged: its blobs, the two base layers nova-compute shares among
    // them, are garbage to a `gc --grace 0`.
    let other = tempfile::tempdir().unwrap();
    ok(kolla(other.path(), &["pull", &name(0)]));
    let store = Store::open(&other.path().join("oci")).unwrap();
    assert!(store.untag(&name(0)).unwrap());
    // The pull of nova-compute reuses the base layers and stalls on its own (20 kB) layer, once; the config
    // (under 5000 bytes) is served whole.
    proxy.stall_blob_downloads(5000, 1);
    let pull = {
        let (dir, name) = (other.path().to_path_buf(), name(1));
        std::thread::spawn(move || kolla(&dir, &["pull", &name, "--retries", "2", "--read-timeout", "2"]))
    };
    // Its download is under way (its temp file exists) once the reused blobs were found present.
    let tmp = other.path().join("oci/.tmp");
    let started = Instant::now();
    while !std::fs::read_dir(&tmp).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with("blob-")) {
        assert!(started.elapsed() < Duration::from_secs(20), "the pull never started downloading");
        std::thread::sleep(Duration::from_millis(20));
    }
    let gc = ok(kolla(other.path(), &["gc", "--grace", "0"]));
    let pulled = ok(pull.join().unwrap());
    assert!(stderr(&pulled).contains("stalled transfer"), "{}", stderr(&pulled));
    // gc waited for the pull and removed only what nova-api alone had: its layer, config and manifest.
    let gc_out = String::from_utf8_lossy(&gc.stdout).into_owned();
    let removed: Vec<&str> = gc_out.lines().filter_map(|l| l.strip_prefix("blob ")?.split(' ').next()).collect();
    let alone = [images[0].layers[2].digest, images[0].config, images[0].manifest.digest].map(|d| d.to_string());
    assert_eq!(removed.len(), 3, "{gc_out}");
    assert!(alone.iter().all(|d| removed.contains(&d.as_str())), "{gc_out}");
    let image = store.load_image(&name(1)).unwrap();
    assert_eq!(image.manifest.layers, images[1].layers);
    assert!(image.manifest.layers.iter().all(|l| store.has_blob(&l.digest)));
    ok(kolla(other.path(), &["fsck"]));
}

#[test]
fn a_symlinked_blob_is_not_pushed() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let (state, images) = state_with_images();
    // The base layer's name in the store becomes a link to a file with the same bytes elsewhere.
    let store = Store::open(&state.path().join("oci")).unwrap();
    let victim = images[0].layers[0].digest;
    let outside = state.path().join("outside-the-store");
    std::fs::rename(store.blob_path(&victim), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, store.blob_path(&victim)).unwrap();
    let out = push(state.path(), &proxy, "link", &[]);
    assert!(!out.status.success(), "a symlinked blob was pushed");
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    let sent = proxy.uploaded_bytes();
    assert!(!sent.contains_key(&victim.to_string()), "its bytes were sent: {sent:?}");
}
