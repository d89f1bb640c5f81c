//! `--cache-repo`: machines share their step cache through a real `docker-registry`. A fresh store with
//! the cache builds nothing and gets the same image (a RUN that writes a random UUID proves the layer came
//! from the cache, not from a rebuild); a changed context file rebuilds exactly its step and what follows;
//! entries are write-once; other people's tools (skopeo) read the entries as plain images.

#[path = "support/busybox.rs"]
mod busybox;
#[path = "support/registry.rs"]
mod registry;

use std::path::Path;
use std::process::{Command, Output};

use registry::{TestRegistry, run_ok};

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

#[test]
fn machines_share_steps_through_a_registry() {
    let reg = TestRegistry::start();
    let cache = format!("{}/ci/cache", reg.addr());
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    context(&ctx, "v1\n");

    // Machine A builds everything and publishes each step that made a layer.
    let (a, built) = build(&tmp.path().join("a"), &ctx, &cache, &[]);
    assert_eq!(built, 4, "COPY, RUN, COPY, RUN");
    let tags = cache_tags(&reg);
    assert_eq!(tags.len(), 4, "one entry per layer-making step: {tags:?}");
    // Each entry is a plain image manifest that skopeo reads.
    let raw = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{cache}:{}", tags[0])),
    );
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
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
