//! Blob writes (verification, atomicity, concurrency across threads and processes), temp-file cleanup and
//! the store lock across processes.

#[path = "support/store.rs"]
mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kolla_oci::store::{Store, StoreError};
use layers::Digest;
use support::{child_role, list, spawn_child, wait_for_file};

/// 3 MiB of deterministic, incompressible-ish bytes.
fn payload() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn blobs(store: &Store) -> Vec<String> {
    list(&store.root().join("blobs/sha256"))
}

fn tmp(store: &Store) -> Vec<String> {
    list(&store.root().join(".tmp"))
}

#[test]
fn open_creates_a_layout_and_reopens_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("oci")).unwrap();
    let layout = std::fs::read_to_string(store.root().join("oci-layout")).unwrap();
    assert_eq!(layout, r#"{"imageLayoutVersion":"1.0.0"}"#);
    let index = std::fs::read_to_string(store.root().join("index.json")).unwrap();
    assert_eq!(index, r#"{"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#);
    assert!(store.tags().unwrap().is_empty());
    Store::open(store.root()).unwrap();

    std::fs::write(store.root().join("oci-layout"), r#"{"imageLayoutVersion":"2.0.0"}"#).unwrap();
    let err = Store::open(store.root()).unwrap_err();
    assert!(matches!(err, StoreError::Layout { .. }), "{err}");
    assert!(err.to_string().contains("oci-layout"), "{err}");
}

#[test]
fn put_read_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data = payload();
    let want = Digest::of_bytes(&data);
    let (d, n) = store.put_blob(&data[..], None).unwrap();
    assert_eq!((d, n), (want, data.len() as u64));
    assert!(store.has_blob(&d));
    assert_eq!(store.blob_size(&d).unwrap(), n);
    assert_eq!(store.blob_path(&d), dir.path().join("blobs/sha256").join(d.hex()));
    let mut back = Vec::new();
    store.open_blob(&d).unwrap().read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
    assert_eq!(store.read_blob_bytes(&d, n).unwrap(), data);
    assert!(matches!(store.read_blob_bytes(&d, n - 1), Err(StoreError::TooLarge { .. })));
    assert_eq!(blobs(&store), [d.hex()]);
    assert!(tmp(&store).is_empty(), "temp files left: {:?}", tmp(&store));

    // A blob that no longer matches its name is refused when read whole.
    let mut bytes = std::fs::read(store.blob_path(&d)).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(store.blob_path(&d), &bytes).unwrap();
    assert!(matches!(store.read_blob_bytes(&d, n), Err(StoreError::DigestMismatch { .. })));

    let missing = Digest::of_bytes(b"missing");
    assert!(!store.has_blob(&missing));
    let err = store.open_blob(&missing).unwrap_err();
    assert!(matches!(err, StoreError::BlobNotFound { .. }) && err.to_string().contains(&missing.hex()), "{err}");
}

#[test]
fn wrong_expected_digest_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let wrong = Digest::of_bytes(b"something else");
    let err = store.put_blob(&b"hello"[..], Some(&wrong)).unwrap_err();
    match &err {
        StoreError::DigestMismatch { expected, actual, size } => {
            assert_eq!((*expected, *actual, *size), (wrong, Digest::of_bytes(b"hello"), 5));
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
    assert!(err.to_string().contains(&wrong.to_string()), "{err}");
    assert!(blobs(&store).is_empty(), "blob became visible: {:?}", blobs(&store));
    assert!(tmp(&store).is_empty(), "temp file left: {:?}", tmp(&store));

    // Same through the streaming writer, and a writer dropped without commit leaves nothing either.
    let mut w = store.blob_writer().unwrap();
    w.write_all(b"hello").unwrap();
    assert_eq!(tmp(&store).len(), 1);
    assert!(w.commit(Some(&wrong)).is_err());
    let mut w = store.blob_writer().unwrap();
    w.write_all(b"abandoned").unwrap();
    drop(w);
    assert!(blobs(&store).is_empty() && tmp(&store).is_empty());

    // The right digest is accepted; putting it again does not read the source at all.
    let right = Digest::of_bytes(b"hello");
    assert_eq!(store.put_blob(&b"hello"[..], Some(&right)).unwrap(), (right, 5));
    let mtime = std::fs::metadata(store.blob_path(&right)).unwrap().modified().unwrap();
    struct Unreadable;
    impl Read for Unreadable {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            panic!("an existing blob must not be re-read")
        }
    }
    assert_eq!(store.put_blob(Unreadable, Some(&right)).unwrap(), (right, 5));
    assert_eq!(std::fs::read(store.blob_path(&right)).unwrap(), b"hello");
    assert!(std::fs::metadata(store.blob_path(&right)).unwrap().modified().unwrap() >= mtime);
}

#[test]
fn concurrent_writers_in_threads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data = payload();
    let want = Digest::of_bytes(&data);
    let results: Vec<(Digest, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (store, data) = (&store, &data);
                s.spawn(move || {
                    // Half stream in small chunks with the digest unknown, half give the expected digest.
                    let mut w = store.blob_writer().unwrap();
                    for chunk in data.chunks(4096 + i) {
                        w.write_all(chunk).unwrap();
                    }
                    let expected = (i % 2 == 0).then_some(&want);
                    w.commit(expected).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(|r| *r == (want, data.len() as u64)), "{results:?}");
    assert_eq!(blobs(&store), [want.hex()]);
    assert!(tmp(&store).is_empty(), "temp files left: {:?}", tmp(&store));
    assert_eq!(store.read_blob_bytes(&want, 4 << 20).unwrap(), data);
}

#[test]
fn concurrent_writers_in_two_processes() {
    const ROUNDS: usize = 20;
    if let Some(role) = child_role() {
        if role == "writer" {
            let store = Store::open(Path::new(&std::env::var_os("STORE").unwrap())).unwrap();
            let inputs: Vec<Vec<u8>> = (0..ROUNDS).map(|r| [payload(), r.to_le_bytes().to_vec()].concat()).collect();
            std::fs::write(std::env::var_os("READY").unwrap(), "").unwrap();
            wait_for_file(&PathBuf::from(std::env::var_os("GO").unwrap()));
            for data in &inputs {
                store.put_blob(&data[..], None).unwrap();
            }
            std::fs::write(std::env::var_os("DONE").unwrap(), "").unwrap();
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("oci")).unwrap();
    let [ready, go, done] = ["ready", "go", "done"].map(|f| dir.path().join(f));
    let mut child = spawn_child(
        "concurrent_writers_in_two_processes",
        "writer",
        &[("STORE", store.root()), ("READY", &ready), ("GO", &go), ("DONE", &done)],
    );
    let inputs: Vec<Vec<u8>> = (0..ROUNDS).map(|r| [payload(), r.to_le_bytes().to_vec()].concat()).collect();
    wait_for_file(&ready);
    std::fs::write(&go, "").unwrap();
    let digests: Vec<Digest> = inputs.iter().map(|data| store.put_blob(&data[..], None).unwrap().0).collect();
    let status = child.wait().unwrap();
    assert!(status.success() && done.exists(), "child writer failed: {status}");
    let mut want: Vec<String> = digests.iter().map(|d| d.hex()).collect();
    want.sort();
    assert_eq!(blobs(&store), want);
    assert!(tmp(&store).is_empty(), "temp files left: {:?}", tmp(&store));
    let report = store.fsck().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.blobs, ROUNDS as u64);
}

#[test]
fn stale_temp_files_are_ignored_then_cleaned_by_the_next_lock_holder() {
    if let Some(role) = child_role() {
        if role == "killed-writer" {
            // Start a blob, signal the parent, and wait to be killed mid-write.
            let store = Store::open(Path::new(&std::env::var_os("STORE").unwrap())).unwrap();
            let mut w = store.blob_writer().unwrap();
            w.write_all(&payload()).unwrap();
            w.flush().unwrap();
            std::fs::write(std::env::var_os("READY").unwrap(), "").unwrap();
            std::thread::sleep(Duration::from_secs(60));
            panic!("not killed");
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("oci")).unwrap();
    let ready = dir.path().join("ready");
    let mut child = spawn_child(
        "stale_temp_files_are_ignored_then_cleaned_by_the_next_lock_holder",
        "killed-writer",
        &[("STORE", store.root()), ("READY", &ready)],
    );
    wait_for_file(&ready);
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    let stale = tmp(&store);
    assert_eq!(stale.len(), 1, "the killed writer's temp file should remain: {stale:?}");

    // Readers do not see it.
    assert!(blobs(&store).is_empty());
    assert!(store.tags().unwrap().is_empty());
    let report = store.fsck().unwrap();
    assert!(report.is_ok() && report.blobs == 0, "{report:?}");

    // A live writer in this process keeps its temp file across the cleanup; the dead one's goes.
    let mut live = store.blob_writer().unwrap();
    live.write_all(b"live").unwrap();
    assert_eq!(tmp(&store).len(), 2);
    let lock = store.lock().unwrap();
    let left = tmp(&store);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(left, stale, "the stale temp file must be the one removed");
    drop(lock);
    let (d, _) = live.commit(None).unwrap();
    assert_eq!(d, Digest::of_bytes(b"live"));
    assert!(tmp(&store).is_empty());
}

#[test]
fn lock_serializes_processes() {
    const HOLD: Duration = Duration::from_millis(800);
    if let Some(role) = child_role() {
        if role == "holder" {
            let store = Store::open(Path::new(&std::env::var_os("STORE").unwrap())).unwrap();
            let lock = store.lock().unwrap();
            std::fs::write(std::env::var_os("LOCKED").unwrap(), "").unwrap();
            std::thread::sleep(HOLD);
            std::fs::write(std::env::var_os("RELEASED").unwrap(), "").unwrap();
            drop(lock);
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("oci")).unwrap();
    let (locked, released) = (dir.path().join("locked"), dir.path().join("released"));
    let mut child = spawn_child(
        "lock_serializes_processes",
        "holder",
        &[("STORE", store.root()), ("LOCKED", &locked), ("RELEASED", &released)],
    );
    wait_for_file(&locked);
    assert!(store.try_lock().unwrap().is_none(), "try_lock succeeded while another process holds the lock");
    let start = Instant::now();
    let lock = store.lock().unwrap();
    assert!(released.exists(), "got the lock before the other process released it");
    assert!(start.elapsed() >= HOLD / 4, "lock() did not wait ({:?})", start.elapsed());
    // While we hold it, set_tag from another handle must wait too: check with try_lock.
    assert!(Store::open(store.root()).unwrap().try_lock().unwrap().is_none());
    drop(lock);
    assert!(store.try_lock().unwrap().is_some());
    assert!(child.wait().unwrap().success());
}

#[test]
fn blob_reads_do_not_follow_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("oci")).unwrap();
    let bytes = b"the real content".to_vec();
    let (d, size) = store.put_bytes(&bytes).unwrap();
    // A planted link under the blob's name, to a file holding the very same bytes outside the store.
    let outside = dir.path().join("outside");
    std::fs::write(&outside, &bytes).unwrap();
    std::fs::remove_file(store.blob_path(&d)).unwrap();
    std::os::unix::fs::symlink(&outside, store.blob_path(&d)).unwrap();
    let refused = |e: StoreError, d: &Digest| {
        let msg = e.to_string();
        assert!(msg.contains("symbolic link") || msg.contains("not a regular file"), "{msg}");
        assert!(msg.contains(&d.hex()), "the error names the blob: {msg}");
    };
    refused(store.open_blob(&d).unwrap_err(), &d);
    refused(store.read_blob_bytes(&d, 1 << 20).unwrap_err(), &d);
    refused(store.blob_size(&d).unwrap_err(), &d);
    assert!(!store.has_blob(&d));
    // Writing the blob again replaces the link with a regular file.
    assert_eq!(store.put_blob(&bytes[..], Some(&d)).unwrap(), (d, size));
    assert!(std::fs::symlink_metadata(store.blob_path(&d)).unwrap().is_file());
    assert_eq!(store.read_blob_bytes(&d, 1 << 20).unwrap(), bytes);
    assert_eq!(std::fs::read(&outside).unwrap(), bytes, "the link's target is untouched");

    // A FIFO under a blob's name is refused at once rather than blocking the reader.
    let (f, _) = store.put_bytes(b"fifo victim").unwrap();
    std::fs::remove_file(store.blob_path(&f)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        store.blob_path(&f),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    refused(store.open_blob(&f).unwrap_err(), &f);
    assert!(!store.has_blob(&f));
}
