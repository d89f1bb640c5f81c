//! Word-level tools shared by the parser and the expander, ported from BuildKit:
//! the shell lexer (`frontend/dockerfile/shell/lex.go`: quotes, escapes, `$V`, `${V…}`),
//! the parser's quote-keeping word splitter and builder-flag extractor
//! (`frontend/dockerfile/parser/line_parsers.go`, `split_command.go`), JSON arrays and
//! heredoc words (`parser.go`).
//!
//! Over 600 lines on purpose: the lexer's states belong together, as in BuildKit's `lex.go`, which is what a
//! reader compares it with (tests: `tests/dockerfile_*.rs`).
//!
//! Everything here is linear in its input; nesting and output sizes are bounded so hostile
//! input ends in an error, not in a stack overflow or an allocation storm.

use regex::{Regex, RegexBuilder};

/// Largest result of expanding one word (bytes). A COPY heredoc body is one word, so this
/// is also the ceiling for an expanded heredoc.
pub(crate) const MAX_WORD: usize = 16 << 20;
/// Deepest `${…${…}…}` nesting accepted (the lexer recurses once per level).
const MAX_DEPTH: usize = 64;
/// Longest `${V#pat}`/`${V%pat}`/`${V/pat/rep}` pattern accepted: matching costs up to
/// pattern × value, and real patterns are a few characters.
const MAX_PATTERN: usize = 256;
/// Size limit for the compiled regex of a `${V#pat}`/`${V%pat}`/`${V/pat/rep}` pattern.
const REGEX_SIZE_LIMIT: usize = 4 << 20;

const MISSING_BRACE: &str = "syntax error: missing '}'";

/// Where the lexer looks variables up. `None` means unset (not the same as empty: `${V-x}`).
pub(crate) trait Lookup {
    fn lookup(&self, name: &str) -> Option<&str>;
}

/// The empty environment (heredoc detection lexes with no variables).
pub(crate) struct NoEnv;

impl Lookup for NoEnv {
    fn lookup(&self, _: &str) -> Option<&str> {
        None
    }
}

/// BuildKit's `shell.Lex` with its option fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lex {
    /// The Dockerfile escape token (`\` or `` ` ``).
    pub escape: char,
    /// Keep quote characters in the output (heredoc-name detection).
    pub raw_quotes: bool,
    /// Keep escape characters in the output (heredoc-name detection).
    pub raw_escapes: bool,
    /// Treat `'` and `"` as ordinary characters (expanding COPY heredoc bodies).
    pub skip_quotes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset: bool,
}

impl Lex {
    /// A lexer with all options off: what BuildKit uses for instruction words.
    pub fn new(escape: char) -> Lex {
        Lex { escape, raw_quotes: false, raw_escapes: false, skip_quotes: false, skip_unset: false }
    }

    /// `ProcessWord`: expand `src` as one word (inner whitespace kept).
    pub fn word(&self, src: &str, env: &dyn Lookup) -> Result<String, String> {
        self.process(src, env).map(|(word, _)| word)
    }

    /// `ProcessWords`: expand `src` and split the result into words after substitution
    /// (quoted parts never split; empty words dropped).
    pub fn words(&self, src: &str, env: &dyn Lookup) -> Result<Vec<String>, String> {
        self.process(src, env).map(|(_, words)| words)
    }

    fn process(&self, src: &str, env: &dyn Lookup) -> Result<(String, Vec<String>), String> {
        let mut sh = Shell { lex: *self, env, src, pos: 0, raw_escapes: self.raw_escapes, depth: 0 };
        sh.stop_on(None, self.raw_escapes).map_err(|e| format!("failed to process {}: {e}", quote_short(src)))
    }
}

/// `{:?}` of `s`, shortened: errors must stay readable for megabyte-long words.
pub(crate) fn quote_short(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}…", &s[..end])
}

/// Accumulates the split words next to the unsplit result, as BuildKit's `wordsStruct`.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

/// Append with the [`MAX_WORD`] bound (the only place output can outgrow the input).
fn append(result: &mut String, s: &str) -> Result<(), String> {
    if result.len() + s.len() > MAX_WORD {
        return Err(format!("expansion result is larger than {MAX_WORD} bytes"));
    }
    result.push_str(s);
    Ok(())
}

struct Shell<'a> {
    lex: Lex,
    env: &'a dyn Lookup,
    src: &'a str,
    pos: usize,
    raw_escapes: bool,
    depth: usize,
}

impl<'a> Shell<'a> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn lookup(&self, name: &str) -> Option<&'a str> {
        let env: &'a dyn Lookup = self.env;
        env.lookup(name)
    }

    /// `processStopOn`: read up to `stop` (consumed) or the end of input.
    fn stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<(String, Vec<String>), String> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let r = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.bump();
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let tmp = self.dollar()?;
                append(&mut result, &tmp)?;
                words.add_string(&tmp);
            } else if !self.lex.skip_quotes && (ch == '\'' || ch == '"') {
                let tmp = if ch == '\'' { self.single_quote()? } else { self.double_quote()? };
                append(&mut result, &tmp)?;
                words.add_raw_string(&tmp);
            } else {
                self.bump();
                let mut ch = ch;
                if ch == self.lex.escape {
                    if self.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    // The escape token escapes the next character; at the end it vanishes.
                    match self.bump() {
                        Some(c) => ch = c,
                        None => break,
                    }
                    words.add_raw_char(ch);
                } else {
                    words.add_char(ch);
                }
                result.push(ch);
            }
        }
        match stop {
            Some(c) => Err(format!("unexpected end of statement while looking for matching {c}")),
            None => Ok((result, words.finish())),
        }
    }

    /// Everything up to the next `'` is literal; nothing can be escaped.
    fn single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.bump();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.bump() {
                None => {
                    return Err("unexpected end of statement while looking for matching single-quote".into());
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    /// Inside `"…"` only `$` expands, and the escape token escapes only `"`, `$` and itself.
    fn double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.bump();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err("unexpected end of statement while looking for matching double-quote".into());
                }
                Some('"') => {
                    self.bump();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    append(&mut result, &value)?;
                }
                Some(_) => {
                    let mut ch = self.bump().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                ch = c;
                                self.bump();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn dollar(&mut self) -> Result<String, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("variable substitutions nested more than {MAX_DEPTH} deep"));
        }
        let r = self.dollar_inner();
        self.depth -= 1;
        r
    }

    fn dollar_inner(&mut self) -> Result<String, String> {
        self.bump(); // '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v.to_owned(),
                None if self.lex.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.bump(); // '{'
        match self.peek() {
            None => return Err(MISSING_BRACE.into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        let Some(mut ch) = self.bump() else {
            return Err(MISSING_BRACE.into());
        };
        let mut chs = ch.to_string();
        match ch {
            '}' => {
                return Ok(match self.lookup(&name) {
                    Some(v) => v.to_owned(),
                    None if self.lex.skip_unset => format!("${{{name}}}"),
                    None => String::new(),
                });
            }
            '/' => return self.replace(&name),
            ':' => {
                // `${V:…}`: an empty value counts as unset. Like BuildKit, any character may
                // follow; only the known modifiers survive the dispatch below.
                let Some(c) = self.bump() else {
                    return Err(MISSING_BRACE.into());
                };
                ch = c;
                chs.push(c);
            }
            '+' | '-' | '?' | '#' | '%' => {}
            _ => return Err(format!("unsupported modifier ({chs}) in substitution")),
        }
        let null_is_unset = chs.starts_with(':');
        let raw = ch == '#' || ch == '%';
        let (word, _) = match self.stop_on(Some('}'), raw) {
            Ok(w) => w,
            Err(_) if self.peek().is_none() => return Err(MISSING_BRACE.into()),
            Err(e) => return Err(e),
        };
        let value = self.lookup(&name);
        if self.lex.skip_unset && value.is_none() {
            return Ok(format!("${{{name}{chs}{word}}}"));
        }
        let set = value.is_some();
        let value = value.unwrap_or("");
        let unset = !set || (null_is_unset && value.is_empty());
        match ch {
            '-' => Ok(if unset { word } else { value.to_owned() }),
            '+' => Ok(if unset { String::new() } else { word }),
            '?' => {
                let default = if !set {
                    "is not allowed to be unset"
                } else if null_is_unset && value.is_empty() {
                    "is not allowed to be empty"
                } else {
                    return Ok(value.to_owned());
                };
                let message = if word.is_empty() { default } else { &word };
                Err(format!("{name}: {message}"))
            }
            '#' | '%' => {
                // `#`/`%` remove the shortest match, `##`/`%%` the longest.
                let (greedy, pattern) = match word.strip_prefix(ch) {
                    Some(p) => (true, p),
                    None => (false, word.as_str()),
                };
                if ch == '%' { trim_suffix(pattern, value, greedy) } else { trim_prefix(pattern, value, greedy) }
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    /// `${V/pattern/replacement}` and `${V//pattern/replacement}` (all matches).
    fn replace(&mut self, name: &str) -> Result<String, String> {
        let all = self.peek() == Some('/');
        if all {
            self.bump();
        }
        let (pattern, _) = match self.stop_on(Some('/'), true) {
            Ok(w) => w,
            Err(_) if self.peek().is_none() => {
                return Err("syntax error: missing '/' in ${}".into());
            }
            Err(e) => return Err(e),
        };
        let (replacement, _) = match self.stop_on(Some('}'), true) {
            Ok(w) => w,
            Err(_) if self.peek().is_none() => return Err(MISSING_BRACE.into()),
            Err(e) => return Err(e),
        };
        let value = match self.lookup(name) {
            Some(v) => v,
            None if self.lex.skip_unset => {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            None => "",
        };
        let re = shell_pattern(&pattern, true, false)
            .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
        if all {
            let matches = re.find_iter(value).count();
            if value.len() + matches.saturating_mul(replacement.len()) > MAX_WORD {
                return Err(format!("expansion result is larger than {MAX_WORD} bytes"));
            }
            Ok(re.replace_all(value, replacement.as_str()).into_owned())
        } else {
            Ok(match re.find(value) {
                Some(m) => format!("{}{replacement}{}", &value[..m.start()], &value[m.end()..]),
                None => value.to_owned(),
            })
        }
    }

    /// A variable name: letters, digits and `_`; or a run of digits; or one special
    /// parameter character (`$@`, `$?`, …), which is simply never set here.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(c) = self.peek().filter(|c| c.is_numeric()) {
                    self.bump();
                    name.push(c);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.bump();
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            self.bump();
            name.push(ch);
        }
        name
    }
}

/// BuildKit's `convertShellPatternToRegex`: `*` and `?` wildcards, `\` escapes; no
/// bracket expressions.
fn shell_pattern(pattern: &str, greedy: bool, anchored: bool) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN {
        return Err(format!("pattern longer than {MAX_PATTERN} bytes"));
    }
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut it = pattern.chars().peekable();
    let mut buf = [0u8; 4];
    while let Some(tok) = it.next() {
        match tok {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                // `\}` and `\/` are escapes of the `${}` syntax, not of the pattern.
                if matches!(it.peek(), Some('}' | '/')) {
                    continue;
                }
                match it.next() {
                    Some(c @ ('*' | '?' | '\\')) => {
                        out.push('\\');
                        out.push(c);
                    }
                    Some(c) => return Err(format!("invalid escape '\\{c}'")),
                    None => return Err("invalid escape at the end of the pattern".into()),
                }
            }
            c => out.push_str(&regex::escape(c.encode_utf8(&mut buf))),
        }
    }
    RegexBuilder::new(&out).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| e.to_string())
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let re = shell_pattern(pattern, greedy, true)
        .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_owned(),
        None => value.to_owned(),
    })
}

/// Regexes find leftmost matches only, so the shortest *suffix* match is found as the
/// shortest prefix match of the reversed pattern in the reversed value.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverse a pattern but keep each `\x` escape pair in order (`a\*c` → `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = vec!['\0'; chars.len()];
    let last = chars.len().saturating_sub(1);
    let mut i = 0;
    while i < chars.len() {
        let at = last - i;
        if chars[i] == '\\' && i != last {
            out[at - 1] = '\\';
            out[at] = chars[i + 1];
            i += 2;
        } else {
            out[at] = chars[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// BuildKit's `reWhitespace` (`[\t\v\f\r ]`): what separates an instruction keyword from
/// its arguments and whitespace-delimited arguments from each other.
pub(crate) fn is_sep(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r')
}

/// `parseStringsWhitespaceDelimited` on already-trimmed text.
pub(crate) fn split_sep(s: &str) -> Vec<String> {
    s.split(is_sep).filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

/// `parseWords`: split on whitespace, but keep quoted runs together. Quotes and escapes are
/// kept in the words; expansion removes them later.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut it = rest.chars();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    loop {
        let Some(mut ch) = it.next() else {
            if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        };
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                // Outside quotes the escape and the escaped character both stay; an escape
                // token at the very end is dropped.
                let Some(next) = it.next() else {
                    continue;
                };
                word.push(ch);
                ch = next;
            }
            word.push(ch);
            continue;
        }
        // Phase::Quote: the escape token is special except inside single quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            let Some(next) = it.next() else {
                phase = Phase::Word;
                continue;
            };
            word.push(ch);
            ch = next;
        }
        word.push(ch);
    }
    words
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Spaces,
    Word,
    Quote,
}

/// `extractBuilderFlags`: take the leading `--flag[=value]` words off `line`. Returns the
/// rest of the line (untrimmed) and the flags with quotes removed (always `\` escapes).
pub(crate) fn extract_flags(line: &str) -> (&str, Vec<String>) {
    let mut it = line.char_indices().peekable();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    loop {
        let Some((i, ch)) = it.next() else {
            if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        };
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    continue;
                }
                // Only words starting with `--` are flags.
                if ch != '-' || it.peek().map(|&(_, c)| c) != Some('-') {
                    return (&line[i..], words);
                }
                phase = Phase::Word;
                word.push(ch);
            }
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (&line[i..], words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = ch;
                    blank_ok = true;
                    phase = Phase::Quote;
                    continue;
                }
                let ch = if ch == '\\' {
                    match it.next() {
                        Some((_, c)) => c,
                        None => continue,
                    }
                } else {
                    ch
                };
                word.push(ch);
            }
            Phase::Quote => {
                if ch == quote {
                    phase = Phase::Word;
                    continue;
                }
                let ch = if ch == '\\' {
                    match it.next() {
                        Some((_, c)) => c,
                        None => {
                            phase = Phase::Word;
                            continue;
                        }
                    }
                } else {
                    ch
                };
                word.push(ch);
            }
        }
    }
    ("", words)
}

/// The JSON (exec) form: `Ok(Some(words))` for a JSON array of strings, `Ok(None)` for
/// anything that is not valid JSON (the shell form, as Docker does), and an error for a
/// valid JSON array holding something other than strings.
pub(crate) fn json_array(rest: &str) -> Result<Option<Vec<String>>, String> {
    let t = rest.trim_start();
    if !t.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(t) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err("when using JSON array syntax, arrays must be comprised of strings only".to_owned()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A here-document named by a `<<NAME` word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeredocWord {
    pub name: String,
    pub expand: bool,
    pub chomp: bool,
}

/// BuildKit's `ParseHeredoc`: `[fd]<<[-]NAME` where NAME is one shell word; any quoting in
/// NAME turns expansion of the body off. `Ok(None)` if `src` is not a heredoc word.
pub(crate) fn heredoc_word(src: &str) -> Result<Option<HeredocWord>, String> {
    let rest = src.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = rest.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let mut lex = Lex::new('\\');
    lex.skip_unset = true;
    let words = lex.words(rest, &NoEnv)?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let raw = lex.words(rest, &NoEnv)?;
    if raw.len() != 1 {
        return Err(format!("internal lexing of heredoc produced inconsistent results: {rest}"));
    }
    let quotes = |s: &str| s.chars().filter(|c| matches!(c, '\'' | '"')).count();
    let expand = quotes(&words[0]) == quotes(&raw[0]);
    Ok(Some(HeredocWord { name: words.into_iter().next().unwrap_or_default(), expand, chomp }))
}

/// `heredocsFromLine`: the heredocs a logical line opens, in order. A line that does not
/// lex (unbalanced quotes) opens none, as in BuildKit.
pub(crate) fn heredocs_in_line(line: &str) -> Result<Vec<HeredocWord>, String> {
    if !line.contains("<<") {
        return Ok(Vec::new());
    }
    let lex = Lex { raw_quotes: true, raw_escapes: true, skip_unset: true, ..Lex::new('\\') };
    let Ok(words) = lex.words(line, &NoEnv) else {
        return Ok(Vec::new());
    };
    let mut docs = Vec::new();
    for w in words {
        if let Some(doc) = heredoc_word(&w)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// `ChompHeredocContent`: strip leading tabs from every line (`<<-`).
pub(crate) fn chomp(content: &str) -> String {
    content.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
}
