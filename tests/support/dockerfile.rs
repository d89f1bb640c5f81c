//! Helpers for the `dockerfile_*` tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::Path;

use kolla_oci::dockerfile::{self, Dockerfile, DockerfileError, Expander, Instruction, Kind};

/// The path every test Dockerfile pretends to live at (it appears in error messages).
pub const PATH: &str = "images/test/Dockerfile";

/// Parse, panicking with the error on failure.
pub fn parse(text: &str) -> Dockerfile {
    dockerfile::parse(Path::new(PATH), text).unwrap_or_else(|e| panic!("parse failed: {e}"))
}

/// Parse, expecting an error.
pub fn parse_err(text: &str) -> DockerfileError {
    match dockerfile::parse(Path::new(PATH), text) {
        Ok(df) => panic!("expected an error, parsed {:#?}", df.instructions),
        Err(e) => e,
    }
}

/// The kinds of the instructions after the leading `FROM` line of `body`.
pub fn body_kinds(body: &str) -> Vec<Kind> {
    let df = parse(&format!("FROM scratch\n{body}"));
    df.instructions.into_iter().skip(1).map(|i| i.kind).collect()
}

/// The single instruction `line` (after a FROM), parsed.
pub fn one(line: &str) -> Kind {
    let mut kinds = body_kinds(line);
    assert_eq!(kinds.len(), 1, "{line:?} gave {kinds:#?}");
    kinds.remove(0)
}

/// Build-argument map from pairs.
pub fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Parse and expand every instruction in order; returns the expander for scope queries.
pub fn expand_all(text: &str, build_args: &[(&str, &str)]) -> (Vec<Instruction>, Expander) {
    let df = parse(text);
    let mut ex = Expander::new(args(build_args));
    let out = df.instructions.iter().map(|i| ex.expand(i).unwrap_or_else(|e| panic!("expand failed: {e}"))).collect();
    (out, ex)
}

/// Parse and expand, expecting an expansion-time error.
pub fn expand_err(text: &str, build_args: &[(&str, &str)]) -> DockerfileError {
    let df = parse(text);
    let mut ex = Expander::new(args(build_args));
    for i in &df.instructions {
        if let Err(e) = ex.expand(i) {
            return e;
        }
    }
    panic!("expected an expansion error for {text:?}");
}

/// Expand `body` (after `FROM scratch`) and return the kinds after FROM.
pub fn expanded(body: &str, build_args: &[(&str, &str)]) -> Vec<Kind> {
    let (ins, _) = expand_all(&format!("FROM scratch\n{body}"), build_args);
    ins.into_iter().skip(1).map(|i| i.kind).collect()
}

/// `strings` → `Vec<String>`.
pub fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Assert `err` renders as `PATH:line: …` and its message contains `needle`.
pub fn assert_err_at(err: &DockerfileError, line: usize, needle: &str) {
    let s = err.to_string();
    assert!(s.starts_with(&format!("{PATH}:{line}: ")), "error {s:?} is not at {PATH}:{line}");
    assert_eq!(err.line(), line, "{s}");
    assert!(s.contains(needle), "error {s:?} does not mention {needle:?}");
}
