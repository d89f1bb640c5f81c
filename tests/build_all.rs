//! `kolla-oci build --all` on the bundled Kolla-shaped tree, end to end: cold build checked by skopeo and
//! umoci, shared base layers stored once (each layer once on disk: as its dir or as its blob), the step
//! cache (no-op rebuild, one changed leaf), a failing branch, and `kolla-oci run` of a service image with
//! Kolla's `config.json` start contract.
//!
//! One test function: the phases share one store, because the cold build is the expensive part.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kolla_oci::store::Store;
use pep503::normalize;
use serde_json::Value;

#[path = "support/pep503.rs"]
mod pep503;
#[path = "support/template.rs"]
#[allow(unused_imports)]
mod venv;

const BIN: &str = env!("CARGO_BIN_EXE_kolla-oci");
const TAG: &str = "2026.2-debian-trixie";

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Env {
    fn kolla(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("KOLLA_OCI_STORE", self.dir.join("state"))
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap()
    }

    /// `build --all` with extra args; returns (exit ok, summary JSON).
    fn build_all(&self, name: &str, extra: &[&str]) -> (bool, serde_json::Value) {
        let summary = self.dir.join(format!("{name}.json"));
        let logs = self.dir.join(format!("logs-{name}"));
        let mut args = vec!["build", "--all", "--threads", "4", "--summary-json-file", summary.to_str().unwrap()];
        args.extend(["--logs-dir", logs.to_str().unwrap()]);
        args.extend(extra);
        let out = self.kolla(&args);
        let text = fs::read_to_string(&summary)
            .unwrap_or_else(|e| panic!("no summary ({e}); kolla-oci said:\n{}", String::from_utf8_lossy(&out.stderr)));
        if !out.status.success() {
            eprintln!("build --all {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        (out.status.success(), serde_json::from_str(&text).unwrap())
    }

    fn layout(&self) -> PathBuf {
        self.dir.join("state/oci")
    }

    /// Manifest digest of every tag in the store.
    fn digests(&self) -> BTreeMap<String, String> {
        let index: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(self.layout().join("index.json")).unwrap()).unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            // Referrers (SBOM, provenance) have untagged entries: only tags.
            .filter_map(|m| {
                let name = m["annotations"]["org.opencontainers.image.ref.name"].as_str()?.to_owned();
                Some((name, m["digest"].as_str().unwrap().to_owned()))
            })
            .collect()
    }

    fn manifest(&self, tag: &str) -> serde_json::Value {
        let digest = &self.digests()[tag];
        let path = self.layout().join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
        serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
    }
}

/// stdout of a successful kolla-oci run.
fn stdout_ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The attestations the cold build recorded for `keystone`: its SPDX SBOM lists exactly the Debian
/// packages `dpkg-query -W` sees inside the image and the Python distributions of its venv (`pip list`)
/// and of the system Python, and validates with pyspdxtools; its provenance names its `FROM` image
/// (keystone-base, also its parent) by digest, and base's names the Debian image it was built on.
fn check_keystone_attestations(env: &Env, digests: &BTreeMap<String, String>) {
    const SPDX: &str = "application/spdx+json";
    let tag = format!("kolla/keystone:{TAG}");
    let store = Store::open(&env.layout()).unwrap();
    let digest = digests[&tag].parse().unwrap();
    let [artifact] = store.referrers(&digest, Some(SPDX)).unwrap().try_into().expect("one SBOM recorded by the build");
    let spdx_bytes = store.read_referrer_document(&artifact).unwrap();
    let spdx: Value = serde_json::from_slice(&spdx_bytes).unwrap();
    let packages = |prefix: &'static str| {
        spdx["packages"].as_array().unwrap().iter().filter(move |p| p["SPDXID"].as_str().unwrap().starts_with(prefix))
    };
    let in_image = |argv: &[&str]| {
        let mut args = vec!["run", tag.as_str(), "--"];
        args.extend(argv);
        stdout_ok(env.kolla(&args), &format!("kolla-oci run {tag} -- {argv:?}"))
    };

    // Debian: the installed packages, by name and version.
    let dpkg = in_image(&["dpkg-query", "-W", "-f", "${db:Status-Abbrev}|${Package} ${Version}\n"]);
    let want: BTreeSet<String> = dpkg.lines().filter_map(|l| l.strip_prefix("ii |")).map(str::to_owned).collect();
    assert!(want.len() > 80, "dpkg-query listed too little: {dpkg}");
    let got: BTreeSet<String> = packages("SPDXRef-deb-")
        .map(|p| format!("{} {}", p["name"].as_str().unwrap(), p["versionInfo"].as_str().unwrap()))
        .collect();
    assert_eq!(got, want, "keystone's SBOM Debian packages differ from dpkg-query -W in the image");

    // Python: pip's view of the Kolla venv plus what the system Python sees, names normalized.
    let pip = in_image(&[
        "/var/lib/kolla/venv/bin/python",
        "-m",
        "pip",
        "list",
        "--format=freeze",
        "--disable-pip-version-check",
    ]);
    let mut want: BTreeSet<(String, String)> =
        pip.lines().filter_map(|l| l.split_once("==")).map(|(n, v)| (normalize(n), v.to_owned())).collect();
    assert!(want.iter().any(|(n, _)| n == "keystone"), "keystone is not in the venv: {pip}");
    let system = in_image(&[
        "python3",
        "-c",
        "import importlib.metadata as m\nfor d in m.distributions(): print(d.metadata['Name'], d.version)",
    ]);
    want.extend(system.lines().filter_map(|l| l.split_once(' ')).map(|(n, v)| (normalize(n), v.to_owned())));
    let got: BTreeSet<(String, String)> = packages("SPDXRef-pypi-")
        .map(|p| (normalize(p["name"].as_str().unwrap()), p["versionInfo"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(got, want, "keystone's SBOM Python distributions differ from pip list + importlib.metadata");

    // Someone else's validator (the venv the SBOM test uses, same packages, so it is shared).
    let tools =
        venv::cached_venv("sbom-tools-venv", &["spdx-tools==0.8.3", "cyclonedx-python-lib[json-validation]==8.5.0"]);
    let file = env.dir.join("keystone.spdx.json");
    fs::write(&file, &spdx_bytes).unwrap();
    let out = Command::new(tools.join("bin/pyspdxtools")).arg("-i").arg(&file).output().unwrap();
    stdout_ok(out, "pyspdxtools -i keystone.spdx.json");

    // Provenance: FROM keystone-base (its parent) by digest; base FROM the Debian image by digest.
    let deps = |image: &str, role: &str| -> Vec<(String, String)> {
        let text = stdout_ok(env.kolla(&["provenance", &format!("kolla/{image}:{TAG}")]), "kolla-oci provenance");
        let s: Value = serde_json::from_str(&text).unwrap();
        s["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["annotations"]["role"] == role)
            .map(|d| {
                (d["name"].as_str().unwrap().to_owned(), format!("sha256:{}", d["digest"]["sha256"].as_str().unwrap()))
            })
            .collect()
    };
    let parent = format!("kolla/keystone-base:{TAG}");
    for role in ["from", "parent"] {
        assert_eq!(deps("keystone", role), [(parent.clone(), digests[&parent].clone())], "{role}");
    }
    let from = deps("base", "from");
    assert_eq!(from.len(), 1, "{from:?}");
    assert!(from[0].0.starts_with("debian:"), "{from:?}");
    assert_eq!(Some(&from[0].1), digests.get(&from[0].0), "base's FROM digest is the stored Debian image's");
}

fn names(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect()
}

/// The labels kolla-build 23.0.0 gives every image (as `skopeo inspect` shows them): its OCI labels and
/// `build-date`, dated like the image (its newest layer, this run: not the Unix epoch).
fn check_kolla_labels(name: &str, inspect: &Value) {
    let labels = &inspect["Labels"];
    let label = |k: &str| labels[k].as_str().unwrap_or_else(|| panic!("{name} has no label {k}: {labels}"));
    assert_eq!(label("org.opencontainers.image.title"), name);
    assert_eq!(label("org.opencontainers.image.description"), format!("OpenStack Kolla {name} image"));
    assert_eq!(label("org.opencontainers.image.version"), TAG);
    assert_eq!(label("org.opencontainers.image.authors"), "Kolla Project (https://launchpad.net/kolla)");
    assert_eq!(label("org.opencontainers.image.url"), "https://opendev.org/openstack/kolla");
    assert_eq!(label("org.opencontainers.image.licenses"), "Apache-2.0");
    let created = inspect["Created"].as_str().unwrap();
    assert_eq!(label("org.opencontainers.image.created"), created, "{name}");
    assert_eq!(label("build-date"), created[..10].replace('-', ""), "{name}");
    assert!(!created.starts_with("1970"), "{name} is dated by its layers: {created}");
}

fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out =
        Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e} (tests/setup.sh installs it)"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A `--docker-dir` tree that replaces one image's template by the bundled one plus `extra` lines.
fn override_tree(dir: &Path, rel: &str, extra: &str) -> PathBuf {
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates").join(rel).join("Dockerfile.j2");
    let mut text = fs::read_to_string(&bundled).unwrap();
    text.push_str(extra);
    let tree = dir.join(format!("override-{}", rel.replace('/', "-")));
    fs::create_dir_all(tree.join(rel)).unwrap();
    fs::write(tree.join(rel).join("Dockerfile.j2"), text).unwrap();
    tree
}

#[test]
fn build_all_of_the_bundled_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let env = Env { dir: tmp.path().to_path_buf(), _tmp: tmp };

    // Cold build of every image.
    let (ok, cold) = env.build_all("cold", &[]);
    assert!(ok, "cold build failed: {cold}");
    let built = names(&cold["built"]);
    assert!(built.len() >= 10, "at least 10 images: {built:?}");
    assert!(cold["failed"].as_array().unwrap().is_empty());
    assert!(cold["layers_built"].as_u64().unwrap() > 10);

    let digests = env.digests();
    // Each layer is kept once: base's (every image is built on it) as its extracted dir, its blob dropped;
    // a leaf's own layers as their blobs.
    let store = kolla_oci::builder::Workspace::open_store(&env.dir.join("state")).unwrap();
    let layers = |tag: &str| {
        let image = store.load_image(&format!("kolla/{tag}:{TAG}")).unwrap();
        image.manifest.layers.iter().map(|l| l.digest).zip(image.config.rootfs.diff_ids).collect::<Vec<_>>()
    };
    let layer_dir = |d: &layers::Digest| env.dir.join("state/layers").join(d.hex());
    let base = layers("base");
    for (blob, diff_id) in &base {
        assert!(layer_dir(diff_id).is_dir() && !store.holds_blob_file(blob) && store.has_blob(blob), "{diff_id}");
    }
    let ssh = layers("keystone-ssh");
    let (blob, diff_id) = ssh.last().unwrap();
    assert!(!layer_dir(diff_id).exists() && store.holds_blob_file(blob), "keystone-ssh's top layer");
    drop(store);

    // Other people's tools accept every image, and see kolla-build's labels on it, once `gc --max-extracted 0`
    // has put every blob back into the layout.
    let gc = env.kolla(&["gc", "--max-extracted", "0"]);
    assert!(gc.status.success(), "gc: {}", String::from_utf8_lossy(&gc.stderr));
    for name in &built {
        let tag = format!("kolla/{name}:{TAG}");
        let image = format!("oci:{}:{tag}", env.layout().display());
        let inspect: serde_json::Value = serde_json::from_str(&run_ok("skopeo", &["inspect", &image])).unwrap();
        assert_eq!(inspect["Digest"].as_str(), digests.get(&tag).map(String::as_str), "{tag}");
        check_kolla_labels(name, &inspect);
        let bundle = env.dir.join(format!("bundle-{name}"));
        run_ok("umoci", &["unpack", "--image", &format!("{}:{tag}", env.layout().display()), bundle.to_str().unwrap()]);
        assert!(bundle.join("rootfs/usr/local/bin/kolla_start").exists(), "{name} has the start contract");
        fs::remove_dir_all(&bundle).unwrap();
    }

    // Every image starts with base's layers, the very same blobs; the store holds each blob once.
    let base_layers = env.manifest(&format!("kolla/base:{TAG}"))["layers"].as_array().unwrap().clone();
    let mut image_bytes = 0u64;
    for name in &built {
        let m = env.manifest(&format!("kolla/{name}:{TAG}"));
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(&layers[..base_layers.len()], &base_layers[..], "{name} must reuse base's layers");
        image_bytes += layers.iter().map(|l| l["size"].as_u64().unwrap()).sum::<u64>();
    }
    let blobs = env.layout().join("blobs/sha256");
    let store_bytes: u64 = fs::read_dir(&blobs).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    let unique: BTreeSet<String> =
        fs::read_dir(&blobs).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(unique.len(), fs::read_dir(&blobs).unwrap().count());
    assert!(
        store_bytes < image_bytes / 2,
        "shared layers are stored once: store {store_bytes} vs images {image_bytes}"
    );
    let fsck = env.kolla(&["fsck"]);
    assert!(fsck.status.success(), "fsck: {}", String::from_utf8_lossy(&fsck.stdout));

    // The SBOM and provenance the build recorded, checked against the keystone image itself.
    check_keystone_attestations(&env, &digests);

    // No-op rebuild: nothing to do, same digests.
    let (ok, noop) = env.build_all("noop", &[]);
    assert!(ok);
    assert_eq!(noop["layers_built"], 0, "a rebuild with nothing changed builds no layer");
    assert_eq!(env.digests(), digests);

    // One changed leaf template: exactly that image changes.
    let tree = override_tree(&env.dir, "keystone/keystone-ssh", "\nLABEL changed=\"yes\"\n");
    let (ok, leaf) = env.build_all("leaf", &["--docker-dir", tree.to_str().unwrap()]);
    assert!(ok, "{leaf}");
    let after = env.digests();
    let changed: Vec<&String> = after.iter().filter(|(t, d)| digests.get(*t) != Some(d)).map(|(t, _)| t).collect();
    assert_eq!(changed, vec![&format!("kolla/keystone-ssh:{TAG}")]);
    assert_eq!(leaf["layers_built"], 0, "a LABEL change makes no layer");

    // A failing RUN in one service base: its services are not attempted (kolla-build leaves them `matched`),
    // the other branch builds.
    let tree = override_tree(&env.dir, "heat/heat-base", "\nRUN echo heat-base is broken; exit 42\n");
    let (ok, broken) = env.build_all("broken", &["--docker-dir", tree.to_str().unwrap()]);
    assert!(!ok, "a failed image must give a non-zero exit");
    let failed: BTreeMap<String, String> = broken["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_owned(), f["status"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(failed.get("heat-base").map(String::as_str), Some("error"), "{broken}");
    for svc in ["heat-api", "heat-engine"] {
        assert_eq!(failed.get(svc).map(String::as_str), Some("matched"), "{broken}");
    }
    assert!(names(&broken["built"]).contains("keystone"), "the other branch builds: {broken}");
    let log = fs::read_to_string(env.dir.join("logs-broken/000_FAILED_heat-base.log")).unwrap();
    assert!(log.contains("heat-base is broken") && log.contains("42"), "{log}");

    // kolla-oci run with Kolla's config.json: files copied with owner and mode, then the command runs.
    let cfg = env.dir.join("config_files");
    fs::create_dir_all(&cfg).unwrap();
    fs::write(cfg.join("keystone.conf"), "[DEFAULT]\ndebug = true\n").unwrap();
    fs::write(
        cfg.join("config.json"),
        r#"{"command": "stat -c %U:%G:%a:%s /etc/keystone/keystone.conf",
            "config_files": [{"source": "/var/lib/kolla/config_files/keystone.conf",
                              "dest": "/etc/keystone/keystone.conf", "owner": "keystone", "perm": "0600"}]}"#,
    )
    .unwrap();
    let volume = format!("{}:/var/lib/kolla/config_files:ro", cfg.display());
    let out =
        env.kolla(&["run", "-e", "KOLLA_CONFIG_STRATEGY=COPY_ALWAYS", "-v", &volume, &format!("kolla/keystone:{TAG}")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "run failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().any(|l| l.trim() == "keystone:keystone:600:23"), "{stdout}");

    // Other people's tools accept every image, once gc has put every blob back into the layout (checked
    // against its digest) and removed the layer dirs.
    let out = env.kolla(&["gc", "--max-extracted", "0"]);
    assert!(out.status.success(), "gc: {}", String::from_utf8_lossy(&out.stderr));
    let digests = env.digests();
    for name in &built {
        let tag = format!("kolla/{name}:{TAG}");
        let image = format!("oci:{}:{tag}", env.layout().display());
        let inspect: serde_json::Value = serde_json::from_str(&run_ok("skopeo", &["inspect", &image])).unwrap();
        assert_eq!(inspect["Digest"].as_str(), digests.get(&tag).map(String::as_str), "{tag}");
        let bundle = env.dir.join(format!("bundle-{name}"));
        run_ok("umoci", &["unpack", "--image", &format!("{}:{tag}", env.layout().display()), bundle.to_str().unwrap()]);
        assert!(bundle.join("rootfs/usr/local/bin/kolla_start").exists(), "{name} has the start contract");
        fs::remove_dir_all(&bundle).unwrap();
    }
}
