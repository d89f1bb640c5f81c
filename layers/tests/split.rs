//! Tar-split: a layer written from a tree, or extracted from a blob, comes back bit for bit from its
//! directory and skeleton; a directory that no longer holds the layer is caught (an error naming the file,
//! or other digests), never read outside its root.

mod support;

use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use layers::{
    ApplyOptions, Compression, Digest, LayerError, SkeletonWriter, TreeOptions, WhiteoutMode, apply_layer,
    compress_tar, compress_tar_split, may_regenerate, regenerate, split_layer, write_layer_split,
};
use support::{EntryType, RawTar, pseudo_random, run};

/// A tree with what layers carry: files across 1 MiB chunks, empty files, hardlinks, symlinks, long names,
/// xattrs, a FIFO.
fn tree(root: &Path) {
    let p = |s: &str| root.join(s);
    for d in ["etc", "usr/lib", "usr/bin", "var/empty"] {
        fs::create_dir_all(p(d)).unwrap();
    }
    fs::write(p("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    let mut big = pseudo_random(2 << 20, 2, true);
    big.extend(pseudo_random(1 << 20, 3, false));
    fs::write(p("usr/lib/libbig.so"), big).unwrap();
    fs::write(p("var/empty/zero"), b"").unwrap();
    fs::write(p("usr/bin/python3.11"), pseudo_random(5000, 4, false)).unwrap();
    fs::hard_link(p("usr/bin/python3.11"), p("usr/bin/python3")).unwrap();
    symlink("python3", p("usr/bin/python")).unwrap();
    let long = format!("usr/share/{}/{}", "d".repeat(80), "f".repeat(120));
    fs::create_dir_all(p(&long).parent().unwrap()).unwrap();
    fs::write(p(&long), b"long").unwrap();
    xattr::set(p("etc/passwd"), "user.test", b"hello").unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, p("usr/fifo"), rustix::fs::FileType::Fifo, 0o600.into(), 0).unwrap();
}

/// `regenerate` from `root` and `skeleton`, into memory.
fn again(skeleton: &[u8], root: &Path, compression: Compression) -> Result<(Vec<u8>, layers::LayerInfo), LayerError> {
    let mut out = Vec::new();
    let info = regenerate(skeleton, root, compression, Some(2), &mut out)?;
    Ok((out, info))
}

#[test]
fn a_layer_written_from_a_tree_comes_back_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    tree(&src);
    let opts = TreeOptions { source_date_epoch: Some(1_700_000_000), threads: Some(2), ..Default::default() };
    for compression in
        [Compression::default(), Compression::Gzip { level: 9 }, Compression::Zstd { level: 3 }, Compression::None]
    {
        let (mut blob, mut skeleton) = (Vec::new(), Vec::new());
        let info = write_layer_split(&src, &opts, compression, &mut blob, &mut skeleton).unwrap();
        // The skeleton is small: headers and padding, not contents.
        assert!(skeleton.len() < 4096, "{compression:?}: skeleton of {} bytes", skeleton.len());
        let (bytes, back) = again(&skeleton, &src, compression).unwrap();
        assert!(bytes == blob, "{compression:?}: other bytes");
        assert_eq!((back.digest, back.diff_id, back.size), (info.digest, info.diff_id, info.size));
    }
}

#[test]
fn an_overlay_upper_dir_layer_comes_back_with_its_whiteouts() {
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    fs::create_dir_all(upper.join("etc/opaque")).unwrap();
    fs::write(upper.join("etc/new"), b"new file\n").unwrap();
    fs::write(upper.join("etc/opaque/kept"), b"kept\n").unwrap();
    xattr::set(upper.join("etc/opaque"), "user.overlay.opaque", b"y").unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, upper.join("etc/gone"), rustix::fs::FileType::CharacterDevice, 0.into(), 0)
        .unwrap();
    let opts = TreeOptions { overlay_upper: true, ..Default::default() };
    let (mut blob, mut skeleton) = (Vec::new(), Vec::new());
    let info = write_layer_split(&upper, &opts, Compression::default(), &mut blob, &mut skeleton).unwrap();
    let (bytes, back) = again(&skeleton, &upper, Compression::default()).unwrap();
    assert!(bytes == blob);
    assert_eq!(back.diff_id, info.diff_id);
}

/// A tar made by GNU tar (its own order, `./` names, its own headers) of the tree.
fn gnu_tar(tmp: &Path) -> Vec<u8> {
    let src = tmp.join("gnu-src");
    fs::create_dir(&src).unwrap();
    tree(&src);
    run(Command::new("tar")
        .args(["--xattrs", "--format=pax", "-cf"])
        .arg(tmp.join("gnu.tar"))
        .arg("-C")
        .arg(&src)
        .arg("."));
    fs::read(tmp.join("gnu.tar")).unwrap()
}

fn extract(blob: &[u8], dir: &Path) -> Digest {
    fs::create_dir(dir).unwrap();
    let opts = ApplyOptions { whiteouts: WhiteoutMode::Overlay, same_owner: true, host_safe: false };
    apply_layer(blob, dir, &opts).unwrap().diff_id
}

#[test]
fn a_foreign_layer_is_split_off_its_extracted_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = gnu_tar(tmp.path());
    // Compressed by us (what a bootstrapped root image is): the split gives back the very blob.
    let mut blob = Vec::new();
    let info = compress_tar(&tar[..], Compression::default(), Some(2), &mut blob).unwrap();
    let dir = tmp.path().join("ours");
    assert_eq!(extract(&blob, &dir), info.diff_id);
    let mut skeleton = Vec::new();
    let split = split_layer(&blob[..], &dir, Compression::default(), Some(2), &mut skeleton).unwrap();
    assert_eq!(split.blob, (info.digest, info.size));
    assert_eq!((split.regenerated.digest, split.regenerated.diff_id), (info.digest, info.diff_id));
    let (bytes, _) = again(&skeleton, &dir, Compression::default()).unwrap();
    assert!(bytes == blob, "other bytes");
    // Recorded while the tar is compressed (a bootstrapped root image), the skeleton and the extraction give
    // the same blob back with no split.
    let (mut blob2, mut skeleton2) = (Vec::new(), Vec::new());
    let info2 = compress_tar_split(&tar[..], Compression::default(), Some(2), &mut blob2, &mut skeleton2).unwrap();
    assert!(info2 == info && blob2 == blob);
    assert!(again(&skeleton2, &dir, Compression::default()).unwrap().0 == blob);
    assert!(may_regenerate(&blob[..], Compression::default()));

    // Compressed by GNU gzip: the same tar comes back, but our gzip does not give that blob: the caller
    // keeps it.
    let gz = support::gzip(&tar);
    let dir = tmp.path().join("theirs");
    extract(&gz, &dir);
    let split = split_layer(&gz[..], &dir, Compression::default(), Some(2), &mut Vec::new()).unwrap();
    assert_eq!(split.blob.0, Digest::of_bytes(&gz));
    assert_eq!(split.regenerated.diff_id, info.diff_id);
    assert_ne!(split.regenerated.digest, split.blob.0);
    // And a look at its first member tells so, without the full read.
    assert!(!may_regenerate(&gz[..], Compression::default()));
}

#[test]
fn a_directory_that_changed_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    tree(&src);
    let (mut blob, mut skeleton) = (Vec::new(), Vec::new());
    let info =
        write_layer_split(&src, &TreeOptions::default(), Compression::default(), &mut blob, &mut skeleton).unwrap();
    // Same size, other content: other digests (the caller refuses them).
    fs::write(src.join("etc/passwd"), b"evil:x:0:0::/root:/bin/sh\n").unwrap();
    let (_, back) = again(&skeleton, &src, Compression::default()).unwrap();
    assert_ne!(back.diff_id, info.diff_id);
    // And split_layer names the file.
    let err = split_layer(&blob[..], &src, Compression::default(), None, &mut Vec::new()).unwrap_err();
    assert!(matches!(&err, LayerError::Split { path, .. } if path == "etc/passwd"), "{err}");
    // Another size, or gone: an error naming it.
    fs::write(src.join("etc/passwd"), b"longer than it was in the layer\n").unwrap();
    let err = again(&skeleton, &src, Compression::default()).unwrap_err();
    assert!(matches!(&err, LayerError::Split { path, .. } if path == "etc/passwd"), "{err}");
    fs::remove_file(src.join("usr/lib/libbig.so")).unwrap();
    fs::write(src.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    let err = again(&skeleton, &src, Compression::default()).unwrap_err();
    assert!(err.to_string().contains("usr/lib/libbig.so"), "{err}");
}

#[test]
fn layers_the_directory_cannot_give_back_are_not_split() {
    let tmp = tempfile::tempdir().unwrap();
    // The same path twice: the directory holds the second content only.
    let twice = RawTar::new().file("a", b"first").file("a", b"other").finish();
    let dir = tmp.path().join("twice");
    extract(&twice, &dir);
    let err = split_layer(&twice[..], &dir, Compression::None, None, &mut Vec::new()).unwrap_err();
    assert!(matches!(&err, LayerError::Split { path, .. } if path == "a"), "{err}");
    // Whiteouts and opaque markers (empty) are kept in the skeleton as they are.
    let marked = RawTar::new()
        .dir("d")
        .file("d/.wh..wh..opq", b"")
        .file(".wh.gone", b"")
        .file("d/f", &pseudo_random(3000, 9, false))
        .finish();
    let dir = tmp.path().join("marked");
    extract(&marked, &dir);
    let mut skeleton = Vec::new();
    let split = split_layer(&marked[..], &dir, Compression::None, None, &mut skeleton).unwrap();
    assert_eq!(split.regenerated.digest, Digest::of_bytes(&marked));
    assert!(again(&skeleton, &dir, Compression::None).unwrap().0 == marked);
    // A device entry declaring no data, a symlink: headers only.
    let mut special = RawTar::new();
    special.device(EntryType::Char, "null", 1, 3).symlink("l", "/etc/passwd");
    let special = special.finish();
    let dir = tmp.path().join("special");
    extract(&special, &dir);
    assert_eq!(
        split_layer(&special[..], &dir, Compression::None, None, &mut Vec::new()).unwrap().regenerated.digest,
        Digest::of_bytes(&special)
    );
}

#[test]
fn regeneration_reads_inside_the_directory_only() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(tmp.path().join("secret"), b"host secret\n").unwrap();
    symlink(tmp.path().join("secret"), root.join("etc/link")).unwrap();
    symlink("/", root.join("up")).unwrap();
    for path in [&b"../secret"[..], b"etc/link", b"up/../secret", b"/secret"] {
        let mut skeleton = SkeletonWriter::new(Vec::new()).unwrap();
        skeleton.raw(&[0; 512]).unwrap();
        skeleton.file(path, 12).unwrap();
        let skeleton = skeleton.finish().unwrap();
        let err = again(&skeleton, &root, Compression::None).unwrap_err();
        assert!(matches!(err, LayerError::Io { .. }), "{}: {err}", String::from_utf8_lossy(path));
    }
    // A corrupt skeleton is an error, not a short layer.
    let err = again(b"not a skeleton", &root, Compression::None).unwrap_err();
    assert!(matches!(err, LayerError::Skeleton(_)), "{err}");
    let mut cut = SkeletonWriter::new(Vec::new()).unwrap();
    cut.raw(b"abc").unwrap();
    let mut cut = cut.finish().unwrap();
    let mut plain = Vec::new();
    zstd::stream::read::Decoder::new(&cut[..]).unwrap().read_to_end(&mut plain).unwrap();
    plain.pop(); // no end record
    cut = zstd::encode_all(&plain[..], 3).unwrap();
    assert!(matches!(again(&cut, &root, Compression::None).unwrap_err(), LayerError::Skeleton(_)));
}
