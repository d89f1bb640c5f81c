//! Hostile or huge input ends in a clear error or a result, never in a hang, a stack
//! overflow or unbounded memory. (No timing assertions: these only have to complete;
//! throughput belongs in benches.)

#[path = "support/dockerfile.rs"]
mod support;

use kolla_oci::dockerfile::{Command, DockerfileError, Kind, MAX_HEREDOC_BYTES, MAX_LINE_BYTES};
use support::{assert_err_at, expand_err, expanded, parse, parse_err};

#[test]
fn two_hundred_thousand_continuation_lines() {
    let mut text = String::from("FROM a\nRUN echo \\\n");
    for _ in 0..200_000 {
        text.push_str("a \\\n");
    }
    text.push_str("end\nUSER x\n");
    let df = parse(&text);
    assert_eq!(df.instructions.len(), 3);
    let Kind::Run(r) = &df.instructions[1].kind else { panic!() };
    let Command::Shell(s) = &r.command else { panic!() };
    assert_eq!(s.len(), "echo ".len() + 200_000 * 2 + "end".len());
    assert_eq!((df.instructions[1].line, df.instructions[1].end_line), (2, 200_003));
    assert_eq!(df.instructions[2].line, 200_004);
}

#[test]
fn two_hundred_thousand_comment_lines_inside_a_continuation() {
    let mut text = String::from("FROM a\nRUN echo \\\n");
    for _ in 0..200_000 {
        text.push_str("# c \\\n");
    }
    text.push_str("  end\n");
    let df = parse(&text);
    assert_eq!(
        df.instructions[1].kind,
        Kind::Run(kolla_oci::dockerfile::RunSpec { command: Command::Shell("echo   end".into()), heredocs: vec![] })
    );
}

#[test]
fn overlong_logical_line_is_refused() {
    let mut text = String::from("FROM a\n\nRUN echo \\\n");
    let chunk = format!("{} \\\n", "x".repeat(1000));
    for _ in 0..(MAX_LINE_BYTES / 1000 + 2) {
        text.push_str(&chunk);
    }
    text.push_str("end\n");
    let e = parse_err(&text);
    assert!(matches!(e, DockerfileError::TooLarge { .. }), "{e}");
    assert_err_at(&e, 3, "longer than");
    // One physical line over the limit too.
    let e = parse_err(&format!("FROM a\nLABEL a={}\n", "y".repeat(MAX_LINE_BYTES + 1)));
    assert_err_at(&e, 2, "longer than");
}

#[test]
fn overlarge_heredoc_is_refused() {
    let line = format!("{}\n", "z".repeat(1 << 16));
    let body = line.repeat(MAX_HEREDOC_BYTES / line.len() + 1);
    let e = parse_err(&format!("FROM a\nCOPY <<EOF /f\n{body}EOF\n"));
    assert!(matches!(e, DockerfileError::TooLarge { .. }), "{e}");
    assert_err_at(&e, 2, "here-document");
}

#[test]
fn deep_substitution_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    let word = format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
    let e = expand_err(&format!("FROM a\nLABEL l={word}\n"), &[]);
    assert_err_at(&e, 2, "nested more than");
    // Reasonable nesting still works.
    let word = format!("{}x{}", "${A:-".repeat(50), "}".repeat(50));
    let k = expanded(&format!("LABEL l={word}\n"), &[]);
    assert_eq!(k[0], Kind::Label(vec![kolla_oci::dockerfile::KeyValue { key: "l".into(), value: "x".into() }]));
}

#[test]
fn expansion_output_is_bounded() {
    // A 512 KiB value referenced 64 times would expand to 32 MiB in one word.
    let big = "v".repeat(512 << 10);
    let refs = "$B".repeat(64);
    let e = expand_err(&format!("FROM a\nENV B={big}\nLABEL l={refs}\n"), &[]);
    assert!(matches!(e, DockerfileError::Expansion { .. }), "{e}");
    assert_err_at(&e, 3, "larger than");
    // Many words, each under the per-word limit, still hit the per-instruction budget.
    let words: Vec<String> = (0..40).map(|i| format!("k{i}={}", "$B".repeat(4))).collect();
    let e = expand_err(&format!("FROM a\nENV B={big}\nLABEL {}\n", words.join(" ")), &[]);
    assert!(matches!(e, DockerfileError::TooLarge { .. }), "{e}");
}

#[test]
fn many_words_in_one_instruction() {
    let ports: Vec<String> = (1..=60_000).map(|p| p.to_string()).collect();
    let k = expanded(&format!("EXPOSE {}\n", ports.join(" ")), &[]);
    let Kind::Expose(keys) = &k[0] else { panic!() };
    assert_eq!(keys.len(), 60_000);
    assert_eq!(keys[59_999], "60000/tcp");
}

#[test]
fn port_ranges_are_charged_to_the_budget() {
    let ranges = vec!["1-65535"; 2_000].join(" ");
    let e = expand_err(&format!("FROM a\nEXPOSE {ranges}\n"), &[]);
    assert!(matches!(e, DockerfileError::TooLarge { .. }), "{e}");
    assert_err_at(&e, 2, "expands to more than");
}

#[test]
fn long_substitution_patterns_are_refused() {
    let pat = "?".repeat(300);
    let e = expand_err(&format!("FROM a\nENV V=x\nLABEL l=${{V#{pat}}}\n"), &[]);
    assert_err_at(&e, 3, "pattern longer than");
}

#[test]
fn pathological_quotes_and_escapes_are_linear() {
    let text = format!("FROM a\nLABEL l=\"{}\"\n", "\\\"".repeat(300_000));
    let k = expanded(&text[7..], &[]);
    let Kind::Label(kvs) = &k[0] else { panic!() };
    assert_eq!(kvs[0].value.len(), 300_000);
}
