//! `.dockerignore` / `.containerignore`: the context files a build does not see, with Docker's rules
//! (moby's `patternmatcher` and `ignorefile`, which `docker build`, BuildKit, podman and buildah share).
//!
//! The file: one pattern per line; a line starting with `#` is a comment (before any trimming), blank
//! lines are skipped, `!` makes an exception. Each pattern is cleaned as Go's `filepath.Clean` cleans
//! it and a leading `/` is dropped, so `/foo`, `./foo` and `foo/` all mean `foo`.
//!
//! Matching: a path (relative to the context root, `/`-separated) is excluded when a pattern matches it
//! or one of its parent directories, so `node_modules` excludes everything under it; the last pattern
//! that matches decides, so a later `!` line re-includes. The glob is Go's `filepath.Match` (`*` and `?`
//! stop at `/`, `[...]` classes negated with `^`, `\` escapes) plus `**`, which matches any number of
//! directories (including none).

use std::path::{Path, PathBuf};

/// The ignore file names looked for in the context root, the first found wins (podman and buildah read
/// `.containerignore` before `.dockerignore`).
const IGNORE_FILES: [&str; 2] = [".containerignore", ".dockerignore"];

/// The patterns of one ignore file.
#[derive(Debug, Clone)]
pub(crate) struct IgnoreRules {
    patterns: Vec<Pattern>,
    /// Whether some pattern is an exception (`!…`): then an excluded directory must still be walked,
    /// since a file below it may be re-included.
    exceptions: bool,
    /// Where the rules come from (for messages).
    file: PathBuf,
}

/// One compiled pattern, matched the way `patternmatcher` matches it.
#[derive(Debug, Clone)]
struct Pattern {
    exception: bool,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    /// A pattern without wildcards: the path itself.
    Exact(String),
    /// `prefix**`: any path starting with the prefix.
    Prefix(String),
    /// `**suffix` with a literal suffix: any path ending with it (`**/foo` also matches `foo`).
    Suffix(String),
    /// Anything else, translated to an anchored regex.
    Regex(regex::Regex),
}

impl Matcher {
    fn matches(&self, path: &str) -> bool {
        match self {
            Matcher::Exact(p) => path == p,
            Matcher::Prefix(p) => path.starts_with(p.as_str()),
            Matcher::Suffix(s) => path.ends_with(s.as_str()) || s.strip_prefix('/').is_some_and(|s| s == path),
            Matcher::Regex(re) => re.is_match(path),
        }
    }
}

impl IgnoreRules {
    /// The rules of the build context `context` for the Dockerfile `dockerfile`: `<Dockerfile>.dockerignore`
    /// beside the Dockerfile (BuildKit's per-Dockerfile file), else the context root's `.containerignore`
    /// or `.dockerignore`. `Ok(None)` when there is none.
    pub fn load(context: &Path, dockerfile: &Path) -> Result<Option<IgnoreRules>, String> {
        let own = dockerfile.file_name().map(|n| {
            let mut n = n.to_os_string();
            n.push(".dockerignore");
            dockerfile.with_file_name(n)
        });
        let candidates = own.into_iter().chain(IGNORE_FILES.iter().map(|f| context.join(f)));
        for path in candidates {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let rules = IgnoreRules::parse(&text, &path)?;
                    tracing::debug!(file = %path.display(), patterns = rules.patterns.len(), "context ignore file");
                    return Ok(Some(rules));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("reading {}: {e}", path.display())),
            }
        }
        Ok(None)
    }

    /// Parse the text of ignore file `file`; a bad pattern is an error naming the file and line.
    pub fn parse(text: &str, file: &Path) -> Result<IgnoreRules, String> {
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = if n == 0 { line.trim_start_matches('\u{feff}') } else { line };
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exception = p.starts_with('!');
            if exception {
                p = p[1..].trim();
            }
            let bad = |why: String| format!("{}:{}: bad pattern {line:?}: {why}", file.display(), n + 1);
            if p.is_empty() {
                return Err(bad("`!` with no pattern".into()));
            }
            let mut cleaned = clean(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            check_glob(&cleaned).map_err(bad)?;
            let matcher = compile(&cleaned).map_err(bad)?;
            patterns.push(Pattern { exception, matcher });
        }
        let exceptions = patterns.iter().any(|p| p.exception);
        Ok(IgnoreRules { patterns, exceptions, file: file.to_path_buf() })
    }

    /// Whether `path` (relative to the context root, `/`-separated) is excluded (`patternmatcher`'s
    /// `MatchesOrParentMatches`). The context root itself never is.
    pub fn excludes(&self, path: &str) -> bool {
        let path = clean(path);
        if path == "." {
            return false;
        }
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => path[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            // An inclusion cannot change an excluded path, nor an exception an included one.
            if p.exception != matched {
                continue;
            }
            let hit =
                p.matcher.matches(&path) || (1..=parents.len()).any(|k| p.matcher.matches(&parents[..k].join("/")));
            if hit {
                matched = !p.exception;
            }
        }
        matched
    }

    /// Whether some pattern is an exception (`!…`).
    pub fn has_exceptions(&self) -> bool {
        self.exceptions
    }

    /// The ignore file the rules come from.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

/// Go's `filepath.Clean` on a `/`-separated path: no empty or `.` elements, `..` resolved lexically
/// (kept at the start of a relative path, dropped at the root), no trailing `/`; `.` when empty.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if out.last().is_some_and(|l| *l != "..") => {
                out.pop();
            }
            ".." if rooted => {}
            p => out.push(p),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// The syntax check of Go's `filepath.Match`, which `patternmatcher` applies to every pattern: a class
/// must be closed and non-empty, a range needs both ends, `\` must escape something.
fn check_glob(p: &str) -> Result<(), String> {
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.next().is_none() => return Err("`\\` at the end escapes nothing".into()),
            '[' => {
                chars.next_if_eq(&'^');
                let mut ranges = 0;
                loop {
                    if ranges > 0 && chars.next_if_eq(&']').is_some() {
                        break;
                    }
                    class_char(&mut chars)?;
                    if chars.next_if_eq(&'-').is_some() {
                        class_char(&mut chars)?;
                    }
                    ranges += 1;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One (possibly escaped) character of a class, which must be followed by more of the pattern (`getEsc`).
fn class_char(chars: &mut std::iter::Peekable<std::str::Chars>) -> Result<(), String> {
    let unclosed = || "unterminated character class `[`".to_string();
    match chars.next() {
        None => return Err(unclosed()),
        Some('-' | ']') => return Err("a character class needs a character before `-` or `]`".into()),
        Some('\\') if chars.next().is_none() => return Err(unclosed()),
        Some(_) => {}
    }
    if chars.peek().is_none() { Err(unclosed()) } else { Ok(()) }
}

/// `patternmatcher`'s compilation of a cleaned pattern (already checked by [`check_glob`]).
fn compile(p: &str) -> Result<Matcher, String> {
    #[derive(PartialEq)]
    enum Type {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut re = String::from("^");
    let mut kind = Type::Exact;
    let mut chars = p.chars().peekable();
    let mut in_class = false;
    let mut first = true;
    while let Some(c) = chars.next() {
        let at_start = std::mem::replace(&mut first, false);
        if in_class {
            match c {
                ']' => in_class = false,
                '\\' => {
                    let next = chars.next().unwrap_or('\\');
                    re.push_str(&regex::escape(&next.to_string()));
                    continue;
                }
                // Set operators and nested classes of the regex crate are plain characters in a glob.
                '[' | '&' | '~' => re.push('\\'),
                _ => {}
            }
            re.push(c);
            continue;
        }
        match c {
            '*' if chars.next_if_eq(&'*').is_some() => {
                chars.next_if_eq(&'/');
                if chars.peek().is_none() {
                    if kind == Type::Exact {
                        kind = Type::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Type::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = Type::Regex;
                }
                if at_start {
                    kind = Type::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = Type::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = Type::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(c);
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    re.push_str(&regex::escape(&next.to_string()));
                    kind = Type::Regex;
                } else {
                    re.push_str("\\\\");
                }
            }
            '[' => {
                re.push('[');
                in_class = true;
                if chars.next_if_eq(&'^').is_some() {
                    re.push('^');
                }
                kind = Type::Regex;
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    Ok(match kind {
        Type::Exact => Matcher::Exact(p.to_string()),
        Type::Prefix => Matcher::Prefix(p[..p.len() - 2].to_string()),
        Type::Suffix => Matcher::Suffix(p[2..].to_string()),
        Type::Regex => {
            re.push('$');
            Matcher::Regex(regex::Regex::new(&re).map_err(|e| e.to_string())?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(lines: &[&str]) -> IgnoreRules {
        IgnoreRules::parse(&lines.join("\n"), Path::new(".dockerignore")).unwrap()
    }

    /// The examples of Docker's `.dockerignore` documentation, path by path.
    #[test]
    fn dockers_documented_examples() {
        let doc = rules(&["# comment", "*/temp*", "*/*/temp*", "temp?"]);
        let table: &[(&str, bool)] = &[
            ("somedir/temporary.txt", true),
            ("somedir/temp", true),
            ("somedir/temp/inside", true),
            ("somedir/subdir/temporary.txt", true),
            ("tempa", true),
            ("tempb", true),
            ("temp", false),
            ("temporary.txt", false),
            ("a/b/c/temp", false),
            ("# comment", false),
        ];
        for (path, excluded) in table {
            assert_eq!(doc.excludes(path), *excluded, "{path}");
        }
        let go = rules(&["**/*.go"]);
        for (path, excluded) in [("main.go", true), ("a/b/c.go", true), ("a/b/c.gox", false)] {
            assert_eq!(go.excludes(path), excluded, "{path}");
        }
        // Exceptions: the last matching line decides.
        let md = rules(&["*.md", "!README.md"]);
        assert!(md.excludes("CHANGES.md") && !md.excludes("README.md"));
        let secret_last = rules(&["*.md", "!README*.md", "README-secret.md"]);
        assert!(secret_last.excludes("CHANGES.md"));
        assert!(!secret_last.excludes("README-public.md"));
        assert!(secret_last.excludes("README-secret.md"));
        let secret_first = rules(&["*.md", "README-secret.md", "!README*.md"]);
        assert!(!secret_first.excludes("README-secret.md") && !secret_first.excludes("README.md"));
        assert!(secret_first.excludes("CHANGES.md"));
        assert!(secret_first.has_exceptions() && !doc.has_exceptions());
    }

    /// `patternmatcher`'s own cases: one pattern, one path, `MatchesOrParentMatches`.
    #[test]
    fn pattern_table() {
        let table: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**/", "file", true),
            ("**", "dir/file", true),
            ("**/**", "dir/file", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/dir2/file", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("ab[^c]", "abc", false),
            ("a?b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a?b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[[]", "[", true),
            ("/docs/", "docs/x", true),
            ("./docs//sub/../x", "docs/x", true),
            ("docs", "docs/README.md", true),
        ];
        for (pattern, path, excluded) in table {
            assert_eq!(rules(&[pattern]).excludes(path), *excluded, "pattern {pattern:?} path {path:?}");
        }
        let multi: &[(&[&str], &str, bool)] = &[
            (&["docs", "!docs/README.md"], "docs/README.md", false),
            (&["docs/", "!docs/README.md"], "docs/README.md", false),
            (&["docs/*", "!docs/README.md"], "docs/README.md", false),
            (&["!fileutils.go", "*.go"], "fileutils.go", true),
            (&["**", "!util/docker/web"], "util/docker/web/foo", false),
            (&["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", true),
        ];
        for (patterns, path, excluded) in multi {
            assert_eq!(rules(patterns).excludes(path), *excluded, "patterns {patterns:?} path {path:?}");
        }
        assert!(!rules(&["*"]).excludes("."));
    }

    #[test]
    fn file_syntax() {
        // Comments only at the very start of a line; blanks and surrounding space ignored; a BOM dropped.
        let r = rules(&["\u{feff}# c", "  # not a comment", "", "  spaced  ", "! keep.txt", "\tkeep*"]);
        assert!(r.excludes("# not a comment") && r.excludes("spaced") && !r.excludes("# c"));
        assert!(r.excludes("keep.txt") && r.excludes("keeper"));
        // Bad patterns name the file and line, as Docker refuses them.
        for bad in ["!", "[", "a[", "[^bc", "[]a]", "[-]", "[x-]", "[a-b-c]", "x\\"] {
            let e = IgnoreRules::parse(&format!("ok\n{bad}\n"), Path::new("ctx/.dockerignore")).unwrap_err();
            assert!(e.starts_with("ctx/.dockerignore:2: bad pattern"), "{bad}: {e}");
        }
    }

    #[test]
    fn go_clean() {
        for (p, want) in [("a//b/./c/", "a/b/c"), ("../a", "../a"), ("a/../..", ".."), ("/../a", "/a"), ("", ".")] {
            assert_eq!(clean(p), want, "{p}");
        }
    }
}
