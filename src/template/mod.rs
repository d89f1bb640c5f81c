//! Rendering a Kolla template tree the way kolla-build does, with minijinja.
//!
//! [`render`] reads the template tree (and every `--docker-dir`, merged over it like Python's
//! `copytree(dirs_exist_ok=True)` into kolla's work dir) in place, finds every directory with a
//! `Dockerfile.j2` and renders each one. [`RenderedTree::write_work_dir`] then writes
//! `<work_dir>/docker`: the trees copied in, each rendered `Dockerfile` beside its template and each
//! image's `patches/` directory — all of it ([`render_all`]), or only the images a build needs. The
//! result is byte-identical to kolla-build 23.0.0's `--template-only` output (checked by
//! `tests/template_conformance.rs`).
//!
//! The environment mirrors kolla's Jinja2 `SandboxedEnvironment`: Jinja defaults (no
//! trim/lstrip, trailing newline dropped, lenient undefined, no autoescape), the `customizable`
//! filter, the `debian_package_install`, `handle_repos`, `cleanup_repos` and `raise_error`
//! globals, and the context kolla passes (including `users` and `env`, the process environment).
//! With `--template-override`, the merged override template is rendered for every image with
//! `parent_template` naming the image's template, so `{% extends parent_template %}` works.
//! Rendering is bounded by minijinja's fuel so a looping template fails instead of hanging.

pub mod budget;
mod repos;
mod workdir;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State};
use rayon::prelude::*;

use crate::config::KollaConfig;
pub use repos::debian_package_install;
use repos::{Mode, RepoContext, Repos};
use workdir::{Overlay, copy_patches, unlink_symlink};

/// The template file kolla looks for in each image directory.
pub const TEMPLATE_NAME: &str = "Dockerfile.j2";

/// Instructions one image's render may execute. The largest upstream template (`base`) uses
/// about 4,500 (kolla 23.0.0); a template stuck in a loop exhausts this in well under a second.
const FUEL: u64 = 20_000_000;

/// Errors while preparing the work dir or rendering. Each names the file (and line) at fault.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Reading the tree or writing the work dir failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The template tree does not exist.
    #[error("template tree {} not found (use --template-tree)", path.display())]
    NoTree {
        /// The directory looked for.
        path: PathBuf,
    },
    /// Two image directories have the same name.
    #[error("two images named {name:?}: {} and {}", first.display(), second.display())]
    DuplicateImage {
        /// The image name (directory basename).
        name: String,
        /// First directory.
        first: PathBuf,
        /// Second directory.
        second: PathBuf,
    },
    /// `repos.yaml` (or the `--repos-yaml` override) is not valid.
    #[error("{}: {message}", path.display())]
    ReposYaml {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A symlink in a user-given directory (template tree, `--docker-dir`, `--patches-path`) resolves
    /// outside it: following it would ship a host file into a build context.
    #[error("{}: symlink to {} points outside {}", link.display(), target.display(), dir.display())]
    LinkOutside {
        /// The link.
        link: PathBuf,
        /// Where it resolves.
        target: PathBuf,
        /// The directory it must stay in.
        dir: PathBuf,
    },
    /// A template rendered to more than [`budget::MAX_OUTPUT`] bytes.
    #[error("{}: rendered output passes the {} MiB cap (a template that loops or grows without bound?)", file.display(), limit >> 20)]
    OutputTooLarge {
        /// The template.
        file: PathBuf,
        /// The cap in bytes.
        limit: usize,
    },
    /// A patch file named in a `series` file escapes the patches directory.
    #[error("{}: patch name {name:?} is not a plain relative path", series.display())]
    UnsafePatch {
        /// The series file.
        series: PathBuf,
        /// The offending entry.
        name: String,
    },
    /// A template failed to parse or render.
    #[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Render {
        /// The template file (in the template tree or a `--docker-dir`, or the override file).
        file: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
        /// What went wrong (syntax error, undefined name, `raise_error` message, ...).
        message: String,
    },
}

/// One rendered image.
#[derive(Debug, Clone)]
pub struct RenderedImage {
    /// Image name: the directory's basename (`nova-api`).
    pub name: String,
    /// Directory relative to the tree root (`nova/nova-api`).
    pub rel_path: String,
    /// The build context: the image's directory in the work dir (holds `Dockerfile` once written).
    pub context_dir: PathBuf,
    /// The rendered Dockerfile text (written to `context_dir/Dockerfile` by [`RenderedTree::write_work_dir`]).
    pub dockerfile: String,
    /// The `Dockerfile.j2` it was rendered from (in the template tree or a `--docker-dir`): what the user
    /// edits, so errors name it.
    pub template: PathBuf,
}

/// The rendered tree and its work dir.
#[derive(Debug)]
pub struct RenderedTree {
    /// `<work_dir>/docker`.
    pub root: PathBuf,
    /// Every image found, sorted by `rel_path`.
    pub images: Vec<RenderedImage>,
    /// The trees the work dir is copied from.
    overlay: Arc<Overlay>,
    /// `--apt-sources-list` and `--apt-preferences`, with their names in `base/`.
    apt_files: Vec<(PathBuf, &'static str)>,
    /// `--patches-path`.
    patches_path: Option<PathBuf>,
    /// The temporary work dir, when no `--work-dir` was given (removed on drop).
    temp: Option<tempfile::TempDir>,
}

impl RenderedTree {
    /// The image called `name`.
    pub fn image(&self, name: &str) -> Option<&RenderedImage> {
        self.images.iter().find(|i| i.name == name)
    }

    /// Keep a temporary work dir after this value is dropped (as kolla does with
    /// `--template-only`); returns the `docker` directory.
    pub fn persist(&mut self) -> PathBuf {
        if let Some(t) = self.temp.take() {
            let _kept = t.keep();
        }
        self.root.clone()
    }

    /// Write the work dir: the trees copied in, the apt files into `base/`, and each image's `Dockerfile`
    /// and `patches/` — for every image as kolla does (`None`), or only for the `Some` named ones and only
    /// their directories (what a build reads; the rest of a large tree is not copied).
    pub fn write_work_dir(&self, only: Option<&[&str]>) -> Result<(), TemplateError> {
        let wanted = |img: &&RenderedImage| only.is_none_or(|names| names.contains(&img.name.as_str()));
        std::fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        match only {
            None => self.overlay.copy_into("", &self.root)?,
            Some(_) => {
                for img in self.images.iter().filter(wanted) {
                    self.overlay.copy_into(&img.rel_path, &self.root)?;
                }
            }
        }
        for (src, name) in &self.apt_files {
            let base = self.root.join("base");
            std::fs::create_dir_all(&base).map_err(io_err(&base))?;
            unlink_symlink(&base.join(name))?;
            std::fs::copy(src, base.join(name)).map_err(io_err(src))?;
        }
        tracing::debug!(dir = %self.root.display(), "created working dir");
        for img in self.images.iter().filter(wanted) {
            let out = img.context_dir.join("Dockerfile");
            unlink_symlink(&out)?;
            std::fs::write(&out, &img.dockerfile).map_err(io_err(&out))?;
            copy_patches(&img.context_dir, &img.name, self.patches_path.as_deref())?;
        }
        Ok(())
    }

    /// Delete the directories of the named images (kolla's `--template-only` removes every
    /// image that is not selected) and forget them.
    pub fn remove_images(&mut self, names: &[&str]) -> Result<(), TemplateError> {
        for img in self.images.iter().filter(|i| names.contains(&i.name.as_str())) {
            std::fs::remove_dir_all(&img.context_dir)
                .map_err(|source| TemplateError::Io { path: img.context_dir.clone(), source })?;
        }
        self.images.retain(|i| !names.contains(&i.name.as_str()));
        Ok(())
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TemplateError + '_ {
    move |source| TemplateError::Io { path: path.to_path_buf(), source }
}

/// kolla's `customizable` filter: `<image>_<call_type>_override` replaces the list,
/// `_append` extends it, `_remove` drops (the first occurrence of) each entry.
fn customizable(state: &State, value: Value, call_type: &str) -> Result<Value, Error> {
    if value.is_undefined() {
        return Ok(value);
    }
    let image = state.lookup("image_name").map(|v| v.to_string()).unwrap_or_default();
    let prefix = format!("{}_{call_type}_", image.replace('-', "_"));
    let defined = |name: String| state.lookup(&name).filter(|v| !v.is_undefined());
    if let Some(over) = defined(format!("{prefix}override")) {
        return Ok(over);
    }
    let mut list: Vec<Value> = value.try_iter()?.collect();
    if let Some(append) = defined(format!("{prefix}append")) {
        list.extend(append.try_iter()?);
    }
    if let Some(remove) = defined(format!("{prefix}remove")) {
        for r in remove.try_iter()? {
            if let Some(pos) = list.iter().position(|v| *v == r) {
                list.remove(pos);
            }
        }
    }
    Ok(Value::from(list))
}

fn lookup_string(state: &State, name: &str) -> String {
    match state.lookup(name) {
        Some(v) if !v.is_undefined() && !v.is_none() => v.to_string(),
        _ => String::new(),
    }
}

fn repo_context(state: &State) -> RepoContext {
    RepoContext {
        base_package_type: lookup_string(state, "base_package_type"),
        base_distro: lookup_string(state, "base_distro"),
        base_arch: lookup_string(state, "base_arch"),
        openstack_release_codename: lookup_string(state, "openstack_release_codename"),
        image_name: lookup_string(state, "image_name"),
    }
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, Error> {
    let items = v
        .try_iter()
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, format!("{what}: expected a list, got {}", v.kind())))?;
    Ok(items.map(|i| i.to_string()).collect())
}

/// The minijinja environment: Jinja2 defaults plus kolla's filter and globals.
fn environment(
    overlay: Arc<Overlay>,
    repos: Arc<Repos>,
    override_tpl: Option<(String, String)>,
) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_loader(move |name| {
        let read_error =
            |e: TemplateError| Error::new(ErrorKind::InvalidOperation, "could not read template").with_source(e);
        match overlay.file(name).map_err(read_error)? {
            Some(path) => std::fs::read_to_string(&path)
                .map(Some)
                .map_err(|source| read_error(TemplateError::Io { path, source })),
            None => Ok(None),
        }
    });
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env.set_fuel(Some(FUEL));
    env.add_filter("customizable", customizable);
    env.add_function("debian_package_install", |packages: Value, clean: Option<Value>| -> Result<String, Error> {
        let packages = strings(&packages, "debian_package_install")?;
        Ok(debian_package_install(&packages, clean.is_none_or(|c| c.is_true())))
    });
    let r = repos.clone();
    env.add_function("handle_repos", move |state: &State, names: Value, mode: String| -> Result<String, Error> {
        // Python checks for a list; `a + b` of two lists is a lazy iterable in minijinja.
        if !matches!(names.kind(), minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Iterable) {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "handle_repos: first argument should be a list of repositories",
            ));
        }
        let names = strings(&names, "handle_repos")?;
        let mode = match mode.as_str() {
            "enable" => Mode::Enable,
            "disable" => Mode::Disable,
            _ => return Ok(String::new()),
        };
        r.handle(&names, mode, &repo_context(state)).map_err(|m| Error::new(ErrorKind::InvalidOperation, m))
    });
    env.add_function("cleanup_repos", move |state: &State| -> String { repos.cleanup(&repo_context(state)) });
    env.add_function("raise_error", |msg: String| -> Result<String, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, format!("raise_error: {msg}")))
    });
    if let Some((name, source)) = override_tpl {
        env.add_template_owned(name, source)?;
    }
    Ok(env)
}

/// The merged `--template-override` files: the first verbatim, each later one with its
/// `{% extends %}` lines removed and appended (kolla's `_merge_overrides`: a line holding `{%`
/// then `extends` is dropped with its newline). Also returns, for each merged line, the file
/// and line it came from, to report errors in the right file.
fn merge_overrides(files: &[PathBuf]) -> Result<(String, Vec<(PathBuf, usize)>), TemplateError> {
    let extends = regex::Regex::new(r"\{%.*extends").expect("static regex");
    let mut merged = String::new();
    let mut line_map = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let text = std::fs::read_to_string(f).map_err(io_err(f))?;
        for (n, chunk) in text.split_inclusive('\n').enumerate() {
            if i > 0 && chunk.ends_with('\n') && extends.is_match(chunk) {
                continue;
            }
            if merged.is_empty() || merged.ends_with('\n') {
                line_map.push((f.clone(), n + 1));
            }
            merged.push_str(chunk);
        }
    }
    Ok((merged, line_map))
}

/// Name of the override template inside the environment (cannot clash with a tree path).
const OVERRIDE_TEMPLATE: &str = "<template-override>";

/// Where to report a minijinja error: the template file and line (override lines mapped back
/// to the override file they came from).
fn render_error(e: &Error, overlay: &Overlay, override_lines: &[(PathBuf, usize)], fallback: &str) -> TemplateError {
    // The innermost error with a location is the most precise (e.g. inside macros.j2).
    let mut best: &Error = e;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = cur {
        if let Some(me) = s.downcast_ref::<Error>().filter(|me| me.line().is_some()) {
            best = me;
        }
        cur = s.source();
    }
    let name = best.name().unwrap_or(fallback);
    let (file, line) = if name == OVERRIDE_TEMPLATE {
        match best.line().and_then(|l| override_lines.get(l.wrapping_sub(1))) {
            Some((file, line)) => (file.clone(), Some(*line)),
            None => (override_lines.first().map_or_else(|| PathBuf::from(name), |(f, _)| f.clone()), None),
        }
    } else {
        (overlay.locate(name), best.line())
    };
    let mut message = match best.detail() {
        Some(d) => format!("{}: {d}", best.kind()),
        None => best.kind().to_string(),
    };
    if name != fallback {
        message = format!("{message} (while rendering {fallback})");
    }
    TemplateError::Render { file, line, message }
}

/// The values kolla passes to every template (without `image_name`).
fn base_context(cfg: &KollaConfig) -> BTreeMap<String, Value> {
    let mut m: BTreeMap<String, Value> = BTreeMap::new();
    let mut s = |k: &str, v: &str| {
        m.insert(k.to_string(), Value::from(v));
    };
    s("base_distro", &cfg.base);
    s("base_image", &cfg.base_image);
    s("base_distro_tag", &cfg.base_tag);
    s("base_arch", &cfg.base_arch);
    s("repos_yaml", &cfg.repos_yaml);
    s("base_package_type", &cfg.base_package_type);
    s("debian_arch", &cfg.template_debian_arch);
    s("supported_distro_name", &cfg.supported_distro_name);
    s("image_prefix", &cfg.image_prefix);
    s("namespace", &cfg.namespace);
    s("openstack_release", &cfg.openstack_release);
    s("openstack_release_codename", &cfg.openstack_release_codename);
    s("openstack_branch", &cfg.openstack_branch);
    s("openstack_branch_slashed", &cfg.openstack_branch_slashed);
    s("tag", &cfg.tag);
    s("maintainer", &cfg.maintainer);
    s("kolla_version", &cfg.kolla_version);
    s("distro_package_manager", &cfg.distro_package_manager);
    m.insert("use_dumb_init".into(), Value::from(cfg.use_dumb_init));
    m.insert("docker_healthchecks".into(), Value::from(cfg.docker_healthchecks));
    m.insert("clean_package_cache".into(), Value::from(cfg.clean_package_cache));
    m.insert("rpm_setup".into(), Value::from(cfg.rpm_setup.clone()));
    m.insert(
        "patches_path".into(),
        cfg.patches_path.as_ref().map_or(Value::from(()), |p| Value::from(p.to_string_lossy().into_owned())),
    );
    m.insert("users".into(), Value::from(minijinja::value::Serde(&cfg.users)));
    let env: BTreeMap<String, String> = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .collect();
    m.insert("env".into(), Value::from(env));
    m
}

/// After the first `FROM`, kolla inserts `ARG PIP_...` for each pip option that is set.
fn insert_pip_args(content: String, cfg: &KollaConfig) -> String {
    let args: Vec<String> = [
        ("PIP_INDEX_URL", &cfg.pip_index_url),
        ("PIP_TRUSTED_HOST", &cfg.pip_trusted_host),
        ("PIP_EXTRA_INDEX_URL", &cfg.pip_extra_index_url),
    ]
    .iter()
    .filter(|(_, v)| v.is_some())
    .map(|(k, _)| format!("ARG {k}"))
    .collect();
    if args.is_empty() {
        return content;
    }
    let mut lines: Vec<&str> = content.split('\n').collect();
    let is_from =
        |l: &str| l.get(..4).is_some_and(|k| k.eq_ignore_ascii_case("FROM")) && l[4..].starts_with(char::is_whitespace);
    if let Some(i) = lines.iter().position(|l| is_from(l)) {
        for (n, a) in args.iter().enumerate() {
            lines.insert(i + 1 + n, a);
        }
    }
    lines.join("\n")
}

/// Set up the work dir and render every image of the tree (kolla's `setup_working_dir`,
/// `find_dockerfiles`, `create_dockerfiles` and `create_patch_files`): [`render`], then the whole work dir
/// written.
pub fn render_all(cfg: &KollaConfig) -> Result<RenderedTree, TemplateError> {
    let tree = render(cfg)?;
    tree.write_work_dir(None)?;
    Ok(tree)
}

/// Render every image of the tree, reading the template tree and `--docker-dir`s in place; nothing is
/// written to the work dir yet (see [`RenderedTree::write_work_dir`]).
pub fn render(cfg: &KollaConfig) -> Result<RenderedTree, TemplateError> {
    let overlay = Overlay::new(&[std::slice::from_ref(&cfg.template_tree), &cfg.docker_dirs].concat())?;
    let (root, temp) = match &cfg.work_dir {
        Some(w) => (w.join("docker"), None),
        None => {
            let t = tempfile::Builder::new().prefix("kolla-").tempdir().map_err(io_err(&std::env::temp_dir()))?;
            (t.path().join("docker"), Some(t))
        }
    };
    let dirs = overlay.image_dirs()?;
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for rel in &dirs {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if let Some(first) = seen.insert(name, rel) {
            return Err(TemplateError::DuplicateImage {
                name: name.to_string(),
                first: overlay.locate(first),
                second: overlay.locate(rel),
            });
        }
    }
    tracing::debug!(count = dirs.len(), "found Dockerfile templates");

    let override_path = (!cfg.repos_yaml.is_empty()).then(|| PathBuf::from(&cfg.repos_yaml));
    let repos = Arc::new(Repos::load(cfg.default_repos_yaml.as_deref(), override_path.as_deref())?);
    let (override_tpl, override_lines) = if cfg.template_overrides.is_empty() {
        (None, Vec::new())
    } else {
        let (text, lines) = merge_overrides(&cfg.template_overrides)?;
        (Some((OVERRIDE_TEMPLATE.to_string(), text)), lines)
    };
    let overlay = Arc::new(overlay);
    let env = environment(overlay.clone(), repos, override_tpl)
        .map_err(|e| render_error(&e, &overlay, &override_lines, "override"))?;
    let base = base_context(cfg);

    let images = dirs
        .par_iter()
        .map(|rel| {
            let name = rel.rsplit('/').next().unwrap_or(rel).to_string();
            let tpl_name = format!("{rel}/{TEMPLATE_NAME}");
            let mut ctx = base.clone();
            ctx.insert("image_name".into(), Value::from(name.as_str()));
            let template = if cfg.template_overrides.is_empty() {
                env.get_template(&tpl_name)
            } else {
                ctx.insert("parent_template".into(), Value::from(tpl_name.as_str()));
                env.get_template(OVERRIDE_TEMPLATE)
            };
            let mut out = budget::BoundedOutput::default();
            let rendered = budget::track(&tpl_name, || {
                template.and_then(|t| t.render_captured_to(Value::from(ctx), &mut out).map(drop))
            });
            if out.overflowed {
                return Err(TemplateError::OutputTooLarge {
                    file: overlay.locate(&tpl_name),
                    limit: budget::MAX_OUTPUT,
                });
            }
            rendered.map_err(|e| render_error(&e, &overlay, &override_lines, &tpl_name))?;
            let rendered = String::from_utf8(out.bytes).map_err(|e| TemplateError::Render {
                file: overlay.locate(&tpl_name),
                line: None,
                message: format!("rendered output is not UTF-8: {e}"),
            })?;
            let dockerfile = insert_pip_args(rendered, cfg);
            tracing::debug!(template = %tpl_name, "rendered");
            let template = overlay.locate(&tpl_name);
            Ok(RenderedImage { name, rel_path: rel.clone(), context_dir: root.join(rel), dockerfile, template })
        })
        .collect::<Result<Vec<_>, TemplateError>>()?;
    let apt_files = [(&cfg.apt_sources_list, "sources.list"), (&cfg.apt_preferences, "apt_preferences")]
        .into_iter()
        .filter_map(|(src, name)| Some((src.clone()?, name)))
        .collect();
    Ok(RenderedTree { root, images, overlay, apt_files, patches_path: cfg.patches_path.clone(), temp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_args_follow_first_from() {
        let mut cfg = crate::config::KollaConfig::resolve(&Default::default(), &Default::default()).unwrap();
        cfg.pip_index_url = Some("http://pypi".into());
        cfg.pip_extra_index_url = Some("http://x".into());
        let out = insert_pip_args("# c\nfrom\tbase:1\nRUN x".into(), &cfg);
        assert_eq!(out, "# c\nfrom\tbase:1\nARG PIP_INDEX_URL\nARG PIP_EXTRA_INDEX_URL\nRUN x");
    }
}
