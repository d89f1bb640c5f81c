//! Cross-builds through qemu-user (`tests/setup.sh` installs `qemu-user-static binfmt-support` and
//! enables their binfmt_misc registrations): the bundled `memcached` built as kolla-build builds it for
//! arm64 (`--platform linux/arm64 --base-arch aarch64`) is a real arm64 image — its config says so, its
//! `/usr/bin/memcached` is an aarch64 ELF — and `kolla-oci run` runs it through the same emulation.
//!
//! One test function checks that (emulated, slow) build; another builds upstream kolla 23.0.0's `base`
//! and `memcached` for arm64 the same way (sharing the arm64 root image) and serves memcached under
//! upstream's `kolla_start`; others push a tag holding one image per platform (an image index) to a
//! real registry, where skopeo and podman pick either platform.

#[path = "support/registry.rs"]
mod registry;
#[path = "support/store.rs"]
mod store_support;
#[path = "support/template.rs"]
mod template;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use kolla_oci::registry::{Reference, RegistryOptions};
use kolla_oci::store::{Image, Store};
use serde_json::Value;
use template::AirGapped;

const BIN: &str = env!("CARGO_BIN_EXE_kolla-oci");
const IMAGE: &str = "kolla/memcached:2026.2-debian-trixie";
/// ELF `e_machine` of AArch64.
const EM_AARCH64: u16 = 0xB7;

struct Env {
    /// This test's own files.
    dir: PathBuf,
    /// The state dir (`KOLLA_OCI_STORE`) it builds in.
    state: PathBuf,
    _tmp: tempfile::TempDir,
    _shared: Option<Arc<tempfile::TempDir>>,
}

impl Env {
    /// A test with a state dir of its own.
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        Env { dir: tmp.path().to_path_buf(), state: tmp.path().join("state"), _tmp: tmp, _shared: None }
    }

    /// A test building for arm64 in the state dir the arm64 tests share while they run, so that
    /// `debian:trixie` for arm64 is bootstrapped once (an emulated mmdebstrap takes minutes; the second
    /// build waits on kolla-oci's root image lock and then finds it in the store).
    fn arm64() -> Env {
        static SHARED: Mutex<Weak<tempfile::TempDir>> = Mutex::new(Weak::new());
        let shared = {
            let mut held = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            held.upgrade().unwrap_or_else(|| {
                let dir = Arc::new(tempfile::tempdir().unwrap());
                *held = Arc::downgrade(&dir);
                dir
            })
        };
        let tmp = tempfile::tempdir().unwrap();
        let state = shared.path().join("state");
        Env { dir: tmp.path().to_path_buf(), state, _tmp: tmp, _shared: Some(shared) }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env("KOLLA_OCI_STORE", &self.state).env_remove("SOURCE_DATE_EPOCH");
        cmd
    }

    fn kolla(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    fn image(&self, name: &str) -> (Store, Image) {
        let store = Store::open(&self.state.join("oci")).unwrap();
        let image = store.load_image(name).unwrap();
        (store, image)
    }
}

/// The first bytes of `path` (no leading `/`) in the image's layers, topmost layer first.
fn file_head(store: &Store, image: &Image, path: &str, len: usize) -> Option<Vec<u8>> {
    for layer in image.manifest.layers.iter().rev() {
        let blob = store.open_blob(&layer.digest).unwrap();
        let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(blob));
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().trim_start_matches("./").to_owned();
            if name == path && entry.header().entry_type().is_file() {
                let mut head = vec![0; len];
                entry.read_exact(&mut head).unwrap();
                return Some(head);
            }
        }
    }
    None
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn memcached_for_arm64_through_qemu_user() {
    let env = Env::arm64();
    let summary = env.dir.join("summary.json");
    let logs = env.dir.join("logs");
    let started = Instant::now();
    let out = env.kolla(&[
        "build",
        "--platform",
        "linux/arm64",
        "--base-arch",
        "aarch64",
        "--threads",
        "2",
        "--summary-json-file",
        summary.to_str().unwrap(),
        "--logs-dir",
        logs.to_str().unwrap(),
        "^memcached$",
    ]);
    eprintln!("arm64 build of base + memcached: {:.0} s", started.elapsed().as_secs_f64());
    assert!(out.status.success(), "arm64 build failed: {}", text(&out));
    let sum: Value = serde_json::from_str(&fs::read_to_string(&summary).unwrap()).unwrap();
    let built: Vec<&str> = sum["built"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(built, ["base", "memcached"]);

    // The image is arm64's: config, the store's index entry, and the binary itself.
    let (store, image) = env.image(IMAGE);
    assert_eq!((image.config.os.as_str(), image.config.architecture.as_str()), ("linux", "arm64"));
    assert_eq!(image.config.variant.as_deref(), Some("v8"));
    let tagged = store.resolve(IMAGE).unwrap().unwrap();
    assert_eq!(tagged.platform.unwrap().to_string(), "linux/arm64/v8");
    let elf = file_head(&store, &image, "usr/bin/memcached", 20).expect("/usr/bin/memcached in the layers");
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), EM_AARCH64, "e_machine of /usr/bin/memcached");

    // It runs, through the same qemu-user registration.
    let out = env.kolla(&["run", IMAGE, "--", "memcached", "-V"]);
    assert!(out.status.success(), "memcached -V: {}", text(&out));
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.starts_with("memcached 1."), "{version}");
    let out = env.kolla(&["run", IMAGE, "--", "uname", "-m"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "aarch64", "{}", text(&out));

    // `run --platform` of another platform than the image's says so.
    let out = env.kolla(&["run", "--platform", "linux/amd64", IMAGE, "--", "true"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("is a linux/arm64/v8 image, not linux/amd64"), "{}", text(&out));

    // A rebuild with nothing changed takes every step from the cache (keys of the arm64 chain).
    let out = env.kolla(&[
        "build",
        "--platform",
        "linux/arm64",
        "--summary-json-file",
        summary.to_str().unwrap(),
        "^memcached$",
    ]);
    assert!(out.status.success(), "arm64 rebuild failed: {}", text(&out));
    let sum: Value = serde_json::from_str(&fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(sum["layers_built"], 0, "{sum}");
    assert_eq!(env.image(IMAGE).1.manifest_digest, image.manifest_digest);

    // A platform and an architecture that disagree are refused before anything is built.
    let out = env.kolla(&["build", "--platform", "linux/arm64", "--base-arch", "x86_64", "^memcached$"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--base-arch x86_64 builds for linux/amd64"), "{}", text(&out));
}

/// A tag holding one image per platform is pushed as an index after its images (blobs once), and skopeo
/// finds both platforms in it and copies the one asked for.
#[test]
fn an_index_of_two_platforms_is_pushed_with_its_images() {
    const TAG: &str = "kolla/multi:1";
    let reg = registry::TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let (store, amd64, diff_ids) = store_support::busybox_store(dir.path(), TAG);
    let layers = store.read_manifest(&amd64).unwrap().layers;
    let mut config = store_support::config_for(&diff_ids);
    (config.architecture, config.variant) = ("arm64".into(), Some("v8".into()));
    let arm64 = store.write_image(&config, &layers).unwrap();
    let index = store.set_platform_tag(TAG, &arm64).unwrap();

    let target = format!("{}/kolla/multi:1", reg.addr());
    let pushes = [(TAG.to_string(), Reference::parse(&target).unwrap())];
    let report = kolla_oci::registry::push(&store, &pushes, &RegistryOptions::default()).unwrap();
    assert_eq!(report.manifests, 3, "two images and their index");
    assert_eq!(report.uploaded_blobs, 1 + 2, "the shared layer once, two configs: {report:?}");

    let raw = store_support::run_ok(
        Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("docker://{target}")),
    );
    assert_eq!(layers::Digest::of_bytes(raw.as_bytes()), index.digest, "the stored index, byte for byte");
    let raw: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    let platforms: Vec<String> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!("{}/{}", m["platform"]["os"].as_str().unwrap(), m["platform"]["architecture"].as_str().unwrap())
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

    for (arch, want) in [("arm64", &arm64), ("amd64", &amd64)] {
        let layout = dir.path().join(format!("copy-{arch}"));
        store_support::run_ok(
            Command::new("skopeo")
                .args(["copy", "--override-arch", arch, "--src-tls-verify=false"])
                .arg(format!("docker://{target}"))
                .arg(format!("oci:{}:x", layout.display())),
        );
        let copied = Store::open(&layout).unwrap().load_image("x").unwrap();
        assert_eq!(copied.config.architecture, arch);
        assert_eq!(copied.manifest_digest, want.digest, "skopeo copied the very manifest pushed for {arch}");
    }

    // podman picks each platform, checking every blob's digest: its image id is that platform's config digest.
    for (arch, want) in [("arm64", &arm64), ("amd64", &amd64)] {
        let config = store.read_manifest(want).unwrap().config.digest;
        assert_eq!(podman_pull(dir.path(), arch, &target), config.hex(), "podman pull --arch {arch}");
    }
}

/// `podman pull --arch ARCH` of `target` into a private podman storage (vfs) under `dir`: the image id
/// podman gives, that is the digest of the config it took, after checking every blob's digest.
fn podman_pull(dir: &std::path::Path, arch: &str, target: &str) -> String {
    let state = dir.join("podman");
    let out = store_support::run_ok(
        Command::new("podman")
            .arg("--root")
            .arg(state.join("root"))
            .arg("--runroot")
            .arg(state.join("run"))
            .args(["--storage-driver", "vfs", "--events-backend", "none", "--cgroup-manager", "cgroupfs"])
            .args(["pull", "-q", "--tls-verify=false", "--arch", arch, target])
            .env("CONTAINERS_CONF", "/dev/null")
            .env("XDG_RUNTIME_DIR", state.join("xdg")),
    );
    out.trim().to_owned()
}

/// `--platform linux/amd64,linux/arm64` builds the tree once per platform, each rendered for its
/// architecture, and records one image index per image under its tag; `--push` pushes it whole (each
/// platform's SBOM and provenance beside its own manifest), and a rebuild builds nothing.
#[test]
fn several_platforms_make_one_index_per_image_pushed_whole() {
    let reg = registry::TestRegistry::start();
    let env = Env::new();
    let tree = env.dir.join("tree");
    fs::create_dir_all(tree.join("base")).unwrap();
    fs::write(
        tree.join("base/Dockerfile.j2"),
        "FROM scratch\nCOPY arch /arch\nLABEL arch=\"{{ base_arch }} {{ debian_arch }}\"\n",
    )
    .unwrap();
    fs::write(tree.join("base/arch"), "x\n").unwrap();
    let registry = reg.addr();
    let build = || {
        let out = env.kolla(&[
            "build",
            "--all",
            "--template-tree",
            tree.to_str().unwrap(),
            "--platform",
            "linux/amd64,linux/arm64",
            "--push",
            "--registry",
            &registry,
        ]);
        assert!(out.status.success(), "two-platform build failed: {}", text(&out));
        text(&out)
    };
    build();

    let store = Store::open(&env.state.join("oci")).unwrap();
    let (tag, tagged) =
        store.tags().unwrap().into_iter().find(|(t, _)| t.ends_with("/kolla/base:2026.2-debian-trixie")).unwrap();
    let index = store.read_index(&tagged).unwrap();
    let platform = |p: &str| kolla_oci::platform::parse(p).unwrap();
    for (p, arch) in [("linux/amd64", "x86_64 amd64"), ("linux/arm64", "aarch64 arm64")] {
        let image = store.load_image_from(&tagged, &platform(p)).unwrap();
        assert_eq!(image.config.config.labels["arch"], arch, "{p} rendered for its architecture");
        assert!(index.manifests.iter().any(|m| m.digest == image.manifest_digest));
    }

    let target = format!("{registry}/kolla/base:2026.2-debian-trixie");
    assert_eq!(tag, target);
    let raw = store_support::run_ok(
        Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("docker://{target}")),
    );
    assert_eq!(layers::Digest::of_bytes(raw.as_bytes()), tagged.digest, "the stored index was pushed");
    let arm64 = store.load_image_from(&tagged, &platform("linux/arm64")).unwrap().manifest_digest;
    let layout = env.dir.join("copy-arm64");
    store_support::run_ok(
        Command::new("skopeo")
            .args(["copy", "--override-arch", "arm64", "--src-tls-verify=false"])
            .arg(format!("docker://{target}"))
            .arg(format!("oci:{}:x", layout.display())),
    );
    assert_eq!(Store::open(&layout).unwrap().load_image("x").unwrap().manifest_digest, arm64);
    // podman picks each platform of what `build --push` pushed, checking every blob.
    for p in ["linux/amd64", "linux/arm64"] {
        let config = store.load_image_from(&tagged, &platform(p)).unwrap().manifest.config.digest;
        assert_eq!(podman_pull(&env.dir, &p[6..], &target), config.hex(), "podman pull --arch of {p}");
    }
    // The arm64 image's SBOM and provenance went with it (docker-registry 2.8: as its referrers tag).
    let referrers_tag = format!("{registry}/kolla/base:sha256-{}", arm64.hex());
    let referrers = store_support::run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{referrers_tag}")),
    );
    assert_eq!(
        serde_json::from_str::<Value>(&referrers).unwrap()["manifests"].as_array().unwrap().len(),
        2,
        "{referrers}"
    );

    // `save --platform` and `run --platform` pick one.
    for arch in ["arm64", "amd64"] {
        let tar = env.dir.join(format!("{arch}.tar"));
        let out = env.kolla(&["save", "--platform", &format!("linux/{arch}"), &tag, "-o", tar.to_str().unwrap()]);
        assert!(out.status.success(), "save: {}", text(&out));
        let inspect = store_support::run_ok(
            Command::new("skopeo").arg("inspect").arg(format!("docker-archive:{}", tar.display())),
        );
        assert_eq!(serde_json::from_str::<Value>(&inspect).unwrap()["Architecture"], arch, "{inspect}");
    }
    let out = env.kolla(&["run", "--platform", "linux/arm64", &tag, "--", "/nothing"]);
    assert!(!text(&out).contains("is a linux/amd64 image"), "{}", text(&out));

    let again = build();
    assert_eq!(again.matches("layers built 0, from cache").count(), 1, "one line for the run: {again}");
    assert_eq!(store.resolve(&tag).unwrap().unwrap().digest, tagged.digest);
}

/// Upstream kolla 23.0.0's `base` and `memcached` for arm64 — its own templates, made buildable on this
/// network as `upstream_keystone` makes them — and that memcached serving under upstream's `kolla_start`
/// (`kolla_set_configs` through setuid `sudo`, run by qemu-user) as kolla-ansible starts it: a
/// `config.json` in `/var/lib/kolla/config_files`, `KOLLA_CONFIG_STRATEGY=COPY_ALWAYS`.
#[test]
fn upstream_memcached_for_arm64_serves_under_kolla_start() {
    const UPSTREAM: &str = "kolla/memcached:2026.2-debian-trixie";
    let venv = template::kolla_venv();
    let tree = template::kolla_tree(&venv);
    let env = Env::arm64();
    let AirGapped { overlay, registries } = template::air_gapped(&tree, &env.dir);
    let summary = env.dir.join("summary.json");
    let started = Instant::now();
    let out = env
        .command()
        .env("HOME", &env.dir)
        .env("CONTAINERS_REGISTRIES_CONF", &registries)
        .env_remove("KOLLA_OCI_TEMPLATE_TREE")
        .args(["build", "--platform", "linux/arm64", "--base-arch", "aarch64", "--base", "debian", "--threads", "2"])
        .arg("--template-tree")
        .arg(&tree)
        .arg("--docker-dir")
        .arg(&overlay)
        .arg("--summary-json-file")
        .arg(&summary)
        .arg("--logs-dir")
        .arg(env.dir.join("logs"))
        .arg("^memcached$")
        .output()
        .unwrap();
    eprintln!("arm64 build of upstream base + memcached: {:.0} s", started.elapsed().as_secs_f64());
    assert!(out.status.success(), "upstream arm64 build failed: {}", text(&out));
    let sum: Value = serde_json::from_str(&fs::read_to_string(&summary).unwrap()).unwrap();
    let built: Vec<&str> = sum["built"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(built, ["base", "memcached"], "{sum}");
    let (store, image) = env.image(UPSTREAM);
    assert_eq!(image.config.architecture, "arm64");
    assert_eq!(image.config.config.user.as_deref(), Some("memcached"));
    let elf = file_head(&store, &image, "usr/bin/memcached", 20).expect("/usr/bin/memcached in the layers");
    assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), EM_AARCH64, "e_machine of /usr/bin/memcached");

    // kolla-ansible's memcached config.json, on a free port; the image's own entrypoint and command
    // (dumb-init, kolla_start).
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = env.dir.join("config");
    fs::create_dir_all(&config).unwrap();
    let command = format!("/usr/bin/memcached -vv -l 127.0.0.1 -p {port} -c 500 -U 0");
    fs::write(config.join("config.json"), serde_json::json!({"command": command, "config_files": []}).to_string())
        .unwrap();
    let log = env.dir.join("run.log");
    let out_file = fs::File::create(&log).unwrap();
    let mut child = env
        .command()
        .args(["run", "-e", "KOLLA_CONFIG_STRATEGY=COPY_ALWAYS", "-v"])
        .arg(format!("{}:/var/lib/kolla/config_files:ro", config.display()))
        .arg(UPSTREAM)
        .stdin(Stdio::null())
        .stdout(out_file.try_clone().unwrap())
        .stderr(out_file)
        .spawn()
        .unwrap();
    let answers = memcached_session(port, &mut child);
    let _ = child.kill();
    let _ = child.wait();
    let log = fs::read_to_string(&log).unwrap();
    let answers = answers.unwrap_or_else(|e| panic!("{e}; the container said:\n{log}"));
    assert!(answers[0].starts_with("VERSION 1."), "{answers:?}");
    assert_eq!(answers[1..], ["STORED", "VALUE k 0 5\r\nhello\r\nEND"], "{log}");
    assert!(log.contains("Loading config file at /var/lib/kolla/config_files/config.json"), "{log}");
    assert!(log.contains(&format!("Running command: '{command}'")), "{log}");
}

/// Ask the memcached listening on `port` (started by `child`, which may still be starting: kolla_start
/// under emulation takes seconds) for its version, then store a key and read it back; the answers.
fn memcached_session(port: u16, child: &mut std::process::Child) -> Result<Vec<String>, String> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut conn = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("the container exited ({status}) before memcached listened"));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(format!("nothing listens on {port} after 300 s: {e}")),
        }
    };
    conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut answers = Vec::new();
    for (request, end) in [("version\r\n", "\r\n"), ("set k 0 0 5\r\nhello\r\n", "\r\n"), ("get k\r\n", "END\r\n")] {
        conn.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        let mut buf = [0; 256];
        while !answer.ends_with(end.as_bytes()) {
            let n = conn.read(&mut buf).map_err(|e| format!("reading the answer to {request:?}: {e}"))?;
            if n == 0 {
                return Err(format!("memcached closed the connection after {request:?}"));
            }
            answer.extend_from_slice(&buf[..n]);
        }
        answers.push(String::from_utf8_lossy(&answer).trim_end().to_owned());
    }
    Ok(answers)
}
