//! Parser tests: every instruction in its forms, directives, continuations, JSON vs shell
//! form, flags and errors. Expected values follow the Dockerfile reference
//! (docs.docker.com/reference/dockerfile) and BuildKit's parser
//! (moby/buildkit frontend/dockerfile/parser, instructions/parse.go).

#[path = "support/dockerfile.rs"]
mod support;

use kolla_oci::dockerfile::{
    ArgDecl, Command, CopySpec, DockerfileError, FromSpec, Healthcheck, KeyValue, Kind, RunSpec,
};
use support::{assert_err_at, body_kinds, one, parse, parse_err, strs};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue { key: k.into(), value: v.into() }
}

fn shell(s: &str) -> Command {
    Command::Shell(s.into())
}

fn exec(v: &[&str]) -> Command {
    Command::Exec(strs(v))
}

fn run(s: &str) -> Kind {
    Kind::Run(RunSpec { command: shell(s), heredocs: vec![] })
}

// ---------------------------------------------------------------- FROM

#[test]
fn from_plain() {
    let df = parse("FROM debian:bookworm\n");
    assert_eq!(
        df.instructions[0].kind,
        Kind::From(FromSpec { image: "debian:bookworm".into(), name: None, platform: None })
    );
    assert_eq!(df.instructions[0].line, 1);
}

#[test]
fn from_platform_and_stage_name_lowercased() {
    let df = parse("from --platform=linux/amd64 quay.io/x/y@sha256:abc As Base\n");
    assert_eq!(
        df.instructions[0].kind,
        Kind::From(FromSpec {
            image: "quay.io/x/y@sha256:abc".into(),
            name: Some("base".into()),
            platform: Some("linux/amd64".into())
        })
    );
}

#[test]
fn from_needs_one_or_three_words() {
    assert_err_at(&parse_err("FROM a AS\n"), 1, "one or three arguments");
    assert_err_at(&parse_err("FROM a b c d\n"), 1, "one or three arguments");
    assert_err_at(&parse_err("FROM\n"), 1, "one or three arguments");
}

#[test]
fn from_invalid_stage_name() {
    assert_err_at(&parse_err("FROM a AS 1st\n"), 1, "invalid name for build stage");
}

#[test]
fn second_from_is_unsupported() {
    let e = parse_err("FROM a AS build\nRUN make\nFROM b\nCOPY x y\n");
    assert_err_at(&e, 3, "multi-stage builds are not supported");
    assert!(matches!(e, DockerfileError::Unsupported { .. }));
}

#[test]
fn only_arg_may_precede_from() {
    assert_err_at(&parse_err("# c\nRUN true\nFROM a\n"), 2, "RUN before FROM");
    let df = parse("ARG A=1\nARG B\nFROM a\n");
    assert_eq!(df.instructions.len(), 3);
}

#[test]
fn empty_file_and_missing_from() {
    assert_err_at(&parse_err(""), 1, "file with no instructions");
    assert_err_at(&parse_err("# only a comment\n\n"), 2, "file with no instructions");
    assert_err_at(&parse_err("ARG A\nARG B\n"), 2, "no FROM instruction");
}

// ---------------------------------------------------------------- ARG / ENV / LABEL

#[test]
fn arg_forms() {
    assert_eq!(one("ARG A"), Kind::Arg(vec![ArgDecl { name: "A".into(), default: None }]));
    // Several per line; quotes stay in the raw default until expansion.
    assert_eq!(
        one(r#"ARG A=1 B="two words" C= D"#),
        Kind::Arg(vec![
            ArgDecl { name: "A".into(), default: Some("1".into()) },
            ArgDecl { name: "B".into(), default: Some(r#""two words""#.into()) },
            ArgDecl { name: "C".into(), default: Some("".into()) },
            ArgDecl { name: "D".into(), default: None },
        ])
    );
}

#[test]
fn arg_errors() {
    assert_err_at(&parse_err("FROM a\nARG\n"), 2, "ARG requires at least one argument");
    assert_err_at(&parse_err("FROM a\nARG =x\n"), 2, "ARG names can not be blank");
}

#[test]
fn env_key_value_form_keeps_raw_words() {
    // Reference, ENV: `ENV MY_NAME="John Doe" MY_DOG=Rex\ The\ Dog MY_CAT=fluffy`.
    assert_eq!(
        one(r#"ENV MY_NAME="John Doe" MY_DOG=Rex\ The\ Dog MY_CAT=fluffy"#),
        Kind::Env(vec![kv("MY_NAME", r#""John Doe""#), kv("MY_DOG", r"Rex\ The\ Dog"), kv("MY_CAT", "fluffy"),])
    );
}

#[test]
fn env_legacy_form_takes_rest_of_line() {
    // Reference, ENV: "ENV MY_VAR my-value" (alternative syntax); the value is everything
    // after the first whitespace run, spaces included.
    assert_eq!(one("ENV DEBIAN_FRONTEND noninteractive"), Kind::Env(vec![kv("DEBIAN_FRONTEND", "noninteractive")]));
    assert_eq!(one("ENV LIST a  b\tc"), Kind::Env(vec![kv("LIST", "a  b\tc")]));
    assert_eq!(one("ENV PATH /opt/bin:$PATH"), Kind::Env(vec![kv("PATH", "/opt/bin:$PATH")]));
}

#[test]
fn env_errors() {
    assert_err_at(&parse_err("FROM a\nENV ONLYKEY\n"), 2, "ENV must have two arguments");
    assert_err_at(&parse_err("FROM a\nENV A=1 B\n"), 2, "can't find = in \"B\"");
    assert_err_at(&parse_err("FROM a\nENV =1\n"), 2, "ENV names can not be blank");
    assert_err_at(&parse_err("FROM a\nENV\n"), 2, "ENV requires at least one argument");
}

#[test]
fn label_quotes_and_spaces() {
    // Reference, LABEL examples.
    assert_eq!(
        one(r#"LABEL "com.example.vendor"="ACME Incorporated""#),
        Kind::Label(vec![kv(r#""com.example.vendor""#, r#""ACME Incorporated""#)])
    );
    assert_eq!(
        one(r#"LABEL multi.label1="value1" multi.label2='value 2' other=value3"#),
        Kind::Label(vec![kv("multi.label1", r#""value1""#), kv("multi.label2", "'value 2'"), kv("other", "value3"),])
    );
    assert_eq!(one("LABEL legacy some value"), Kind::Label(vec![kv("legacy", "some value")]));
}

#[test]
fn label_continued_value() {
    // Reference, LABEL: a value spanning lines with `\`.
    let k = body_kinds("LABEL description=\"This text illustrates \\\nthat label-values can span multiple lines.\"\n");
    assert_eq!(
        k,
        vec![Kind::Label(vec![kv(
            "description",
            "\"This text illustrates that label-values can span multiple lines.\""
        )])]
    );
}

// ---------------------------------------------------------------- COPY / ADD

#[test]
fn copy_shell_form() {
    assert_eq!(
        one("COPY a b  /dest/"),
        Kind::Copy(CopySpec {
            sources: strs(&["a", "b"]),
            heredocs: vec![],
            dest: "/dest/".into(),
            chown: None,
            chmod: None,
            link: false,
        })
    );
}

#[test]
fn copy_json_form_allows_spaces() {
    assert_eq!(
        one(r#"COPY ["my file", "other", "/dest dir/"]"#),
        Kind::Copy(CopySpec {
            sources: strs(&["my file", "other"]),
            heredocs: vec![],
            dest: "/dest dir/".into(),
            chown: None,
            chmod: None,
            link: false,
        })
    );
}

#[test]
fn copy_flags() {
    assert_eq!(
        one(r#"COPY --chown="nova:nova" --chmod=0640 --link src /etc/nova/"#),
        Kind::Copy(CopySpec {
            sources: strs(&["src"]),
            heredocs: vec![],
            dest: "/etc/nova/".into(),
            chown: Some("nova:nova".into()),
            chmod: Some("0640".into()),
            link: true,
        })
    );
    let Kind::Copy(spec) = one("COPY --link=false --chmod=755 a b") else { panic!() };
    assert!(!spec.link);
    assert_eq!(spec.mode(), Some(0o755));
}

#[test]
fn copy_from_is_a_clear_error() {
    let e = parse_err("FROM a\n\nCOPY --from=builder /out /usr/bin/\n");
    assert_err_at(&e, 3, "multi-stage COPY --from is not supported");
    assert!(matches!(e, DockerfileError::Unsupported { .. }));
}

#[test]
fn copy_flag_errors() {
    assert_err_at(&parse_err("FROM a\nCOPY --bogus a b\n"), 2, "unknown flag: --bogus");
    assert_err_at(&parse_err("FROM a\nCOPY --chown a b\n"), 2, "missing a value on flag: --chown");
    assert_err_at(&parse_err("FROM a\nCOPY --link=maybe a b\n"), 2, "expecting boolean value");
    assert_err_at(&parse_err("FROM a\nCOPY --chmod=1 --chmod=2 a b\n"), 2, "duplicate flag");
    assert_err_at(&parse_err("FROM a\nCOPY --parents a b\n"), 2, "COPY --parents is not supported");
    assert_err_at(&parse_err("FROM a\nCOPY onlyone\n"), 2, "requires at least two arguments");
}

#[test]
fn add_forms() {
    assert_eq!(
        one("ADD nova-base-archive /nova-base-source"),
        Kind::Add(CopySpec {
            sources: strs(&["nova-base-archive"]),
            heredocs: vec![],
            dest: "/nova-base-source".into(),
            chown: None,
            chmod: None,
            link: false,
        })
    );
    let Kind::Add(spec) = one(r#"ADD ["https://example.com/a.tar.gz", "/tmp/"]"#) else { panic!() };
    assert_eq!(spec.sources, strs(&["https://example.com/a.tar.gz"]));
    assert_eq!(spec.dest, "/tmp/");
    assert_err_at(&parse_err("FROM a\nADD --checksum=sha256:00 http://x/y /y\n"), 2, "ADD --checksum is not supported");
    assert_err_at(&parse_err("FROM a\nADD --from=x a b\n"), 2, "unknown flag: --from");
}

// ---------------------------------------------------------------- RUN / CMD / ENTRYPOINT / SHELL

#[test]
fn run_shell_and_exec() {
    assert_eq!(one("RUN apt-get update && apt-get install -y x"), run("apt-get update && apt-get install -y x"));
    assert_eq!(
        one(r#"RUN ["/bin/bash", "-c", "echo $HOME"]"#),
        Kind::Run(RunSpec { command: exec(&["/bin/bash", "-c", "echo $HOME"]), heredocs: vec![] })
    );
}

#[test]
fn invalid_json_is_shell_form() {
    // Reference, "Shell and exec form": the exec form must be valid JSON; anything else is
    // the shell form.
    assert_eq!(one("CMD [bad json"), Kind::Cmd(shell("[bad json")));
    assert_eq!(one("CMD ['single', 'quotes']"), Kind::Cmd(shell("['single', 'quotes']")));
    assert_eq!(one(r#"RUN ["a"] trailing"#), run(r#"["a"] trailing"#));
}

#[test]
fn json_with_non_strings_is_an_error() {
    assert_err_at(&parse_err("FROM a\nCMD [\"a\", 1]\n"), 2, "arrays must be comprised of strings only");
}

#[test]
fn run_mount_and_network_are_unsupported() {
    let e = parse_err("FROM a\nRUN --mount=type=cache,target=/root/.cache pip install x\n");
    assert_err_at(&e, 2, "RUN --mount is not supported");
    assert!(matches!(e, DockerfileError::Unsupported { .. }));
    assert_err_at(&parse_err("FROM a\nRUN --network=none true\n"), 2, "RUN --network is not supported");
}

#[test]
fn run_needs_a_command() {
    assert_err_at(&parse_err("FROM a\nRUN\n"), 2, "RUN requires at least one argument");
    assert_err_at(&parse_err("FROM a\nRUN []\n"), 2, "RUN requires at least one argument");
}

#[test]
fn cmd_and_entrypoint_forms() {
    assert_eq!(one(r#"CMD ["kolla_start"]"#), Kind::Cmd(exec(&["kolla_start"])));
    assert_eq!(one("CMD kolla_start --debug"), Kind::Cmd(shell("kolla_start --debug")));
    assert_eq!(
        one(r#"ENTRYPOINT ["dumb-init", "--single-child", "--"]"#),
        Kind::Entrypoint(exec(&["dumb-init", "--single-child", "--"]))
    );
    assert_eq!(one("ENTRYPOINT exec top -b"), Kind::Entrypoint(shell("exec top -b")));
    // bifrost-deploy's reset.
    assert_eq!(one("ENTRYPOINT []"), Kind::Entrypoint(Command::Exec(vec![])));
}

#[test]
fn shell_json_only() {
    assert_eq!(
        one(r#"SHELL ["/bin/bash", "-o", "pipefail", "-c"]"#),
        Kind::Shell(strs(&["/bin/bash", "-o", "pipefail", "-c"]))
    );
    assert_err_at(&parse_err("FROM a\nSHELL /bin/bash -c\n"), 2, "SHELL requires the arguments to be in JSON form");
    assert_err_at(&parse_err("FROM a\nSHELL [\"/bin/bash\", \n"), 2, "JSON form");
    assert_err_at(&parse_err("FROM a\nSHELL []\n"), 2, "SHELL requires at least one argument");
}

// ---------------------------------------------------------------- simple instructions

#[test]
fn user_workdir_stopsignal_maintainer() {
    assert_eq!(one("USER nova"), Kind::User("nova".into()));
    assert_eq!(one("USER 42400:42400"), Kind::User("42400:42400".into()));
    assert_eq!(one("WORKDIR /var/lib/kolla"), Kind::Workdir("/var/lib/kolla".into()));
    assert_eq!(one("STOPSIGNAL SIGRTMIN+3"), Kind::StopSignal("SIGRTMIN+3".into()));
    assert_eq!(one("MAINTAINER Kolla Project"), Kind::Maintainer("Kolla Project".into()));
    assert_err_at(&parse_err("FROM a\nUSER\n"), 2, "USER requires exactly one argument");
    assert_err_at(&parse_err("FROM a\nWORKDIR\n"), 2, "WORKDIR requires exactly one argument");
}

#[test]
fn expose_words() {
    assert_eq!(one("EXPOSE 80 443/tcp  53/udp"), Kind::Expose(strs(&["80", "443/tcp", "53/udp"])));
    assert_err_at(&parse_err("FROM a\nEXPOSE\n"), 2, "EXPOSE requires at least one argument");
}

#[test]
fn volume_json_and_words() {
    assert_eq!(
        one(r#"VOLUME ["/var/lib/mysql", "/var/log/kolla"]"#),
        Kind::Volume(strs(&["/var/lib/mysql", "/var/log/kolla"]))
    );
    assert_eq!(one("VOLUME /data /logs"), Kind::Volume(strs(&["/data", "/logs"])));
    assert_err_at(&parse_err("FROM a\nVOLUME [\"\"]\n"), 2, "VOLUME specified can not be an empty string");
}

#[test]
fn onbuild_is_unsupported() {
    let e = parse_err("FROM a\nONBUILD RUN make\n");
    assert_err_at(&e, 2, "ONBUILD is not supported");
    assert!(matches!(e, DockerfileError::Unsupported { .. }));
}

#[test]
fn unknown_instruction_names_file_and_line() {
    let e = parse_err("FROM a\nRUN true\n\n# comment\nFOO bar baz\n");
    assert_err_at(&e, 5, r#"unknown instruction "FOO""#);
    assert_eq!(e.to_string(), r#"images/test/Dockerfile:5: unknown instruction "FOO""#);
    assert!(matches!(e, DockerfileError::Syntax { .. }));
}

#[test]
fn flags_on_instructions_without_flags() {
    assert_err_at(&parse_err("FROM a\nENV --x=1 A=b\n"), 2, "unknown flag: --x");
    assert_err_at(&parse_err("FROM a\nCMD --help\n"), 2, "unknown flag: --help");
}

// ---------------------------------------------------------------- HEALTHCHECK

#[test]
fn healthcheck_none() {
    assert_eq!(one("HEALTHCHECK NONE"), Kind::Healthcheck(None));
    assert_eq!(one("healthcheck none"), Kind::Healthcheck(None));
    assert_err_at(&parse_err("FROM a\nHEALTHCHECK NONE x\n"), 2, "HEALTHCHECK NONE takes no arguments");
}

#[test]
fn healthcheck_options_in_nanoseconds() {
    // Reference, HEALTHCHECK: `HEALTHCHECK --interval=5m --timeout=3s CMD curl -f http://localhost/ || exit 1`.
    let k = one(
        "HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=500ms --retries=3 \\\n  CMD curl -f http://localhost/ || exit 1",
    );
    let expected = Healthcheck {
        command: shell("curl -f http://localhost/ || exit 1"),
        interval: 300_000_000_000,
        timeout: 3_000_000_000,
        start_period: 90_000_000_000,
        start_interval: 500_000_000,
        retries: 3,
    };
    assert_eq!(k, Kind::Healthcheck(Some(expected.clone())));
    assert_eq!(expected.test(), strs(&["CMD-SHELL", "curl -f http://localhost/ || exit 1"]));
}

#[test]
fn healthcheck_exec_form_and_defaults() {
    let Kind::Healthcheck(Some(h)) = one(r#"HEALTHCHECK CMD ["healthcheck_curl", "http://127.0.0.1:8774"]"#) else {
        panic!()
    };
    assert_eq!(h.test(), strs(&["CMD", "healthcheck_curl", "http://127.0.0.1:8774"]));
    assert_eq!((h.interval, h.timeout, h.start_period, h.start_interval, h.retries), (0, 0, 0, 0, 0));
    let Kind::Healthcheck(Some(h)) = one("HEALTHCHECK --interval=1h2m3.5s --timeout=1.5ms CMD x") else { panic!() };
    assert_eq!((h.interval, h.timeout), (3_723_500_000_000, 1_500_000));
    // Below the 1ms minimum is an error, but 0 means "unset".
    assert_err_at(&parse_err("FROM a\nHEALTHCHECK --timeout=1.5us CMD x\n"), 2, "cannot be less than 1ms");
    let Kind::Healthcheck(Some(h)) = one("HEALTHCHECK --interval=0 CMD x") else { panic!() };
    assert_eq!(h.interval, 0);
}

#[test]
fn healthcheck_errors() {
    assert_err_at(&parse_err("FROM a\nHEALTHCHECK --interval=5 CMD x\n"), 2, "missing unit");
    assert_err_at(&parse_err("FROM a\nHEALTHCHECK --interval=5parsecs CMD x\n"), 2, "unknown unit");
    assert_err_at(&parse_err("FROM a\nHEALTHCHECK --retries=-1 CMD x\n"), 2, "cannot be negative");
    assert_err_at(&parse_err("FROM a\nHEALTHCHECK PING x\n"), 2, "Unknown type \"PING\" in HEALTHCHECK");
    assert_err_at(&parse_err("FROM a\nHEALTHCHECK CMD\n"), 2, "Missing command after HEALTHCHECK CMD");
    assert_err_at(&parse_err("FROM a\nHEALTHCHECK --bogus=1 CMD x\n"), 2, "unknown flag: --bogus");
}

// ---------------------------------------------------------------- lines, comments, case

#[test]
fn keywords_are_case_insensitive() {
    let k = body_kinds("run true\nCopy a b\nwOrKdIr /x\n");
    assert_eq!(k[0], run("true"));
    assert!(matches!(k[1], Kind::Copy(_)));
    assert_eq!(k[2], Kind::Workdir("/x".into()));
}

#[test]
fn comments_and_blank_lines_are_skipped_with_right_line_numbers() {
    let df = parse("# header\n\nFROM a\n   # indented comment\n\nRUN one\n\n\nRUN two\n");
    let lines: Vec<usize> = df.instructions.iter().map(|i| i.line).collect();
    assert_eq!(lines, vec![3, 6, 9]);
}

#[test]
fn trailing_hash_is_not_a_comment() {
    // Reference, "Format": `#` is only a comment at the start of a line.
    assert_eq!(one("RUN echo hello # world"), run("echo hello # world"));
}

#[test]
fn byte_order_mark_and_crlf() {
    let df = parse("\u{feff}FROM a\r\nRUN echo a \\\r\n  b\r\nUSER x\r\n");
    assert_eq!(df.instructions[1].kind, run("echo a   b"));
    assert_eq!(df.instructions[2].kind, Kind::User("x".into()));
    assert_eq!(df.instructions[2].line, 4);
}

#[test]
fn original_text_is_the_logical_line() {
    let df = parse("FROM a\nRUN echo a \\\n  b\n");
    assert_eq!(df.instructions[1].original, "RUN echo a   b");
    assert_eq!((df.instructions[1].line, df.instructions[1].end_line), (2, 3));
    assert_eq!(df.instructions[1].escape, '\\');
}
