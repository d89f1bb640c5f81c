//! Dockerfile parsing and BuildKit-compatible variable expansion.
//!
//! [`parse`] turns the text of one rendered Dockerfile into typed [`Instruction`]s, following
//! BuildKit's parser (`moby/buildkit` `frontend/dockerfile/parser` and `instructions`):
//! parser directives (`# escape=`, `# syntax=`), comments, line continuations, JSON (exec)
//! versus shell form, here-documents and `--flags`. Words of a parsed instruction are
//! **raw**: quotes, escapes and `$VARIABLES` are still in them. [`Expander::expand`] then
//! processes them as BuildKit's shell lexer does, tracking ARG/ENV scope, and must be run on
//! every instruction, in order, before it is used.
//!
//! kolla-oci builds one image per Dockerfile, so multi-stage builds (a second `FROM`,
//! `COPY --from`), `ONBUILD` and the BuildKit-only `RUN --mount/--network/--security` are
//! rejected with an error naming the file and line.
//!
//! This module does no I/O: it sees only the text and build arguments the caller passes.

mod expand;
mod parse;
mod words;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use expand::{Expander, PlatformRole};

/// Longest logical line (an instruction with its continuation lines joined) accepted.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Largest here-document body accepted.
pub const MAX_HEREDOC_BYTES: usize = 16 << 20;

/// Parse the text of a Dockerfile. `path` is only used in error messages.
///
/// Runs in time linear in `text`; lines longer than [`MAX_LINE_BYTES`] and here-documents
/// larger than [`MAX_HEREDOC_BYTES`] are errors.
pub fn parse(path: &Path, text: &str) -> Result<Dockerfile, DockerfileError> {
    parse::parse(path, text)
}

/// A parsed Dockerfile: exactly one `FROM`, optionally preceded by `ARG`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The path given to [`parse`].
    pub path: PathBuf,
    /// The escape token: `\` unless a `# escape=` directive chose `` ` ``.
    pub escape: char,
    /// The instructions in file order.
    pub instructions: Vec<Instruction>,
    /// Things BuildKit also only warns about (empty continuation lines), as `path:line: text`.
    pub warnings: Vec<String>,
}

/// One instruction and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// First line of the instruction, 1-based.
    pub line: usize,
    /// Last line, including continuation lines and here-document bodies.
    pub end_line: usize,
    /// The Dockerfile path, for error messages (shared by all instructions of a file).
    pub path: Arc<Path>,
    /// The file's escape token; expansion needs it.
    pub escape: char,
    /// The logical line as written (continuations joined, comments dropped), without
    /// here-document bodies: BuildKit's `Node.Original`, for history `created_by`.
    pub original: String,
    /// What the instruction says.
    pub kind: Kind,
}

/// The instructions, one variant each, with typed arguments.
///
/// After [`parse`] the words are raw; after [`Expander::expand`] they are final for the
/// instructions BuildKit expands (FROM, ARG, ENV, LABEL, COPY, ADD, EXPOSE, VOLUME, USER,
/// WORKDIR, STOPSIGNAL). RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK and MAINTAINER are never
/// expanded: a shell (or nothing) interprets them at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `FROM [--platform=P] image [AS name]`.
    From(FromSpec),
    /// `ARG name[=default] …`. After expansion `default` holds the value in effect (build
    /// argument, expanded default or inherited global value), `None` if there is none.
    Arg(Vec<ArgDecl>),
    /// `ENV k=v …` or the legacy `ENV k v`.
    Env(Vec<KeyValue>),
    /// `LABEL k=v …` or the legacy `LABEL k v`.
    Label(Vec<KeyValue>),
    /// `COPY [--chown] [--chmod] [--link] src… dest`.
    Copy(CopySpec),
    /// `ADD [--chown] [--chmod] [--link] src… dest` (URLs and local tar auto-extraction are
    /// the builder's business).
    Add(CopySpec),
    /// `RUN cmd` / `RUN ["exe", …]`, with here-documents.
    Run(RunSpec),
    /// `USER user[:group]`.
    User(String),
    /// `WORKDIR path` (relative paths are relative to the previous WORKDIR).
    Workdir(String),
    /// `CMD`.
    Cmd(Command),
    /// `ENTRYPOINT`; `ENTRYPOINT []` is `Command::Exec(vec![])` and resets it.
    Entrypoint(Command),
    /// `EXPOSE port[/proto] …`. After expansion: normalised `port/proto` keys (ranges
    /// expanded), as the image config's `ExposedPorts` wants them.
    Expose(Vec<String>),
    /// `VOLUME ["/a", …]` or `VOLUME /a /b`.
    Volume(Vec<String>),
    /// `HEALTHCHECK NONE` (`None`: write `{"Test": ["NONE"]}` to disable an inherited check)
    /// or `HEALTHCHECK [options] CMD …`.
    Healthcheck(Option<Healthcheck>),
    /// `STOPSIGNAL signal` (validated after expansion, kept as written).
    StopSignal(String),
    /// `SHELL ["exe", …]` (JSON form only).
    Shell(Vec<String>),
    /// `MAINTAINER name` (deprecated; sets the config `author`).
    Maintainer(String),
}

impl Kind {
    /// The instruction keyword in upper case, for logs and history.
    pub fn keyword(&self) -> &'static str {
        match self {
            Kind::From(_) => "FROM",
            Kind::Arg(_) => "ARG",
            Kind::Env(_) => "ENV",
            Kind::Label(_) => "LABEL",
            Kind::Copy(_) => "COPY",
            Kind::Add(_) => "ADD",
            Kind::Run(_) => "RUN",
            Kind::User(_) => "USER",
            Kind::Workdir(_) => "WORKDIR",
            Kind::Cmd(_) => "CMD",
            Kind::Entrypoint(_) => "ENTRYPOINT",
            Kind::Expose(_) => "EXPOSE",
            Kind::Volume(_) => "VOLUME",
            Kind::Healthcheck(_) => "HEALTHCHECK",
            Kind::StopSignal(_) => "STOPSIGNAL",
            Kind::Shell(_) => "SHELL",
            Kind::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// Arguments of `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromSpec {
    /// The base image reference (expanded with the ARGs declared before FROM).
    pub image: String,
    /// The stage name after `AS`, lower-cased. Single-stage builds have no use for it.
    pub name: Option<String>,
    /// `--platform=`, if given.
    pub platform: Option<String>,
}

/// One `name[=default]` of an `ARG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The argument name (never expanded, as in BuildKit).
    pub name: String,
    /// The default (raw) or, after expansion, the value in effect.
    pub default: Option<String>,
}

/// One `key=value` of `ENV` or `LABEL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The name.
    pub key: String,
    /// The value.
    pub value: String,
}

/// Arguments of `COPY` and `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// Source paths (or URLs, for ADD), in order, without the here-document sources.
    pub sources: Vec<String>,
    /// Here-document sources (`COPY <<EOF /dest`): each becomes a file named `name`
    /// (mode 0644) in `dest`, or at `dest` when it is not a directory. Their bodies are
    /// already tab-stripped for `<<-`, and expanded by [`Expander::expand`] unless the
    /// delimiter was quoted. BuildKit copies the path sources first, then these.
    pub heredocs: Vec<Heredoc>,
    /// The destination (relative to WORKDIR when not absolute).
    pub dest: String,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=` (octal after expansion).
    pub chmod: Option<String>,
    /// `--link`: accepted; it only changes BuildKit's caching, and every COPY here is
    /// already an independent layer.
    pub link: bool,
}

impl CopySpec {
    /// The `--chmod` mode bits, if given (validated as octal by [`Expander::expand`]).
    pub fn mode(&self) -> Option<u32> {
        self.chmod.as_deref().and_then(|m| u32::from_str_radix(m, 8).ok())
    }
}

/// A here-document attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, unquoted (`EOF` for `<<"EOF"`). For COPY/ADD also the file name.
    pub name: String,
    /// The body: the lines between the opening line and the delimiter, with their line
    /// endings.
    pub content: String,
    /// Whether the body is subject to expansion (the delimiter was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body lines (and from the delimiter line).
    pub chomp: bool,
}

/// A command in shell form (run by the image's `SHELL`, default `/bin/sh -c`) or exec form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `RUN echo hi`: the text after the keyword (and flags), continuation lines joined.
    Shell(String),
    /// `RUN ["echo", "hi"]`.
    Exec(Vec<String>),
}

/// Arguments of `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The command as written (still containing the `<<EOF` words).
    pub command: Command,
    /// Here-documents opened by the command line, in order (shell form only).
    pub heredocs: Vec<Heredoc>,
}

/// What RUN executes, once here-documents are taken into account (BuildKit `dispatchRun`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunScript {
    /// Exec form: run this argv as is.
    Exec(Vec<String>),
    /// Shell form: run the image's shell (default `["/bin/sh", "-c"]`) with this script as
    /// its last argument.
    Shell {
        /// The script.
        script: String,
        /// A here-document starting with `#!`: the builder must provide it as an executable
        /// (0755) file `/dev/pipes/<name>` (read-only mount); `script` is that path.
        file: Option<InlineFile>,
    },
}

/// An executable here-document for [`RunScript::Shell`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineFile {
    /// The file name; a single path component (checked by the parser).
    pub name: String,
    /// The file content.
    pub content: String,
}

impl RunSpec {
    /// The script to run, as BuildKit builds it: `RUN <<EOF` alone runs the (tab-stripped
    /// for `<<-`) body as the script, or as a file when it starts with `#!`; any other
    /// command line with here-documents is handed to the shell with the bodies appended,
    /// so the shell's own here-document support applies.
    pub fn script(&self) -> RunScript {
        let cmd = match &self.command {
            Command::Exec(argv) => return RunScript::Exec(argv.clone()),
            Command::Shell(cmd) => cmd,
        };
        let Some(first) = self.heredocs.first() else {
            return RunScript::Shell { script: cmd.clone(), file: None };
        };
        if matches!(words::heredoc_word(cmd), Ok(Some(_))) {
            let data = if first.chomp { words::chomp(&first.content) } else { first.content.clone() };
            if data.starts_with("#!") {
                return RunScript::Shell {
                    script: format!("/dev/pipes/{}", first.name),
                    file: Some(InlineFile { name: first.name.clone(), content: data }),
                };
            }
            return RunScript::Shell { script: data, file: None };
        }
        let mut full = cmd.clone();
        for doc in &self.heredocs {
            full.push('\n');
            full.push_str(&doc.content);
            full.push_str(&doc.name);
        }
        RunScript::Shell { script: full, file: None }
    }
}

/// Arguments of `HEALTHCHECK … CMD`, durations in nanoseconds as Docker stores them
/// (0 = not set: inherit or use the runtime default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// The probe: shell form becomes `["CMD-SHELL", cmd]`, exec form `["CMD", …]`.
    pub command: Command,
    /// `--interval`.
    pub interval: i64,
    /// `--timeout`.
    pub timeout: i64,
    /// `--start-period`.
    pub start_period: i64,
    /// `--start-interval`.
    pub start_interval: i64,
    /// `--retries`.
    pub retries: u32,
}

impl Healthcheck {
    /// The config's `Healthcheck.Test` array.
    pub fn test(&self) -> Vec<String> {
        match &self.command {
            Command::Shell(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
            Command::Exec(argv) => std::iter::once("CMD".to_owned()).chain(argv.iter().cloned()).collect(),
        }
    }
}

/// A Dockerfile problem; always displayed as `path:line: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerfileError {
    /// The text is not a valid Dockerfile (what BuildKit rejects too).
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The Dockerfile.
        path: PathBuf,
        /// 1-based line of the offending instruction.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Valid for BuildKit but not implemented by kolla-oci (multi-stage, ONBUILD, …).
    #[error("{}:{line}: {message}", path.display())]
    Unsupported {
        /// The Dockerfile.
        path: PathBuf,
        /// 1-based line of the offending instruction.
        line: usize,
        /// What is not supported.
        message: String,
    },
    /// Variable expansion failed (`${V:?message}`, bad substitution, unmatched quote).
    #[error("{}:{line}: {message}", path.display())]
    Expansion {
        /// The Dockerfile.
        path: PathBuf,
        /// 1-based line of the offending instruction.
        line: usize,
        /// What failed.
        message: String,
    },
    /// An instruction exceeds [`MAX_LINE_BYTES`] or [`MAX_HEREDOC_BYTES`].
    #[error("{}:{line}: {message}", path.display())]
    TooLarge {
        /// The Dockerfile.
        path: PathBuf,
        /// 1-based line where the limit was crossed.
        line: usize,
        /// Which limit.
        message: String,
    },
}

impl DockerfileError {
    /// The 1-based line the error is about.
    pub fn line(&self) -> usize {
        match self {
            DockerfileError::Syntax { line, .. }
            | DockerfileError::Unsupported { line, .. }
            | DockerfileError::Expansion { line, .. }
            | DockerfileError::TooLarge { line, .. } => *line,
        }
    }
}
