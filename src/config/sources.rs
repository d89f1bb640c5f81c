//! Per-image source sections (`[<image>]`, `[<image>-plugin-*]`, `[<image>-additions-*]`):
//! their defaults from the template tree's `sources.yaml`, their resolution over config files,
//! and the selection of one image's sections.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::resolve::Resolver;
use super::{ConfigError, KollaConfig};

/// One `[<image>]`, `[<image>-plugin-*]` or `[<image>-additions-*]` source section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Section name (the archive is `<name>-archive`).
    pub name: String,
    /// `url`, `git` or `local`.
    pub kind: SourceKind,
    /// URL, git remote or local path (interpolated).
    pub location: String,
    /// Git reference.
    pub reference: Option<String>,
    /// Disabled sources are skipped.
    pub enabled: bool,
    /// Version (used in `location` through `${version}`).
    pub version: Option<String>,
    /// Expected sha256 of a `url` download, per Debian arch.
    pub sha256: BTreeMap<String, String>,
}

/// How a [`Source`] is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Download a tarball.
    Url,
    /// Clone and check out `reference`.
    Git,
    /// A local directory (tarred) or file.
    Local,
}

/// The source sections that go into one image's build context (see [`crate::sources`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSources {
    /// `[<image>]`: becomes `<image>-archive`.
    pub source: Option<Source>,
    /// `[<image>-plugin-*]`, sorted by name: unpacked into `plugins/`.
    pub plugins: Vec<Source>,
    /// `[<image>-additions-*]`, sorted by name: unpacked into `additions/`.
    pub additions: Vec<Source>,
}

/// A data file that belongs with a template tree: `<tree>/<name>`, or, for the tree of an
/// installed kolla package (`kolla/docker`), `<tree>/../<kolla_dir>/<name>`.
pub fn tree_data_file(tree: &Path, name: &str, kolla_dir: &str) -> Option<PathBuf> {
    let own = tree.join(name);
    if own.is_file() {
        return Some(own);
    }
    let pkg = tree.parent()?.join(kolla_dir).join(name);
    pkg.is_file().then_some(pkg)
}

/// Default source sections from the tree's `sources.yaml`, flattened to option strings
/// (`sha256` as `arch:sum,...`, like a `DictOpt` in a file).
pub(super) fn load_sources_yaml(path: &Path) -> Result<BTreeMap<String, BTreeMap<String, String>>, ConfigError> {
    let yerr = |message: String| ConfigError::Yaml { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| yerr(e.to_string()))?;
    let map = doc.as_mapping().ok_or_else(|| yerr("top level is not a mapping".into()))?;
    let scalar = |v: &serde_yaml::Value| -> Option<String> {
        match v {
            serde_yaml::Value::String(s) => Some(s.clone()),
            serde_yaml::Value::Bool(b) => Some(b.to_string()),
            serde_yaml::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let mut out = BTreeMap::new();
    for (name, body) in map {
        let name = name.as_str().ok_or_else(|| yerr("section name is not a string".into()))?;
        let body = body.as_mapping().ok_or_else(|| yerr(format!("{name}: not a mapping")))?;
        let mut opts = BTreeMap::new();
        for (k, v) in body {
            let Some(k) = k.as_str() else { continue };
            let value = match v {
                serde_yaml::Value::Mapping(m) => m
                    .iter()
                    .filter_map(|(a, b)| Some(format!("{}:{}", scalar(a)?, scalar(b)?)))
                    .collect::<Vec<_>>()
                    .join(","),
                other => match scalar(other) {
                    Some(s) => s,
                    None => continue,
                },
            };
            opts.insert(k.to_string(), value);
        }
        out.insert(name.to_lowercase(), opts);
    }
    Ok(out)
}

impl KollaConfig {
    /// The source sections of the config files and `sources.yaml` (only sections with a `type`).
    pub(super) fn resolve_sources(r: &Resolver<'_>) -> Result<BTreeMap<String, Source>, ConfigError> {
        let mut names: Vec<String> = r.group_defaults.keys().cloned().collect();
        names.extend(
            r.ini
                .section_names()
                .filter(|s| *s != "DEFAULT" && *s != "profiles" && !s.ends_with("-user"))
                .map(str::to_string),
        );
        names.sort();
        names.dedup();
        let mut out = BTreeMap::new();
        for name in names {
            let Some(kind) = r.get(&name, "type")? else { continue };
            let kind = match kind.as_str() {
                "url" => SourceKind::Url,
                "git" => SourceKind::Git,
                "local" => SourceKind::Local,
                other => return Err(r.err(&name, "type", other, "must be one of local, git, url")),
            };
            let location = r.get(&name, "location")?.unwrap_or_default();
            out.insert(
                name.clone(),
                Source {
                    kind,
                    location,
                    reference: r.get(&name, "reference")?,
                    enabled: r.boolean_in(&name, "enabled")?.unwrap_or(true),
                    version: r.get(&name, "version")?,
                    sha256: r.dict_in(&name, "sha256")?,
                    name,
                },
            );
        }
        Ok(out)
    }

    /// The source sections of an image: its own, then `<image>-plugin-*` and
    /// `<image>-additions-*` (sorted by name).
    pub fn image_sources(&self, image: &str) -> ImageSources {
        let plugin = format!("{image}-plugin-");
        let addition = format!("{image}-additions-");
        let pick = |prefix: &str| {
            self.sources
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .filter(|(k, _)| k.len() > prefix.len())
                .map(|(_, v)| v.clone())
                .collect()
        };
        ImageSources { source: self.sources.get(image).cloned(), plugins: pick(&plugin), additions: pick(&addition) }
    }
}
