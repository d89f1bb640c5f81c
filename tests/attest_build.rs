//! Attestations made at build time: `build-file` and `build` record each image's SPDX SBOM and its
//! provenance in the store as referrers of the image; `--no-attestations` records none, and the image's
//! digest is the same both ways. The provenance names the `FROM` image's digest, the parent, the
//! rendered Dockerfile and the kolla source archive (by the digest of the file in the build context).
//! `build --push` and `kolla-oci push` send them to Debian's real `docker-registry` (no referrers API),
//! where skopeo — a client we did not write — finds them through the referrers tag schema.

mod support {
    pub mod busybox;
    pub mod cli;
    pub mod registry;
}

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use kolla_oci::store::{Descriptor, Store};
use layers::Digest;
use serde_json::Value;
use support::cli::ok;
use support::registry::{TestRegistry, skopeo_digest};

const BIN: &str = env!("CARGO_BIN_EXE_kolla-oci");
const SPDX: &str = "application/spdx+json";
const IN_TOTO: &str = "application/vnd.in-toto+json";
const TAG: &str = "t1";

/// Two Debian packages, as dpkg keeps them.
const DPKG_STATUS: &str = "Package: libfoo1\nStatus: install ok installed\nArchitecture: amd64\n\
Source: foo (1.2-3)\nVersion: 1.2-3+b1\nDescription: foo\n\n\
Package: bar-data\nStatus: install ok installed\nArchitecture: all\nVersion: 0.9\nDescription: bar\n";

/// Scratch dir: a busybox context (`ctx/`), a Kolla-shaped tree (`tree/`: base → svc-base → svc-api,
/// where svc-base ADDs its kolla source archive), the source itself (`src/`) and a config naming it.
struct Bench {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Bench {
    fn new() -> Bench {
        // World-readable, like the other builder tests' fixtures (the sandbox maps other users).
        let tmp = tempfile::Builder::new().prefix("kolla-oci-attest-").tempdir_in("/tmp").unwrap();
        let dir = tmp.path().to_path_buf();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let ctx = dir.join("ctx");
        fs::create_dir(&ctx).unwrap();
        support::busybox::write_busybox_context(&ctx);

        let tree = dir.join("tree");
        for d in ["base/six-1.16.0.dist-info", "svc/svc-base", "svc/svc-api"] {
            fs::create_dir_all(tree.join(d)).unwrap();
        }
        fs::write(tree.join("base/status"), DPKG_STATUS).unwrap();
        fs::write(tree.join("base/os-release"), "ID=debian\nVERSION_ID=\"13\"\nVERSION_CODENAME=trixie\n").unwrap();
        fs::write(
            tree.join("base/six-1.16.0.dist-info/METADATA"),
            "Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\nLicense: MIT\n",
        )
        .unwrap();
        fs::write(
            tree.join("base/Dockerfile.j2"),
            "FROM bb-base:1\nLABEL name=\"{{ image_name }}\"\n\
             COPY status /var/lib/dpkg/status\n\
             COPY os-release /etc/os-release\n\
             COPY six-1.16.0.dist-info /usr/lib/python3.13/dist-packages/six-1.16.0.dist-info\n",
        )
        .unwrap();
        let child = |parent: &str, body: &str| {
            format!("FROM {{{{ namespace }}}}/{{{{ image_prefix }}}}{parent}:{{{{ tag }}}}\n{body}")
        };
        fs::write(
            tree.join("svc/svc-base/Dockerfile.j2"),
            child("base", "ADD svc-base-archive /svc-base-source\nRUN ls -R /svc-base-source > /sources.txt\n"),
        )
        .unwrap();
        fs::write(tree.join("svc/svc-api/Dockerfile.j2"), child("svc-base", "RUN echo api > /api.txt\n")).unwrap();

        let src = dir.join("src/svc");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("setup.cfg"), "[metadata]\nname = svc\n").unwrap();
        fs::write(dir.join("kolla-build.conf"), format!("[svc-base]\ntype = local\nlocation = {}\n", src.display()))
            .unwrap();
        fs::create_dir(dir.join("home")).unwrap();
        Bench { _tmp: tmp, dir }
    }

    /// `kolla-oci` on state directory `dir/<state>`, with a clean, reproducible environment.
    fn kolla(&self, state: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(&self.dir)
            .env("KOLLA_OCI_STORE", self.dir.join(state))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("HOME", self.dir.join("home"))
            .env("KOLLA_OCI_LOG", "info")
            .env_remove("RUST_LOG")
            .env_remove("XDG_DATA_HOME");
        cmd
    }

    /// `build --all` of the tree into `state` (work dir `dir/<state>-work`), with `extra` options.
    fn build_all(&self, state: &str, registry: &str, extra: &[&str]) -> Output {
        let tree = self.dir.join("tree");
        let conf = self.dir.join("kolla-build.conf");
        let work = self.dir.join(format!("{state}-work"));
        let mut args: Vec<&str> = vec!["build", "--all", "--threads", "2", "--tag", TAG, "--registry", registry];
        args.extend(["--template-tree", tree.to_str().unwrap(), "--config-file", conf.to_str().unwrap()]);
        args.extend(["--work-dir", work.to_str().unwrap()]);
        args.extend(extra);
        ok(self.kolla(state, &args).output().unwrap())
    }

    fn store(&self, state: &str) -> Store {
        Store::open(&self.dir.join(state).join("oci")).unwrap()
    }
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// The stored documents about the image tagged `tag`: artifact type → (artifact descriptor, document).
fn documents(store: &Store, tag: &str) -> BTreeMap<String, (Descriptor, Value)> {
    let image = store.resolve(tag).unwrap().unwrap_or_else(|| panic!("{tag} not in the store"));
    store
        .referrers(&image.digest, None)
        .unwrap()
        .into_iter()
        .map(|a| {
            let doc = json(&store.read_referrer_document(&a).unwrap());
            (a.artifact_type.clone().unwrap(), (a, doc))
        })
        .collect()
}

/// The resolved dependencies of a provenance statement with role `role`.
fn deps<'a>(statement: &'a Value, role: &str) -> Vec<&'a Value> {
    statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["annotations"]["role"] == role)
        .collect()
}

/// Digest of every `kolla`-namespace tag of the store.
fn tree_digests(store: &Store) -> BTreeMap<String, Digest> {
    store.tags().unwrap().into_iter().filter(|(t, _)| t.contains("/kolla/")).map(|(t, d)| (t, d.digest)).collect()
}

/// `skopeo inspect --raw` of a reference on the test registry, if it exists.
fn skopeo_raw(reference: &str) -> Option<Value> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{reference}")])
        .output()
        .expect("skopeo is not runnable: install it (tests/setup.sh)");
    out.status.success().then(|| json(&out.stdout))
}

/// The `ms=` figures of the "attestations recorded" log lines.
fn attestation_times(stderr: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.contains("attestations recorded"))
        .filter_map(|l| l.split("ms=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn builds_record_attestations_that_push_with_the_images_and_never_change_digests() {
    let bench = Bench::new();
    let reg = TestRegistry::start();
    let addr = reg.addr();
    let base_df = bench.dir.join("ctx/Dockerfile.base");
    let ctx = bench.dir.join("ctx");
    let build_file = |state: &str, extra: &[&str]| {
        let mut args = vec!["build-file", "-f", base_df.to_str().unwrap(), ctx.to_str().unwrap(), "-t", "bb-base:1"];
        args.extend(extra);
        String::from_utf8(ok(bench.kolla(state, &args).output().unwrap()).stdout).unwrap().trim().to_owned()
    };

    // build-file: an SBOM and a provenance statement about the image; none with --no-attestations; the
    // same image digest either way.
    let with = build_file("a", &[]);
    let without = build_file("b", &["--no-attestations"]);
    assert_eq!(with, without, "attestations changed the image digest");
    let (a, b) = (bench.store("a"), bench.store("b"));
    assert!(b.referrers(&without.parse().unwrap(), None).unwrap().is_empty());
    let docs = documents(&a, "bb-base:1");
    assert_eq!(docs.keys().collect::<Vec<_>>(), [SPDX, IN_TOTO]);
    let statement = &docs[IN_TOTO].1;
    assert_eq!(statement["subject"][0]["digest"]["sha256"], with.trim_start_matches("sha256:"));
    let p = &statement["predicate"];
    assert_eq!(p["buildDefinition"]["buildType"], "urn:kolla-oci:build-type:dockerfile:v1");
    let df_digest = Digest::of_bytes(&fs::read(&base_df).unwrap());
    assert_eq!(p["runDetails"]["byproducts"][0]["digest"]["sha256"], df_digest.hex());
    assert_eq!(p["runDetails"]["builder"]["version"]["kolla-oci"], env!("CARGO_PKG_VERSION"));
    // FROM scratch: no base to name.
    assert!(deps(statement, "from").is_empty(), "{statement:#}");
    // SOURCE_DATE_EPOCH is set: times are written, clamped to it.
    assert_eq!(p["runDetails"]["metadata"]["finishedOn"], "2023-11-14T22:13:20Z");

    // build --all: with attestations (and --push), then without; same digests.
    let t0 = Instant::now();
    let built_a = bench.build_all("a", &addr, &["--push"]);
    let secs_a = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    bench.build_all("b", &addr, &["--no-attestations"]);
    let secs_b = t0.elapsed().as_secs_f64();
    let times = attestation_times(&built_a.stderr);
    assert_eq!(
        times.len(),
        3,
        "one 'attestations recorded' line per image:\n{}",
        String::from_utf8_lossy(&built_a.stderr)
    );
    eprintln!(
        "attestations: {times:?} ms per image; build --all with attestations and --push {secs_a:.1} s, \
         --no-attestations (no push) {secs_b:.1} s"
    );
    let digests = tree_digests(&a);
    assert_eq!(digests.len(), 3, "{digests:?}");
    // A no-op rebuild keeps each image's SBOM (same referrer) instead of reading the layers again, and
    // records a provenance of its own.
    let sboms = |store: &Store| -> Vec<Descriptor> {
        digests.values().flat_map(|d| store.referrers(d, Some("application/spdx+json")).unwrap()).collect()
    };
    let before = sboms(&a);
    let again = bench.build_all("a", &addr, &[]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr.matches("SPDX SBOM kept: no layer changed").count(), 3, "{stderr}");
    assert_eq!(sboms(&a), before, "a no-op rebuild replaced an SBOM");
    assert_eq!(tree_digests(&a), digests, "a no-op rebuild changed an image");
    assert_eq!(digests, tree_digests(&b), "attestations changed image digests");
    for tag in digests.keys() {
        assert_eq!(documents(&a, tag).len(), 2, "{tag}: SBOM and provenance expected");
        assert!(documents(&b, tag).is_empty(), "{tag}: --no-attestations recorded documents");
    }

    // svc-base: FROM its parent (base) by digest, its source archive by the digest of the very file that
    // went into its build context, the rendered Dockerfile.
    let name = |image: &str| format!("{addr}/kolla/{image}:{TAG}");
    let svc_base = documents(&a, &name("svc-base"));
    let statement = &svc_base[IN_TOTO].1;
    let base_digest = digests[&name("base")].hex();
    for role in ["from", "parent"] {
        let d = deps(statement, role);
        assert_eq!(d.len(), 1, "{role}: {statement:#}");
        assert_eq!(
            (d[0]["name"].as_str().unwrap(), d[0]["digest"]["sha256"].as_str().unwrap()),
            (name("base").as_str(), base_digest.as_str())
        );
    }
    let context = bench.dir.join("a-work/docker/svc/svc-base");
    let archive_digest = Digest::of_bytes(&fs::read(context.join("svc-base-archive")).unwrap()).hex();
    let src = deps(statement, "source");
    assert_eq!(src.len(), 1, "{statement:#}");
    assert_eq!(src[0]["name"], "svc-base-archive");
    assert_eq!(src[0]["digest"]["sha256"], archive_digest.as_str());
    let rendered = Digest::of_bytes(&fs::read(context.join("Dockerfile")).unwrap()).hex();
    assert_eq!(statement["predicate"]["runDetails"]["byproducts"][0]["digest"]["sha256"], rendered.as_str());
    let external = &statement["predicate"]["buildDefinition"]["externalParameters"];
    assert_eq!(external["image"], "svc-base");
    assert_eq!(external["options"]["tag"], TAG);
    assert!(external["templateTree"]["digest"]["sha256"].is_string(), "{external:#}");
    let conf = Digest::of_bytes(&fs::read(bench.dir.join("kolla-build.conf")).unwrap()).hex();
    assert_eq!(external["configFiles"][0]["digest"]["sha256"], conf.as_str(), "{external:#}");

    // Its SBOM: the packages its layers hold, the base image, the source archive.
    let sbom = &svc_base[SPDX].1;
    let packages = sbom["packages"].as_array().unwrap();
    let find = |id: &str| packages.iter().find(|p| p["SPDXID"] == id).unwrap_or_else(|| panic!("{id}: {sbom:#}"));
    assert_eq!(find("SPDXRef-deb-libfoo1-amd64")["versionInfo"], "1.2-3+b1");
    assert_eq!(find("SPDXRef-deb-bar-data-all")["versionInfo"], "0.9");
    assert_eq!(find("SPDXRef-pypi-six-1.16.0")["licenseDeclared"], "MIT");
    assert_eq!(find("SPDXRef-base-image")["checksums"][0]["checksumValue"], base_digest.as_str());
    assert_eq!(find("SPDXRef-source-svc-base-archive")["checksums"][0]["checksumValue"], archive_digest.as_str());

    // build --push sent them along: skopeo finds both through the referrers tag of each image, and the
    // artifact manifests name the image as subject and carry the stored documents.
    let api = digests[&name("svc-api")];
    let listed = skopeo_raw(&format!("{addr}/kolla/svc-api:sha256-{}", api.hex())).expect("referrers tag pushed");
    let stored = documents(&a, &name("svc-api"));
    let mut types: Vec<&str> =
        listed["manifests"].as_array().unwrap().iter().map(|m| m["artifactType"].as_str().unwrap()).collect();
    types.sort_unstable();
    assert_eq!(types, [SPDX, IN_TOTO], "{listed:#}");
    for m in listed["manifests"].as_array().unwrap() {
        let (artifact, _) = &stored[m["artifactType"].as_str().unwrap()];
        assert_eq!(m["digest"], artifact.digest.to_string());
        let manifest = skopeo_raw(&format!("{addr}/kolla/svc-api@{}", artifact.digest)).expect("artifact pushed");
        assert_eq!(manifest["subject"]["digest"], api.to_string());
        let doc = a.read_manifest(artifact).unwrap().layers[0].digest;
        assert_eq!(manifest["layers"][0]["digest"], doc.to_string());
    }

    // kolla-oci push of the image built without attestations: the same digest in the registry, and no
    // referrers tag.
    ok(bench.kolla("b", &["push", &name("svc-api"), "--namespace", "plain"]).output().unwrap());
    let with_digest = skopeo_digest(&name("svc-api"), &[]);
    assert_eq!(with_digest, skopeo_digest(&format!("{addr}/plain/svc-api:{TAG}"), &[]));
    assert_eq!(with_digest, api.to_string());
    assert!(skopeo_raw(&format!("{addr}/plain/svc-api:sha256-{}", api.hex())).is_none());

    // kolla-oci push --no-attestations leaves them behind; a plain push sends them.
    ok(bench.kolla("a", &["push", &name("svc-api"), "--namespace", "again", "--no-attestations"]).output().unwrap());
    let again_tag = format!("{addr}/again/svc-api:sha256-{}", api.hex());
    assert!(skopeo_raw(&again_tag).is_none(), "--no-attestations pushed a referrers tag");
    let out = ok(bench.kolla("a", &["push", &name("svc-api"), "--namespace", "again"]).output().unwrap());
    assert!(String::from_utf8_lossy(&out.stdout).contains("pushed 2 attestation(s)"), "{out:?}");
    assert_eq!(skopeo_raw(&again_tag).expect("referrers tag")["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(skopeo_digest(&format!("{addr}/again/svc-api:{TAG}"), &[]), with_digest);
}

#[test]
fn an_image_whose_attestations_cannot_be_made_fails_with_a_clear_error() {
    let bench = Bench::new();
    let ctx = bench.dir.join("ctx");
    let base_df = ctx.join("Dockerfile.base");
    let build = |extra: &[&str], df: &Path, tag: &str| {
        let mut args = vec!["build-file", "-f", df.to_str().unwrap(), ctx.to_str().unwrap(), "-t", tag];
        args.extend(extra);
        bench.kolla("a", &args).output().unwrap()
    };
    ok(build(&["--no-attestations"], &base_df, "bb-base:1"));
    // Core metadata over the SBOM reader's 16 MiB limit.
    let dist = ctx.join("huge-1.0.dist-info");
    fs::create_dir(&dist).unwrap();
    let mut metadata = b"Metadata-Version: 2.1\nName: huge\nVersion: 1.0\n\n".to_vec();
    metadata.resize((16 << 20) + 1, b'x');
    fs::write(dist.join("METADATA"), metadata).unwrap();
    let df = ctx.join("Dockerfile.huge");
    fs::write(&df, "FROM bb-base:1\nCOPY huge-1.0.dist-info /usr/lib/python3/dist-packages/huge-1.0.dist-info\n")
        .unwrap();
    let out = build(&[], &df, "huge:1");
    assert!(!out.status.success(), "the build succeeded without its SBOM");
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["huge:1", "SBOM and provenance could not be recorded", "huge-1.0.dist-info/METADATA", "limit"] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    // Without attestations the same build goes through.
    ok(build(&["--no-attestations"], &df, "huge:1"));
}
