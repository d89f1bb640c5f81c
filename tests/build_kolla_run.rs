//! kolla-build's run-time options through the real CLI, on small busybox trees and a real registry
//! (Debian's `docker-registry`): `--pull` takes a base whose tag moved (`--nopull` keeps the stored one),
//! `--retries` builds a failed image again, `--push` pushes while the rest build and reports a refused
//! push as `push_error`, `--squash` merges an image's own layers, `FROM debian:<suite>` comes from the
//! registries.conf mirror, and the summary goes where kolla-build writes it.

#[path = "support/hardening.rs"]
mod hardening;
#[path = "support/registry.rs"]
mod registry;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hardening::{Bench, KOLLA_TAG, Run, run_bounded, tag_digests, tool};
use registry::{Proxy, TestRegistry};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(300);

/// Write `Dockerfile.j2` templates (relative image dir, body) under `tree`.
fn write_images(tree: &Path, images: &[(&str, String)]) {
    for (rel, body) in images {
        fs::create_dir_all(tree.join(rel)).unwrap();
        fs::write(tree.join(rel).join("Dockerfile.j2"), body).unwrap();
    }
}

/// A template starting from the tree's image `parent`.
fn child(parent: &str, body: &str) -> String {
    format!("FROM {{{{ namespace }}}}/{{{{ image_prefix }}}}{parent}:{{{{ tag }}}}\n{body}")
}

/// `build --all` of `tree` into `state` (its `name`d summary file and logs beside it) with `extra`.
fn build(bench: &Bench, state: &str, name: &str, tree: &Path, extra: &[&str]) -> (Run, Value) {
    build_with(bench, state, name, tree, extra, |_| {})
}

fn build_with(
    bench: &Bench,
    state: &str,
    name: &str,
    tree: &Path,
    extra: &[&str],
    env: impl FnOnce(&mut Command),
) -> (Run, Value) {
    let summary = bench.dir.join(format!("{name}.json"));
    let logs = bench.dir.join(format!("logs-{name}"));
    let mut args = vec!["build", "--all", "--threads", "1", "--template-tree", tree.to_str().unwrap()];
    args.extend(["--summary-json-file", summary.to_str().unwrap(), "--logs-dir", logs.to_str().unwrap()]);
    args.extend(extra);
    let mut cmd = bench.kolla(state, &args);
    env(&mut cmd);
    let run = run_bounded(&mut cmd, LIMIT);
    let text = fs::read_to_string(&summary).unwrap_or_else(|e| panic!("no summary ({e}): {}", run.stderr));
    assert!(run.stdout.is_empty(), "with --summary-json-file nothing goes to stdout: {}", run.stdout);
    (run, serde_json::from_str(&text).unwrap())
}

fn names(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect()
}

fn failed(summary: &Value) -> BTreeMap<String, String> {
    summary["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_owned(), f["status"].as_str().unwrap().to_owned()))
        .collect()
}

/// `skopeo copy` of `tag` of `state`'s store to `docker://{dest}` (plain http).
fn copy_to_registry(bench: &Bench, state: &str, tag: &str, dest: &str) {
    let src = format!("oci:{}:{tag}", bench.plain_layout(state).display());
    tool("skopeo", &["copy", "--quiet", "--dest-tls-verify=false", &src, &format!("docker://{dest}")]);
}

/// The manifest digest `{reference}` has in the registry (`skopeo inspect`), or `None`.
fn remote_digest(reference: &str) -> Option<String> {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{reference}")])
        .output()
        .expect("skopeo (tests/setup.sh installs it)");
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    out.status.success().then(|| v["Digest"].as_str().unwrap().to_owned())
}

/// The manifest of `tag` in `state`'s store.
fn manifest(bench: &Bench, state: &str, tag: &str) -> Value {
    let layout = bench.state(state).join("oci");
    let digest = &tag_digests(&layout)[tag];
    let blob = layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&fs::read(blob).unwrap()).unwrap()
}

/// A base image whose tag moves in the registry: `--nopull` keeps the stored one and rebuilds nothing,
/// `--pull` (the default) takes the new one, and base and its child are rebuilt on it.
#[test]
fn pull_takes_a_base_tag_that_moved_and_nopull_keeps_the_stored_one() {
    let bench = Bench::new();
    let reg = TestRegistry::start();
    let v2 = bench.ctx().join("Dockerfile.v2");
    fs::write(&v2, "FROM bb-base:1\nCOPY Dockerfile.base /etc/variant\n").unwrap();
    bench.build_file("seed", &v2, "bb-base:2").ok();
    let remote = format!("{}/lib/bb:1", reg.addr());
    copy_to_registry(&bench, "seed", "bb-base:1", &remote);
    let first = remote_digest(&remote).unwrap();

    let tree = bench.dir.join("pull-tree");
    write_images(
        &tree,
        &[
            ("base", "FROM {{ base_image }}:{{ base_distro_tag }}\nCOPY marker /marker\n".into()),
            ("svc/svc-a", child("base", "LABEL svc=a\n")),
        ],
    );
    fs::write(tree.join("base/marker"), "m\n").unwrap();
    bench.fresh_state("pull");
    let base_image = format!("{}/lib/bb", reg.addr());
    let args = ["--base-image", base_image.as_str(), "--base-tag", "1", "--tag", KOLLA_TAG];
    let (run, cold) = build(&bench, "pull", "pull-cold", &tree, &args);
    run.ok();
    assert_eq!(names(&cold["built"]), ["base", "svc-a"]);
    assert_eq!(tag_digests(&bench.state("pull").join("oci"))[&remote], first);
    let before = bench.tree_digests("pull");

    copy_to_registry(&bench, "seed", "bb-base:2", &remote);
    let moved = remote_digest(&remote).unwrap();
    assert_ne!(moved, first);
    let nopull = [&args[..], &["--nopull"]].concat();
    let (run, kept) = build(&bench, "pull", "pull-nopull", &tree, &nopull);
    run.ok();
    assert_eq!(kept["layers_built"], 0, "{kept}");
    assert_eq!(bench.tree_digests("pull"), before, "--nopull keeps the stored base");

    let (run, pulled) = build(&bench, "pull", "pull-again", &tree, &args);
    run.ok();
    assert_eq!(tag_digests(&bench.state("pull").join("oci"))[&remote], moved, "the moved tag was pulled");
    let after = bench.tree_digests("pull");
    for image in ["base", "svc-a"] {
        let tag = format!("kolla/{image}:{KOLLA_TAG}");
        assert_ne!(after[&tag], before[&tag], "{image} is rebuilt on the new base");
    }
    assert_eq!(pulled["layers_built"], 1, "base's COPY on the new base: {pulled}");
}

/// A loopback HTTP server answering `503` to the first request and `200 ok` to the others; counts them.
fn flaky_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let answer = if count.fetch_add(1, Ordering::SeqCst) == 0 {
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
            };
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    (port, hits)
}

/// `--retries 1`: an image whose RUN fails once is built on the second attempt, and its log shows both
/// attempts; with `--retries 0` it fails. The summary goes to the file, or (without one) as one line to
/// stdout, or nowhere with `--nosummary`.
#[test]
fn a_failed_image_is_built_again_up_to_retries_times() {
    let bench = Bench::new();
    let (port, hits) = flaky_server();
    let tree = bench.dir.join("retry-tree");
    let fetch = format!("RUN busybox wget -q -O /fetched http://127.0.0.1:{port}/x\n");
    write_images(&tree, &[("base", "FROM bb-base:1\nLABEL name=base\n".into()), ("svc/flaky", child("base", &fetch))]);
    bench.fresh_state("retry");
    // kolla-build's --network_mode host: the RUN reaches the server on the host's loopback.
    let (run, s) = build(&bench, "retry", "retry-once", &tree, &["--retries", "1", "--network_mode", "host"]);
    run.ok();
    assert_eq!(names(&s["built"]), ["base", "flaky"], "{s}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let log = fs::read_to_string(bench.dir.join("logs-retry-once/flaky.log")).unwrap();
    let (first, second) = (log.find("attempt 1 of 2").unwrap(), log.find("attempt 2 of 2").unwrap());
    assert!(first < second && log[first..second].contains("BUILD FAILED"), "{log}");
    assert!(!bench.dir.join("logs-retry-once/000_FAILED_flaky.log").exists());

    // Without retries the first failure is the outcome (a fresh server fails its first request again).
    let (port, _) = flaky_server();
    let fetch = format!("RUN busybox wget -q -O /fetched http://127.0.0.1:{port}/x\n");
    write_images(&tree, &[("svc/flaky", child("base", &fetch))]);
    let (run, s) = build(&bench, "retry", "retry-none", &tree, &["--retries", "0", "--network_mode", "host"]);
    run.failed();
    assert_eq!(failed(&s), BTreeMap::from([("flaky".to_string(), "error".to_string())]));
    assert!(bench.dir.join("logs-retry-none/000_FAILED_flaky.log").exists());

    // kolla-build's summary on stdout: one line, only without --summary-json-file; none with --nosummary.
    write_images(&tree, &[("svc/flaky", child("base", "LABEL fixed=yes\n"))]);
    let args = ["build", "--all", "--template-tree", tree.to_str().unwrap()];
    let out = run_bounded(&mut bench.kolla("retry", &args), LIMIT).ok();
    let want = r#"{"built": [{"name": "base"}, {"name": "flaky"}], "failed": [], "not_matched": [], "skipped": [], "unbuildable": [], "layers_built": 0"#;
    assert!(out.stdout.starts_with(want) && !out.stdout.contains('\n'), "{}", out.stdout);
    let quiet = run_bounded(&mut bench.kolla("retry", &[&args[..], &["--nosummary", "-q"]].concat()), LIMIT).ok();
    assert!(quiet.stdout.is_empty(), "{}", quiet.stdout);
    assert!(!quiet.stderr.contains("building flaky"), "--quiet: {}", quiet.stderr);
}

/// The first field of a log line: its RFC 3339 UTC timestamp (same width, so they compare as text).
fn time_of<'a>(stderr: &'a str, needles: &[&str]) -> &'a str {
    let line = stderr
        .lines()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("no line with {needles:?} in:\n{stderr}"));
    line.split_whitespace().next().unwrap()
}

/// `--push` to a registry that refuses one repository: that image is `push_error` (after its retries),
/// the others are in the registry, the exit status is 1, and the first push started before the last
/// build ended.
#[test]
fn pushes_run_while_images_build_and_a_refused_push_is_a_push_error() {
    let bench = Bench::new();
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    proxy.deny_pushes_to("kolla/svc-a");
    let tree = bench.dir.join("push-tree");
    write_images(
        &tree,
        &[
            ("base", "FROM bb-base:1\nLABEL name=base\n".into()),
            ("svc/svc-a", child("base", "LABEL svc=a\n")),
            ("svc/svc-b", child("base", "RUN busybox sleep 3 && echo b > /b\n")),
        ],
    );
    bench.fresh_state("push");
    let registry = proxy.addr();
    let args = ["--push", "--registry", registry.as_str(), "--push-threads", "2", "--retries", "1"];
    let (run, s) = build(&bench, "push", "push", &tree, &args);
    run.failed();
    assert_eq!(names(&s["built"]), ["base", "svc-b"], "{s}");
    assert_eq!(failed(&s), BTreeMap::from([("svc-a".to_string(), "push_error".to_string())]));
    let pushed = time_of(&run.stderr, &["pushing", &format!("/kolla/base:{KOLLA_TAG}")]);
    let last_built = time_of(&run.stderr, &[" built ", &format!("/kolla/svc-b:{KOLLA_TAG}")]);
    assert!(pushed < last_built, "base's push ({pushed}) starts before svc-b is built ({last_built})");
    let denied = run.stderr.lines().filter(|l| l.contains("push of") && l.contains("/kolla/svc-a:")).count();
    assert_eq!(denied, 2, "one push and one retry of svc-a: {}", run.stderr);
    for image in ["base", "svc-b"] {
        assert!(remote_digest(&format!("{}/kolla/{image}:{KOLLA_TAG}", reg.addr())).is_some(), "{image} pushed");
    }
    assert!(remote_digest(&format!("{}/kolla/svc-a:{KOLLA_TAG}", reg.addr())).is_none());
}

/// `--squash`: an image with 3 RUN layers on its parent becomes the parent's layers plus exactly one,
/// holding what the three left (a file one RUN made and the next removed is not there); a rebuild keeps it.
#[test]
fn squash_merges_an_images_own_layers_into_one() {
    let bench = Bench::new();
    let tree = bench.dir.join("squash-tree");
    let runs = "RUN echo one > /one\nRUN echo two > /two && busybox rm /one /etc/gone\n\
                RUN busybox mkdir -p /d && echo three > /d/three\n";
    write_images(
        &tree,
        &[("base", "FROM bb-base:1\nCOPY marker /marker\n".into()), ("svc/svc-sq", child("base", runs))],
    );
    fs::write(tree.join("base/marker"), "m\n").unwrap();
    let layers = |state: &str, image: &str| {
        manifest(&bench, state, &format!("kolla/{image}:{KOLLA_TAG}"))["layers"].as_array().unwrap().clone()
    };
    bench.fresh_state("plain");
    build(&bench, "plain", "plain", &tree, &[]).0.ok();
    assert_eq!(layers("plain", "svc-sq").len(), layers("plain", "base").len() + 3);

    bench.fresh_state("squash");
    build(&bench, "squash", "squash", &tree, &["--squash"]).0.ok();
    let (base, sq) = (layers("squash", "base"), layers("squash", "svc-sq"));
    assert_eq!(sq.len(), base.len() + 1, "the parent's layers and one more");
    assert_eq!(&sq[..base.len()], &base[..], "the parent's layers are kept as they are");
    let bundle = bench.dir.join("unpack-squash");
    let image = format!("{}:kolla/svc-sq:{KOLLA_TAG}", bench.plain_layout("squash").display());
    tool("umoci", &["unpack", "--rootless", "--image", &image, bundle.to_str().unwrap()]);
    let root: PathBuf = bundle.join("rootfs");
    assert_eq!(fs::read_to_string(root.join("two")).unwrap(), "two\n");
    assert_eq!(fs::read_to_string(root.join("d/three")).unwrap(), "three\n");
    assert!(!root.join("one").exists() && !root.join("etc/gone").exists(), "removed files stay removed");
    assert!(root.join("bin/busybox").exists() && root.join("marker").exists());
    let digests = bench.tree_digests("squash");
    let (run, again) = build(&bench, "squash", "squash-again", &tree, &["--squash"]);
    run.ok();
    assert_eq!(again["layers_built"], 0, "{again}");
    assert_eq!(bench.tree_digests("squash"), digests);
}

/// `FROM debian:trixie` (kolla's default base) with a registries.conf naming a test registry as Docker
/// Hub's mirror: the image comes from the mirror, nothing is bootstrapped.
#[test]
fn debian_base_comes_from_the_registries_conf_mirror() {
    let bench = Bench::new();
    let reg = TestRegistry::start();
    copy_to_registry(&bench, "seed", "bb-base:1", &format!("{}/library/debian:trixie", reg.addr()));
    let served = remote_digest(&format!("{}/library/debian:trixie", reg.addr())).unwrap();
    let conf = bench.dir.join("registries.conf");
    fs::write(
        &conf,
        format!(
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\n\
             [[registry.mirror]]\nlocation = \"{}\"\ninsecure = true\n",
            reg.addr()
        ),
    )
    .unwrap();
    let tree = bench.dir.join("mirror-tree");
    write_images(&tree, &[("base", "FROM {{ base_image }}:{{ base_distro_tag }}\nLABEL name=base\n".into())]);
    fs::create_dir_all(bench.state("mirror")).unwrap();
    let (run, s) = build_with(&bench, "mirror", "mirror", &tree, &[], |c| {
        c.env("CONTAINERS_REGISTRIES_CONF", &conf);
    });
    let run = run.ok();
    assert_eq!(names(&s["built"]), ["base"]);
    let tags = tag_digests(&bench.state("mirror").join("oci"));
    assert_eq!(tags["debian:trixie"], served);
    assert_eq!(tags["docker.io/library/debian:trixie"], served);
    assert!(run.stderr.contains("pulled from the mirror"), "{}", run.stderr);
    assert!(!run.stderr.contains("mmdebstrap"), "nothing bootstrapped: {}", run.stderr);
}
