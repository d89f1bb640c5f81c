//! `--shard I/N` with `--cache-repo`: three processes, each with its own store, build one Kolla-shaped
//! tree at once through a real `docker-registry`. Every RUN writes a random UUID, so a layer built twice
//! would differ: equal digests prove each layer was built once, by its owner, and taken by the others.
//! One shard is killed mid-build first and simply run again.

#[path = "support/busybox.rs"]
mod busybox;
#[path = "support/cli.rs"]
mod cli;
#[path = "support/registry.rs"]
mod registry;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use cli::ok;
use registry::{TestRegistry, skopeo_digest};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kolla-oci");
const TAG: &str = "shards";
const IMAGES: [&str; 8] = ["base", "os-base", "svc-a", "a1", "a2", "svc-b", "svc-c", "cron"];

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
            // The pause lets the test kill shard 0 in the middle of its first step.
            ("base", format!("FROM bb-base:1\nRUN sleep 2\n{}", stamp("base"))),
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
    assert_eq!(alone, 10, "one RUN per image, two in a2 and svc-b (`sleep` changes no file)");

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
