//! `--shard I/N` with `--cache-repo`: three processes, each with its own store, build one Kolla-shaped
//! tree at once through a real `docker-registry`. Every RUN writes a random UUID, so a layer built twice
//! would differ: equal digests prove each layer was built once, by its owner, and taken by the others.
//! One shard is killed mid-build first and simply run again. Under faults, nothing waits for
//! `--shard-wait`: when base's owner fails (its RUN sees `no_proxy=fleet-fault`, which leaves the step's
//! key alone), the others fail at once with its error, and a re-run of the owner supersedes the failure;
//! when base's owner is killed for good, the next shard takes over its images.

#[path = "support/busybox.rs"]
mod busybox;
#[path = "support/cli.rs"]
mod cli;
#[path = "support/registry.rs"]
mod registry;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cli::ok;
use registry::{TestRegistry, run_ok, skopeo_digest};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kolla-oci");
const TAG: &str = "shards";
const IMAGES: [&str; 8] = ["base", "os-base", "svc-a", "a1", "a2", "svc-b", "svc-c", "cron"];
/// Layers of the whole set built on one machine (one RUN per image, two in a2 and svc-b; base's first
/// RUN changes no file).
const LAYERS: u64 = 10;
/// `no_proxy` value that makes base's first RUN fail (proxy variables are not part of a step's key).
const FAULT: &str = "fleet-fault";

struct Bench {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Bench {
    fn new() -> Bench {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        busybox::write_busybox_context(&dir.join("bb"));
        let tree = dir.join("tree");
        let stamp =
            |name: &str| format!("RUN cat /proc/sys/kernel/random/uuid > /{name}.stamp && echo {name} >> /built\n");
        let child = |parent: &str, name: &str| {
            format!("FROM {{{{ namespace }}}}/{{{{ image_prefix }}}}{parent}:{{{{ tag }}}}\n{}", stamp(name))
        };
        let files = [
            // The pause lets the test kill shard 0 in the middle of its first step; the fault fails it.
            (
                "base",
                format!("FROM bb-base:1\nRUN sleep 2 && test \"$no_proxy\" != {FAULT} || exit 7\n{}", stamp("base")),
            ),
            ("os-base", child("base", "os-base")),
            ("svc-a/svc-a", child("os-base", "svc-a")),
            ("svc-a/a1", child("svc-a", "a1")),
            ("svc-a/a2", format!("{}RUN echo two >> /built\n", child("svc-a", "a2"))),
            ("svc-b", format!("{}RUN echo more >> /built\n", child("os-base", "svc-b"))),
            ("svc-c", child("os-base", "svc-c")),
            ("cron", child("base", "cron")),
        ];
        for (dir_name, text) in files {
            let d = tree.join(dir_name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("Dockerfile.j2"), text).unwrap();
        }
        fs::create_dir(dir.join("home")).unwrap();
        Bench { _tmp: tmp, dir }
    }

    fn kolla(&self, state: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("KOLLA_OCI_STORE", self.dir.join(state))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("HOME", self.dir.join("home"))
            .env("KOLLA_OCI_LOG", "info")
            .env_remove("RUST_LOG");
        cmd
    }

    /// A state with the root image `bb-base:1` (deterministic: every machine gets the same digest).
    fn state(&self, state: &str) {
        let bb = self.dir.join("bb");
        let df = bb.join("Dockerfile.base");
        ok(self
            .kolla(state, &["build-file", "-f", df.to_str().unwrap(), bb.to_str().unwrap(), "-t", "bb-base:1"])
            .output()
            .unwrap());
    }

    /// `build --all` of the tree into `state`, with `extra`; its summary goes to `<state>.json`.
    fn build(&self, state: &str, extra: &[&str]) -> Command {
        let tree = self.dir.join("tree");
        let work = self.dir.join(format!("{state}-work"));
        let summary = self.dir.join(format!("{state}.json"));
        let mut args = vec!["build", "--all", "--threads", "2", "--tag", TAG, "--no-attestations"];
        args.extend(["--template-tree", tree.to_str().unwrap(), "--work-dir", work.to_str().unwrap()]);
        args.extend(["--summary-json-file", summary.to_str().unwrap()]);
        args.extend(extra);
        let mut cmd = self.kolla(state, &args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    fn summary(&self, state: &str) -> Value {
        serde_json::from_slice(&fs::read(self.dir.join(format!("{state}.json"))).unwrap()).unwrap()
    }

    fn digests(&self, state: &str) -> Vec<String> {
        let store = kolla_oci::store::Store::open(&self.dir.join(state).join("oci")).unwrap();
        IMAGES
            .iter()
            .map(|i| {
                store.resolve(&format!("kolla/{i}:{TAG}")).unwrap().map(|d| d.digest.to_string()).unwrap_or_default()
            })
            .collect()
    }
}

fn layers_built(v: &Value) -> u64 {
    v["layers_built"].as_u64().unwrap_or_else(|| panic!("no layers_built in {v}"))
}

#[test]
fn three_shards_build_each_layer_once_and_a_fourth_store_builds_nothing() {
    let bench = Bench::new();
    let reg = TestRegistry::start();
    let addr = reg.addr();
    let cache = format!("{addr}/ci/cache");

    // The plan every machine computes.
    let plan = ok(bench.build("plan", &["--list-shards", "3"]).output().unwrap());
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert_eq!(plan.lines().filter(|l| l.starts_with("shard ")).count(), 3, "{plan}");

    // One machine alone, for the count of layers the set has.
    bench.state("one");
    ok(bench.build("one", &[]).output().unwrap());
    let alone = layers_built(&bench.summary("one"));
    assert_eq!(alone, LAYERS);

    // Shard 0 killed (SIGKILL) in the middle of a step: it is simply run again below.
    for i in 0..3 {
        bench.state(&format!("shard{i}"));
    }
    let shard_args = |i: usize| -> Vec<String> {
        let v = [&format!("{i}/3"), "--cache-repo", &cache, "--push", "--registry", &addr].map(str::to_string);
        std::iter::once("--shard".to_string()).chain(v).collect()
    };
    let args0 = shard_args(0);
    // The killed run cannot remove its temp dirs (work dir, RUN scratch): they go to the bench, not /tmp.
    let doomed_tmp = bench.dir.join("tmp-shard0");
    std::fs::create_dir_all(&doomed_tmp).unwrap();
    let mut doomed = bench
        .build("shard0", &args0.iter().map(String::as_str).collect::<Vec<_>>())
        .env("TMPDIR", &doomed_tmp)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    doomed.kill().unwrap();
    assert!(!doomed.wait().unwrap().success());

    // Three shards at once.
    let shards: Vec<(String, Child)> = (0..3)
        .map(|i| {
            let state = format!("shard{i}");
            let args = shard_args(i);
            (state.clone(), bench.build(&state, &args.iter().map(String::as_str).collect::<Vec<_>>()).spawn().unwrap())
        })
        .collect();
    let mut total = 0;
    for (state, child) in shards {
        ok(child.wait_with_output().unwrap());
        total += layers_built(&bench.summary(&state));
    }
    assert_eq!(total, alone, "each layer was built by exactly one shard");
    ok(bench.kolla("shard0", &["fsck"]).output().unwrap());

    // Every image is in the registry, and a fourth store with only the cache gets the same digests.
    let pushed: Vec<String> = IMAGES.iter().map(|i| skopeo_digest(&format!("{addr}/kolla/{i}:{TAG}"), &[])).collect();
    bench.state("fourth");
    ok(bench.build("fourth", &["--cache-repo", &cache]).output().unwrap());
    assert_eq!(layers_built(&bench.summary("fourth")), 0, "everything came from the cache");
    assert_eq!(bench.digests("fourth"), pushed);
    for i in 0..3 {
        let own: Vec<String> = bench.digests(&format!("shard{i}"));
        for (d, p) in own.iter().zip(&pushed) {
            assert!(d.is_empty() || d == p, "shard {i} holds another version of an image: {d} vs {p}");
        }
    }
}

#[test]
fn a_shard_whose_parent_never_comes_names_the_owner() {
    let bench = Bench::new();
    let reg = TestRegistry::start();
    let cache = format!("{}/ci/empty", reg.addr());
    bench.state("lonely");
    // Shard 2/3 owns leaves below the trunk (owned by shard 0, which never runs).
    let out = bench.build("lonely", &["--shard", "2/3", "--cache-repo", &cache, "--shard-wait", "3"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shard 0/3") && err.contains("--shard-wait"), "{err}");
    let without_cache = bench.build("lonely", &["--shard", "2/3"]).output().unwrap();
    assert!(String::from_utf8_lossy(&without_cache.stderr).contains("--shard needs --cache-repo"));
}

/// `build` of shard `i` of 3 through `cache`, pushing to `addr`, with `extra`.
fn shard(bench: &Bench, i: usize, cache: &str, addr: &str, extra: &[&str]) -> Command {
    let index = format!("{i}/3");
    let mut args = vec!["--shard", &index, "--cache-repo", cache, "--push", "--registry", addr];
    args.extend(extra);
    bench.build(&format!("shard{i}"), &args)
}

/// The output of `child`, which must exit before `deadline` (else it is killed and the test fails).
fn finish_by(child: Child, deadline: Instant, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(out) => out,
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            let out = rx.recv().unwrap();
            panic!("{what} was still running at its deadline:\n{}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The fleet records in the cache repository whose tag ends with `suffix`, as skopeo reads them: plain
/// OCI manifests whose annotations say what they record.
fn records(addr: &str, repo: &str, suffix: &str) -> Vec<Value> {
    let tags =
        run_ok(Command::new("skopeo").args(["list-tags", "--tls-verify=false"]).arg(format!("docker://{addr}/{repo}")));
    let tags: Value = serde_json::from_str(&tags).unwrap();
    tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str().filter(|t| t.starts_with("fleet-") && t.ends_with(suffix)))
        .map(|t| {
            let raw = run_ok(
                Command::new("skopeo")
                    .args(["inspect", "--raw", "--tls-verify=false"])
                    .arg(format!("docker://{addr}/{repo}:{t}")),
            );
            let manifest: Value = serde_json::from_str(&raw).unwrap();
            assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
            manifest["annotations"].clone()
        })
        .collect()
}

/// A bench with three shard states (each with the root image) and a registry: the bench, the registry,
/// its address and the cache repository `ci/<repo>` in it.
fn three_shards(repo: &str) -> (Bench, TestRegistry, String, String) {
    let bench = Bench::new();
    let reg = TestRegistry::start();
    let addr = reg.addr();
    let cache = format!("{addr}/ci/{repo}");
    for i in 0..3 {
        bench.state(&format!("shard{i}"));
    }
    (bench, reg, addr, cache)
}

#[test]
fn when_the_owner_of_base_fails_the_others_fail_at_once_with_its_error_until_it_succeeds() {
    let (bench, _reg, addr, cache) = three_shards("faults");
    // `--shard-wait` is far longer than the test may take: nothing may wait for it.
    let limits = ["--shard-wait", "600", "--shard-takeover", "60"];
    let owner = shard(&bench, 0, &cache, &addr, &limits).env("no_proxy", FAULT).spawn().unwrap();
    let others: Vec<Child> = (1..3).map(|i| shard(&bench, i, &cache, &addr, &limits).spawn().unwrap()).collect();
    let out = finish_by(owner, Instant::now() + Duration::from_secs(300), "shard 0");
    let failed_at = Instant::now();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("non-zero code: 7"), "{}", stderr(&out));
    let own = bench.summary("shard0");
    assert!(own["failed"].as_array().unwrap().iter().any(|f| f["name"] == "base" && f["status"] == "error"), "{own}");

    // The failure is a plain OCI manifest next to the step entries, with the owner's words.
    let failures = records(&addr, "ci/faults", "-failed-base");
    assert_eq!(failures.len(), 1, "{failures:?}");
    let f = &failures[0];
    assert_eq!(
        (f["dev.kolla-oci.fleet.image"].as_str(), f["dev.kolla-oci.fleet.shard"].as_str()),
        (Some("base"), Some("0/3"))
    );
    assert_eq!(f["dev.kolla-oci.fleet.location"], "base/Dockerfile:2");
    assert!(f["dev.kolla-oci.fleet.error"].as_str().unwrap().contains("non-zero code: 7"), "{f}");
    assert!(f["dev.kolla-oci.fleet.step"].as_str().unwrap().starts_with("RUN sleep 2"), "{f}");

    // The others fail within 30 s of it, naming base and the owner's error; their images are parent_error.
    for (i, child) in (1..3).zip(others) {
        let out = finish_by(child, failed_at + Duration::from_secs(30), &format!("shard {i}"));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("parent base failed on shard 0/3"), "{err}");
        assert!(err.contains("base/Dockerfile:2: `RUN") && err.contains("non-zero code: 7"), "{err}");
        let summary = bench.summary(&format!("shard{i}"));
        let failed = summary["failed"].as_array().unwrap();
        assert!(summary["built"].as_array().unwrap().is_empty(), "{summary}");
        assert!(failed.iter().any(|f| f["name"] == "base"), "{summary}");
        assert!(failed.iter().all(|f| f["status"] == "parent_error"), "{summary}");
    }

    // The owner runs again without the fault: once its new heartbeat is there, the old failure no longer
    // counts, and shards started then wait for base and build their images.
    let old_run = f["dev.kolla-oci.fleet.run"].as_str().unwrap().to_owned();
    let owner = shard(&bench, 0, &cache, &addr, &limits).spawn().unwrap();
    let rerun = Instant::now() + Duration::from_secs(60);
    while records(&addr, "ci/faults", "-shard-0").iter().all(|b| b["dev.kolla-oci.fleet.run"] == old_run.as_str()) {
        assert!(Instant::now() < rerun, "shard 0's new run wrote no heartbeat");
        std::thread::sleep(Duration::from_millis(200));
    }
    let others: Vec<Child> = (1..3).map(|i| shard(&bench, i, &cache, &addr, &limits).spawn().unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut total = {
        ok(finish_by(owner, deadline, "shard 0 again"));
        layers_built(&bench.summary("shard0"))
    };
    for (i, child) in (1..3).zip(others) {
        ok(finish_by(child, deadline, &format!("shard {i} again")));
        total += layers_built(&bench.summary(&format!("shard{i}")));
    }
    assert_eq!(total, LAYERS, "each layer built once, by its owner");
    for i in IMAGES {
        skopeo_digest(&format!("{addr}/kolla/{i}:{TAG}"), &[]);
    }
}

#[test]
fn when_the_owner_of_base_is_killed_for_good_the_next_shard_takes_over_its_images() {
    let (bench, _reg, addr, cache) = three_shards("lost");
    let limits = ["--shard-wait", "600", "--shard-takeover", "6"];
    // Shard 0 is SIGKILLed during its first step (base's `sleep 2`) and never comes back; its temp dirs
    // stay in the bench.
    let doomed_tmp = bench.dir.join("tmp-shard0");
    fs::create_dir_all(&doomed_tmp).unwrap();
    let mut doomed = shard(&bench, 0, &cache, &addr, &limits).env("TMPDIR", &doomed_tmp).spawn().unwrap();
    let others: Vec<Child> = (1..3).map(|i| shard(&bench, i, &cache, &addr, &limits).spawn().unwrap()).collect();
    let log = BufReader::new(doomed.stderr.take().unwrap());
    let started = log.lines().map_while(Result::ok).any(|l| l.contains("building base"));
    assert!(started, "shard 0 never started base");
    std::thread::sleep(Duration::from_secs(1));
    doomed.kill().unwrap();
    assert!(!doomed.wait().unwrap().success());

    let deadline = Instant::now() + Duration::from_secs(300);
    let mut total = 0;
    for (i, child) in (1..3).zip(others) {
        let out = ok(finish_by(child, deadline, &format!("shard {i}")));
        if i == 1 {
            assert!(stderr(&out).contains("shard 0/3 is lost"), "{}", stderr(&out));
        }
        total += layers_built(&bench.summary(&format!("shard{i}")));
    }
    assert_eq!(total, LAYERS, "shard 0 built nothing; the others built each layer once");
    let adopted = bench.summary("shard1");
    assert!(
        adopted["built"].as_array().unwrap().iter().any(|b| b["name"] == "svc-c"),
        "svc-c, which only shard 0 needed: {adopted}"
    );
    ok(bench.kolla("shard1", &["fsck"]).output().unwrap());

    // Every image is pushed, and a fourth machine with only the cache builds nothing and gets them.
    let pushed: Vec<String> = IMAGES.iter().map(|i| skopeo_digest(&format!("{addr}/kolla/{i}:{TAG}"), &[])).collect();
    bench.state("fourth");
    ok(bench.build("fourth", &["--cache-repo", &cache]).output().unwrap());
    assert_eq!(layers_built(&bench.summary("fourth")), 0);
    assert_eq!(bench.digests("fourth"), pushed);
}
