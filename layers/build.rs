//! Links libdeflate statically (Debian: `libdeflate-dev`, installed by `tests/setup.sh`).
//!
//! Static, because the compressed bytes of every layer depend on the deflate implementation
//! and its version: a binary must keep writing the same digests whatever shared libdeflate the
//! machine it runs on has (see `src/gzip.rs`).
fn main() {
    println!("cargo:rustc-link-lib=static=deflate");
    if let Ok(dir) = std::env::var("LIBDEFLATE_LIB_DIR") {
        println!("cargo:rustc-link-search=native={dir}");
    } else {
        for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"] {
            if std::path::Path::new(dir).join("libdeflate.a").exists() {
                println!("cargo:rustc-link-search=native={dir}");
                break;
            }
        }
    }
    println!("cargo:rerun-if-env-changed=LIBDEFLATE_LIB_DIR");
}
