//! Registry mirrors, configured as podman, buildah and skopeo configure them: containers-registries.conf(5)
//! (version 2, TOML). An image whose name falls under a `[[registry]]` entry's `prefix` is tried on each of
//! its `[[registry.mirror]]`s in order, then at the entry's `location` (unless `blocked`); the mirror's
//! `insecure = true` speaks plain http to it.
//!
//! The file is `$CONTAINERS_REGISTRIES_CONF` if set, else `$XDG_CONFIG_HOME/containers/registries.conf`
//! (`~/.config/containers/…`) if it exists, else `/etc/containers/registries.conf`; the drop-ins of the
//! `registries.conf.d/` directory beside the chosen file (`*.conf`, sorted) come after it, and an entry
//! of a drop-in replaces the entry with the same prefix. Supported: `prefix`, `location`, `insecure`,
//! `blocked`, the mirrors' `location`, `insecure` and `pull-from-mirror` (`all`, `digest-only`,
//! `tag-only`), and `mirror-by-digest-only`. Wildcard prefixes (`*.example.com`) are ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Reference, RegistryError};

/// One place to pull an image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The image's name there.
    pub reference: Reference,
    /// Speak plain http (or skip TLS verification) to it.
    pub insecure: bool,
}

/// The `[[registry]]` entries of the registries.conf files in effect.
#[derive(Debug, Clone, Default)]
pub struct Mirrors {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct File {
    #[serde(default)]
    registry: Vec<Entry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Entry {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    #[serde(default)]
    mirror: Vec<Mirror>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Mirror {
    location: String,
    #[serde(default)]
    insecure: bool,
    pull_from_mirror: Option<String>,
}

impl Entry {
    /// What the entry matches: its `prefix`, else its `location`.
    fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref().or(self.location.as_deref()).map(|p| p.trim_end_matches('/'))
    }
}

/// Whether `name` (`registry/repository`) falls under `prefix`: equal, or continuing at a `/`.
fn under(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl Mirrors {
    /// The configuration in effect for this user (see the module docs); no file means no mirrors.
    pub fn load() -> Result<Mirrors, RegistryError> {
        let Some(main) = config_file() else { return Ok(Mirrors::default()) };
        let mut files = vec![main.clone()];
        let dropins = main.with_extension("conf.d");
        if let Ok(rd) = std::fs::read_dir(&dropins) {
            let mut extra: Vec<PathBuf> =
                rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "conf")).collect();
            extra.sort();
            files.extend(extra);
        }
        let mut mirrors = Mirrors::default();
        for f in files.iter().filter(|f| f.is_file()) {
            let text = std::fs::read_to_string(f)
                .map_err(|e| RegistryError::Io { what: format!("reading {}", f.display()), source: e })?;
            mirrors.merge(Mirrors::parse(f, &text)?);
        }
        Ok(mirrors)
    }

    /// The `[[registry]]` entries of one file's `text` (named `path` in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Mirrors, RegistryError> {
        let file: File = toml::from_str(text).map_err(|e| RegistryError::Protocol {
            what: format!("registries configuration {}", path.display()),
            reason: e.to_string(),
        })?;
        let mut entries = Vec::new();
        for entry in file.registry {
            match entry.prefix() {
                None => {
                    return Err(RegistryError::Protocol {
                        what: format!("registries configuration {}", path.display()),
                        reason: "a [[registry]] has neither prefix nor location".into(),
                    });
                }
                Some(p) if p.starts_with("*.") => tracing::debug!(prefix = p, "wildcard registry prefix ignored"),
                Some(_) => entries.push(entry),
            }
        }
        Ok(Mirrors { entries })
    }

    /// Add the entries of a later file: one with the same prefix as an earlier one replaces it.
    fn merge(&mut self, later: Mirrors) {
        for entry in later.entries {
            self.entries.retain(|e| e.prefix() != entry.prefix());
            self.entries.push(entry);
        }
    }

    /// Where to pull `reference` from, in order: the mirrors of the entry with the longest prefix it falls
    /// under, then that entry's location (or the reference itself without an entry) unless blocked.
    pub fn sources(&self, reference: &Reference) -> Vec<Source> {
        let name = format!("{}/{}", reference.registry(), reference.repository());
        let entry = self
            .entries
            .iter()
            .filter(|e| e.prefix().is_some_and(|p| under(&name, p)))
            .max_by_key(|e| e.prefix().map_or(0, str::len));
        let Some(entry) = entry else {
            return vec![Source { reference: reference.clone(), insecure: false }];
        };
        let prefix = entry.prefix().unwrap_or_default();
        let by_digest = reference.digest().is_some();
        let at = |location: &str| -> Option<Reference> {
            let moved = format!("{}{}", location.trim_end_matches('/'), &name[prefix.len()..]);
            let full = match (reference.digest(), reference.tag()) {
                (Some(d), _) => format!("{moved}@{d}"),
                (None, Some(t)) => format!("{moved}:{t}"),
                (None, None) => moved,
            };
            Reference::parse(&full)
                .inspect_err(|e| tracing::warn!("registries.conf: {location} for {reference}: {e}"))
                .ok()
        };
        let mut out: Vec<Source> = entry
            .mirror
            .iter()
            .filter(|m| {
                let only = m.pull_from_mirror.as_deref().unwrap_or(if entry.mirror_by_digest_only {
                    "digest-only"
                } else {
                    "all"
                });
                match only {
                    "digest-only" => by_digest,
                    "tag-only" => !by_digest,
                    _ => true,
                }
            })
            .filter_map(|m| Some(Source { reference: at(&m.location)?, insecure: m.insecure }))
            .collect();
        if !entry.blocked
            && let Some(reference) = at(entry.location.as_deref().unwrap_or(prefix))
        {
            out.push(Source { reference, insecure: entry.insecure });
        }
        out
    }
}

/// The registries.conf to read, if any (see the module docs).
fn config_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONTAINERS_REGISTRIES_CONF").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let user_config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| Path::new(&h).join(".config")));
    let user = user_config.map(|d| d.join("containers/registries.conf")).filter(|p| p.is_file());
    user.or_else(|| Some(PathBuf::from("/etc/containers/registries.conf")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
unqualified-search-registries = ["docker.io"]

[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = "127.0.0.1:5000"
insecure = true

[[registry.mirror]]
location = "mirror.example.com/hub"
pull-from-mirror = "digest-only"

[[registry]]
prefix = "docker.io/library/blocked"
location = "docker.io/library/blocked"
blocked = true

[[registry]]
prefix = "quay.io/rockylinux"
location = "registry.example.com/rocky"

[[registry]]
prefix = "*.example.org"
location = "x.example.org"
"#;

    fn names(m: &Mirrors, r: &str) -> Vec<(String, bool)> {
        m.sources(&Reference::parse(r).unwrap()).into_iter().map(|s| (s.reference.to_string(), s.insecure)).collect()
    }

    #[test]
    fn mirrors_first_then_the_location_by_longest_prefix() {
        let m = Mirrors::parse(Path::new("registries.conf"), CONF).unwrap();
        assert_eq!(
            names(&m, "debian:trixie"),
            [
                ("127.0.0.1:5000/library/debian:trixie".to_string(), true),
                ("docker.io/library/debian:trixie".to_string(), false)
            ]
        );
        let pinned = format!("debian@sha256:{}", "a".repeat(64));
        assert_eq!(names(&m, &pinned).len(), 3, "digest-only mirror used for a digest");
        assert_eq!(names(&m, &pinned)[1].0, format!("mirror.example.com/hub/library/debian@sha256:{}", "a".repeat(64)));
        assert!(names(&m, "blocked:1").is_empty(), "blocked, no mirror");
        assert_eq!(
            names(&m, "quay.io/rockylinux/rockylinux:10"),
            [("registry.example.com/rocky/rockylinux:10".into(), false)]
        );
        // `quay.io/rockylinuxx` is not under `quay.io/rockylinux`.
        assert_eq!(names(&m, "quay.io/rockylinuxx/r:1"), [("quay.io/rockylinuxx/r:1".into(), false)]);
        assert_eq!(names(&m, "127.0.0.1:9/a/b:1"), [("127.0.0.1:9/a/b:1".into(), false)]);
    }

    #[test]
    fn bad_files_are_named() {
        let e = Mirrors::parse(Path::new("/etc/containers/registries.conf"), "[[registry]]\nprefix = ").unwrap_err();
        assert!(e.to_string().contains("/etc/containers/registries.conf"), "{e}");
        let e = Mirrors::parse(Path::new("r.conf"), "[[registry]]\ninsecure = true\n").unwrap_err();
        assert!(e.to_string().contains("neither prefix nor location"), "{e}");
    }

    #[test]
    fn later_files_replace_entries_with_the_same_prefix() {
        let mut m = Mirrors::parse(Path::new("a"), CONF).unwrap();
        m.merge(Mirrors::parse(Path::new("b"), "[[registry]]\nlocation = \"docker.io\"\n").unwrap());
        assert_eq!(names(&m, "debian:trixie"), [("docker.io/library/debian:trixie".to_string(), false)]);
    }
}
