//! Tree → layer → applied tree gives back the same tree, and GNU tar reads the layer the same way.

mod support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use layers::{
    ApplyOptions, Compression, Digest, TreeOptions, WhiteoutMode, apply_layer, uncompressed_digest, write_layer,
};
use support::{assert_same_tree, pseudo_random, run, set_mtime, snapshot};

const EPOCH: i64 = 1_700_000_000;

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

/// A tree with every kind of entry a rootfs layer carries.
fn build_tree(root: &Path) -> bool {
    let p = |s: &str| root.join(s);
    for d in ["etc", "usr/bin", "usr/lib", "tmp", "srv/group", "var/empty", "dev"] {
        fs::create_dir_all(p(d)).unwrap();
    }
    fs::write(p("etc/passwd"), b"root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(p("etc/shadow"), b"root:*:19000:0:99999:7:::\n").unwrap();
    chmod(&p("etc/shadow"), 0o600);
    fs::write(p("etc/sudoers"), b"root ALL=(ALL) ALL\n").unwrap();
    chmod(&p("etc/sudoers"), 0o440);
    fs::write(p("usr/bin/su"), pseudo_random(70_000, 1, false)).unwrap();
    chmod(&p("usr/bin/su"), 0o4755);
    fs::write(p("usr/bin/wall"), b"#!/bin/sh\n").unwrap();
    chmod(&p("usr/bin/wall"), 0o2755);
    chmod(&p("tmp"), 0o1777);
    chmod(&p("srv/group"), 0o2775);
    // 3 MiB of mixed data crosses several 1 MiB gzip chunks.
    let mut big = pseudo_random(2 << 20, 2, true);
    big.extend(pseudo_random(1 << 20, 3, false));
    fs::write(p("usr/lib/libbig.so"), big).unwrap();
    fs::write(p("var/empty/zero"), b"").unwrap();
    // Symlinks: absolute (dangling here, fine in an image), relative, directory link.
    symlink("/usr/lib64", p("lib64")).unwrap();
    symlink("su", p("usr/bin/sudo")).unwrap();
    symlink("usr/bin", p("bin")).unwrap();
    // Hardlinks, one across directories.
    fs::write(p("usr/bin/python3.11"), b"python").unwrap();
    fs::hard_link(p("usr/bin/python3.11"), p("usr/bin/python3")).unwrap();
    fs::hard_link(p("usr/bin/python3.11"), p("usr/lib/python-link")).unwrap();
    // Kolla-style ids.
    fs::write(p("srv/group/nova.conf"), b"[DEFAULT]\n").unwrap();
    chown(&p("srv/group/nova.conf"), 42400, 42400);
    chown(&p("srv/group"), 42400, 42401);
    chown(&p("usr/bin/sudo"), 42400, 42400);
    // Names and link targets over 100 bytes (PAX path / linkpath).
    let long_dir = "usr/share/".to_string() + &"d".repeat(60) + "/" + &"e".repeat(60);
    fs::create_dir_all(p(&long_dir)).unwrap();
    fs::write(p(&format!("{long_dir}/{}", "f".repeat(120))), b"long").unwrap();
    symlink("../".repeat(3) + &"t".repeat(140), p("usr/lib/longlink")).unwrap();
    // xattrs: user.* on a file and a directory; a file capability when the fs allows it.
    xattr::set(p("etc/passwd"), "user.test", b"hello").unwrap();
    xattr::set(p("srv/group"), "user.dir", b"d").unwrap();
    // VFS_CAP_REVISION_2 | EFFECTIVE, permitted = CAP_NET_RAW (bit 13).
    let mut cap = vec![0u8; 20];
    cap[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    cap[4..8].copy_from_slice(&(1u32 << 13).to_le_bytes());
    let has_cap = xattr::set(p("usr/bin/wall"), "security.capability", &cap).is_ok();
    // Special files (the tests run as root).
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p("dev/null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p("dev/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // mtimes: some after the epoch (clamped), some before (kept); directories last.
    let mut all: Vec<_> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .contents_first(true)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .collect();
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, path) in all.iter().enumerate() {
        set_mtime(path, if i % 2 == 0 { EPOCH + 1000 + i as i64 } else { EPOCH - 1000 - i as i64 });
    }
    has_cap
}

#[test]
fn tree_layer_apply_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let has_cap = build_tree(&src);
    assert!(has_cap, "security.capability could not be set (the tests run as root)");
    let mut want = snapshot(&src);
    for n in want.values_mut() {
        n.mtime = n.mtime.min(EPOCH);
    }
    assert!(want["usr/bin/wall"].xattrs.contains_key("security.capability"));

    let opts = TreeOptions { source_date_epoch: Some(EPOCH), ..Default::default() };
    let layer = tmp.path().join("layer.tar.gz");
    let info = write_layer(&src, &opts, Compression::default(), fs::File::create(&layer).unwrap()).unwrap();
    assert_eq!(info.entries as usize, want.len(), "one tar entry per file");
    assert_eq!(info.size, fs::metadata(&layer).unwrap().len());
    assert_eq!(info.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
    let (diff_id, _) = uncompressed_digest(fs::File::open(&layer).unwrap()).unwrap();
    assert_eq!(diff_id, info.diff_id);
    assert_eq!(info.digest, Digest::of_bytes(&fs::read(&layer).unwrap()), "and the blob digest is of the bytes");
    assert_ne!(diff_id, info.digest);

    for whiteouts in [WhiteoutMode::Apply, WhiteoutMode::Overlay] {
        let dst = tmp.path().join(format!("dst-{whiteouts:?}"));
        fs::create_dir(&dst).unwrap();
        let stats = apply_layer(
            fs::File::open(&layer).unwrap(),
            &dst,
            &ApplyOptions { whiteouts, same_owner: true, ..Default::default() },
        )
        .unwrap();
        assert_eq!(stats.entries, info.entries);
        assert_eq!(stats.skipped_devices, 0);
        assert_eq!(stats.diff_id, info.diff_id, "the applier hashes the uncompressed stream it reads");
        assert_same_tree("applied layer", &snapshot(&dst), &want);
    }

    // An independent reader: GNU tar extracts the same tree (types, modes, owners, xattrs, links).
    let gnu = tmp.path().join("gnu");
    fs::create_dir(&gnu).unwrap();
    run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--same-owner", "-xpzf"])
        .arg(&layer)
        .arg("-C")
        .arg(&gnu));
    let mut got = snapshot(&gnu);
    // GNU tar does not restore symlink mtimes; compare those on the file kinds only.
    for (k, n) in got.iter_mut() {
        if n.kind == 'l' {
            n.mtime = want[k].mtime;
        }
    }
    assert_same_tree("GNU tar extraction", &got, &want);

    // Without an epoch the mtimes are kept as they are.
    let plain = tmp.path().join("plain.tar");
    write_layer(&src, &TreeOptions::default(), Compression::None, fs::File::create(&plain).unwrap()).unwrap();
    let dst = tmp.path().join("dst-noepoch");
    fs::create_dir(&dst).unwrap();
    apply_layer(fs::File::open(&plain).unwrap(), &dst, &ApplyOptions { same_owner: true, ..Default::default() })
        .unwrap();
    assert_same_tree("layer without epoch", &snapshot(&dst), &snapshot(&src));
}

#[test]
fn tar_listing_is_relative_and_sorted() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for d in ["b", "a-c", "a/x"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    fs::write(src.join("a/x/f"), b"1").unwrap();
    fs::write(src.join("a/z"), b"2").unwrap();
    fs::write(src.join("a-c/g"), b"3").unwrap();
    let mut out = Vec::new();
    write_layer(&src, &TreeOptions::default(), Compression::None, &mut out).unwrap();
    let mut ar = tar::Archive::new(&out[..]);
    let names: Vec<String> =
        ar.entries().unwrap().map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap()).collect();
    // Depth-first, each directory sorted by name bytes (Go filepath.Walk / Docker order).
    assert_eq!(names, ["a/", "a/x/", "a/x/f", "a/z", "a-c/", "a-c/g", "b/"]);
    // Headers carry no user or group names.
    let mut ar = tar::Archive::new(&out[..]);
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().username_bytes(), Some(&b""[..]));
        assert_eq!(e.header().groupname_bytes(), Some(&b""[..]));
    }
}

#[test]
fn missing_root_is_an_error_naming_it() {
    let err = write_layer(Path::new("/nonexistent/kolla-oci"), &TreeOptions::default(), Compression::None, Vec::new())
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/kolla-oci"), "{err}");
    let err = apply_layer(&b""[..], Path::new("/nonexistent/kolla-oci"), &ApplyOptions::default()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/kolla-oci"), "{err}");
}
