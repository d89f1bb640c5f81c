//! `--platform linux/amd64,linux/arm64` builds both platforms at once in one process: tiny trees
//! (`FROM scratch`, COPY, LABEL; no RUN, so no emulation) rendered per architecture. The platforms'
//! builds overlap (a source server answers only once both platforms ask for the source), `--push`
//! writes each image's tag once, with the index of both platforms (a registry proxy sees every request),
//! an image failed on one platform is not pushed at all, the summary is one for the run, and each
//! platform's logs have a directory of their own. Two shards split the set, each pushing whole indexes.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/registry.rs"]
mod registry;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use cli::ok;
use registry::{Proxy, TestRegistry, run_ok};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_kolla-oci");
const TAG: &str = "2026.2-debian-trixie";
const PLATFORMS: &str = "linux/amd64,linux/arm64";

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Env {
    /// A bench with the template tree `files` (image dir → `Dockerfile.j2`) under `tree/`; every image
    /// dir gets a file `arch` to COPY.
    fn new(files: &[(&str, &str)]) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        for (image, text) in files {
            let d = dir.join("tree").join(image);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("Dockerfile.j2"), text).unwrap();
            fs::write(d.join("arch"), "x\n").unwrap();
        }
        Env { _tmp: tmp, dir }
    }

    /// `kolla-oci build --all` of the tree for both platforms into `state`, with `extra`; the summary goes
    /// to `<state>.json`.
    fn build(&self, state: &str, extra: &[&str]) -> Command {
        self.build_for(PLATFORMS, state, extra)
    }

    /// [`Env::build`] for `platforms`.
    fn build_for(&self, platforms: &str, state: &str, extra: &[&str]) -> Command {
        let tree = self.dir.join("tree");
        let summary = self.dir.join(format!("{state}.json"));
        let mut cmd = Command::new(BIN);
        cmd.args(["build", "--all", "--platform", platforms, "--threads", "2", "--no-attestations"])
            .arg("--template-tree")
            .arg(&tree)
            .arg("--summary-json-file")
            .arg(&summary)
            .args(extra)
            .env("KOLLA_OCI_STORE", self.dir.join(state))
            .env("KOLLA_OCI_LOG", "info")
            .env_remove("RUST_LOG")
            .env_remove("SOURCE_DATE_EPOCH")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn summary(&self, state: &str) -> Value {
        serde_json::from_slice(&fs::read(self.dir.join(format!("{state}.json"))).unwrap()).unwrap()
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The platforms (`os/arch`) of the index tagged `image` in the registry, as skopeo reads it.
fn pushed_platforms(image: &str) -> Vec<String> {
    let raw = run_ok(
        Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("docker://{image}")),
    );
    let raw: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json", "{raw}");
    let platform = |m: &Value| {
        format!("{}/{}", m["platform"]["os"].as_str().unwrap(), m["platform"]["architecture"].as_str().unwrap())
    };
    raw["manifests"].as_array().unwrap().iter().map(platform).collect()
}

/// The `PUT`s of manifests under `tag` (not by digest) the proxy passed on, by repository.
fn tag_puts(proxy: &Proxy) -> BTreeMap<String, usize> {
    let mut puts = BTreeMap::new();
    for e in proxy.events().iter().filter(|e| e.method == "PUT") {
        if let Some((repo, reference)) = e.path.trim_start_matches("/v2/").split_once("/manifests/")
            && reference == TAG
        {
            *puts.entry(repo.to_owned()).or_default() += 1;
        }
    }
    puts
}

/// An HTTP server of one file that answers a `GET` only once `together` requests wait for it (or after
/// a minute), then every later one at once: a build that asks for it from two platforms one after the
/// other waits the minute and leaves `most_waiting` at 1.
struct TogetherServer {
    port: u16,
    state: Arc<(Mutex<Waiting>, Condvar)>,
}

/// What [`TogetherServer`] keeps: requests waiting, the most that waited at once, and whether they are
/// released.
#[derive(Default)]
struct Waiting {
    now: usize,
    most: usize,
    released: bool,
}

impl TogetherServer {
    fn start(body: Vec<u8>, together: usize) -> TogetherServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new((Mutex::new(Waiting::default()), Condvar::new()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (state, body) = (Arc::clone(&shared), body.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                        line.clear();
                    }
                    let (lock, cond) = &*state;
                    let mut g = lock.lock().unwrap();
                    g.now += 1;
                    g.most = g.most.max(g.now);
                    if g.now >= together {
                        g.released = true;
                        cond.notify_all();
                    }
                    let (mut g, _) = cond.wait_timeout_while(g, Duration::from_secs(60), |g| !g.released).unwrap();
                    g.now -= 1;
                    drop(g);
                    let _ =
                        write!(conn, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                    let _ = conn.write_all(&body);
                });
            }
        });
        TogetherServer { port, state }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/src.tar.gz", self.port)
    }

    fn most_waiting(&self) -> usize {
        self.state.0.lock().unwrap().most
    }
}

/// A gzipped tarball holding `src/hello.txt`.
fn tarball() -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o644);
    tar.append_data(&mut header, "src/hello.txt", &b"hello\n"[..]).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect()
}

const BASE: &str = "FROM scratch\nADD base-archive /src\nCOPY arch /arch\nLABEL arch=\"{{ base_arch }}\"\n";
const CHILD: &str = "FROM {{ namespace }}/{{ image_prefix }}base:{{ tag }}\nLABEL child=\"{{ debian_arch }}\"\n";

/// Both platforms build at once (each fetches base's source while the other does), each image's tag is
/// pushed once, as the index of both; one summary; logs and console lines per platform.
#[test]
fn platforms_build_at_once_and_push_each_index_once_whole() {
    let env = Env::new(&[("base", BASE), ("child", CHILD)]);
    let server = TogetherServer::start(tarball(), 2);
    let conf = env.dir.join("kolla-build.conf");
    fs::write(&conf, format!("[base]\ntype = url\nlocation = {}\n", server.url())).unwrap();
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let logs = env.dir.join("logs");
    let args = ["--config-file", conf.to_str().unwrap(), "--push", "--registry", &proxy.addr()];
    let out = ok(env.build("s", &[&args[..], &["--logs-dir", logs.to_str().unwrap()]].concat()).output().unwrap());
    let text = text(&out);

    assert_eq!(server.most_waiting(), 2, "the two platforms' builds overlapped: {text}");
    let summary = env.summary("s");
    assert_eq!(names(&summary["built"]), ["base", "child"], "{summary}");
    assert_eq!(summary["failed"], json!([]));
    assert!(String::from_utf8_lossy(&out.stdout).is_empty(), "the summary went to its file only");
    assert_eq!(text.matches("built 2, failed 0").count(), 1, "one final line for the run: {text}");

    let repos = ["kolla/base", "kolla/child"];
    assert_eq!(tag_puts(&proxy), repos.iter().map(|r| (r.to_string(), 1)).collect(), "each tag written once");
    for repo in repos {
        assert_eq!(pushed_platforms(&format!("{}/{repo}:{TAG}", reg.addr())), ["linux/amd64", "linux/arm64"]);
    }

    for platform in ["linux-amd64", "linux-arm64-v8"] {
        for image in ["base", "child"] {
            assert!(logs.join(platform).join(format!("{image}.log")).is_file(), "{platform}/{image}.log");
        }
    }
    assert!(!logs.join("base.log").exists(), "no platform's log at the top");
    assert!(text.contains("base (arm64) | ") && text.contains("child (amd64) | "), "{text}");
    assert!(text.contains("platform=arm64"), "log lines name the platform: {text}");
}

/// An image that fails on arm64 only: the run fails, the summary names the platform, and nothing of
/// the image reaches the registry (its amd64 build stays in the store); the rest is pushed whole.
#[test]
fn an_image_failed_on_one_platform_is_not_pushed() {
    let bad = "FROM scratch\nCOPY arch /arch\n{% if debian_arch == 'arm64' %}COPY missing /missing\n{% endif %}";
    let env = Env::new(&[("base", "FROM scratch\nCOPY arch /arch\n"), ("bad", bad)]);
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let out = env.build("f", &["--push", "--registry", &proxy.addr()]).output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));

    let summary = env.summary("f");
    assert_eq!(names(&summary["built"]), ["base"], "{summary}");
    assert_eq!(summary["failed"], json!([{"name": "bad", "status": "error", "platforms": ["linux/arm64/v8"]}]));
    assert!(proxy.events().iter().all(|e| !e.path.starts_with("/v2/kolla/bad/")), "nothing of bad pushed");
    assert_eq!(tag_puts(&proxy), BTreeMap::from([("kolla/base".to_string(), 1)]));
    assert_eq!(pushed_platforms(&format!("{}/kolla/base:{TAG}", reg.addr())), ["linux/amd64", "linux/arm64"]);

    let store = kolla_oci::store::Store::open(&env.dir.join("f/oci")).unwrap();
    let tagged = store.resolve(&format!("{}/kolla/bad:{TAG}", proxy.addr())).unwrap().expect("bad's amd64 image");
    assert_eq!(tagged.platform.unwrap().to_string(), "linux/amd64");
}

/// `--skip-existing` skips an image only on the platforms the store has it for; and each platform's
/// steps see BuildKit's platform args: `TARGETARCH` its own, `BUILDARCH` this machine's.
#[test]
fn skip_existing_looks_for_each_platform() {
    let base = "FROM scratch\nARG TARGETARCH BUILDARCH\nLABEL target=$TARGETARCH build=$BUILDARCH\nCOPY arch /arch\n";
    let env = Env::new(&[("base", base)]);
    let out = env.build_for("linux/amd64", "s", &[]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = env.build("s", &["--skip-existing"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let summary = env.summary("s");
    assert_eq!(names(&summary["built"]), ["base"], "built for arm64: {summary}");
    assert_eq!(summary["layers_built"], 1, "only arm64's COPY: {summary}");

    let store = kolla_oci::store::Store::open(&env.dir.join("s/oci")).unwrap();
    let tagged = store.resolve(&format!("kolla/base:{TAG}")).unwrap().unwrap();
    for (platform, arch) in [("linux/amd64", "amd64"), ("linux/arm64", "arm64")] {
        let image = store.load_image_from(&tagged, &kolla_oci::platform::parse(platform).unwrap()).unwrap();
        let labels = &image.config.config.labels;
        assert_eq!((labels["target"].as_str(), labels["build"].as_str()), (arch, "amd64"), "{platform}");
    }
}

/// `--shard 0/2` and `1/2` of a two-platform run, at once through a cache repository: one plan for both
/// platforms, each image's index pushed once and whole by its owner. `--list-shards` says the shards
/// build every platform.
#[test]
fn two_shards_of_two_platforms_push_whole_indexes() {
    let images = ["base", "a", "b", "c"];
    let files: Vec<(&str, String)> = images
        .iter()
        .map(|&i| match i {
            "base" => (i, "FROM scratch\nCOPY arch /arch\nLABEL arch=\"{{ base_arch }}\"\n".to_string()),
            _ => (i, format!("{CHILD}COPY arch /{i}\n")),
        })
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(i, t)| (*i, t.as_str())).collect();
    let env = Env::new(&files);
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let (addr, cache) = (proxy.addr(), format!("{}/ci/cache", proxy.addr()));

    let listed = ok(env.build("list", &["--list-shards", "2"]).output().unwrap());
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.starts_with("each shard builds its images for linux/amd64, linux/arm64/v8"), "{listed}");
    assert_eq!(listed.matches("shard ").count(), 3, "{listed}");

    let shards: Vec<_> = (0..2)
        .map(|i| {
            let shard = format!("{i}/2");
            let args =
                ["--shard", &shard, "--cache-repo", &cache, "--push", "--registry", &addr, "--shard-wait", "120"];
            env.build(&format!("shard{i}"), &args).spawn().unwrap()
        })
        .collect();
    let mut built = Vec::new();
    for (i, child) in shards.into_iter().enumerate() {
        ok(child.wait_with_output().unwrap());
        let summary = env.summary(&format!("shard{i}"));
        assert_eq!(summary["failed"], json!([]), "{summary}");
        built.extend(names(&summary["built"]).into_iter().map(str::to_owned));
    }
    assert!(images.iter().all(|i| built.iter().any(|b| b == i)), "{built:?}");
    let want: BTreeMap<String, usize> = images.iter().map(|i| (format!("kolla/{i}"), 1)).collect();
    assert_eq!(tag_puts(&proxy), want, "each image's tag written once, by its owner");
    for image in images {
        assert_eq!(pushed_platforms(&format!("{}/kolla/{image}:{TAG}", reg.addr())), ["linux/amd64", "linux/arm64"]);
    }
}
