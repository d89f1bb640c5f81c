//! Command-line access to the layer engine for `benches/peers.sh` (side-by-side runs against
//! openssl, pigz and umoci) and for poking at layers by hand.
//!
//! ```text
//! layertool hash-speed MIB            sha256 of MIB MiB in memory, 1 MiB updates; MB/s (wall, CPU)
//! layertool hash FILE                 sha256 of a file
//! layertool gzip TAR [OPTS]           compress_tar: re-hash + compress an existing tar
//! layertool tree DIR [OPTS]           write_layer: directory → layer
//! layertool apply LAYER DIR           apply_layer (whiteouts applied, owners kept)
//! layertool split LAYER DIR SKEL [OPTS] split_layer: LAYER's skeleton off DIR (its extraction, overlay form)
//! layertool regen SKEL DIR [OPTS]     regenerate: the layer again from SKEL and DIR
//! OPTS: -t THREADS, -l GZIP_LEVEL (default: the library's, 4), --zstd LEVEL, --none, -o OUT (default /dev/null)
//! ```
//! Results go to stdout as `key=value` lines; `seconds=` is the time of the operation alone.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::process::ExitCode;
use std::time::Instant;

use layers::{ApplyOptions, Compression, HashingWriter, LayerInfo, TreeOptions};

struct Opts {
    threads: Option<usize>,
    compression: Compression,
    out: String,
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts { threads: None, compression: Compression::default(), out: "/dev/null".into() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "-t" => o.threads = Some(val()?.parse().map_err(|e| format!("-t: {e}"))?),
            "-l" => o.compression = Compression::Gzip { level: val()?.parse().map_err(|e| format!("-l: {e}"))? },
            "--zstd" => {
                o.compression = Compression::Zstd { level: val()?.parse().map_err(|e| format!("--zstd: {e}"))? }
            }
            "--none" => o.compression = Compression::None,
            "-o" => o.out = val()?.clone(),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

fn print_info(info: &LayerInfo, secs: f64) {
    println!("digest={}", info.digest);
    println!("diff_id={}", info.diff_id);
    println!("size={}", info.size);
    println!("uncompressed_size={}", info.uncompressed_size);
    println!("entries={}", info.entries);
    println!("seconds={secs:.4}");
    println!("input_mb_per_s={:.1}", info.uncompressed_size as f64 / secs / 1e6);
}

fn run(args: &[String]) -> Result<(), String> {
    let cmd = args.first().map(String::as_str).unwrap_or("");
    let arg = |i: usize| args.get(i).ok_or_else(|| format!("{cmd}: missing argument {i}"));
    match cmd {
        "hash-speed" => {
            let mib: usize = arg(1)?.parse().map_err(|e| format!("MIB: {e}"))?;
            // Non-trivial content; hashing speed does not depend on it, but keep it honest.
            let buf: Vec<u8> = (0..1usize << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            let mut w = HashingWriter::new(std::io::sink());
            let (start, cpu0) = (Instant::now(), thread_cpu_seconds());
            for _ in 0..mib {
                w.write_all(&buf).map_err(|e| e.to_string())?;
            }
            let (_, digest, n) = w.finish();
            let (secs, cpu) = (start.elapsed().as_secs_f64(), thread_cpu_seconds() - cpu0);
            println!("digest={digest}");
            println!("seconds={secs:.4}");
            println!("mb_per_s={:.1}", n as f64 / secs / 1e6);
            // Per CPU second, as `openssl speed` reports by default (user time).
            println!("cpu_mb_per_s={:.1}", n as f64 / cpu / 1e6);
        }
        "hash" => {
            let mut f = File::open(arg(1)?).map_err(|e| format!("{}: {e}", args[1]))?;
            let mut w = HashingWriter::new(std::io::sink());
            let start = Instant::now();
            std::io::copy(&mut f, &mut w).map_err(|e| e.to_string())?;
            let (_, digest, n) = w.finish();
            println!("digest={digest}");
            println!("bytes={n}");
            println!("seconds={:.4}", start.elapsed().as_secs_f64());
        }
        "gzip" | "tree" => {
            let o = parse_opts(&args[2..])?;
            let out = BufWriter::with_capacity(1 << 20, File::create(&o.out).map_err(|e| format!("{}: {e}", o.out))?);
            let start = Instant::now();
            let info = if cmd == "gzip" {
                let f = File::open(arg(1)?).map_err(|e| format!("{}: {e}", args[1]))?;
                layers::compress_tar(BufReader::with_capacity(1 << 20, f), o.compression, o.threads, out)
            } else {
                let opts = TreeOptions { threads: o.threads, ..Default::default() };
                layers::write_layer(arg(1)?.as_ref(), &opts, o.compression, out)
            }
            .map_err(|e| error_chain(&e))?;
            print_info(&info, start.elapsed().as_secs_f64());
        }
        "apply" => {
            let f = File::open(arg(1)?).map_err(|e| format!("{}: {e}", args[1]))?;
            let opts = ApplyOptions { same_owner: true, ..Default::default() };
            let start = Instant::now();
            let stats = layers::apply_layer(BufReader::new(f), arg(2)?.as_ref(), &opts).map_err(|e| error_chain(&e))?;
            println!("entries={}", stats.entries);
            println!("bytes={}", stats.bytes);
            println!("skipped_devices={}", stats.skipped_devices);
            println!("seconds={:.4}", start.elapsed().as_secs_f64());
        }
        "split" => {
            let o = parse_opts(&args[4.min(args.len())..])?;
            let blob = File::open(arg(1)?).map_err(|e| format!("{}: {e}", args[1]))?;
            let skel = File::create(arg(3)?).map_err(|e| format!("{}: {e}", args[3]))?;
            let start = Instant::now();
            let split = layers::split_layer(
                BufReader::with_capacity(1 << 20, blob),
                arg(2)?.as_ref(),
                o.compression,
                o.threads,
                skel,
            )
            .map_err(|e| error_chain(&e))?;
            println!("blob={}", split.blob.0);
            println!("same_blob={}", split.regenerated.digest == split.blob.0);
            print_info(&split.regenerated, start.elapsed().as_secs_f64());
        }
        "regen" => {
            let o = parse_opts(&args[3.min(args.len())..])?;
            let skel = File::open(arg(1)?).map_err(|e| format!("{}: {e}", args[1]))?;
            let out = BufWriter::new(File::create(&o.out).map_err(|e| format!("{}: {e}", o.out))?);
            let start = Instant::now();
            let info = layers::regenerate(BufReader::new(skel), arg(2)?.as_ref(), o.compression, o.threads, out)
                .map_err(|e| error_chain(&e))?;
            print_info(&info, start.elapsed().as_secs_f64());
        }
        _ => {
            return Err("usage: layertool hash-speed MIB | hash FILE | gzip TAR [OPTS] | tree DIR [OPTS] | \
                 apply LAYER DIR | split LAYER DIR SKEL [OPTS] | regen SKEL DIR [OPTS]"
                .into());
        }
    }
    Ok(())
}

/// CPU time of the calling thread (first field of /proc/thread-self/schedstat, in ns).
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e9)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("layertool: {e}");
            ExitCode::FAILURE
        }
    }
}
