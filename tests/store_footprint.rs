//! Each layer kept once: after a build, the layers an image is built on are kept as their extracted dirs
//! (their blobs dropped, written again when needed and checked against their digests), the others as
//! their blobs (dirs extracted again when needed); `df` shows it, `gc --max-extracted` caps the dirs, and a
//! dir that no longer holds its layer gives an error, never other bytes.

#[path = "support/store.rs"]
mod support;

use std::fs;
use std::io::Write;
use std::path::Path;

use kolla_oci::builder::Workspace;
use kolla_oci::store::{Descriptor, Store};
use layers::{Compression, Digest, TreeOptions};
use support::{busybox_rootfs, busybox_store, config_for, kolla_oci, run, run_ok};

/// `kolla-oci build-file` of `dockerfile` (in a context with `a.txt`) as `tag`.
fn build_file(state: &Path, dockerfile: &str, tag: &str) -> String {
    let ctx = state.join(format!("ctx-{}", tag.replace(':', "-")));
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("a.txt"), "from the context\n").unwrap();
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    run_ok(kolla_oci(state).args(["build-file", "--no-attestations", "-t", tag]).arg(&ctx))
}

/// The layers of `tag`: (blob, diff_id), base first.
fn layers_of(store: &Store, tag: &str) -> Vec<(Digest, Digest)> {
    let image = store.load_image(tag).unwrap();
    image.manifest.layers.iter().map(|l| l.digest).zip(image.config.rootfs.diff_ids).collect()
}

fn layer_dir(state: &Path, diff_id: &Digest) -> std::path::PathBuf {
    state.join("layers").join(diff_id.hex())
}

#[test]
fn each_layer_is_kept_once_and_comes_back_checked() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    // A base image written by the library (as a pulled one would be): no record of how its blob was made.
    let (store, _, _) = busybox_store(state, "bb-base:1");
    build_file(state, "FROM bb-base:1\nCOPY a.txt /a.txt\nRUN echo hi > /b.txt\n", "bb-child:1");
    let (base, child) = (layers_of(&store, "bb-base:1"), layers_of(&store, "bb-child:1"));
    let (base_blob, base_diff) = base[0];
    assert_eq!(child.len(), 3);

    // The base layer (bb-child is built on it) is kept as its dir; bb-child's own as their blobs.
    assert!(layer_dir(state, &base_diff).is_dir() && !store.holds_blob_file(&base_blob));
    for (blob, diff_id) in &child[1..] {
        assert!(!layer_dir(state, diff_id).exists() && store.holds_blob_file(blob));
    }
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join(format!("split/{}.json", base_blob.hex()))).unwrap()).unwrap();
    assert_eq!(record["regenerable"], true, "{record}");
    let df = run_ok(kolla_oci(state).args(["df", "--bytes"]));
    assert!(df.contains("1 blobs kept only as their extracted layers"), "{df}");
    // The store of the state dir still has it, and fsck writes it again and checks it.
    let ws_store = Workspace::open_store(state).unwrap();
    assert!(ws_store.has_blob(&base_blob) && ws_store.blob_size(&base_blob).unwrap() > 0);
    drop(ws_store);
    let fsck = run_ok(kolla_oci(state).arg("fsck"));
    assert!(fsck.contains("1 of them kept as their layer dirs") && fsck.trim_end().ends_with("ok"), "{fsck}");

    // Whatever needs the blob gets it back, verified: here a docker-archive.
    run_ok(kolla_oci(state).args(["save", "bb-child:1", "-o"]).arg(state.join("child.tar")));
    assert!(store.holds_blob_file(&base_blob));
    assert_eq!(layers::digest_reader(fs::File::open(store.blob_path(&base_blob)).unwrap()).unwrap().0, base_blob);
    // The next gc drops it again; `run` extracts bb-child's layers again, which gc then removes.
    let out = run_ok(kolla_oci(state).arg("run").arg("bb-child:1").args(["--", "/bin/sh", "-c", "cat /a.txt /b.txt"]));
    assert_eq!(out, "from the context\nhi\n");
    assert!(layer_dir(state, &child[2].1).is_dir());
    let gc = run_ok(kolla_oci(state).args(["gc", "--grace", "0"]));
    assert!(gc.contains(&format!("kept-as-layer {base_blob} ")), "{gc}");
    assert!(gc.contains(&format!("extracted {} ", layer_dir(state, &child[2].1).display())), "{gc}");
    assert!(!store.holds_blob_file(&base_blob) && !layer_dir(state, &child[2].1).exists());

    // A rebuild with nothing changed extracts nothing and leaves nothing to trim.
    let before: Vec<_> = fs::read_dir(state.join("layers")).unwrap().map(|e| e.unwrap().file_name()).collect();
    build_file(state, "FROM bb-base:1\nCOPY a.txt /a.txt\nRUN echo hi > /b.txt\n", "bb-child:1");
    let after: Vec<_> = fs::read_dir(state.join("layers")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after);
    assert!(!state.join("split/untrimmed").exists());

    // A dir that no longer holds its layer (same size, other bytes) gives an error, not other bytes.
    let release = layer_dir(state, &base_diff).join("etc/os-release");
    fs::write(&release, "ID=busyboy\n").unwrap();
    let out = run(kolla_oci(state).args(["save", "bb-child:1", "-o"]).arg(state.join("bad.tar")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&base_blob.to_string()) && err.contains("written again"), "{err}");
    assert!(!store.holds_blob_file(&base_blob), "a wrong blob was stored");
    let fsck = run(kolla_oci(state).arg("fsck"));
    assert!(!fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
    assert!(String::from_utf8_lossy(&fsck.stdout).contains(&format!("ERROR: blob {base_blob}: content hashes to")));
}

#[test]
fn a_blob_another_compressor_wrote_is_kept_with_its_dir() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let store = Store::open(&state.join("oci")).unwrap();
    // A base layer gzipped as docker and Go do (one member), not by our compressor.
    let root = state.join("rootfs-base");
    busybox_rootfs(&root, &[("etc/os-release", "ID=busybox\n")]);
    let mut tar = Vec::new();
    let opts = TreeOptions { source_date_epoch: Some(1_700_000_000), ..Default::default() };
    let info = layers::write_layer(&root, &opts, Compression::None, &mut tar).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&tar).unwrap();
    let (blob, size) = store.put_bytes(&gz.finish().unwrap()).unwrap();
    let layer = Descriptor::new(Compression::default().media_type(), blob, size);
    let desc = store.write_image(&config_for(&[info.diff_id]), &[layer]).unwrap();
    store.set_tag("other:1", &desc).unwrap();
    build_file(state, "FROM other:1\nRUN echo hi > /b.txt\n", "child:1");

    // Our gzip does not give that blob: it stays, and so does the dir children need.
    assert!(store.holds_blob_file(&blob) && layer_dir(state, &info.diff_id).is_dir());
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join(format!("split/{}.json", blob.hex()))).unwrap()).unwrap();
    assert_eq!(record["regenerable"], false, "{record}");
    let gc = run_ok(kolla_oci(state).args(["gc", "--grace", "0"]));
    assert!(!gc.contains("kept-as-layer"), "{gc}");
    run_ok(kolla_oci(state).arg("fsck"));
}

#[test]
fn gc_caps_the_extracted_dirs_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let (store, _, _) = busybox_store(state, "bb-base:1");
    build_file(state, "FROM bb-base:1\nRUN busybox head -c 300000 /dev/urandom > /mid.bin\n", "mid:1");
    build_file(state, "FROM mid:1\nRUN echo top > /top.txt\n", "top:1");
    let (base, mid) = (layers_of(&store, "bb-base:1")[0], layers_of(&store, "mid:1")[1]);
    // Both are layers of images others build on: dirs kept, blobs dropped.
    for (blob, diff_id) in [base, mid] {
        assert!(layer_dir(state, &diff_id).is_dir() && !store.holds_blob_file(&blob));
    }
    // The base's dir was used long ago (its skeleton says when), mid's just now: a cap that fits only mid's
    // keeps it.
    let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
    filetime::set_file_mtime(state.join(format!("split/{}.skel", base.1.hex())), old).unwrap();
    let du = |d: &Digest| -> u64 {
        let out = run_ok(std::process::Command::new("du").args(["-s", "-B1"]).arg(layer_dir(state, d)));
        out.split_whitespace().next().unwrap().parse().unwrap()
    };
    let cap = du(&mid.1) + 4096;
    assert!(du(&base.1) > 4096, "the base dir is larger than the slack");
    let dry = run_ok(kolla_oci(state).args(["gc", "--dry-run", "--max-extracted", &cap.to_string()]));
    assert!(dry.contains(&format!("restored {}", base.0)) && layer_dir(state, &base.1).is_dir(), "{dry}");
    let gc = run_ok(kolla_oci(state).args(["gc", "--max-extracted", &cap.to_string()]));
    assert!(gc.contains(&format!("extracted {} ", layer_dir(state, &base.1).display())), "{gc}");
    assert!(!layer_dir(state, &base.1).exists() && store.holds_blob_file(&base.0));
    assert!(layer_dir(state, &mid.1).is_dir() && !store.holds_blob_file(&mid.0));
    // A build on top still works: the base is extracted again, checked against its diff_id.
    build_file(state, "FROM top:1\nRUN cat /mid.bin > /dev/null && echo again > /again.txt\n", "again:1");
    // A cap of 0 leaves a plain OCI layout: every blob in oci/blobs, no dir; other tools read it.
    run_ok(kolla_oci(state).args(["gc", "--max-extracted", "0"]));
    assert_eq!(fs::read_dir(state.join("layers")).unwrap().count(), 0);
    let layout = state.join("oci");
    let bundle = state.join("bundle");
    run_ok(
        std::process::Command::new(support::require_tool("umoci"))
            .args(["unpack", "--image", &format!("{}:again:1", layout.display())])
            .arg(&bundle),
    );
    assert_eq!(fs::read_to_string(bundle.join("rootfs/again.txt")).unwrap(), "again\n");
    run_ok(kolla_oci(state).arg("fsck"));
}

#[test]
fn a_dir_that_changed_is_replaced_before_its_blob_would_be_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let (store, _, _) = busybox_store(state, "bb-base:1");
    build_file(state, "FROM bb-base:1\nRUN echo hi > /b.txt\n", "bb-child:1");
    let (base_blob, base_diff) = layers_of(&store, "bb-base:1")[0];
    // The blob comes back (a save), then the dir changes while both are there.
    run_ok(kolla_oci(state).args(["save", "bb-child:1", "-o"]).arg(state.join("child.tar")));
    fs::write(layer_dir(state, &base_diff).join("etc/os-release"), "ID=busyboy\n").unwrap();
    // gc checks the dir before dropping the blob: it does not give the layer back, so the dir goes and the
    // blob stays, for good.
    let gc = run_ok(kolla_oci(state).args(["gc", "--grace", "0"]));
    assert!(!gc.contains("kept-as-layer"), "{gc}");
    assert!(!layer_dir(state, &base_diff).exists() && store.holds_blob_file(&base_blob));
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join(format!("split/{}.json", base_blob.hex()))).unwrap()).unwrap();
    assert_eq!(record["regenerable"], false, "{record}");
    // The next use extracts the layer again from its blob, as it is.
    let out =
        run_ok(kolla_oci(state).arg("run").arg("bb-child:1").args(["--", "/bin/sh", "-c", "cat /etc/os-release"]));
    assert_eq!(out, "ID=busybox\n");
    run_ok(kolla_oci(state).args(["gc", "--grace", "0"]));
    assert!(store.holds_blob_file(&base_blob));
    run_ok(kolla_oci(state).arg("fsck"));
}
