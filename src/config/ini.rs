//! oslo.config-style INI files (`kolla-build.conf`) and `$var` / `${var}` interpolation.
//!
//! Hand-written rather than rust-ini because oslo's parser has its own rules that change values:
//! `key = value` or `key: value` (whichever separator comes first), one pair of matching outer
//! quotes stripped, indented continuation lines joined with `\n`, a blank line ending a value,
//! `#`/`;` comments only at the start of a line, repeated keys collected (multi-valued options),
//! and non-`DEFAULT` section names compared in lower case. Errors name the file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ConfigError;
use super::cli::Position;

/// One value of a key, with where it came from (for error messages).
#[derive(Debug, Clone)]
pub struct Entry {
    /// The value after quote stripping and continuation joining (not yet interpolated).
    pub value: String,
    /// File the value was read from.
    pub file: PathBuf,
    /// 1-based line of the key.
    pub line: usize,
    /// Where the file was read in the order of the command line (a value on the command line
    /// after it wins over it; see [`Position`]).
    pub position: Position,
}

/// All parsed files merged: section → key → values, oldest file first.
///
/// Single-valued options take the last value; multi-valued options take all of them in order,
/// which is what oslo.config does with files read in command-line order.
#[derive(Debug, Default, Clone)]
pub struct IniData {
    sections: Sections,
    /// The position of the files read next.
    position: Position,
}

fn normalize_section(name: &str) -> String {
    if name == "DEFAULT" { name.to_string() } else { name.to_lowercase() }
}

impl IniData {
    /// Parse `path`, read at `position` of the command line, and merge it on top of what was read
    /// before.
    pub fn read_file_at(&mut self, path: &Path, position: Position) -> Result<(), ConfigError> {
        self.position = position;
        self.read_file(path)
    }

    /// Parse `path` and merge it on top of what was read before.
    pub fn read_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        self.parse_str(path, &text)
    }

    /// Parse `text` (named `path` in errors) and merge it on top of what was read before.
    pub fn parse_str(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let err = |line: usize, msg: &str, raw: &str| ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            message: format!("{msg}: {raw:?}"),
        };
        let mut section: Option<String> = None;
        // (key, first line, value lines)
        let mut pending: Option<(String, usize, Vec<String>)> = None;
        for (idx, raw) in text.lines().enumerate() {
            let lineno = idx + 1;
            let line = raw.trim_end();
            if line.is_empty() {
                flush(&mut self.sections, path, self.position, &section, &mut pending)?;
                continue;
            }
            if line.starts_with([' ', '\t']) {
                match pending.as_mut() {
                    Some((_, _, value)) => value.push(line.trim_start().to_string()),
                    None => return Err(err(lineno, "unexpected continuation line", line)),
                }
                continue;
            }
            flush(&mut self.sections, path, self.position, &section, &mut pending)?;
            if line.starts_with('[') {
                if !line.ends_with(']') {
                    return Err(err(lineno, "invalid section (must end with ])", line));
                }
                if line.len() <= 2 {
                    return Err(err(lineno, "empty section name", line));
                }
                let name = normalize_section(&line[1..line.len() - 1]);
                self.sections.entry(name.clone()).or_default();
                section = Some(name);
            } else if line.starts_with(['#', ';']) {
                continue;
            } else {
                let colon = line.find(':');
                let equal = line.find('=');
                let at = match (colon, equal) {
                    (None, None) => return Err(err(lineno, "no ':' or '=' found in assignment", line)),
                    (None, Some(e)) => e,
                    (Some(c), None) => c,
                    (Some(c), Some(e)) => c.min(e),
                };
                let key = line[..at].trim();
                if key.is_empty() {
                    return Err(err(lineno, "key cannot be empty", line));
                }
                let mut value = line[at + 1..].trim();
                let b = value.as_bytes();
                if b.len() >= 2 && b[0] == b[b.len() - 1] && (b[0] == b'"' || b[0] == b'\'') {
                    value = &value[1..value.len() - 1];
                } else if b.len() == 1 && (b[0] == b'"' || b[0] == b'\'') {
                    // oslo strips a lone quote too (first and last character are the same one).
                    value = "";
                }
                pending = Some((key.to_string(), lineno, vec![value.to_string()]));
            }
        }
        flush(&mut self.sections, path, self.position, &section, &mut pending)
    }

    /// All values of `section.key` (oldest first), empty if unset.
    pub fn get_all(&self, section: &str, key: &str) -> &[Entry] {
        self.sections.get(&normalize_section(section)).and_then(|s| s.get(key)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The last value of `section.key`.
    pub fn get_last(&self, section: &str, key: &str) -> Option<&Entry> {
        self.get_all(section, key).last()
    }

    /// Names of all sections read (lower case except `DEFAULT`).
    pub fn section_names(&self) -> impl Iterator<Item = &str> {
        self.sections.keys().map(String::as_str)
    }

    /// Keys set in `section`, in sorted order.
    pub fn keys(&self, section: &str) -> impl Iterator<Item = &str> {
        self.sections.get(&normalize_section(section)).into_iter().flat_map(|s| s.keys().map(String::as_str))
    }
}

type Sections = BTreeMap<String, BTreeMap<String, Vec<Entry>>>;

/// Store a finished `key = value` (possibly continued over lines) in its section.
fn flush(
    sections: &mut Sections,
    path: &Path,
    position: Position,
    section: &Option<String>,
    pending: &mut Option<(String, usize, Vec<String>)>,
) -> Result<(), ConfigError> {
    if let Some((key, line, value)) = pending.take() {
        let Some(sec) = section else {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                message: "section must be started before assignment".into(),
            });
        };
        let entry = Entry { value: value.join("\n"), file: path.to_path_buf(), line, position };
        sections.entry(sec.clone()).or_default().entry(key).or_default().push(entry);
    }
    Ok(())
}

/// A name that `$name` / `${name}` refers to: `[group.]option`.
pub fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c == '.' || c.is_ascii_alphanumeric()
}

/// Expand `$name`, `${name}` and `$$` (and `\$`, which oslo treats as `$$`) in `value`, asking
/// `lookup` for each name. Like Python's `string.Template.safe_substitute`, a `$` that starts no
/// valid placeholder is kept as is; an unknown name is an error, as in oslo.config.
pub fn interpolate(
    value: &str,
    lookup: &mut dyn FnMut(&str) -> Result<Option<String>, ConfigError>,
) -> Result<String, ConfigError> {
    if !value.contains('$') {
        return Ok(value.to_string());
    }
    let value = value.replace("\\$", "$$");
    let mut out = String::with_capacity(value.len());
    let mut rest = value.as_str();
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end)
                    if end > 0
                        && inner[..end].starts_with(is_ident_start)
                        && inner[..end].chars().all(is_ident_char) =>
                {
                    (&inner[..end], end + 2)
                }
                _ => ("", 0),
            }
        } else if after.starts_with(is_ident_start) {
            let end = after.find(|c: char| !is_ident_char(c)).unwrap_or(after.len());
            (&after[..end], end)
        } else {
            ("", 0)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        match lookup(name)? {
            Some(v) => out.push_str(&v),
            None => return Err(ConfigError::Interpolation { name: name.to_string(), value: value.clone() }),
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oslo_rules() {
        let mut d = IniData::default();
        let text = "[DEFAULT]\nbase = debian\ntag: 'x=1'\nprofile = a\nprofile = b\nlong = one\n  two\n\n# c\n[Nova-Base]\ntype = url\n";
        d.parse_str(Path::new("k.conf"), text).unwrap();
        assert_eq!(d.get_last("DEFAULT", "base").unwrap().value, "debian");
        assert_eq!(d.get_last("DEFAULT", "tag").unwrap().value, "x=1");
        assert_eq!(d.get_all("DEFAULT", "profile").len(), 2);
        assert_eq!(d.get_last("DEFAULT", "long").unwrap().value, "one\ntwo");
        assert_eq!(d.get_last("nova-base", "type").unwrap().value, "url");
        let e = IniData::default().parse_str(Path::new("k.conf"), "[DEFAULT]\nnovalue\n").unwrap_err();
        assert!(e.to_string().contains("k.conf:2"), "{e}");
    }

    #[test]
    fn substitution() {
        let mut look = |n: &str| Ok(if n == "a" { Some("A".to_string()) } else { None });
        assert_eq!(interpolate("x$a-${a}$$ \\$a $ $1", &mut look).unwrap(), "xA-A$ $a $ $1");
        assert!(interpolate("$nope", &mut look).is_err());
    }
}
