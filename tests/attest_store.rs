//! SBOM and provenance kept in the store as OCI 1.1 artifacts referring to an image: `kolla-oci sbom` and
//! `kolla-oci provenance` print them, the image's digest does not change (skopeo), the layout stays usable
//! (umoci, fsck); and `kolla-oci gc`: `--dry-run` lists exactly what `gc` removes, tagged images
//! and their referrers survive, and a build running meanwhile completes.

#[path = "support/store.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kolla_oci::attest::provenance::{BUILD_TYPE_DOCKERFILE, ProvenanceInput};
use kolla_oci::attest::{ImageRef, MEDIA_IN_TOTO, MEDIA_SPDX, Subject, record_provenance};
use kolla_oci::store::{MEDIA_OCI_MANIFEST, Store};
use layers::Digest;
use serde_json::Value;
use support::{add_files, busybox_rootfs, busybox_store, kolla_oci, make_image, require_tool, run, run_ok};

const TAG: &str = "kolla/base:1";
const APP: &str = "kolla/app:1";

fn json(bytes: &str) -> Value {
    serde_json::from_str(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {bytes}"))
}

/// `skopeo inspect` digest of a tag of the layout.
fn skopeo_digest(store: &Store, tag: &str) -> String {
    let out = run_ok(
        Command::new(require_tool("skopeo")).arg("inspect").arg(format!("oci:{}:{tag}", store.root().display())),
    );
    json(&out)["Digest"].as_str().unwrap().to_owned()
}

/// A provenance statement for `tag`, stored through the library as a build will.
fn store_provenance(store: &Store, tag: &str) -> Vec<u8> {
    let subject = Subject::load(store, tag).unwrap();
    let mut input = ProvenanceInput::new(subject.image_ref(), BUILD_TYPE_DOCKERFILE);
    input.dockerfile = Some(Digest::of_bytes(b"FROM scratch\n"));
    input.from_images.push(ImageRef { name: "scratch".into(), digest: Digest::of_bytes(b"none") });
    record_provenance(store, &subject.descriptor, &input).unwrap()
}

#[test]
fn documents_are_artifacts_referring_to_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let (store, desc, _) = busybox_store(state, TAG);
    let before = skopeo_digest(&store, TAG);
    assert_eq!(before, desc.digest.to_string());

    // No provenance yet: a clear error naming the image.
    let out = run(kolla_oci(state).args(["provenance", TAG]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(TAG) && err.contains("no provenance"), "{err}");

    let statement = store_provenance(&store, TAG);
    let printed = run_ok(kolla_oci(state).args(["provenance", TAG]));
    assert_eq!(printed.trim_end().as_bytes(), statement.as_slice());
    let s = json(&printed);
    assert_eq!(s["subject"][0]["digest"]["sha256"], desc.digest.hex());
    assert_eq!(s["predicateType"], "https://slsa.dev/provenance/v1");

    // The SBOM is computed on first use (busybox: no packages), then served from the store.
    let spdx = run_ok(kolla_oci(state).args(["sbom", TAG]));
    let doc = json(&spdx);
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    let image_pkg = doc["packages"].as_array().unwrap().iter().find(|p| p["SPDXID"] == "SPDXRef-image").unwrap();
    assert_eq!(image_pkg["checksums"][0]["checksumValue"], desc.digest.hex());
    let subject = Subject::load(&store, TAG).unwrap();
    assert_eq!(subject.stored(&store, MEDIA_SPDX).unwrap().unwrap(), spdx.trim_end().as_bytes());
    assert_eq!(run_ok(kolla_oci(state).args(["sbom", TAG])), spdx);
    let cdx = json(&run_ok(kolla_oci(state).args(["sbom", TAG, "--format", "cyclonedx"])));
    assert_eq!(cdx["specVersion"], "1.6");
    assert_eq!(cdx["metadata"]["component"]["hashes"][0]["content"], desc.digest.hex());

    // Three referrers, each an OCI 1.1 artifact manifest whose subject is the image.
    let referrers = store.referrers(&desc.digest, None).unwrap();
    let mut types: Vec<&str> = referrers.iter().map(|r| r.artifact_type.as_deref().unwrap()).collect();
    types.sort();
    assert_eq!(types, ["application/spdx+json", "application/vnd.cyclonedx+json", MEDIA_IN_TOTO]);
    for r in &referrers {
        let m: Value = serde_json::from_slice(&store.read_blob_bytes(&r.digest, 1 << 20).unwrap()).unwrap();
        assert_eq!(m["mediaType"], MEDIA_OCI_MANIFEST);
        assert_eq!(m["artifactType"], r.artifact_type.as_deref().unwrap());
        assert_eq!(m["config"]["mediaType"], "application/vnd.oci.empty.v1+json");
        assert_eq!(m["config"]["digest"], Digest::of_bytes(b"{}").to_string());
        assert_eq!(m["subject"]["digest"], desc.digest.to_string());
        assert_eq!(m["layers"][0]["mediaType"], r.artifact_type.as_deref().unwrap());
    }
    // A recomputed SBOM replaces the stored one rather than adding a second.
    run_ok(kolla_oci(state).args(["sbom", TAG, "--recompute"]));
    assert_eq!(store.referrers(&desc.digest, Some(MEDIA_SPDX)).unwrap().len(), 1);

    // The image is what it was: same digest, one tag; the layout is valid and fsck is clean.
    assert_eq!(skopeo_digest(&store, TAG), before);
    assert_eq!(store.tags().unwrap().len(), 1);
    // umoci lists only the tag (referrer entries are untagged) and unpacks the image as before.
    // (oci-image-tool 1.0.0-rc1 predates OCI 1.1: it refuses the empty config media type of artifacts.)
    let umoci = require_tool("umoci");
    let layout = store.root().to_str().unwrap();
    assert_eq!(run_ok(Command::new(&umoci).args(["ls", "--layout", layout])), format!("{TAG}\n"));
    let bundle = state.join("bundle");
    run_ok(Command::new(&umoci).args(["unpack", "--rootless", "--image", &format!("{layout}:{TAG}")]).arg(&bundle));
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    let fsck = run_ok(kolla_oci(state).arg("fsck"));
    assert!(fsck.contains("0 unreferenced") && fsck.trim_end().ends_with("ok"), "{fsck}");
}

/// The `blob`/`referrer`/`layer` lines of a gc run (what no tag reaches), and its last line.
fn gc_items(out: &str) -> (BTreeSet<String>, String) {
    let garbage = |l: &&str| ["blob ", "referrer ", "layer "].iter().any(|k| l.starts_with(k));
    let items = out.lines().filter(garbage).map(str::to_owned);
    (items.collect(), out.lines().last().unwrap_or_default().to_owned())
}

/// Make every file under `dir` (and the dir) look written two hours ago.
fn age(path: &Path) {
    let old = filetime::FileTime::from_system_time(std::time::SystemTime::now() - Duration::from_secs(7200));
    filetime::set_file_mtime(path, old).unwrap();
}

#[test]
fn gc_dry_run_lists_exactly_what_gc_removes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let (store, base, base_diff_ids) = busybox_store(state, TAG);
    let app_root = state.join("rootfs-app");
    add_files(&app_root, &[("app/run", "echo app\n")]);
    let (app, app_diff_ids) = make_image(&store, APP, &[&state.join("rootfs-base"), &app_root]);
    // Extract both images' layers (the SBOM reads them) and give both a provenance and an SBOM.
    for tag in [TAG, APP] {
        run_ok(kolla_oci(state).args(["sbom", TAG]));
        run_ok(kolla_oci(state).args(["sbom", tag]));
        store_provenance(&store, tag);
    }
    let layers = state.join("layers");
    assert!(layers.join(app_diff_ids[1].hex()).is_dir() && layers.join(base_diff_ids[0].hex()).is_dir());

    // Nothing is garbage yet.
    let (items, total) = gc_items(&run_ok(kolla_oci(state).args(["gc", "--dry-run", "--grace", "0"])));
    assert!(items.is_empty(), "{items:?}");
    assert!(total.contains(": 0 blobs, 0 layer dirs, 0 referrers no tag reaches"), "{total}");

    // Untag the app: its manifest, config, own layer, its two referrers (with their documents) and its
    // layer dir become garbage; the base, its layer and its referrers stay.
    assert!(store.untag(APP).unwrap());
    let app_refs = store.referrers(&app.digest, None).unwrap();
    let base_refs = store.referrers(&base.digest, None).unwrap();
    assert_eq!((app_refs.len(), base_refs.len()), (2, 2));
    // Within the grace period nothing goes.
    let (items, _) = gc_items(&run_ok(kolla_oci(state).args(["gc", "--dry-run"])));
    assert!(items.is_empty(), "{items:?}");

    let dry = run_ok(kolla_oci(state).args(["gc", "--dry-run", "--grace", "0"]));
    let (planned, total) = gc_items(&dry);
    assert!(total.starts_with("would free"), "{dry}");
    for r in &app_refs {
        assert!(planned.contains(&format!("referrer {} of {}", r.digest, app.digest)), "{dry}");
        assert!(planned.iter().any(|l| l.starts_with(&format!("blob {} ", r.digest))), "{dry}");
    }
    let app_layer_dir = layers.join(app_diff_ids[1].hex());
    assert!(planned.iter().any(|l| l.starts_with(&format!("layer {} ", app_layer_dir.display()))), "{dry}");
    for l in planned.iter().filter(|l| l.starts_with("blob ") || l.starts_with("layer ")) {
        let bytes: u64 = l.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(bytes > 0, "{l}");
    }
    // A dry run changes nothing.
    assert_eq!(store.referrers(&app.digest, None).unwrap().len(), 2);
    assert!(app_layer_dir.is_dir() && store.has_blob(&app.digest));

    let wet = run_ok(kolla_oci(state).args(["gc", "--grace", "0"]));
    let (removed, total) = gc_items(&wet);
    assert_eq!(removed, planned, "gc removed other things than the dry run listed");
    assert!(total.starts_with("freed"), "{wet}");
    // Everything listed is gone, everything else is there.
    for l in &removed {
        let word: Vec<&str> = l.split(' ').collect();
        match word[0] {
            "blob" => assert!(!store.has_blob(&word[1].parse().unwrap()), "{l}"),
            "layer" => assert!(!Path::new(word[1]).exists(), "{l}"),
            "referrer" => {}
            other => panic!("unexpected gc line {other:?}"),
        }
    }
    assert!(store.referrers(&app.digest, None).unwrap().is_empty());
    assert_eq!(store.referrers(&base.digest, None).unwrap(), base_refs);
    // No image is built on the base any more: its layer is kept once, as its blob.
    let base_dir = layers.join(base_diff_ids[0].hex());
    assert!(wet.contains(&format!("extracted {} ", base_dir.display())), "{wet}");
    let base_layer = store.load_image(TAG).unwrap().manifest.layers[0].digest;
    assert!(!base_dir.exists() && store.holds_blob_file(&base_layer));
    let fsck = run_ok(kolla_oci(state).arg("fsck"));
    assert!(fsck.contains("0 unreferenced") && fsck.trim_end().ends_with("ok"), "{fsck}");
    assert_eq!(run_ok(kolla_oci(state).args(["provenance", TAG])).trim_end().as_bytes(), store_provenance(&store, TAG));
    let (items, _) = gc_items(&run_ok(kolla_oci(state).args(["gc", "--dry-run", "--grace", "0"])));
    assert!(items.is_empty(), "a second gc finds more: {items:?}");

    // Old leftovers go with the default grace period too; a fresh one stays.
    let (old, _) = store.put_blob(&b"old garbage"[..], None).unwrap();
    let (fresh, _) = store.put_blob(&b"fresh garbage"[..], None).unwrap();
    age(&store.blob_path(&old));
    let out = run_ok(kolla_oci(state).arg("gc"));
    assert!(out.contains(&format!("blob {old} 11")) && !out.contains(&fresh.to_string()), "{out}");
    assert!(store.has_blob(&fresh) && !store.has_blob(&old));
}

#[test]
fn gc_waits_for_a_running_build_which_completes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let (store, _, _) = busybox_store(state, TAG);
    // Garbage from before: an untagged image with an extracted layer.
    let junk_root = state.join("rootfs-junk");
    busybox_rootfs(&junk_root, &[("junk", "x")]);
    let (junk, _) = make_image(&store, "junk:1", &[&junk_root]);
    run_ok(kolla_oci(state).args(["sbom", "junk:1"]));
    store.untag("junk:1").unwrap();

    // A build whose first RUN layer is committed (untagged) long before the image is tagged.
    let ctx = state.join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {TAG}\nRUN echo one > /one\nRUN /bin/busybox sleep 3 && echo two > /two\n\
             CMD [\"/bin/busybox\", \"cat\", \"/one\", \"/two\"]\n"
        ),
    )
    .unwrap();
    let mut build = kolla_oci(state)
        .args(["build-file", ctx.to_str().unwrap(), "-t", "built:1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the second RUN runs: the first RUN's layer is then in the store but no tag names it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state.join("tmp").read_dir().unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with("run-"))
        || std::fs::read_dir(state.join("layers")).unwrap().count() < 3
    {
        assert!(Instant::now() < deadline, "the build never reached its second RUN");
        assert!(build.try_wait().unwrap().is_none(), "the build ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let gc = run(kolla_oci(state).args(["gc", "--grace", "0"]).env("KOLLA_OCI_LOG", "info"));
    let gc_took = started.elapsed();
    let build_out = build.wait_with_output().unwrap();
    assert!(
        build_out.status.success(),
        "the build failed while gc ran: {}",
        String::from_utf8_lossy(&build_out.stderr)
    );
    assert!(gc.status.success(), "{}", String::from_utf8_lossy(&gc.stderr));
    let gc_err = String::from_utf8_lossy(&gc.stderr);
    assert!(gc_err.contains("waiting for the builds"), "gc did not wait: {gc_err}");
    assert!(gc_took >= Duration::from_secs(1), "gc returned before the build finished ({gc_took:?})");
    // gc removed the old garbage but nothing of the build.
    let gc_out = String::from_utf8_lossy(&gc.stdout);
    assert!(gc_out.contains(&format!("blob {} ", junk.digest)), "{gc_out}");
    let fsck = run_ok(kolla_oci(state).arg("fsck"));
    assert!(fsck.trim_end().ends_with("ok"), "{fsck}");
    assert_eq!(run_ok(kolla_oci(state).args(["run", "built:1"])), "one\ntwo\n");
}
