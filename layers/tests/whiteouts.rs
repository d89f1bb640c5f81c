//! A real overlayfs upper dir → layer with OCI whiteouts → applied flat (`Apply`) and as overlay
//! lowerdirs (`Overlay`): both give the merged view the overlay had.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use layers::{ApplyOptions, Compression, TreeOptions, WhiteoutMode, apply_layer, write_layer};
use support::{Node, assert_same_tree, mount_overlay, snapshot};

/// What must match between the overlay's merged view and the rebuilt trees (mtimes of
/// directories touched by the overlay differ by construction).
fn essence(tree: &BTreeMap<String, Node>) -> BTreeMap<String, Node> {
    tree.iter()
        .map(|(k, n)| {
            let mut n = n.clone();
            n.mtime = 0;
            n.link_group = None;
            (k.clone(), n)
        })
        .collect()
}

fn layer_bytes(root: &Path, overlay_upper: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let opts = TreeOptions { overlay_upper, source_date_epoch: None, threads: Some(2) };
    write_layer(root, &opts, Compression::Gzip { level: 6 }, &mut out).unwrap();
    out
}

/// (path, type, size) of every entry and whether any PAX record names an overlay xattr.
fn list(layer: &[u8]) -> (Vec<(String, char, u64)>, bool) {
    let mut ar = tar::Archive::new(flate2::read::MultiGzDecoder::new(layer));
    let mut out = Vec::new();
    let mut overlay_xattr = false;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for r in pax {
                overlay_xattr |= r.unwrap().key().unwrap().contains(".overlay.");
            }
        }
        let kind = e.header().entry_type().as_byte() as char;
        out.push((String::from_utf8(e.path_bytes().into_owned()).unwrap(), kind, e.size()));
    }
    (out, overlay_xattr)
}

#[test]
fn overlay_upper_to_layer_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |s: &str| {
        let p = tmp.path().join(s);
        fs::create_dir_all(&p).unwrap();
        p
    };
    let (lower, upper, work, merged) = (d("lower"), d("upper"), d("work"), d("merged"));
    fs::write(lower.join("gone"), b"deleted in the upper layer").unwrap();
    fs::write(lower.join("keep"), b"kept").unwrap();
    fs::create_dir_all(lower.join("replaced/sub")).unwrap();
    fs::write(lower.join("replaced/old"), b"old").unwrap();
    fs::write(lower.join("replaced/sub/deep"), b"deep").unwrap();
    fs::create_dir(lower.join("merged-dir")).unwrap();
    fs::write(lower.join("merged-dir/lower-file"), b"lower").unwrap();
    fs::write(lower.join("merged-dir/gone-too"), b"x").unwrap();

    let m = mount_overlay(&[&lower], Some((&upper, &work)), &merged);
    fs::remove_file(merged.join("gone")).unwrap();
    fs::remove_dir_all(merged.join("replaced")).unwrap();
    fs::create_dir(merged.join("replaced")).unwrap();
    fs::write(merged.join("replaced/new"), b"new").unwrap();
    fs::write(merged.join("merged-dir/upper-file"), b"upper").unwrap();
    fs::remove_file(merged.join("merged-dir/gone-too")).unwrap();
    fs::write(merged.join("added"), b"added").unwrap();
    let want = essence(&snapshot(&merged));
    m.unmount();
    assert!(want.contains_key("replaced/new") && !want.contains_key("replaced/old"));

    // The upper dir really holds overlayfs markers (else this test proves nothing).
    let ft = fs::symlink_metadata(upper.join("gone")).unwrap().file_type();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&ft), "no whiteout device in upper");
    assert_eq!(xattr::get(upper.join("replaced"), "user.overlay.opaque").unwrap().as_deref(), Some(&b"y"[..]));

    let base = layer_bytes(&lower, false);
    let diff = layer_bytes(&upper, true);
    let (entries, overlay_xattr) = list(&diff);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "added",
            ".wh.gone",
            "merged-dir/",
            "merged-dir/.wh.gone-too",
            "merged-dir/upper-file",
            "replaced/",
            "replaced/.wh..wh..opq",
            "replaced/new"
        ],
    );
    for (name, kind, size) in &entries {
        if name.contains(".wh.") {
            assert_eq!((*kind, *size), ('0', 0), "{name} must be an empty regular file");
        }
    }
    assert!(!overlay_xattr, "overlay xattrs leaked into the layer");

    // Flattened: base then diff in one directory.
    let flat = d("flat");
    let apply = ApplyOptions { whiteouts: WhiteoutMode::Apply, same_owner: true, ..Default::default() };
    apply_layer(&base[..], &flat, &apply).unwrap();
    apply_layer(&diff[..], &flat, &apply).unwrap();
    assert_same_tree("flattened", &essence(&snapshot(&flat)), &want);

    // Overlay: each layer in its own directory, stacked as lowerdirs.
    let (l1, l2, view) = (d("l1"), d("l2"), d("view"));
    let ovl = ApplyOptions { whiteouts: WhiteoutMode::Overlay, same_owner: true, ..Default::default() };
    apply_layer(&base[..], &l1, &ovl).unwrap();
    apply_layer(&diff[..], &l2, &ovl).unwrap();
    let ft = fs::symlink_metadata(l2.join("gone")).unwrap().file_type();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&ft), "Overlay mode wrote no whiteout device");
    let m = mount_overlay(&[&l2, &l1], None, &view);
    let got = essence(&snapshot(&view));
    m.unmount();
    assert_same_tree("overlay of applied layers", &got, &want);
}

#[test]
fn opaque_marker_spares_what_the_same_layer_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("d/sub")).unwrap();
    fs::write(root.join("d/lower"), b"l").unwrap();
    fs::write(root.join("d/sub/lower"), b"l").unwrap();
    // The marker comes after entries of the same layer (legal in a tar, if unusual).
    let layer = support::RawTar::new()
        .dir("d/")
        .dir("d/sub/")
        .file("d/sub/new", b"n")
        .file("d/new", b"n")
        .file("d/.wh..wh..opq", b"")
        .finish();
    apply_layer(&layer[..], &root, &ApplyOptions::default()).unwrap();
    let names: Vec<String> = snapshot(&root).into_keys().collect();
    assert_eq!(names, ["d", "d/new", "d/sub", "d/sub/new"]);
}
