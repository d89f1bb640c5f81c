//! Links libdeflate statically (Debian: `libdeflate-dev`, installed by `tests/setup.sh`).
//!
//! Static, because the compressed bytes of every layer depend on the deflate implementation
//! and its version: a binary must keep writing the same digests whatever shared libdeflate the
//! machine it runs on has (see `src/gzip.rs`).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBDEFLATE_LIB_DIR");
    let candidates: Vec<PathBuf> = match std::env::var_os("LIBDEFLATE_LIB_DIR") {
        Some(dir) => vec![dir.into()],
        None => ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"]
            .iter()
            .map(PathBuf::from)
            .collect(),
    };
    let Some(dir) = candidates.iter().find(|d| d.join("libdeflate.a").exists()) else {
        panic!(
            "libdeflate.a not found in {candidates:?}: install libdeflate-dev (./tests/setup.sh does), \
             or set LIBDEFLATE_LIB_DIR to the directory that has it"
        );
    };
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=static=deflate");
}
