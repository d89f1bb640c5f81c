//! Fuzz the expander: the input is a Dockerfile body run after a fixed prelude that sets
//! variables of every kind (build args, global ARG, base Env, ENV, empty and unset), and,
//! separately, a single word placed into a LABEL. Nothing may panic; words without any
//! special character must expand to themselves.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use kolla_oci::dockerfile::{self, Expander, Kind};
use libfuzzer_sys::fuzz_target;

const PRELUDE: &str = "ARG G=global\nFROM base:$G\nARG G\nARG B=dflt E=\nENV V=value P=/usr/local/lib/x.tar.gz\n";

fn expander() -> Expander {
    let args = BTreeMap::from([
        ("B".to_string(), "from-build-arg".to_string()),
        ("http_proxy".to_string(), "http://p:3128".to_string()),
    ]);
    Expander::new(args)
}

fn run(text: &str) -> Option<Vec<Kind>> {
    let df = dockerfile::parse(Path::new("Dockerfile"), text).ok()?;
    let mut ex = expander();
    let mut out = Vec::new();
    for ins in &df.instructions {
        let e = match ex.expand(ins) {
            Ok(e) => e,
            Err(err) => {
                assert!(err.to_string().starts_with("Dockerfile:"));
                return None;
            }
        };
        if matches!(e.kind, Kind::From(_)) {
            ex.set_base_env(&["PATH=/usr/bin:/bin".to_string(), "HOME=/root".to_string()]);
        }
        out.push(e.kind);
    }
    let _ = (ex.run_env(), ex.config_env(), ex.unused_build_args());
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    run(&format!("{PRELUDE}{input}"));

    // The input as one LABEL word.
    let word: String = input.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    if word.is_empty() || word.trim() != word || word.chars().any(char::is_whitespace) {
        return;
    }
    let kinds = run(&format!("{PRELUDE}LABEL l={word}\n"));
    let plain = !word.contains(['$', '\'', '"', '\\', '=', '`', '#']);
    if plain {
        let kinds = kinds.expect("a plain word always expands");
        match kinds.last() {
            Some(Kind::Label(kvs)) => assert_eq!(kvs[0].value, word),
            other => panic!("{other:?}"),
        }
    }
});
