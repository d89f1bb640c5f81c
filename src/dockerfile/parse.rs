//! The Dockerfile parser: physical lines → logical lines (directives, comments,
//! continuations) → here-document bodies → typed instructions. Mirrors BuildKit's
//! `parser.Parse` and `instructions.ParseInstruction`.
//!
//! Over 600 lines on purpose: it is one grammar — each instruction's parser next to the others, in the
//! order of BuildKit's files, which is what a reader compares it with (tests: `tests/dockerfile_*.rs`).

use std::path::Path;
use std::sync::Arc;

use super::words::{self, HeredocWord};
use super::{
    ArgDecl, Command, CopySpec, Dockerfile, DockerfileError, FromSpec, Healthcheck, Heredoc, Instruction, KeyValue,
    Kind, MAX_HEREDOC_BYTES, MAX_LINE_BYTES, RunSpec,
};

/// An error before it gets its path and line.
pub(super) enum Fail {
    Syntax(String),
    Unsupported(String),
    Expansion(String),
    TooLarge(String),
}

impl Fail {
    pub(super) fn at(self, path: &Path, line: usize) -> DockerfileError {
        let path = path.to_path_buf();
        match self {
            Fail::Syntax(message) => DockerfileError::Syntax { path, line, message },
            Fail::Unsupported(message) => DockerfileError::Unsupported { path, line, message },
            Fail::Expansion(message) => DockerfileError::Expansion { path, line, message },
            Fail::TooLarge(message) => DockerfileError::TooLarge { path, line, message },
        }
    }
}

impl From<String> for Fail {
    fn from(s: String) -> Fail {
        Fail::Syntax(s)
    }
}

impl From<&str> for Fail {
    fn from(s: &str) -> Fail {
        Fail::Syntax(s.to_owned())
    }
}

/// Physical lines, each with its line ending (like BuildKit's `scanLines`).
struct Lines<'a> {
    text: &'a str,
    pos: usize,
    /// Number of the line last returned (1-based).
    line: usize,
}

impl<'a> Lines<'a> {
    fn next(&mut self) -> Option<&'a str> {
        if self.pos >= self.text.len() {
            return None;
        }
        let rest = &self.text[self.pos..];
        let end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        self.pos += end;
        self.line += 1;
        let line = &rest[..end];
        if self.line == 1 {
            return Some(line.strip_prefix('\u{feff}').unwrap_or(line));
        }
        Some(line)
    }
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

/// BuildKit's continuation regex `([^E])E[ \t]*$|^E[ \t]*$` (E = escape token) and its
/// `$1` replacement: a trailing escape token (not itself escaped) continues the line.
/// Returns the line without it, and whether the logical line ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(before) = t.strip_suffix(escape)
        && !before.ends_with(escape)
    {
        return (before, false);
    }
    (line, true)
}

/// `# name=value` at the top of the file, as BuildKit's `reDirectives`
/// (`^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`).
fn directive(line: &str) -> Option<(String, &str)> {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r');
    let rest = line.strip_prefix('#')?.trim_start_matches(is_space);
    if !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let end = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
    let (name, rest) = rest.split_at(end);
    let after = rest.trim_start_matches(is_space).strip_prefix('=')?;
    let value = after.trim_matches(is_space);
    if !value.is_empty() {
        return Some((name.to_ascii_lowercase(), value));
    }
    // `(.+?)` needs one character: with only blanks after `=`, it takes the last one.
    let last = after.chars().next_back()?;
    Some((name.to_ascii_lowercase(), &after[after.len() - last.len_utf8()..]))
}

struct Parser<'a> {
    path: Arc<Path>,
    lines: Lines<'a>,
    escape: char,
    directives_done: bool,
    seen_directives: Vec<String>,
    warnings: Vec<String>,
}

pub(super) fn parse(path: &Path, text: &str) -> Result<Dockerfile, DockerfileError> {
    let mut p = Parser {
        path: Arc::from(path),
        lines: Lines { text, pos: 0, line: 0 },
        escape: '\\',
        directives_done: false,
        seen_directives: Vec::new(),
        warnings: Vec::new(),
    };
    let mut instructions: Vec<Instruction> = Vec::new();
    let mut from_line = None;
    while let Some((line, text)) = p.next_logical()? {
        let ins = p.instruction(line, text)?;
        match (&ins.kind, from_line) {
            (Kind::From(_), Some(first)) => {
                return Err(Fail::Unsupported(format!(
                    "multi-stage builds are not supported: second FROM (the first is on line {first})"
                ))
                .at(path, line));
            }
            (Kind::From(_), None) => from_line = Some(line),
            (Kind::Arg(_), None) => {}
            (kind, None) => {
                return Err(Fail::Syntax(format!(
                    "{} before FROM: only ARG may precede the first FROM",
                    kind.keyword()
                ))
                .at(path, line));
            }
            (_, Some(_)) => {}
        }
        instructions.push(ins);
    }
    if from_line.is_none() {
        let line = instructions.last().map_or(p.lines.line.max(1), |i| i.line);
        let message = if instructions.is_empty() { "file with no instructions" } else { "no FROM instruction" };
        return Err(Fail::Syntax(message.into()).at(path, line));
    }
    Ok(Dockerfile { path: path.to_path_buf(), escape: p.escape, instructions, warnings: p.warnings })
}

impl Parser<'_> {
    fn fail(&self, f: impl Into<Fail>, line: usize) -> DockerfileError {
        f.into().at(&self.path, line)
    }

    /// Parser directives are only recognised until the first line that is not one.
    fn directive(&mut self, token: &str, line: usize) -> Result<(), DockerfileError> {
        if self.directives_done {
            return Ok(());
        }
        let Some((name, value)) = directive(token) else {
            self.directives_done = true;
            return Ok(());
        };
        if !matches!(name.as_str(), "escape" | "syntax" | "check") {
            self.directives_done = true;
            return Ok(());
        }
        if self.seen_directives.contains(&name) {
            return Err(self.fail(format!("only one {name} parser directive can be used"), line));
        }
        if name == "escape" {
            self.escape = match value {
                "\\" => '\\',
                "`" => '`',
                _ => {
                    return Err(self.fail(format!("invalid escape token '{value}' does not match ` or \\"), line));
                }
            };
        }
        self.seen_directives.push(name);
        Ok(())
    }

    /// The next logical line and its first physical line number.
    fn next_logical(&mut self) -> Result<Option<(usize, String)>, DockerfileError> {
        while let Some(raw) = self.lines.next() {
            let start = self.lines.line;
            let token = trim_newline(raw).trim_start();
            self.directive(token, start)?;
            let token = if token.starts_with('#') { "" } else { token };
            let (first, mut done) = trim_continuation(token, self.escape);
            if done && first.is_empty() {
                continue;
            }
            self.check_len(first.len(), start)?;
            let mut buf = String::from(first);
            let mut empty_continuation = false;
            while !done {
                let Some(raw) = self.lines.next() else {
                    break;
                };
                let token = trim_newline(raw);
                let trimmed = token.trim_start();
                // Comment lines inside a continuation are dropped; empty lines too (with a
                // warning, as BuildKit), and neither ends the instruction.
                if trimmed.starts_with('#') {
                    continue;
                }
                if trimmed.is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (part, end) = trim_continuation(token, self.escape);
                done = end;
                self.check_len(buf.len() + part.len(), start)?;
                buf.push_str(part);
            }
            if empty_continuation {
                self.warnings.push(format!(
                    "{}:{start}: empty continuation line (empty continuation lines will become errors in a future BuildKit release)",
                    self.path.display()
                ));
            }
            return Ok(Some((start, buf)));
        }
        Ok(None)
    }

    fn check_len(&self, len: usize, line: usize) -> Result<(), DockerfileError> {
        if len > MAX_LINE_BYTES {
            return Err(self.fail(Fail::TooLarge(format!("instruction is longer than {MAX_LINE_BYTES} bytes")), line));
        }
        Ok(())
    }

    /// Read a here-document body up to its delimiter line.
    fn heredoc_body(&mut self, doc: &HeredocWord, start: usize) -> Result<String, DockerfileError> {
        let mut content = String::new();
        loop {
            let Some(raw) = self.lines.next() else {
                return Err(
                    self.fail(format!("unterminated heredoc: no line {:?} closes the here-document", doc.name), start)
                );
            };
            let mut candidate = trim_newline(raw);
            if doc.chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == doc.name {
                return Ok(content);
            }
            if content.len() + raw.len() > MAX_HEREDOC_BYTES {
                return Err(self.fail(
                    Fail::TooLarge(format!("here-document {:?} is larger than {MAX_HEREDOC_BYTES} bytes", doc.name)),
                    start,
                ));
            }
            content.push_str(raw);
        }
    }

    fn instruction(&mut self, line: usize, text: String) -> Result<Instruction, DockerfileError> {
        let trimmed = text.trim();
        let (keyword, after) = match trimmed.find(words::is_sep) {
            Some(i) => (&trimmed[..i], trimmed[i..].trim_start_matches(words::is_sep)),
            None => (trimmed, ""),
        };
        let (args, flags) = words::extract_flags(after);
        let args = args.trim();
        let lower = keyword.to_ascii_lowercase();

        // Here-documents: RUN/COPY/ADD in shell form only.
        let mut heredocs = Vec::new();
        let heredoc_capable = matches!(lower.as_str(), "run" | "copy" | "add");
        if heredoc_capable && words::json_array(args).map_err(|e| self.fail(e, line))?.is_none() {
            let docs = words::heredocs_in_line(&text).map_err(|e| self.fail(e, line))?;
            for doc in docs {
                let content = self.heredoc_body(&doc, line)?;
                heredocs.push(Heredoc { name: doc.name, content, expand: doc.expand, chomp: doc.chomp });
            }
        }
        let end_line = self.lines.line;
        let kind =
            build_kind(&lower, keyword, &flags, args, heredocs, self.escape).map_err(|f| f.at(&self.path, line))?;
        Ok(Instruction { line, end_line, path: Arc::clone(&self.path), escape: self.escape, original: text, kind })
    }
}

#[derive(Clone, Copy, PartialEq)]
enum FlagType {
    Bool,
    Str,
    Strs,
}

/// Parsed `--flags` (BuildKit `BFlags`): every flag an instruction knows, including the
/// ones kolla-oci then refuses, so that typos still read "unknown flag".
struct Flags {
    values: Vec<(&'static str, String)>,
}

impl Flags {
    fn parse(words: &[String], known: &[(&'static str, FlagType)]) -> Result<Flags, Fail> {
        let mut values: Vec<(&'static str, String)> = Vec::new();
        for word in words {
            let arg = word.strip_prefix("--").unwrap_or(word);
            let (name, value) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (arg, None),
            };
            let Some(&(name, ty)) = known.iter().find(|(n, _)| *n == name) else {
                return Err(Fail::Syntax(format!("unknown flag: --{name}")));
            };
            if ty != FlagType::Strs && values.iter().any(|(n, _)| *n == name) {
                return Err(Fail::Syntax(format!("duplicate flag specified: --{name}")));
            }
            let value = match (ty, value) {
                (FlagType::Bool, None) => "true".to_owned(),
                (FlagType::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "" => return Err(Fail::Syntax(format!("missing a value on flag: --{name}"))),
                    b @ ("true" | "false") => b.to_owned(),
                    _ => {
                        return Err(Fail::Syntax(format!("expecting boolean value for flag --{name}, not: {v}")));
                    }
                },
                (_, None) => return Err(Fail::Syntax(format!("missing a value on flag: --{name}"))),
                (_, Some(v)) => v.to_owned(),
            };
            values.push((name, value));
        }
        Ok(Flags { values })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    fn is_true(&self, name: &str) -> bool {
        self.get(name) == Some("true")
    }

    /// Refuse flags that parse but that kolla-oci does not implement.
    fn refuse(&self, instruction: &str, names: &[&str]) -> Result<(), Fail> {
        match names.iter().find(|n| self.get(n).is_some()) {
            Some(n) => Err(Fail::Unsupported(format!("{instruction} --{n} is not supported"))),
            None => Ok(()),
        }
    }
}

fn build_kind(
    lower: &str,
    keyword: &str,
    flags: &[String],
    args: &str,
    heredocs: Vec<Heredoc>,
    escape: char,
) -> Result<Kind, Fail> {
    use FlagType::{Bool, Str, Strs};
    let no_flags = || Flags::parse(flags, &[]).map(|_| ());
    let exactly_one = |name: &str| -> Result<String, Fail> {
        no_flags()?;
        if args.is_empty() {
            return Err(Fail::Syntax(format!("{name} requires exactly one argument")));
        }
        Ok(args.to_owned())
    };
    Ok(match lower {
        "from" => {
            let f = Flags::parse(flags, &[("platform", Str)])?;
            let w = words::split_sep(args);
            let name = match w.len() {
                1 => None,
                3 if w[1].eq_ignore_ascii_case("as") => {
                    let name = w[2].to_lowercase();
                    if !valid_stage_name(&name) {
                        return Err(Fail::Syntax(format!(
                            "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                            w[2]
                        )));
                    }
                    Some(name)
                }
                _ => return Err("FROM requires either one or three arguments".into()),
            };
            Kind::From(FromSpec { image: w[0].clone(), name, platform: f.get("platform").map(str::to_owned) })
        }
        "arg" => {
            no_flags()?;
            let w = words::parse_words(args, escape);
            if w.is_empty() {
                return Err("ARG requires at least one argument".into());
            }
            let decls = w
                .into_iter()
                .map(|word| match word.split_once('=') {
                    Some(("", _)) => Err(Fail::from("ARG names can not be blank")),
                    Some((k, v)) => Ok(ArgDecl { name: k.to_owned(), default: Some(v.to_owned()) }),
                    None => Ok(ArgDecl { name: word, default: None }),
                })
                .collect::<Result<_, _>>()?;
            Kind::Arg(decls)
        }
        "env" => {
            no_flags()?;
            Kind::Env(name_values(args, "ENV", escape)?)
        }
        "label" => {
            no_flags()?;
            Kind::Label(name_values(args, "LABEL", escape)?)
        }
        "copy" | "add" => {
            let upper = if lower == "copy" { "COPY" } else { "ADD" };
            let f = if lower == "copy" {
                let f = Flags::parse(
                    flags,
                    &[
                        ("from", Str),
                        ("chown", Str),
                        ("chmod", Str),
                        ("link", Bool),
                        ("parents", Bool),
                        ("exclude", Strs),
                    ],
                )?;
                if f.get("from").is_some() {
                    return Err(Fail::Unsupported("multi-stage COPY --from is not supported".into()));
                }
                f.refuse(upper, &["parents", "exclude"])?;
                f
            } else {
                let f = Flags::parse(
                    flags,
                    &[
                        ("chown", Str),
                        ("chmod", Str),
                        ("link", Bool),
                        ("keep-git-dir", Bool),
                        ("checksum", Str),
                        ("exclude", Strs),
                        ("unpack", Bool),
                    ],
                )?;
                f.refuse(upper, &["keep-git-dir", "checksum", "exclude", "unpack"])?;
                f
            };
            let spec = copy_spec(upper, &f, args, heredocs)?;
            if lower == "copy" { Kind::Copy(spec) } else { Kind::Add(spec) }
        }
        "run" => {
            let f = Flags::parse(flags, &[("mount", Strs), ("network", Str), ("security", Str), ("device", Strs)])?;
            f.refuse("RUN", &["mount", "network", "security", "device"])?;
            let command = maybe_json(args)?;
            if matches!(&command, Command::Shell(s) if s.is_empty())
                || matches!(&command, Command::Exec(v) if v.is_empty())
            {
                return Err("RUN requires at least one argument".into());
            }
            check_run_heredoc_names(&command, &heredocs)?;
            Kind::Run(RunSpec { command, heredocs })
        }
        "cmd" => {
            no_flags()?;
            Kind::Cmd(maybe_json(args)?)
        }
        "entrypoint" => {
            no_flags()?;
            Kind::Entrypoint(maybe_json(args)?)
        }
        "shell" => {
            no_flags()?;
            match words::json_array(args)? {
                Some(v) if v.is_empty() => return Err("SHELL requires at least one argument".into()),
                Some(v) => Kind::Shell(v),
                None if args.is_empty() => return Err("SHELL requires at least one argument".into()),
                None => return Err("SHELL requires the arguments to be in JSON form".into()),
            }
        }
        "user" => Kind::User(exactly_one("USER")?),
        "workdir" => Kind::Workdir(exactly_one("WORKDIR")?),
        "stopsignal" => Kind::StopSignal(exactly_one("STOPSIGNAL")?),
        "maintainer" => Kind::Maintainer(exactly_one("MAINTAINER")?),
        "expose" => {
            no_flags()?;
            let ports = words::split_sep(args);
            if ports.is_empty() {
                return Err("EXPOSE requires at least one argument".into());
            }
            Kind::Expose(ports)
        }
        "volume" => {
            no_flags()?;
            let vols = match words::json_array(args)? {
                Some(v) => v,
                None => words::split_sep(args),
            };
            if vols.is_empty() {
                return Err("VOLUME requires at least one argument".into());
            }
            let vols = vols
                .into_iter()
                .map(|v| {
                    let v = v.trim();
                    if v.is_empty() {
                        Err(Fail::from("VOLUME specified can not be an empty string"))
                    } else {
                        Ok(v.to_owned())
                    }
                })
                .collect::<Result<_, _>>()?;
            Kind::Volume(vols)
        }
        "healthcheck" => Kind::Healthcheck(healthcheck(flags, args)?),
        "onbuild" => return Err(Fail::Unsupported("ONBUILD is not supported".into())),
        _ => {
            return Err(Fail::Syntax(format!("unknown instruction {keyword:?}")));
        }
    })
}

/// BuildKit's `validStageName`: `^[a-z][a-z0-9-_.]*$`.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// `parseMaybeJSON`: exec form when the arguments are a JSON string array, else shell form.
fn maybe_json(args: &str) -> Result<Command, Fail> {
    Ok(match words::json_array(args)? {
        Some(v) if !args.is_empty() => Command::Exec(v),
        _ => Command::Shell(args.to_owned()),
    })
}

/// A heredoc used as a file name must be one plain path component.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

/// `RUN <<EOF` with a `#!` body becomes a file named after the delimiter; refuse names that
/// are not a plain file name before anything tries to create that file.
fn check_run_heredoc_names(command: &Command, heredocs: &[Heredoc]) -> Result<(), Fail> {
    if let (Command::Shell(cmd), Some(first)) = (command, heredocs.first())
        && matches!(words::heredoc_word(cmd), Ok(Some(_)))
        && !plain_name(&first.name)
    {
        return Err(Fail::Syntax(format!("heredoc name {:?} must be a plain file name", first.name)));
    }
    Ok(())
}

/// `parseNameVal`: `k=v k2="v 2"` (quotes kept for expansion) or the legacy `k v w`
/// (the whole rest of the line is the value).
fn name_values(args: &str, name: &str, escape: char) -> Result<Vec<KeyValue>, Fail> {
    let w = words::parse_words(args, escape);
    let Some(first) = w.first() else {
        return Err(Fail::Syntax(format!("{name} requires at least one argument")));
    };
    let pairs = if !first.contains('=') {
        let Some(i) = args.find(words::is_sep) else {
            return Err(Fail::Syntax(format!("{name} must have two arguments")));
        };
        vec![(args[..i].to_owned(), args[i..].trim_start_matches(words::is_sep).to_owned())]
    } else {
        w.iter()
            .map(|word| match word.split_once('=') {
                Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
                None => Err(Fail::Syntax(format!(
                    "Syntax error - can't find = in {word:?}. Must be of the form: name=value"
                ))),
            })
            .collect::<Result<_, _>>()?
    };
    pairs
        .into_iter()
        .map(|(key, value)| {
            if key.is_empty() {
                Err(Fail::Syntax(format!("{name} names can not be blank")))
            } else {
                Ok(KeyValue { key, value })
            }
        })
        .collect()
}

/// `parseSourcesAndDest` plus the flags.
fn copy_spec(upper: &str, f: &Flags, args: &str, heredocs: Vec<Heredoc>) -> Result<CopySpec, Fail> {
    let mut w = match words::json_array(args)? {
        Some(v) => v,
        None => words::split_sep(args),
    };
    if w.len() < 2 {
        return Err(Fail::Syntax(format!(
            "{upper} requires at least two arguments, but only one was provided. Destination could not be determined"
        )));
    }
    let dest = w.pop().unwrap_or_default();
    if matches!(words::heredoc_word(&dest), Ok(Some(_))) {
        return Err(Fail::Syntax(format!("{upper} cannot accept a heredoc as a destination")));
    }
    let mut sources = Vec::new();
    let mut files = Vec::new();
    for src in w {
        match words::heredoc_word(&src) {
            Ok(Some(doc)) => {
                if !plain_name(&doc.name) {
                    return Err(Fail::Syntax(format!("{upper} heredoc name {:?} must be a plain file name", doc.name)));
                }
                // As BuildKit: the body of the last here-document with that name.
                let content =
                    heredocs.iter().rev().find(|h| h.name == doc.name).map(|h| h.content.as_str()).unwrap_or_default();
                let content = if doc.chomp { words::chomp(content) } else { content.to_owned() };
                files.push(Heredoc { name: doc.name, content, expand: doc.expand, chomp: doc.chomp });
            }
            _ => sources.push(src),
        }
    }
    Ok(CopySpec {
        sources,
        heredocs: files,
        dest,
        chown: f.get("chown").map(str::to_owned),
        chmod: f.get("chmod").map(str::to_owned),
        link: f.is_true("link"),
    })
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [--interval=…] CMD …`.
fn healthcheck(flags: &[String], args: &str) -> Result<Option<Healthcheck>, Fail> {
    if args.is_empty() {
        return Err("HEALTHCHECK requires at least one argument".into());
    }
    let sep = args.find(char::is_whitespace).unwrap_or(args.len());
    let (typ, rest) = (args[..sep].to_uppercase(), args[sep..].trim_start());
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".into());
        }
        return Ok(None);
    }
    use FlagType::Str;
    let f = Flags::parse(
        flags,
        &[("interval", Str), ("timeout", Str), ("start-period", Str), ("start-interval", Str), ("retries", Str)],
    )?;
    if typ != "CMD" {
        return Err(Fail::Syntax(format!("Unknown type {:?} in HEALTHCHECK (try CMD)", &args[..sep])));
    }
    let command = maybe_json(rest)?;
    if matches!(&command, Command::Shell(s) if s.is_empty()) || matches!(&command, Command::Exec(v) if v.is_empty()) {
        return Err("Missing command after HEALTHCHECK CMD".into());
    }
    let interval = |name: &str| -> Result<i64, Fail> {
        let Some(s) = f.get(name).filter(|s| !s.is_empty()) else {
            return Ok(0);
        };
        let d = go_duration(s).map_err(|e| Fail::Syntax(format!("invalid --{name} {s:?}: {e}")))?;
        if d != 0 && d < 1_000_000 {
            return Err(Fail::Syntax(format!("Interval {name:?} cannot be less than 1ms")));
        }
        Ok(d)
    };
    let retries = match f.get("retries").filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => {
            let r: i32 = s.parse().map_err(|_| Fail::Syntax(format!("invalid --retries {s:?}")))?;
            u32::try_from(r).map_err(|_| Fail::Syntax(format!("--retries cannot be negative ({r})")))?
        }
    };
    Ok(Some(Healthcheck {
        command,
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries,
    }))
}

/// Go's `time.ParseDuration`, in nanoseconds: `[-+]` then `<decimal><unit>` repeated, units
/// `ns us µs ms s m h`; `0` needs no unit.
pub(super) fn go_duration(s: &str) -> Result<i64, String> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err("invalid duration".into());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_end);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let e = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(e)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err("invalid duration".into());
        }
        let unit_end = after.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err("missing unit in duration".into()),
            u => return Err(format!("unknown unit {u:?} in duration")),
        };
        let overflow = || "duration out of range".to_owned();
        let int: u128 = if int.is_empty() { 0 } else { int.parse().map_err(|_| overflow())? };
        // Fractions beyond nanoseconds are truncated, as Go does.
        let frac = &frac[..frac.len().min(18)];
        let frac_ns = if frac.is_empty() {
            0
        } else {
            let digits: u128 = frac.parse().map_err(|_| overflow())?;
            digits * scale / 10u128.pow(frac.len() as u32)
        };
        total = int
            .checked_mul(scale)
            .and_then(|v| v.checked_add(frac_ns))
            .and_then(|v| v.checked_add(total))
            .filter(|v| *v <= i64::MAX as u128)
            .ok_or_else(overflow)?;
        rest = after;
    }
    let total = total as i64;
    Ok(if neg { -total } else { total })
}
