//! Same tree → same bytes for any thread count; the outputs are accepted by gzip, zstd and GNU tar;
//! the digests are those of the bytes.

mod support;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use layers::{ApplyOptions, Compression, Digest, LayerInfo, TreeOptions, apply_layer, compress_tar, write_layer};
use support::{assert_same_tree, pseudo_random, run, snapshot};

/// ~20 MiB over many files: more 1 MiB chunks than 2 × 4 threads, so several batches.
fn build_tree(root: &Path) {
    for i in 0..40 {
        let dir = root.join(format!("pkg{:02}/share", i % 7));
        fs::create_dir_all(&dir).unwrap();
        let text = i % 3 != 0;
        let len = [300usize, 40_000, 700_000, 1_500_000][i % 4];
        fs::write(dir.join(format!("file{i}")), pseudo_random(len, i as u64 + 10, text)).unwrap();
    }
    for i in 0..300 {
        let dir = root.join(format!("small/{}", i % 13));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("s{i}.py")), pseudo_random(100 + i * 37, i as u64, true)).unwrap();
    }
}

fn layer(root: &Path, c: Compression, threads: usize, path: &Path) -> LayerInfo {
    let opts = TreeOptions { source_date_epoch: Some(1_700_000_000), threads: Some(threads), ..Default::default() };
    write_layer(root, &opts, c, fs::File::create(path).unwrap()).unwrap()
}

#[test]
fn output_is_independent_of_thread_count_and_readable_by_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_tree(&src);
    let out = |name: &str| tmp.path().join(name);

    let plain = layer(&src, Compression::None, 1, &out("l.tar"));
    assert!(plain.uncompressed_size > 16 << 20, "tree too small: {}", plain.uncompressed_size);
    assert_eq!(plain.digest, plain.diff_id);
    assert_eq!(plain.size, plain.uncompressed_size);

    for (c, ext) in [(Compression::default(), "gz"), (Compression::Zstd { level: 3 }, "zst")] {
        let runs: Vec<LayerInfo> =
            [1, 2, 4, 2].iter().map(|&t| layer(&src, c, t, &out(&format!("l{t}.tar.{ext}")))).collect();
        for r in &runs[1..] {
            assert_eq!(r, &runs[0], "{ext}: output differs between thread counts");
        }
        let bytes1 = fs::read(out(&format!("l1.tar.{ext}"))).unwrap();
        let bytes4 = fs::read(out(&format!("l4.tar.{ext}"))).unwrap();
        assert!(bytes1 == bytes4, "{ext}: bytes differ between 1 and 4 threads");
        let info = &runs[0];
        assert_eq!(info.digest, Digest::of_bytes(&bytes1));
        assert_eq!(info.size, bytes1.len() as u64);
        assert_eq!(info.diff_id, plain.diff_id, "{ext}: diff_id must not depend on compression");
        assert_eq!(info.uncompressed_size, plain.uncompressed_size);
        assert_eq!(info.entries, plain.entries);
        assert!(info.size < info.uncompressed_size / 2, "{ext}: does not compress: {info:?}");
    }

    let gz = out("l2.tar.gz");
    let zst = out("l2.tar.zst");
    run(Command::new("gzip").arg("-t").arg(&gz));
    run(Command::new("zstd").arg("-q").arg("-t").arg(&zst));
    let unzipped = run(Command::new("gzip").arg("-dc").arg(&gz));
    assert_eq!(Digest::of_bytes(&unzipped), plain.diff_id, "diff_id != sha256(gzip -dc)");
    assert!(unzipped == fs::read(out("l.tar")).unwrap());
    let unzstd = run(Command::new("zstd").args(["-q", "-dc"]).arg(&zst));
    assert_eq!(Digest::of_bytes(&unzstd), plain.diff_id, "diff_id != sha256(zstd -dc)");

    for (flag, file) in [("-z", &gz), ("--zstd", &zst)] {
        let listing = String::from_utf8(run(Command::new("tar").arg(flag).arg("-tvf").arg(file))).unwrap();
        assert_eq!(listing.lines().count() as u64, plain.entries, "tar {flag} listing:\n{listing}");
        assert!(listing.contains(" pkg00/share/file0\n") && listing.contains(" small/0/\n"), "{listing}");
        assert!(!listing.contains("./"), "paths must be relative without ./:\n{listing}");
    }

    // Re-compressing the existing tar gives the same blob and entry count.
    let mut blob = Vec::new();
    let again =
        compress_tar(fs::File::open(out("l.tar")).unwrap(), Compression::default(), Some(3), &mut blob).unwrap();
    assert_eq!(again.digest, Digest::of_bytes(&fs::read(&gz).unwrap()));
    assert_eq!((again.diff_id, again.entries), (plain.diff_id, plain.entries));

    // Multi-member gzip (two `gzip` runs concatenated) and zstd both apply to the same tree.
    let tar = fs::read(out("l.tar")).unwrap();
    let mut multi = Vec::new();
    for part in [&tar[..tar.len() / 3], &tar[tar.len() / 3..]] {
        let mut child = Command::new("gzip")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let part = part.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&part).unwrap());
        let o = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(o.status.success());
        multi.extend(o.stdout);
    }
    let want = snapshot(&src);
    for (name, data) in [("multi-member gzip", multi), ("zstd", fs::read(&zst).unwrap())] {
        let dst = tmp.path().join(name.replace(' ', "-"));
        fs::create_dir(&dst).unwrap();
        let stats = apply_layer(&data[..], &dst, &ApplyOptions { same_owner: true, ..Default::default() }).unwrap();
        assert_eq!(stats.entries, plain.entries, "{name}");
        let got = snapshot(&dst);
        let mut w = want.clone();
        for n in w.values_mut() {
            n.mtime = n.mtime.min(1_700_000_000);
        }
        assert_same_tree(name, &got, &w);
    }
}

#[test]
fn invalid_levels_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for c in [Compression::Gzip { level: 13 }, Compression::Zstd { level: 99 }] {
        let err = write_layer(tmp.path(), &TreeOptions::default(), c, Vec::new()).unwrap_err();
        assert!(err.to_string().contains("compression level"), "{err}");
    }
}

#[test]
fn compress_tar_refuses_non_tar_input() {
    let junk = vec![0x55u8; 4096];
    let err = compress_tar(&junk[..], Compression::default(), Some(1), Vec::new()).unwrap_err();
    assert!(matches!(err, layers::LayerError::Stream { .. }), "{err:?}");
}
