//! Variable expansion and ARG/ENV scope. Expected values are derived from the Dockerfile
//! reference (docs.docker.com/reference/dockerfile): "Environment replacement", "ENV",
//! "ARG" (Scope, Using ARG variables, Predefined ARGs), "LABEL"; and, where the reference is
//! silent, from BuildKit's shell lexer (frontend/dockerfile/shell/lex.go) and dispatcher
//! (dockerfile2llb/convert.go: dispatchArg, dispatchEnv).

#[path = "support/dockerfile.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;

use kolla_oci::dockerfile::{
    self, ArgDecl, Command, DockerfileError, Expander, FromSpec, KeyValue, Kind, PlatformRole, RunSpec,
};
use support::{assert_err_at, expand_all, expand_err, expanded, strs};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue { key: k.into(), value: v.into() }
}

/// Expand `LABEL l=<word>` after `prelude` and return the value.
fn value_of(prelude: &str, word: &str) -> String {
    let k = expanded(&format!("{prelude}\nLABEL l={word}\n"), &[]);
    match k.last() {
        Some(Kind::Label(kvs)) => kvs[0].value.clone(),
        other => panic!("{other:?}"),
    }
}

fn env(prelude: &str) -> String {
    format!("ENV SET=value EMPTY=\n{prelude}")
}

// ---------------------------------------------------------------- operators

#[test]
fn plain_references() {
    // Reference, "Environment replacement": `$variable_name` or `${variable_name}`.
    assert_eq!(value_of(&env(""), "$SET"), "value");
    assert_eq!(value_of(&env(""), "${SET}"), "value");
    assert_eq!(value_of(&env(""), "pre${SET}post"), "prevaluepost");
    assert_eq!(value_of(&env(""), "$SET.x"), "value.x");
    // Unset variables expand to nothing.
    assert_eq!(value_of(&env(""), "[$NOPE]"), "[]");
    assert_eq!(value_of(&env(""), "[${NOPE}]"), "[]");
}

#[test]
fn default_operators() {
    // Reference: `${variable:-word}`: the value if set, else `word`. lex.go: with `:`
    // an empty value counts as unset; without, only unset does.
    let e = env("");
    assert_eq!(value_of(&e, "${SET:-dflt}"), "value");
    assert_eq!(value_of(&e, "${NOPE:-dflt}"), "dflt");
    assert_eq!(value_of(&e, "${EMPTY:-dflt}"), "dflt");
    assert_eq!(value_of(&e, "${SET-dflt}"), "value");
    assert_eq!(value_of(&e, "${NOPE-dflt}"), "dflt");
    assert_eq!(value_of(&e, "[${EMPTY-dflt}]"), "[]");
}

#[test]
fn alternative_operators() {
    // Reference: `${variable:+word}`: `word` if set, else empty.
    let e = env("");
    assert_eq!(value_of(&e, "[${SET:+alt}]"), "[alt]");
    assert_eq!(value_of(&e, "[${NOPE:+alt}]"), "[]");
    assert_eq!(value_of(&e, "[${EMPTY:+alt}]"), "[]");
    assert_eq!(value_of(&e, "[${SET+alt}]"), "[alt]");
    assert_eq!(value_of(&e, "[${EMPTY+alt}]"), "[alt]");
    assert_eq!(value_of(&e, "[${NOPE+alt}]"), "[]");
}

#[test]
fn nested_words_are_expanded() {
    let e = env("");
    assert_eq!(value_of(&e, "${NOPE:-${SET}-x}"), "value-x");
    assert_eq!(value_of(&e, "${NOPE:-${ALSO_NOPE:-deep}}"), "deep");
    assert_eq!(value_of(&e, "${SET:+\"quoted word\"}"), "quoted word");
}

#[test]
fn required_operators_fail() {
    let e = env("");
    assert_eq!(value_of(&e, "\"${SET:?must be set}\""), "value");
    assert_eq!(value_of(&e, "[${EMPTY?}]"), "[]");
    let err = expand_err("FROM a\nLABEL l=${NOPE:?}\n", &[]);
    assert_err_at(&err, 2, "NOPE: is not allowed to be unset");
    assert!(matches!(err, DockerfileError::Expansion { .. }));
    let err = expand_err("FROM a\nENV E=\n\nLABEL l=${E:?}\n", &[]);
    assert_err_at(&err, 4, "E: is not allowed to be empty");
    let err = expand_err("FROM a\nUSER ${WHO?set WHO with --build-arg}\n", &[]);
    assert_err_at(&err, 2, "WHO: set WHO with --build-arg");
}

#[test]
fn pattern_operators() {
    // Reference, "Environment replacement": `${variable#pattern}`, `##`, `%`, `%%`,
    // `${variable/pattern/replacement}` and `//`.
    let e = "ENV P=/usr/local/lib/python3/site-packages";
    assert_eq!(value_of(e, "${P#*/}"), "usr/local/lib/python3/site-packages");
    assert_eq!(value_of(e, "${P##*/}"), "site-packages");
    assert_eq!(value_of(e, "${P%/*}"), "/usr/local/lib/python3");
    assert_eq!(value_of(e, "[${P%%/*}]"), "[]");
    assert_eq!(value_of(e, "${P/lib/LIB}"), "/usr/local/LIB/python3/site-packages");
    assert_eq!(value_of(e, "${P//l/L}"), "/usr/LocaL/Lib/python3/site-packages");
    assert_eq!(value_of("ENV V=a.b.c", "${V%.?}"), "a.b");
    assert_eq!(value_of("ENV V=foo.tar.gz", "${V%%.*}"), "foo");
}

#[test]
fn bad_substitutions() {
    for (word, needle) in [
        ("${}", "bad substitution"),
        ("${:x}", "bad substitution"),
        ("${V", "missing '}'"),
        ("${V:-x", "missing '}'"),
        ("${V*}", "unsupported modifier (*)"),
        ("${V:=x}", "unsupported modifier (:=)"),
        ("\"open", "matching double-quote"),
        ("'open", "matching single-quote"),
    ] {
        let err = expand_err(&format!("FROM a\nLABEL l={word}\n"), &[]);
        assert_err_at(&err, 2, needle);
        assert!(err.to_string().contains("failed to process"), "{err}");
    }
}

#[test]
fn dollar_without_a_name_is_literal() {
    let e = env("");
    assert_eq!(value_of(&e, "cost:5$"), "cost:5$");
    assert_eq!(value_of(&e, "a$/b"), "a$/b");
    // Special parameters and positional ones are never set.
    assert_eq!(value_of(&e, "[$1$@$$]"), "[]");
}

// ---------------------------------------------------------------- quoting and escapes

#[test]
fn single_quotes_are_literal() {
    assert_eq!(value_of(&env(""), "'$SET ${SET} \\n'"), "$SET ${SET} \\n");
}

#[test]
fn double_quotes_expand_and_escape_only_some_characters() {
    // lex.go processDoubleQuote: the escape token escapes `"`, `$` and itself; before any
    // other character it stays.
    assert_eq!(value_of(&env(""), r#""say \"hi\" $SET \$SET \\ \n 'x'""#), r#"say "hi" value $SET \ \n 'x'"#);
}

#[test]
fn escapes_outside_quotes() {
    // Reference: "\$foo or \${foo} ... will translate to $foo and ${foo} literals".
    let e = env("");
    assert_eq!(value_of(&e, r"\$SET"), "$SET");
    assert_eq!(value_of(&e, r"\${SET}"), "${SET}");
    assert_eq!(value_of(&e, r"a\ b\\c\x"), r"a b\cx");
}

#[test]
fn reference_environment_replacement_example() {
    // Reference, "Environment replacement":
    //   ENV FOO=/bar / WORKDIR ${FOO} / ADD . $FOO / COPY \$FOO /quux
    let k = expanded("ENV FOO=/bar\nWORKDIR ${FOO}   \nADD . $FOO\nCOPY \\$FOO /quux\n", &[]);
    assert_eq!(k[1], Kind::Workdir("/bar".into()));
    let Kind::Add(add) = &k[2] else { panic!() };
    assert_eq!((add.sources.clone(), add.dest.as_str()), (strs(&["."]), "/bar"));
    let Kind::Copy(copy) = &k[3] else { panic!() };
    assert_eq!((copy.sources.clone(), copy.dest.as_str()), (strs(&["$FOO"]), "/quux"));
}

#[test]
fn one_instruction_sees_the_environment_from_before_it() {
    // Reference, "Environment replacement": `ENV abc=bye def=$abc` gives def=hello.
    let k = expanded("ENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n", &[]);
    assert_eq!(k[1], Kind::Env(vec![kv("abc", "bye"), kv("def", "hello")]));
    assert_eq!(k[2], Kind::Env(vec![kv("ghi", "bye")]));
}

#[test]
fn env_forms_after_expansion() {
    // Reference, ENV examples.
    let k = expanded("ENV MY_NAME=\"John Doe\" MY_DOG=Rex\\ The\\ Dog MY_CAT=fluffy\nENV MY_VAR my-value\n", &[]);
    assert_eq!(k[0], Kind::Env(vec![kv("MY_NAME", "John Doe"), kv("MY_DOG", "Rex The Dog"), kv("MY_CAT", "fluffy")]));
    assert_eq!(k[1], Kind::Env(vec![kv("MY_VAR", "my-value")]));
}

#[test]
fn label_forms_after_expansion() {
    // Reference, LABEL examples.
    let k = expanded(
        "LABEL \"com.example.vendor\"=\"ACME Incorporated\"\nLABEL version=\"1.0\"\nLABEL description=\"This text illustrates \\\nthat label-values can span multiple lines.\"\n",
        &[],
    );
    assert_eq!(k[0], Kind::Label(vec![kv("com.example.vendor", "ACME Incorporated")]));
    assert_eq!(k[1], Kind::Label(vec![kv("version", "1.0")]));
    assert_eq!(
        k[2],
        Kind::Label(vec![kv("description", "This text illustrates that label-values can span multiple lines.")])
    );
}

#[test]
fn backtick_escape_in_expansion() {
    // With `# escape=`` `, the backtick escapes and a backslash is literal.
    let (ins, _) = expand_all("# escape=`\nFROM a\nENV A=1\nLABEL l=\"`$A c:\\path `\"q`\" $A\"\n", &[]);
    assert_eq!(ins[2].kind, Kind::Label(vec![kv("l", "$A c:\\path \"q\" 1")]));
}

#[test]
fn keys_are_expanded_too() {
    let k = expanded("ENV K=name\nLABEL $K=v\nENV ${K}2=w\n", &[]);
    assert_eq!(k[1], Kind::Label(vec![kv("name", "v")]));
    assert_eq!(k[2], Kind::Env(vec![kv("name2", "w")]));
}

// ---------------------------------------------------------------- what is and is not expanded

#[test]
fn run_cmd_entrypoint_healthcheck_are_not_expanded() {
    let k = expanded(
        "ENV X=1\nRUN echo $X\nCMD echo $X\nENTRYPOINT [\"sh\", \"-c\", \"$X\"]\nHEALTHCHECK CMD test $X\nSHELL [\"$X\"]\nMAINTAINER $X\n",
        &[],
    );
    assert_eq!(k[1], Kind::Run(RunSpec { command: Command::Shell("echo $X".into()), heredocs: vec![] }));
    assert_eq!(k[2], Kind::Cmd(Command::Shell("echo $X".into())));
    assert_eq!(k[3], Kind::Entrypoint(Command::Exec(strs(&["sh", "-c", "$X"]))));
    let Kind::Healthcheck(Some(h)) = &k[4] else { panic!() };
    assert_eq!(h.command, Command::Shell("test $X".into()));
    assert_eq!(k[5], Kind::Shell(strs(&["$X"])));
    assert_eq!(k[6], Kind::Maintainer("$X".into()));
}

#[test]
fn copy_add_words_and_flags_are_expanded() {
    let k = expanded(
        "ENV U=nova SRC=\"a b.conf\" MODE=0640\nCOPY --chown=${U}:${U} --chmod=$MODE [\"$SRC\", \"/etc/$U/\"]\nADD ${U}-archive /${U}-source\n",
        &[],
    );
    let Kind::Copy(c) = &k[1] else { panic!() };
    assert_eq!(c.sources, strs(&["a b.conf"]));
    assert_eq!(c.dest, "/etc/nova/");
    assert_eq!(c.chown.as_deref(), Some("nova:nova"));
    assert_eq!(c.mode(), Some(0o640));
    let Kind::Add(a) = &k[2] else { panic!() };
    assert_eq!((a.sources.clone(), a.dest.as_str()), (strs(&["nova-archive"]), "/nova-source"));
}

#[test]
fn empty_flag_values_after_expansion_are_unset() {
    let k = expanded("COPY --chown=$NOBODY a /b\n", &[]);
    let Kind::Copy(c) = &k[0] else { panic!() };
    assert_eq!(c.chown, None);
}

#[test]
fn chmod_must_be_octal() {
    let err = expand_err("FROM a\nCOPY --chmod=u+x a /b\n", &[]);
    assert_err_at(&err, 2, "only octal modes");
    let err = expand_err("FROM a\nCOPY --chmod=99999 a /b\n", &[]);
    assert_err_at(&err, 2, "only octal modes");
}

#[test]
fn expose_splits_after_expansion_and_normalises() {
    // dispatchExpose uses ProcessWords: a variable holding several ports gives several.
    let k = expanded("ARG PORTS=\"80 53/UDP\"\nEXPOSE $PORTS 8000-8002/tcp 443\n", &[]);
    assert_eq!(k[1], Kind::Expose(strs(&["80/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp", "443/tcp"])));
    let err = expand_err("FROM a\nEXPOSE 80/icmp\n", &[]);
    assert_err_at(&err, 2, "invalid protocol");
    let err = expand_err("FROM a\nEXPOSE eighty\n", &[]);
    assert_err_at(&err, 2, "invalid port specification");
}

#[test]
fn volume_user_workdir_stopsignal_are_expanded() {
    let k = expanded(
        "ENV D=/var/lib/x U=nova S=TERM\nVOLUME [\"$D\", \"/logs\"]\nVOLUME $D/b\nUSER $U:$U\nWORKDIR $D/work\nSTOPSIGNAL SIG$S\n",
        &[],
    );
    assert_eq!(k[1], Kind::Volume(strs(&["/var/lib/x", "/logs"])));
    assert_eq!(k[2], Kind::Volume(strs(&["/var/lib/x/b"])));
    assert_eq!(k[3], Kind::User("nova:nova".into()));
    assert_eq!(k[4], Kind::Workdir("/var/lib/x/work".into()));
    assert_eq!(k[5], Kind::StopSignal("SIGTERM".into()));
    assert_err_at(&expand_err("FROM a\nSTOPSIGNAL SIGNOPE\n", &[]), 2, "invalid STOPSIGNAL");
    assert_err_at(&expand_err("FROM a\nVOLUME $NOPE\n", &[]), 2, "can not be an empty string");
}

// ---------------------------------------------------------------- ARG scope

#[test]
fn global_arg_is_usable_in_from() {
    // Reference, "Understand how ARG and FROM interact".
    let text = "ARG  CODE_VERSION=latest\nFROM base:${CODE_VERSION}\n";
    let (ins, _) = expand_all(text, &[]);
    assert_eq!(ins[1].kind, Kind::From(FromSpec { image: "base:latest".into(), name: None, platform: None }));
    let (ins, _) = expand_all(text, &[("CODE_VERSION", "2.0")]);
    assert!(matches!(&ins[1].kind, Kind::From(f) if f.image == "base:2.0"));
}

#[test]
fn global_arg_needs_redeclaring_in_the_stage() {
    // Reference: an ARG declared before FROM is outside the build stage; `ARG VERSION`
    // without a value inside the stage brings the value in.
    let (ins, ex) = expand_all(
        "ARG VERSION=latest\nFROM busybox:$VERSION\nLABEL before=[$VERSION]\nARG VERSION\nLABEL after=[$VERSION]\n",
        &[],
    );
    assert_eq!(ins[2].kind, Kind::Label(vec![kv("before", "[]")]));
    assert_eq!(ins[3].kind, Kind::Arg(vec![ArgDecl { name: "VERSION".into(), default: Some("latest".into()) }]));
    assert_eq!(ins[4].kind, Kind::Label(vec![kv("after", "[latest]")]));
    assert_eq!(ex.run_env(), vec![("VERSION".to_string(), "latest".to_string())]);
}

#[test]
fn arg_default_and_build_arg() {
    // Reference, "Using ARG variables": `USER ${username:-some_user}` before `ARG username`
    // does not see the build argument; `USER $username` after it does.
    let body = "FROM busybox\nUSER ${username:-some_user}\nARG username\nUSER $username\n";
    let (ins, _) = expand_all(body, &[("username", "what_user")]);
    assert_eq!(ins[1].kind, Kind::User("some_user".into()));
    assert_eq!(ins[3].kind, Kind::User("what_user".into()));
    let (ins, _) = expand_all(body, &[]);
    assert_eq!(ins[3].kind, Kind::User("".into()));
}

#[test]
fn build_arg_overrides_default_and_is_not_expanded() {
    let (ins, ex) =
        expand_all("FROM a\nARG V=default\nARG LIT\nLABEL v=$V lit=$LIT\n", &[("V", "given"), ("LIT", "$HOME")]);
    assert_eq!(ins[3].kind, Kind::Label(vec![kv("v", "given"), kv("lit", "$HOME")]));
    assert_eq!(ex.run_env(), vec![("LIT".to_string(), "$HOME".to_string()), ("V".to_string(), "given".to_string())]);
}

#[test]
fn arg_defaults_expand_in_order_within_one_instruction() {
    // dispatchArg adds each ARG to the environment before the next is expanded (unlike ENV).
    let k = expanded("ARG A=1 B=${A}2 C=\"x y\"\n", &[]);
    assert_eq!(
        k[0],
        Kind::Arg(vec![
            ArgDecl { name: "A".into(), default: Some("1".into()) },
            ArgDecl { name: "B".into(), default: Some("12".into()) },
            ArgDecl { name: "C".into(), default: Some("x y".into()) },
        ])
    );
}

#[test]
fn env_overrides_arg() {
    // Reference, "Using ARG variables": ENV always overrides an ARG of the same name.
    let body = "FROM ubuntu\nARG CONT_IMG_VER\nENV CONT_IMG_VER=v1.0.0\nLABEL v=$CONT_IMG_VER\n";
    let (ins, ex) = expand_all(body, &[("CONT_IMG_VER", "v2.0.1")]);
    assert_eq!(ins[3].kind, Kind::Label(vec![kv("v", "v1.0.0")]));
    assert!(ex.run_env().is_empty(), "{:?}", ex.run_env());
    assert_eq!(ex.config_env(), strs(&["CONT_IMG_VER=v1.0.0"]));
}

#[test]
fn env_from_arg_with_default() {
    // Reference: `ENV CONT_IMG_VER=${CONT_IMG_VER:-v1.0.0}` persists the build argument.
    let body = "FROM ubuntu\nARG CONT_IMG_VER\nENV CONT_IMG_VER=${CONT_IMG_VER:-v1.0.0}\n";
    let (_, ex) = expand_all(body, &[("CONT_IMG_VER", "v2.0.1")]);
    assert_eq!(ex.config_env(), strs(&["CONT_IMG_VER=v2.0.1"]));
    let (_, ex) = expand_all(body, &[]);
    assert_eq!(ex.config_env(), strs(&["CONT_IMG_VER=v1.0.0"]));
}

#[test]
fn arg_after_env_wins_for_run_but_not_for_the_config() {
    // BuildKit dispatchArg: `d.state.AddEnv(arg.Key, value)` replaces the ENV value in the
    // build environment (what later words and RUN see); the image config keeps the ENV.
    let (ins, ex) = expand_all("FROM a\nENV V=env\nARG V=arg\nLABEL v=$V\n", &[]);
    assert_eq!(ins[3].kind, Kind::Label(vec![kv("v", "arg")]));
    assert_eq!(ex.run_env(), vec![("V".to_string(), "arg".to_string())]);
    assert_eq!(ex.config_env(), strs(&["V=env"]));
}

#[test]
fn declared_arg_without_value_is_unset() {
    let k = expanded("ARG NOVALUE\nLABEL a=${NOVALUE-unset} b=[$NOVALUE]\n", &[]);
    assert_eq!(k[1], Kind::Label(vec![kv("a", "unset"), kv("b", "[]")]));
}

#[test]
fn base_env_is_visible_and_env_updates_it_in_place() {
    let df = dockerfile::parse(
        Path::new("Dockerfile"),
        "FROM debian\nENV PATH=/var/lib/kolla/venv/bin:$PATH\nENV LANG C.UTF-8\nLABEL home=$HOME\n",
    )
    .unwrap();
    let mut ex = Expander::new(BTreeMap::new());
    let from = ex.expand(&df.instructions[0]).unwrap();
    assert!(matches!(from.kind, Kind::From(_)));
    ex.set_base_env(&strs(&["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root"]));
    let mut out = Vec::new();
    for i in &df.instructions[1..] {
        out.push(ex.expand(i).unwrap().kind);
    }
    assert_eq!(out[0], Kind::Env(vec![kv("PATH", "/var/lib/kolla/venv/bin:/usr/local/bin:/usr/bin:/bin")]));
    assert_eq!(out[2], Kind::Label(vec![kv("home", "/root")]));
    assert_eq!(
        ex.config_env(),
        strs(&["PATH=/var/lib/kolla/venv/bin:/usr/local/bin:/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8"])
    );
    assert!(ex.run_env().is_empty());
}

#[test]
fn run_env_has_args_not_env() {
    let (_, ex) = expand_all("FROM a\nARG PIP_INDEX_URL=http://mirror/simple\nENV LANG=C.UTF-8\n", &[]);
    assert_eq!(ex.run_env(), vec![("PIP_INDEX_URL".to_string(), "http://mirror/simple".to_string())]);
    assert_eq!(ex.config_env(), strs(&["LANG=C.UTF-8"]));
}

#[test]
fn proxy_build_args_reach_run_without_declaration() {
    // Reference, "Predefined ARGs": HTTP_PROXY & co. need no ARG and are not consumed-warned.
    let (ins, ex) = expand_all(
        "FROM a\nLABEL p=[$http_proxy]\n",
        &[("http_proxy", "http://proxy:3128"), ("NO_PROXY", "localhost"), ("UNUSED", "1")],
    );
    // Not visible to expansion without ARG.
    assert_eq!(ins[1].kind, Kind::Label(vec![kv("p", "[]")]));
    assert_eq!(
        ex.run_env(),
        vec![
            ("http_proxy".to_string(), "http://proxy:3128".to_string()),
            ("NO_PROXY".to_string(), "localhost".to_string())
        ]
    );
    assert_eq!(ex.unused_build_args(), strs(&["UNUSED"]));
}

#[test]
fn unused_build_args_counts_global_and_stage_args() {
    let (_, ex) = expand_all(
        "ARG BASE=debian\nFROM $BASE\nARG USED\n",
        &[("BASE", "ubuntu"), ("USED", "1"), ("TYPO", "2"), ("ALSO", "3")],
    );
    assert_eq!(ex.unused_build_args(), strs(&["ALSO", "TYPO"]));
}

#[test]
fn automatic_platform_args() {
    let df = dockerfile::parse(
        Path::new("Dockerfile"),
        "FROM --platform=$TARGETPLATFORM debian:$TARGETARCH\nLABEL a=[$TARGETARCH]\nARG TARGETARCH\nLABEL b=$TARGETARCH\n\
         ARG BUILDPLATFORM TARGETVARIANT\nLABEL c=$BUILDPLATFORM/$TARGETVARIANT\n",
    )
    .unwrap();
    let mut ex = Expander::new(BTreeMap::new());
    ex.set_platform(PlatformRole::Target, "linux", "arm64", Some("v8"));
    ex.set_platform(PlatformRole::Build, "linux", "amd64", None);
    let out: Vec<Kind> = df.instructions.iter().map(|i| ex.expand(i).unwrap().kind).collect();
    assert_eq!(
        out[0],
        Kind::From(FromSpec { image: "debian:arm64".into(), name: None, platform: Some("linux/arm64/v8".into()) })
    );
    assert_eq!(out[1], Kind::Label(vec![kv("a", "[]")]));
    assert_eq!(out[3], Kind::Label(vec![kv("b", "arm64")]));
    assert_eq!(out[5], Kind::Label(vec![kv("c", "linux/amd64/v8")]), "the build machine's, and the target's variant");
}

#[test]
fn from_errors() {
    let err = expand_err("ARG IMG\nFROM $IMG\n", &[]);
    assert_err_at(&err, 2, "should not be blank");
}

#[test]
fn expander_rejects_what_the_parser_rejects() {
    // The expander is independent of the parser: feed it a second FROM, or an instruction
    // before FROM, and it refuses too.
    let df = dockerfile::parse(Path::new("Dockerfile"), "FROM a\nFROM b AS x\n");
    assert!(df.is_err());
    let one = dockerfile::parse(Path::new("Dockerfile"), "FROM a\nRUN x\n").unwrap();
    let mut ex = Expander::new(BTreeMap::new());
    assert!(matches!(ex.expand(&one.instructions[1]), Err(DockerfileError::Syntax { .. })));
    ex.expand(&one.instructions[0]).unwrap();
    let again = ex.expand(&one.instructions[0]).unwrap_err();
    assert!(matches!(again, DockerfileError::Unsupported { .. }), "{again}");
}
