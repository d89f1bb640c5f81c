//! fsck finds corruption, missing blobs, broken index files and stray files; `kolla-oci fsck` exits non-zero
//! on them; gc removes only unreferenced blobs older than its grace period.

#[path = "support/store.rs"]
mod support;

use std::time::{Duration, SystemTime};

use kolla_oci::store::{FsckProblem, FsckReport, Store};
use layers::Digest;
use support::{busybox_store, kolla_oci, run};

const TAG: &str = "kolla/base:fsck";

/// A good one-image store plus one unreferenced blob.
fn good_store(state: &std::path::Path) -> (Store, kolla_oci::store::Image, Digest) {
    let (store, _, _) = busybox_store(state, TAG);
    let (extra, _) = store.put_blob(&b"unreferenced"[..], None).unwrap();
    let image = store.load_image(TAG).unwrap();
    (store, image, extra)
}

/// Run `kolla-oci fsck` and return (success, stdout).
fn cli_fsck(state: &std::path::Path) -> (bool, String) {
    let out = run(kolla_oci(state).arg("fsck"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn only_problem(report: &FsckReport) -> &FsckProblem {
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    &report.problems[0]
}

#[test]
fn good_store_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image, extra) = good_store(dir.path());
    let report = store.fsck().unwrap();
    assert!(report.is_ok(), "{:#?}", report.problems);
    assert_eq!((report.blobs, report.tags, report.reachable), (4, 1, 3));
    assert_eq!(report.unreferenced, [(extra, 12)]);
    let total: u64 = image.manifest.layers.iter().map(|l| l.size).sum::<u64>() + image.manifest.config.size + 12;
    assert_eq!(report.bytes, total + store.blob_size(&image.manifest_digest).unwrap());
    let (ok, out) = cli_fsck(dir.path());
    assert!(ok, "{out}");
    assert!(
        out.contains("4 blobs") && out.contains(&format!("unreferenced: {extra}")) && out.ends_with("ok\n"),
        "{out}"
    );
}

#[test]
fn flipped_byte_in_a_layer() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image, _) = good_store(dir.path());
    let layer = image.manifest.layers[0].digest;
    let path = store.blob_path(&layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let report = store.fsck().unwrap();
    match only_problem(&report) {
        FsckProblem::CorruptBlob { digest, actual } => {
            assert_eq!((*digest, *actual), (layer, Digest::of_bytes(&bytes)));
        }
        other => panic!("expected CorruptBlob, got {other}"),
    }
    let (ok, out) = cli_fsck(dir.path());
    assert!(!ok && out.contains(&format!("ERROR: blob {layer}: content hashes to")), "{out}");

    // A corrupt config is reported once, as corrupt (not parsed and reported again).
    bytes[middle] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let config = image.manifest.config.digest;
    let mut json = std::fs::read(store.blob_path(&config)).unwrap();
    json[0] = b'[';
    std::fs::write(store.blob_path(&config), &json).unwrap();
    let report = store.fsck().unwrap();
    assert!(
        matches!(only_problem(&report), FsckProblem::CorruptBlob { digest, .. } if *digest == config),
        "{:?}",
        report.problems
    );
    // With a reachable document unreadable, what it references is unknown: gc refuses, naming it.
    let err = store.gc(Duration::ZERO).unwrap_err().to_string();
    assert!(err.contains("gc refused") && err.contains(&config.to_string()), "{err}");
}

#[test]
fn missing_referenced_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image, _) = good_store(dir.path());
    let config = image.manifest.config.digest;
    std::fs::remove_file(store.blob_path(&config)).unwrap();
    let report = store.fsck().unwrap();
    match only_problem(&report) {
        FsckProblem::MissingBlob { digest, referenced_by, .. } => {
            assert_eq!(*digest, config);
            assert_eq!(*referenced_by, format!("manifest {}", image.manifest_digest));
        }
        other => panic!("expected MissingBlob, got {other}"),
    }
    // The manifest itself missing: reported against the tag.
    std::fs::remove_file(store.blob_path(&image.manifest_digest)).unwrap();
    let report = store.fsck().unwrap();
    match only_problem(&report) {
        FsckProblem::MissingBlob { referenced_by, .. } => assert!(referenced_by.contains(TAG), "{referenced_by}"),
        other => panic!("expected MissingBlob, got {other}"),
    }
    let (ok, out) = cli_fsck(dir.path());
    assert!(!ok && out.contains("is missing"), "{out}");
}

#[test]
fn truncated_index_and_wrong_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image, _) = good_store(dir.path());
    let index_path = store.root().join("index.json");
    let index = std::fs::read(&index_path).unwrap();
    std::fs::write(&index_path, &index[..index.len() / 2]).unwrap();
    let report = store.fsck().unwrap();
    match only_problem(&report) {
        FsckProblem::BadLayout { path, reason } => {
            assert_eq!(*path, index_path);
            assert!(reason.contains("EOF"), "{reason}");
        }
        other => panic!("expected BadLayout, got {other}"),
    }
    let (ok, out) = cli_fsck(dir.path());
    assert!(!ok && out.contains("index.json"), "{out}");

    // An index entry whose size is wrong.
    let text = String::from_utf8(index).unwrap();
    let size = store.blob_size(&image.manifest_digest).unwrap();
    std::fs::write(&index_path, text.replace(&format!("\"size\":{size}"), &format!("\"size\":{}", size + 1))).unwrap();
    let report = store.fsck().unwrap();
    assert!(
        matches!(only_problem(&report), FsckProblem::SizeMismatch { digest, .. } if *digest == image.manifest_digest),
        "{:?}",
        report.problems
    );
}

#[test]
fn stray_files_under_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = good_store(dir.path());
    let stray = store.root().join("blobs/sha256/.tmp-upload-123");
    std::fs::write(&stray, "partial").unwrap();
    let report = store.fsck().unwrap();
    assert_eq!(*only_problem(&report), FsckProblem::StrayFile { path: stray.clone() });
    // Nor may a blob name be upper-case or a directory.
    std::fs::remove_file(&stray).unwrap();
    let upper = store.root().join("blobs/sha256").join(Digest::of_bytes(b"x").hex().to_uppercase());
    std::fs::write(&upper, "x").unwrap();
    assert!(matches!(only_problem(&store.fsck().unwrap()), FsckProblem::StrayFile { .. }));
}

#[test]
fn gc_removes_old_unreferenced_blobs_only() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image, extra) = good_store(dir.path());
    let (recent, _) = store.put_blob(&b"recent"[..], None).unwrap();
    let old = SystemTime::now() - Duration::from_secs(7200);
    for d in [extra, image.manifest_digest, image.manifest.config.digest] {
        filetime::set_file_mtime(store.blob_path(&d), old.into()).unwrap();
    }
    let report = store.gc(Duration::from_secs(3600)).unwrap();
    assert_eq!(report.removed, [(extra, 12)]);
    assert_eq!((report.bytes, report.kept_recent), (12, 1));
    assert!(!store.has_blob(&extra) && store.has_blob(&recent));
    let after = store.fsck().unwrap();
    assert!(after.is_ok(), "{:#?}", after.problems);
    assert_eq!(after.unreferenced, [(recent, 6)]);
    store.load_image(TAG).unwrap();

    // Reachability unknown → refuse.
    std::fs::write(store.root().join("index.json"), "{").unwrap();
    let err = store.gc(Duration::ZERO).unwrap_err();
    assert!(err.to_string().contains("gc refused"), "{err}");
    assert!(store.has_blob(&recent));
}
