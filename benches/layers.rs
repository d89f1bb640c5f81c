//! Criterion benches of the layer engine's hot paths: sha256, the parallel gzip pipeline and
//! tree → layer. Sized for a small (2-core) machine: 10 samples, short measurement.
//!
//! `cargo bench --bench layers`. Peer comparisons (openssl, pigz, umoci) are in `benches/peers.sh`.

use std::hint::black_box;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use layers::{Compression, HashingWriter, TreeOptions, compress_tar, write_layer};

const MIB: usize = 1 << 20;

fn sha_backend() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let sha = std::arch::is_x86_feature_detected!("sha");
        let sse41 = std::arch::is_x86_feature_detected!("sse4.1");
        let which = if sha && sse41 { "SHA-NI intrinsics" } else { "portable (soft)" };
        format!("x86_64: sha={sha} sse4.1={sse41} -> sha2 backend: {which}")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        format!("{}: sha2 backend chosen at run time", std::env::consts::ARCH)
    }
}

/// A 64 MiB tar of real files from /usr/lib (shared libraries, Python, data), or of generated
/// text-like data when /usr/lib holds too little.
fn realistic_tar(size: usize) -> (Vec<u8>, &'static str) {
    let mut b = tar::Builder::new(Vec::with_capacity(size + MIB));
    let mut total = 0usize;
    let files = walkdir::WalkDir::new("/usr/lib").sort_by_file_name().into_iter().filter_map(Result::ok);
    for e in files.filter(|e| e.file_type().is_file()) {
        if total >= size {
            break;
        }
        let Ok(data) = std::fs::read(e.path()) else { continue };
        let data = &data[..data.len().min(size - total)];
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        let name = e.path().strip_prefix("/").unwrap_or(e.path());
        if b.append_data(&mut h, name, data).is_ok() {
            total += data.len();
        }
    }
    if total >= size {
        return (b.into_inner().unwrap(), "/usr/lib files");
    }
    let words: &[&[u8]] = &[b"nova ", b"keystone ", b"import os\n", b"def main():\n", b"    return 0\n", b"{}\n"];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(words[(x % words.len() as u64) as usize]);
    }
    data.truncate(size);
    let mut b = tar::Builder::new(Vec::with_capacity(size + MIB));
    let mut h = tar::Header::new_ustar();
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "generated.txt", &data[..]).unwrap();
    (b.into_inner().unwrap(), "generated text")
}

/// A copy of a realistic tree (Python's standard library, else /usr/share/doc) in a temp dir.
fn realistic_tree() -> (tempfile::TempDir, PathBuf, u64) {
    let src = ["/usr/lib/python3.11", "/usr/lib/python3", "/usr/share/doc"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_dir())
        .expect("no /usr/lib/python3* or /usr/share/doc to copy");
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("tree");
    let ok = Command::new("cp").arg("-a").arg(src).arg(&dst).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "cp -a {} failed", src.display());
    let info = write_layer(&dst, &TreeOptions::default(), Compression::None, io::sink()).unwrap();
    println!(
        "tree: copy of {} ({} entries, {} MB of tar)",
        src.display(),
        info.entries,
        info.uncompressed_size / 1_000_000
    );
    (tmp, dst, info.uncompressed_size)
}

fn benches(c: &mut Criterion) {
    println!("{}", sha_backend());

    let data: Vec<u8> = (0..64 * MIB).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let mut g = c.benchmark_group("sha256");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("64MiB_in_1MiB_updates", |b| {
        b.iter(|| {
            let mut w = HashingWriter::new(io::sink());
            for chunk in data.chunks(MIB) {
                w.write_all(chunk).unwrap();
            }
            black_box(w.finish().1)
        })
    });
    g.finish();
    drop(data);

    let (tar, what) = realistic_tar(64 * MIB);
    println!("gzip input: {what}, {} MB", tar.len() / 1_000_000);
    let mut g = c.benchmark_group("gzip_pipeline_L6");
    // Iterations take about a second: the same count per sample, not 1..10 × k.
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Bytes(tar.len() as u64));
    for threads in [1, 2] {
        g.bench_function(format!("{threads}_threads"), |b| {
            b.iter(|| {
                black_box(compress_tar(&tar[..], Compression::Gzip { level: 6 }, Some(threads), io::sink()).unwrap())
            })
        });
    }
    g.finish();
    drop(tar);

    let (_tmp, tree, bytes) = realistic_tree();
    let mut g = c.benchmark_group("tree_to_layer");
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(12));
    g.throughput(Throughput::Bytes(bytes));
    for (name, comp) in [("none", Compression::None), ("gzip6", Compression::Gzip { level: 6 })] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(write_layer(&tree, &TreeOptions::default(), comp, io::sink()).unwrap()))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(6))
}

criterion_group! { name = layer_benches; config = config(); targets = benches }
criterion_main!(layer_benches);
