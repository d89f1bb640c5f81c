//! Fuzz `layers::apply_layer`: any byte stream (plain, gzip or zstd tar) must give an error or a write
//! confined to the root — never a panic, and never a file next to the root.
#![no_main]

use std::fs;

use layers::{ApplyOptions, WhiteoutMode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("root");
    fs::create_dir(&root).expect("root");
    fs::write(tmp.path().join("sentinel"), b"untouched").expect("sentinel");
    for whiteouts in [WhiteoutMode::Apply, WhiteoutMode::Overlay] {
        let opts = ApplyOptions { whiteouts, ..Default::default() };
        let _ = layers::apply_layer(data, &root, &opts);
        let mut names: Vec<_> = fs::read_dir(tmp.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
        names.sort();
        assert_eq!(names, ["root", "sentinel"], "something was written next to the root");
        assert_eq!(fs::read(tmp.path().join("sentinel")).expect("sentinel"), b"untouched");
    }
});
