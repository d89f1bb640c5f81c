//! Fuzz `dockerfile::parse`: any text must give a Dockerfile or an error, never a panic,
//! and a parsed Dockerfile must be well-formed.
#![no_main]

use std::path::Path;

use kolla_oci::dockerfile::{self, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match dockerfile::parse(Path::new("Dockerfile"), text) {
        Ok(df) => {
            let lines = text.lines().count().max(1);
            let mut prev = 0;
            let mut froms = 0;
            for ins in &df.instructions {
                assert!(ins.line > prev, "lines must increase");
                assert!(ins.line <= ins.end_line && ins.end_line <= lines + 1);
                assert!(ins.original.len() <= dockerfile::MAX_LINE_BYTES);
                prev = ins.end_line;
                match &ins.kind {
                    Kind::From(_) => froms += 1,
                    Kind::Arg(_) => {}
                    k => assert_eq!(froms, 1, "{} before FROM", k.keyword()),
                }
                if let Kind::Run(r) = &ins.kind {
                    let _ = r.script();
                }
            }
            assert_eq!(froms, 1);
        }
        Err(e) => {
            let s = e.to_string();
            assert!(s.starts_with("Dockerfile:"), "{s}");
            assert!(e.line() >= 1);
        }
    }
});
