//! Licenses as packages declare them, turned into SPDX license expressions where that is unambiguous.
//!
//! SBOM validators (pyspdxtools) refuse a `licenseDeclared` that is not a valid expression over known
//! SPDX identifiers, so only what maps cleanly becomes an expression: a PEP 639 `License-Expression`, a
//! `License:` field that already is one, trove classifiers with a single meaning, and the short names of
//! a Debian machine-readable `copyright` file. Anything else is kept as text (CycloneDX `license.name`,
//! SPDX `licenseComments`) and the expression is `NOASSERTION`.

/// A package's license: an SPDX expression when one is known, else what the package says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct License {
    /// A valid SPDX license expression over listed identifiers.
    pub expression: Option<String>,
    /// The package's own words, when they are not an expression.
    pub text: Option<String>,
}

/// SPDX license identifiers accepted in expressions (the common ones in Debian and PyPI metadata).
const IDS: &[&str] = &[
    "0BSD",
    "AFL-2.1",
    "AGPL-3.0-only",
    "AGPL-3.0-or-later",
    "Apache-1.1",
    "Apache-2.0",
    "Artistic-1.0",
    "Artistic-1.0-Perl",
    "Artistic-2.0",
    "BSD-1-Clause",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSD-4-Clause",
    "BSL-1.0",
    "bzip2-1.0.6",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "CC0-1.0",
    "curl",
    "EPL-1.0",
    "EPL-2.0",
    "FSFAP",
    "FSFUL",
    "FSFULLR",
    "GFDL-1.2-only",
    "GFDL-1.2-or-later",
    "GFDL-1.3-only",
    "GFDL-1.3-or-later",
    "GPL-1.0-only",
    "GPL-1.0-or-later",
    "GPL-2.0-only",
    "GPL-2.0-or-later",
    "GPL-3.0-only",
    "GPL-3.0-or-later",
    "HPND",
    "ICU",
    "IJG",
    "ISC",
    "LGPL-2.0-only",
    "LGPL-2.0-or-later",
    "LGPL-2.1-only",
    "LGPL-2.1-or-later",
    "LGPL-3.0-only",
    "LGPL-3.0-or-later",
    "libpng-2.0",
    "Libpng",
    "MIT",
    "MIT-0",
    "MPL-1.1",
    "MPL-2.0",
    "NCSA",
    "OpenSSL",
    "PostgreSQL",
    "PSF-2.0",
    "Python-2.0",
    "Ruby",
    "Sleepycat",
    "Unicode-DFS-2016",
    "Unicode-3.0",
    "Unlicense",
    "W3C",
    "WTFPL",
    "X11",
    "Zlib",
    "ZPL-2.1",
];

/// SPDX license exceptions accepted after `WITH`.
const EXCEPTIONS: &[&str] = &[
    "Autoconf-exception-3.0",
    "Bison-exception-2.2",
    "Classpath-exception-2.0",
    "GCC-exception-3.1",
    "LLVM-exception",
    "OpenSSL-exception",
];

/// The listed spelling of `token` in `list` (identifiers match case-insensitively).
fn canonical(list: &[&'static str], token: &str) -> Option<&'static str> {
    list.iter().copied().find(|id| id.eq_ignore_ascii_case(token))
}

/// `s` as a canonical SPDX expression when every identifier in it is known; `None` otherwise.
pub fn spdx_expression(s: &str) -> Option<String> {
    let spaced = s.replace('(', " ( ").replace(')', " ) ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    if tokens.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(tokens.len());
    let (mut depth, mut want_operand, mut after_with) = (0i32, true, false);
    for t in tokens {
        match t {
            "(" if want_operand => depth += 1,
            ")" if !want_operand && depth > 0 => depth -= 1,
            "AND" | "OR" | "and" | "or" if !want_operand => want_operand = true,
            "WITH" | "with" if !want_operand => (want_operand, after_with) = (true, true),
            _ if want_operand => {
                let list = if after_with { EXCEPTIONS } else { IDS };
                let id = canonical(list, t.trim_end_matches('+'))?;
                want_operand = false;
                after_with = false;
                out.push(if t.ends_with('+') && !id.ends_with("-or-later") { format!("{id}+") } else { id.into() });
                continue;
            }
            _ => return None,
        }
        out.push(t.to_ascii_uppercase());
    }
    (depth == 0 && !want_operand).then(|| out.join(" ").replace("( ", "(").replace(" )", ")"))
}

/// The SPDX identifier of a trove classifier `License :: ...`, when it names exactly one license.
fn classifier(c: &str) -> Option<&'static str> {
    let last = c.rsplit("::").next()?.trim();
    Some(match last {
        "MIT License" => "MIT",
        "Apache Software License" => "Apache-2.0",
        "ISC License (ISCL)" => "ISC",
        "Python Software Foundation License" => "PSF-2.0",
        "Mozilla Public License 2.0 (MPL 2.0)" => "MPL-2.0",
        "The Unlicense (Unlicense)" => "Unlicense",
        "Zope Public License" => "ZPL-2.1",
        "GNU General Public License v2 (GPLv2)" => "GPL-2.0-only",
        "GNU General Public License v2 or later (GPLv2+)" => "GPL-2.0-or-later",
        "GNU General Public License v3 (GPLv3)" => "GPL-3.0-only",
        "GNU General Public License v3 or later (GPLv3+)" => "GPL-3.0-or-later",
        "GNU Lesser General Public License v2 (LGPLv2)" => "LGPL-2.0-only",
        "GNU Lesser General Public License v2 or later (LGPLv2+)" => "LGPL-2.0-or-later",
        "GNU Lesser General Public License v3 (LGPLv3)" => "LGPL-3.0-only",
        "GNU Lesser General Public License v3 or later (LGPLv3+)" => "LGPL-3.0-or-later",
        _ => return None,
    })
}

/// The license of a Python distribution from its core metadata: `License-Expression` (PEP 639) first,
/// then a `License` field that is an expression, then license classifiers (several mean a choice).
pub fn python(expression: Option<&str>, field: Option<&str>, classifiers: &[String]) -> License {
    let text = expression.or(field).map(str::trim).filter(|t| !t.is_empty() && *t != "UNKNOWN");
    if let Some(e) = text.and_then(spdx_expression) {
        return License { expression: Some(e), text: None };
    }
    let mut ids: Vec<&str> = classifiers.iter().filter_map(|c| classifier(c)).collect();
    ids.sort_unstable();
    ids.dedup();
    let from_classifiers = (!ids.is_empty()).then(|| ids.join(" OR "));
    License { expression: from_classifiers, text: text.map(|t| t.lines().next().unwrap_or(t).to_owned()) }
}

/// A Debian `copyright` short name (`GPL-2+`, `Expat`, `BSD-3-clause`) as an SPDX expression.
fn debian_name(name: &str) -> Option<String> {
    let name = name.trim();
    if let Some((lic, exception)) = name.split_once(" with ") {
        let exception = exception.trim().trim_end_matches(" exception");
        let exception =
            canonical(EXCEPTIONS, &format!("{exception}-exception")).or_else(|| canonical(EXCEPTIONS, exception))?;
        return Some(format!("{} WITH {exception}", debian_name(lic)?));
    }
    let alias = match name {
        "Expat" => Some("MIT"),
        "Artistic" | "Artistic-1" => Some("Artistic-1.0-Perl"),
        "PSF-2" => Some("PSF-2.0"),
        "Python" => Some("Python-2.0"),
        "Apache-2" => Some("Apache-2.0"),
        "MPL-2" => Some("MPL-2.0"),
        "public-domain" | "permissive" => None,
        _ => canonical(IDS, name),
    };
    if let Some(id) = alias {
        return Some(id.to_owned());
    }
    // The GNU family: `GPL-2` → `GPL-2.0-only`, `LGPL-2.1+` → `LGPL-2.1-or-later`.
    let (base, later) = match name.strip_suffix('+') {
        Some(b) => (b, true),
        None => (name, false),
    };
    let (family, version) = base.split_once('-')?;
    if !["GPL", "LGPL", "AGPL", "GFDL"].contains(&family) {
        return None;
    }
    let version = if version.contains('.') { version.to_owned() } else { format!("{version}.0") };
    canonical(IDS, &format!("{family}-{version}-{}", if later { "or-later" } else { "only" })).map(str::to_owned)
}

/// The license of a Debian package from its `/usr/share/doc/<pkg>/copyright`, when that file is in the
/// machine-readable format: every `License:` short name, joined with `AND` (the package holds files
/// under each of them).
pub fn debian_copyright(text: &str) -> License {
    if !text.starts_with("Format:") {
        return License::default();
    }
    let mut names: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("License:")).map(str::trim).filter(|n| !n.is_empty()).collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return License::default();
    }
    let mut parts = Vec::new();
    for name in &names {
        // Debian writes choices as `GPL-2+ or Artistic`.
        let choices: Option<Vec<String>> =
            name.split(" or ").flat_map(|c| c.split(" | ")).map(debian_name).collect::<Option<Vec<_>>>();
        match choices {
            Some(c) if c.len() > 1 => parts.push(format!("({})", c.join(" OR "))),
            Some(c) => parts.extend(c),
            None => return License { expression: None, text: Some(names.join(", ")) },
        }
    }
    parts.sort();
    parts.dedup();
    if parts.len() == 1 {
        parts[0] = parts[0].trim_start_matches('(').trim_end_matches(')').to_owned();
    }
    License { expression: Some(parts.join(" AND ")), text: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_are_validated_and_canonicalized() {
        assert_eq!(spdx_expression("mit").as_deref(), Some("MIT"));
        assert_eq!(spdx_expression("Apache-2.0 OR BSD-2-Clause").as_deref(), Some("Apache-2.0 OR BSD-2-Clause"));
        assert_eq!(
            spdx_expression("(MIT AND Zlib) or GPL-2.0-only WITH Classpath-exception-2.0").as_deref(),
            Some("(MIT AND Zlib) OR GPL-2.0-only WITH Classpath-exception-2.0")
        );
        for bad in ["", "BSD", "MIT AND", "(MIT", "MIT)", "AND MIT", "MIT License", "LicenseRef-x"] {
            assert_eq!(spdx_expression(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn python_prefers_expression_then_classifiers() {
        let cls = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(python(Some("MIT"), Some("whatever"), &[]).expression.as_deref(), Some("MIT"));
        let l = python(None, Some("BSD"), &cls(&["License :: OSI Approved :: Apache Software License"]));
        assert_eq!((l.expression.as_deref(), l.text.as_deref()), (Some("Apache-2.0"), Some("BSD")));
        let l = python(
            None,
            None,
            &cls(&["License :: OSI Approved :: MIT License", "License :: OSI Approved :: Apache Software License"]),
        );
        assert_eq!(l.expression.as_deref(), Some("Apache-2.0 OR MIT"));
        assert_eq!(python(None, Some("UNKNOWN"), &[]), License::default());
    }

    #[test]
    fn debian_copyright_short_names_map_to_spdx() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
                    Files: *\nLicense: GPL-2+\n\nFiles: a\nLicense: Expat\n .\n text\n\n\
                    Files: b\nLicense: GPL-2+ or Artistic\n\nFiles: c\nLicense: LGPL-2.1\n";
        assert_eq!(
            debian_copyright(text).expression.as_deref(),
            Some("(GPL-2.0-or-later OR Artistic-1.0-Perl) AND GPL-2.0-or-later AND LGPL-2.1-only AND MIT")
        );
        let odd = "Format: x\n\nFiles: *\nLicense: public-domain\n";
        assert_eq!(debian_copyright(odd), License { expression: None, text: Some("public-domain".into()) });
        assert_eq!(debian_copyright("This package was debianized by ...\nGPL\n"), License::default());
        assert_eq!(
            debian_name("GPL-2+ with OpenSSL exception").as_deref(),
            Some("GPL-2.0-or-later WITH OpenSSL-exception")
        );
    }
}
