//! Line handling: parser directives, continuations (with comments and empty lines inside,
//! both escape tokens) and here-documents. Expected values follow the Dockerfile reference
//! ("Parser directives", "escape", "Here-Documents") and BuildKit's `parser.Parse`.

#[path = "support/dockerfile.rs"]
mod support;

use kolla_oci::dockerfile::{Command, Heredoc, InlineFile, Kind, RunScript, RunSpec};
use support::{assert_err_at, body_kinds, expanded, parse, parse_err};

fn run(s: &str) -> Kind {
    Kind::Run(RunSpec { command: Command::Shell(s.into()), heredocs: vec![] })
}

fn run_spec(kind: &Kind) -> &RunSpec {
    match kind {
        Kind::Run(r) => r,
        other => panic!("not RUN: {other:?}"),
    }
}

fn doc(name: &str, content: &str, expand: bool, chomp: bool) -> Heredoc {
    Heredoc { name: name.into(), content: content.into(), expand, chomp }
}

// ---------------------------------------------------------------- continuations

#[test]
fn continuation_joins_without_stripping_indentation() {
    // BuildKit strips the escape token (and trailing blanks) and keeps the next line's
    // leading whitespace.
    assert_eq!(
        body_kinds("RUN apt-get update \\\n    && apt-get clean\n"),
        vec![run("apt-get update     && apt-get clean")]
    );
    assert_eq!(body_kinds("RUN a\\\nb\n"), vec![run("ab")]);
    // Blanks after the escape token still continue the line.
    assert_eq!(body_kinds("RUN a \\  \t\n b\n"), vec![run("a  b")]);
}

#[test]
fn comment_inside_continuation_is_dropped() {
    // Reference, "Format": comment lines are removed before the instruction is processed,
    // also in the middle of a continued instruction.
    let df = parse(
        "FROM a\nRUN apt-get install \\\n# the first package\n    pkg1 \\\n        # indented comment \\\n    pkg2\nUSER x\n",
    );
    assert_eq!(df.instructions[1].kind, run("apt-get install     pkg1     pkg2"));
    assert_eq!((df.instructions[1].line, df.instructions[1].end_line), (2, 6));
    assert_eq!(df.instructions[2].line, 7);
    assert!(df.warnings.is_empty());
}

#[test]
fn empty_line_inside_continuation_is_skipped_with_a_warning() {
    let df = parse("FROM a\nRUN one \\\n\n   \n  two\nUSER x\n");
    assert_eq!(df.instructions[1].kind, run("one   two"));
    assert_eq!(df.instructions[2].line, 6);
    assert_eq!(df.warnings.len(), 1);
    assert!(df.warnings[0].starts_with("images/test/Dockerfile:2: empty continuation line"));
}

#[test]
fn escaped_escape_does_not_continue() {
    // `\\` at the end is an escaped backslash, not a continuation (BuildKit's
    // `([^\\])\\[ \t]*$` needs a non-escape before the final one).
    let df = parse("FROM a\nRUN echo a\\\\\nUSER x\n");
    assert_eq!(df.instructions[1].kind, run("echo a\\\\"));
    assert_eq!(df.instructions[2].kind, Kind::User("x".into()));
}

#[test]
fn lone_escape_line_continues() {
    assert_eq!(body_kinds("RUN a \\\n\\\n b\n"), vec![run("a  b")]);
}

#[test]
fn continuation_at_end_of_file() {
    assert_eq!(body_kinds("RUN a \\\n"), vec![run("a")]);
}

// ---------------------------------------------------------------- directives

#[test]
fn backtick_escape_directive() {
    // Reference, "escape": with `# escape=`` `, the backtick continues lines and a
    // backslash is an ordinary character (Windows paths).
    let df = parse("# escape=`\nFROM windows\nCOPY testfile.txt c:\\\nRUN dir c:\\ `\n  && echo done\n");
    assert_eq!(df.escape, '`');
    let k: Vec<&Kind> = df.instructions.iter().map(|i| &i.kind).collect();
    let Kind::Copy(c) = k[1] else { panic!() };
    assert_eq!((c.sources.as_slice(), c.dest.as_str()), (&["testfile.txt".to_string()][..], "c:\\"));
    assert_eq!(*k[2], run("dir c:\\   && echo done"));
    assert_eq!(df.instructions[2].escape, '`');
}

#[test]
fn backtick_continuation_with_comment_inside() {
    let df = parse("# escape=`\n\nFROM a\nRUN one `\n  # note `\n  two\n");
    assert_eq!(df.instructions[1].kind, run("one   two"));
}

#[test]
fn directive_forms() {
    // Reference, "Parser directives": case-insensitive, blanks allowed around the name,
    // `=` and value; `syntax` is accepted (and ignored here).
    for header in
        ["#escape=`", "# ESCAPE = `", "#\tescape= `  ", "# syntax=docker/dockerfile:1\n# escape=`", "  # escape=`"]
    {
        let df = parse(&format!("{header}\nFROM a\nRUN x `\n y\n"));
        assert_eq!(df.escape, '`', "{header:?}");
        assert_eq!(df.instructions[1].kind, run("x  y"), "{header:?}");
    }
}

#[test]
fn directives_only_at_the_top() {
    // After a comment, a blank line or an instruction, `# escape=` is just a comment, and
    // so is an unknown directive (which also ends directive processing).
    for header in ["# hello\n# escape=`", "\n# escape=`", "# unknowndirective=value\n# escape=`"] {
        let df = parse(&format!("{header}\nFROM a\nRUN echo `\nUSER x\n"));
        assert_eq!(df.escape, '\\', "{header:?}");
        assert_eq!(df.instructions[1].kind, run("echo `"), "{header:?}");
    }
    let df = parse("FROM a\n# escape=`\nRUN a \\\n b\n");
    assert_eq!(df.instructions[1].kind, run("a  b"));
}

#[test]
fn directive_errors() {
    assert_err_at(&parse_err("# escape=`\n# escape=\\\nFROM a\n"), 2, "only one escape parser directive");
    assert_err_at(&parse_err("# escape=x\nFROM a\n"), 1, "invalid escape token 'x'");
}

// ---------------------------------------------------------------- here-documents

#[test]
fn run_heredoc_simple() {
    // Reference, "Here-Documents": `RUN <<EOF` runs the body with the default shell.
    let df = parse("FROM a\nRUN <<EOF\napt-get update\napt-get install -y vim\nEOF\nUSER x\n");
    let r = run_spec(&df.instructions[1].kind);
    assert_eq!(r.command, Command::Shell("<<EOF".into()));
    assert_eq!(r.heredocs, vec![doc("EOF", "apt-get update\napt-get install -y vim\n", true, false)]);
    assert_eq!(r.script(), RunScript::Shell { script: "apt-get update\napt-get install -y vim\n".into(), file: None });
    assert_eq!((df.instructions[1].line, df.instructions[1].end_line), (2, 5));
    assert_eq!(df.instructions[2].line, 6);
    assert_eq!(df.instructions[1].original, "RUN <<EOF");
}

#[test]
fn run_heredoc_chomp_strips_tabs() {
    let df = parse("FROM a\nRUN <<-EOT\n\techo one\n\t\techo two\n  echo three\n\tEOT\n");
    let r = run_spec(&df.instructions[1].kind);
    assert_eq!(r.heredocs[0], doc("EOT", "\techo one\n\t\techo two\n  echo three\n", true, true));
    assert_eq!(r.script(), RunScript::Shell { script: "echo one\necho two\n  echo three\n".into(), file: None });
}

#[test]
fn quoted_delimiter_disables_expansion() {
    for open in ["<<'EOF'", "<<\"EOF\"", "<<E\"O\"F"] {
        let df = parse(&format!("FROM a\nRUN {open}\necho $HOME\nEOF\n"));
        let r = run_spec(&df.instructions[1].kind);
        assert_eq!(r.heredocs, vec![doc("EOF", "echo $HOME\n", false, false)], "{open}");
    }
}

#[test]
fn run_heredoc_with_program_goes_to_the_shell() {
    // Reference, "Here-Documents": `RUN python3 <<EOF` feeds the body to python3 via the
    // shell's own here-document.
    let df = parse("FROM a\nRUN python3 <<EOF\nprint('hi')\nEOF\n");
    assert_eq!(
        run_spec(&df.instructions[1].kind).script(),
        RunScript::Shell { script: "python3 <<EOF\nprint('hi')\nEOF".into(), file: None }
    );
}

#[test]
fn run_heredoc_shebang_becomes_a_file() {
    let df = parse("FROM a\nRUN <<EOT\n#!/usr/bin/env python3\nprint(1)\nEOT\n");
    assert_eq!(
        run_spec(&df.instructions[1].kind).script(),
        RunScript::Shell {
            script: "/dev/pipes/EOT".into(),
            file: Some(InlineFile { name: "EOT".into(), content: "#!/usr/bin/env python3\nprint(1)\n".into() })
        }
    );
}

#[test]
fn several_heredocs_in_one_run() {
    // Reference, "Here-Documents", creating two files.
    let df = parse(
        "FROM a\nRUN <<FILE1 cat > file1 && <<FILE2 cat > file2\nI am\nfirst\nFILE1\nI am\nsecond\nFILE2\nUSER x\n",
    );
    let r = run_spec(&df.instructions[1].kind);
    assert_eq!(
        r.heredocs,
        vec![doc("FILE1", "I am\nfirst\n", true, false), doc("FILE2", "I am\nsecond\n", true, false)]
    );
    assert_eq!(
        r.script(),
        RunScript::Shell {
            script: "<<FILE1 cat > file1 && <<FILE2 cat > file2\nI am\nfirst\nFILE1\nI am\nsecond\nFILE2".into(),
            file: None
        }
    );
    assert_eq!(df.instructions[2].line, 9);
}

#[test]
fn heredoc_markers_that_are_not_heredocs() {
    // Quoted `<<EOF` and the exec form do not open here-documents.
    let df = parse("FROM a\nRUN echo \"<<EOF\"\nRUN [\"cat\", \"<<EOF\"]\nUSER x\n");
    assert_eq!(df.instructions.len(), 4);
    assert!(run_spec(&df.instructions[1].kind).heredocs.is_empty());
    assert!(run_spec(&df.instructions[2].kind).heredocs.is_empty());
}

#[test]
fn unterminated_heredoc() {
    let e = parse_err("FROM a\nRUN true\nRUN <<EOF\necho hi\nEOF \n");
    assert_err_at(&e, 3, "unterminated heredoc");
}

#[test]
fn copy_heredoc() {
    // Reference, "Here-Documents": `COPY <<EOF /app/foo` writes a file; unquoted
    // delimiter → the body is expanded.
    let df = parse("FROM a\nCOPY <<EOF /etc/motd\nhello \"$NAME\"\nEOF\n");
    let Kind::Copy(c) = &df.instructions[1].kind else { panic!() };
    assert!(c.sources.is_empty());
    assert_eq!(c.dest, "/etc/motd");
    assert_eq!(c.heredocs, vec![doc("EOF", "hello \"$NAME\"\n", true, false)]);
}

#[test]
fn copy_heredoc_chomp_and_paths() {
    let df = parse("FROM a\nCOPY --chmod=0755 script.sh <<-EOF /usr/local/bin/\n\t#!/bin/sh\n\techo hi\n\tEOF\n");
    let Kind::Copy(c) = &df.instructions[1].kind else { panic!() };
    assert_eq!(c.sources, vec!["script.sh".to_string()]);
    assert_eq!(c.heredocs, vec![doc("EOF", "#!/bin/sh\necho hi\n", true, true)]);
    assert_eq!(c.mode(), Some(0o755));
}

#[test]
fn copy_heredoc_expansion_keeps_quotes() {
    // BuildKit expands COPY heredoc bodies with quotes left alone (`SkipProcessQuotes`);
    // `\$` gives `$` and a quoted delimiter disables expansion.
    let k = expanded(
        "ENV NAME=world\nCOPY <<EOF /a\nhello \"$NAME\" '${NAME}' \\$NAME\nEOF\nCOPY <<'EOF' /b\nhello $NAME\nEOF\n",
        &[],
    );
    let Kind::Copy(a) = &k[1] else { panic!() };
    assert_eq!(a.heredocs[0].content, "hello \"world\" 'world' $NAME\n");
    let Kind::Copy(b) = &k[2] else { panic!() };
    assert_eq!(b.heredocs[0].content, "hello $NAME\n");
}

#[test]
fn copy_heredoc_errors() {
    assert_err_at(&parse_err("FROM a\nCOPY a <<EOF\nx\nEOF\n"), 2, "cannot accept a heredoc as a destination");
    assert_err_at(&parse_err("FROM a\nCOPY <<a/b /d\nx\na/b\n"), 2, "must be a plain file name");
}
