//! kolla-build's options: the `kolla-oci build` command line ([`BuildArgs`]), `kolla-build.conf`
//! files (oslo.config-style INI, see [`ini`]), and their resolution into one plain
//! [`KollaConfig`] whose values are all final.
//!
//! Precedence is oslo.config's: command line, then config files (later files win; multi-valued
//! options such as `profile` or `template_override` concatenate file values and then command-line
//! values), then defaults. Defaults are kolla-build 23.0.0's (`--base debian` means `debian:trixie`,
//! the tag is `2026.2-debian-trixie`, …), except one: kolla-oci defaults to `--base debian` where
//! kolla-build defaults to `rocky`, because the bundled `templates/` tree is a Debian tree and root
//! images are bootstrapped from the Debian archive. With `--base` given, an upstream tree renders
//! exactly as kolla-build renders it (`tests/template_conformance.rs`).
//!
//! Each option is defined once, in the table of `options`; the command line (`cli`), the
//! `[DEFAULT]` defaults and the resolver's lookups (`resolve`: precedence, interpolation,
//! kolla-build's derived defaults) all follow from it. `sources` holds the per-image source
//! sections and `bases` kolla's base distros and profiles.

mod bases;
mod cli;
pub mod ini;
mod options;
pub mod reference;
mod resolve;
mod sources;
mod users;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ini::IniData;

pub use bases::{DEFAULT_PROFILES, debian_arch_of};
pub use cli::{AmbiguousOption, BuildArgs, ConfigSource, Position, expand_abbreviations, kolla_long_options};
pub use options::CompressionKind;
pub use sources::{ImageSources, Source, SourceKind, tree_data_file};

/// The Kolla release whose templates and options kolla-oci follows; templates see it as
/// `kolla_version` (kolla-build installed from PyPI passes its package version).
pub const KOLLA_COMPAT_VERSION: &str = "23.0.0";

/// The bundled template tree (Debian trixie), found at compile time next to `Cargo.toml`.
pub const BUNDLED_TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
/// Errors while reading or resolving options. Each names the file/line or option at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A config file (or directory) could not be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A config file is not valid oslo-style INI.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An option has a value of the wrong type or outside its choices.
    #[error("option {option} = {value:?} ({origin}): {message}")]
    Value {
        /// `[section] name` of the option.
        option: String,
        /// The offending value.
        value: String,
        /// Where it was set ("command line", "file:line" or "default").
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// `$name` names no option.
    #[error("cannot substitute ${name} in {value:?}: no such option")]
    Interpolation {
        /// The name after `$`.
        name: String,
        /// The value being expanded.
        value: String,
    },
    /// `$a` refers to `$b` which refers back to `$a` (or nests too deep).
    #[error("substitution loop while expanding option {0}")]
    InterpolationLoop(String),
    /// A `sources.yaml` could not be parsed.
    #[error("{}: {message}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// kolla-oci read a `[DEFAULT]` option its option table does not declare with that kind:
    /// a bug in kolla-oci, refused so that a misspelt name cannot silently read as unset.
    #[error("internal error: option {name:?} read as {kind} but the option table has {declared}")]
    Undeclared {
        /// The name read.
        name: String,
        /// The kind it was read as.
        kind: String,
        /// What the table has under that name.
        declared: String,
    },
}

/// A service user (`[<name>-user]`): created in `base`, referenced by `configure_user`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// uid (`None` if a config section defines a user without one; renders as `None`).
    pub uid: Option<u32>,
    /// gid.
    pub gid: Option<u32>,
    /// Primary group name.
    pub group: String,
}

/// The resolved configuration: everything kolla-build derives from options, as final values.
#[derive(Debug, Clone)]
pub struct KollaConfig {
    /// Base distro (`debian`, `ubuntu`, `rocky`, `centos`).
    pub base: String,
    /// Base image name (`FROM {{base_image}}:{{base_distro_tag}}`).
    pub base_image: String,
    /// Base image tag.
    pub base_tag: String,
    /// `x86_64` or `aarch64`.
    pub base_arch: String,
    /// Debian arch as configured (sha256 selection of url sources).
    pub debian_arch: String,
    /// Debian arch derived from `base_arch` (what templates see as `debian_arch`).
    pub template_debian_arch: String,
    /// The platform images are built for (`--platform`, else `--base-arch`'s; the first of several).
    pub platform: crate::store::Platform,
    /// Every platform `--platform` names (one or more): a build for several builds them at once.
    pub platforms: Vec<crate::store::Platform>,
    /// `deb` or `rpm`.
    pub base_package_type: String,
    /// `apt` or `dnf`.
    pub distro_package_manager: String,
    /// Expected `/etc/os-release` PRETTY_NAME prefix, checked in `base`.
    pub supported_distro_name: String,
    /// `--registry` alone (if any).
    pub registry: Option<String>,
    /// Namespace including the registry: `[registry/]namespace`.
    pub namespace: String,
    /// Image tag.
    pub tag: String,
    /// `--image-name-prefix`.
    pub image_prefix: String,
    /// OpenStack release, codename and source branch names.
    pub openstack_release: String,
    /// Release codename (`Hibiscus`).
    pub openstack_release_codename: String,
    /// `stable-2026.2`.
    pub openstack_branch: String,
    /// `stable/2026.2`.
    pub openstack_branch_slashed: String,
    /// Maintainer label value.
    pub maintainer: String,
    /// `kolla_version` seen by templates.
    pub kolla_version: String,
    /// Add dumb-init as the entrypoint.
    pub use_dumb_init: bool,
    /// Install healthcheck scripts.
    pub docker_healthchecks: bool,
    /// Clean package caches after installs.
    pub clean_package_cache: bool,
    /// `rpm_setup_config` turned into Dockerfile lines (kolla's `rpm_setup`).
    pub rpm_setup: Vec<String>,
    /// Custom apt `sources.list` copied to `base/sources.list`.
    pub apt_sources_list: Option<PathBuf>,
    /// Custom apt preferences copied to `base/apt_preferences`.
    pub apt_preferences: Option<PathBuf>,
    /// Per-image patches directory.
    pub patches_path: Option<PathBuf>,
    /// `--repos-yaml` override (`""` when unset, as templates see it).
    pub repos_yaml: String,
    /// The default `repos.yaml` of the template tree (`<tree>/repos.yaml`, or for an installed
    /// kolla package `<tree>/../template/repos.yaml`).
    pub default_repos_yaml: Option<PathBuf>,
    /// `pip_index_url`, `pip_trusted_host`, `pip_extra_index_url`.
    pub pip_index_url: Option<String>,
    /// See `pip_index_url`.
    pub pip_trusted_host: Option<String>,
    /// See `pip_index_url`.
    pub pip_extra_index_url: Option<String>,
    /// Users by name (without `-user`).
    pub users: BTreeMap<String, User>,
    /// Sources by section name (only sections with a `type`).
    pub sources: BTreeMap<String, Source>,
    /// Profiles: name → regexes.
    pub profiles: BTreeMap<String, Vec<String>>,
    /// Positional regexes.
    pub regex: Vec<String>,
    /// `--profile` names.
    pub profile: Vec<String>,
    /// kolla-oci `--all`.
    pub all: bool,
    /// Skip matched images that have children.
    pub skip_parents: bool,
    /// Skip images present in the store.
    pub skip_existing: bool,
    /// Render only.
    pub template_only: bool,
    /// Print selected images.
    pub list_images: bool,
    /// Print the dependency tree.
    pub list_dependencies: bool,
    /// Write a Graphviz dot file.
    pub save_dependency: Option<PathBuf>,
    /// Build images marked unbuildable.
    pub enable_unbuildable: bool,
    /// Images whose failure does not fail the run.
    pub allowed_to_fail: Vec<String>,
    /// The template tree to render.
    pub template_tree: PathBuf,
    /// Extra trees merged over it, in order.
    pub docker_dirs: Vec<PathBuf>,
    /// Template override files, in order.
    pub template_overrides: Vec<PathBuf>,
    /// `--work-dir` (`None`: a temporary directory).
    pub work_dir: Option<PathBuf>,
    /// Concurrent builds.
    pub threads: usize,
    /// Push after build.
    pub push: bool,
    /// Concurrent pushes.
    pub push_threads: usize,
    /// Retries per build or push.
    pub retries: u32,
    /// Use the layer cache.
    pub cache: bool,
    /// Refresh root images' base from the registry.
    pub pull: bool,
    /// Explicit build args (see [`KollaConfig::effective_build_args`]).
    pub build_args: BTreeMap<String, String>,
    /// kolla-build's `network_mode` as given (what [`KollaConfig::network`] follows unless
    /// `--network` is given).
    pub network_mode: String,
    /// `--squash`: each image's own layers merged into one on top of its parent's.
    pub squash: bool,
    /// kolla-oci `--bootstrap`: make `FROM debian:<suite>` with mmdebstrap without asking a registry.
    pub bootstrap: bool,
    /// Per-image log directory.
    pub logs_dir: Option<PathBuf>,
    /// Print a summary.
    pub summary: bool,
    /// Summary as JSON (`json`) or not at all (`none`).
    pub format_json: bool,
    /// JSON summary file (else stdout).
    pub summary_json_file: Option<PathBuf>,
    /// Debug logging.
    pub debug: bool,
    /// Suppress image logs on the console.
    pub quiet: bool,
    /// Base for `$locals_base` in local sources.
    pub locals_base: String,
    /// Base URL of tarballs.
    pub tarballs_base: String,
    /// HTTP timeout for downloads, seconds.
    pub timeout: u64,
    /// Layer compression.
    pub compression: CompressionKind,
    /// The network of RUN steps: kolla-oci's `network` if given, else kolla-build's `network_mode`
    /// (`host`, `none`; Docker's `default`/`bridge` and an unset `network_mode` are the private one).
    pub network: crate::sandbox::NetworkMode,
    /// Registries allowed over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// `--allow-private-host`: loopback or private hosts a registry or a source download may send us to.
    pub allowed_private_hosts: Vec<String>,
    /// kolla-oci: record each built image's SBOM and provenance in the store, and push them with it.
    pub attestations: bool,
    /// `--cache-repo`: the registry repository shared as a step cache.
    pub cache_repo: Option<String>,
    /// The config files read, in order (what the provenance names with their digests); empty when
    /// resolved over files parsed elsewhere ([`KollaConfig::resolve`]).
    pub config_files: Vec<PathBuf>,
}

/// The directories oslo.config searches for kolla-build's default config files and directories:
/// `~/.kolla/`, `~/`, `/etc/kolla/`, `/etc/`.
fn default_search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let home = PathBuf::from(home);
        dirs.push(home.join(".kolla"));
        dirs.push(home);
    }
    dirs.push(PathBuf::from("/etc/kolla"));
    dirs.push(PathBuf::from("/etc"));
    dirs
}

/// The first of `names` found (with `found`) in each of the default search directories.
fn first_found(names: [&str; 2], found: fn(&Path) -> bool) -> Vec<PathBuf> {
    let dirs = default_search_dirs();
    names.iter().filter_map(|name| dirs.iter().map(|d| d.join(name)).find(|p| found(p))).collect()
}

/// The default config files oslo.config reads for kolla-build unless `--config-file` is given: the
/// first `kolla.conf` and the first `kolla-build.conf` found in `~/.kolla/`, `~/`, `/etc/kolla/`,
/// `/etc/`.
pub fn default_config_files() -> Vec<PathBuf> {
    first_found(["kolla.conf", "kolla-build.conf"], Path::exists)
}

/// The default config directories oslo.config reads unless `--config-dir` is given: the first
/// `kolla.conf.d/` and the first `kolla-build.conf.d/` found in the same places.
pub fn default_config_dirs() -> Vec<PathBuf> {
    first_found(["kolla.conf.d", "kolla-build.conf.d"], Path::is_dir)
}

fn conf_files_in(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let rd = std::fs::read_dir(dir).map_err(|source| ConfigError::Io { path: dir.to_path_buf(), source })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "conf") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// The config files `args` makes oslo.config read, in order, each with the position it counts at:
/// the default files unless a `--config-file` is given, the files of the default directories unless
/// a `--config-dir` is given, then those of `--config-file` and `--config-dir` where they stand on
/// the command line. A named file or directory that does not exist is an error, as in oslo.config.
pub fn config_files_of(args: &BuildArgs) -> Result<Vec<(Position, PathBuf)>, ConfigError> {
    let sources = args.config_sources();
    let given = |dir: bool| sources.iter().any(|(_, s)| matches!(s, ConfigSource::Dir(_)) == dir);
    let mut files = Vec::new();
    if !given(false) {
        files.extend(default_config_files().into_iter().map(|f| (Position::DEFAULT_FILES, f)));
    }
    if !given(true) {
        for d in default_config_dirs() {
            files.extend(conf_files_in(&d)?.into_iter().map(|f| (Position::DEFAULT_FILES, f)));
        }
    }
    for (at, source) in sources {
        let missing = |path: &Path| ConfigError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        };
        match source {
            ConfigSource::File(f) if !f.exists() => return Err(missing(f)),
            ConfigSource::File(f) => files.push((*at, f.clone())),
            ConfigSource::Dir(d) if !d.is_dir() => return Err(missing(d)),
            ConfigSource::Dir(d) => files.extend(conf_files_in(d)?.into_iter().map(|f| (*at, f))),
        }
    }
    Ok(files)
}

/// What the console shows, known before anything else is read: `debug` and `quiet` from the
/// command line and the config files (errors in those files are reported later, by
/// [`KollaConfig::from_args`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// `-d/--debug`: debug logging.
    pub debug: bool,
    /// `-q/--quiet`: no per-image lines on the console (they still go to `--logs-dir`).
    pub quiet: bool,
}

impl KollaConfig {
    /// This configuration for one of its platforms: the tree rendered for that architecture (kolla's
    /// `base_arch`, `debian_arch`), images built for that platform.
    pub fn for_platform(&self, platform: &crate::store::Platform) -> KollaConfig {
        let base_arch = crate::platform::base_arch(platform).map_or_else(|| self.base_arch.clone(), str::to_owned);
        let debian_arch = debian_arch_of(&base_arch).to_owned();
        KollaConfig {
            template_debian_arch: debian_arch.clone(),
            debian_arch,
            base_arch,
            platform: platform.clone(),
            ..self.clone()
        }
    }

    /// Resolve `args` with the config files oslo.config would read for it
    /// ([`config_files_of`]) and the defaults.
    pub fn from_args(args: &BuildArgs) -> Result<KollaConfig, ConfigError> {
        let files = config_files_of(args)?;
        let mut ini = IniData::default();
        for (at, f) in &files {
            tracing::debug!(file = %f.display(), "reading config file");
            ini.read_file_at(f, *at)?;
        }
        let mut cfg = Self::resolve(args, &ini)?;
        cfg.config_files = files.into_iter().map(|(_, f)| f).collect();
        Ok(cfg)
    }

    /// `debug` and `quiet` as [`KollaConfig::from_args`] would resolve them, reading only the
    /// config files (no template tree): what logging is set up with before the rest is read. A
    /// file that cannot be read or parsed is skipped here.
    pub fn console_settings(args: &BuildArgs) -> ConsoleSettings {
        let mut ini = IniData::default();
        for (at, f) in config_files_of(args).unwrap_or_default() {
            let _ = ini.read_file_at(&f, at);
        }
        resolve::console_settings(args, &ini)
    }

    /// Build args as kolla passes them: the explicit ones, then the host's proxy variables
    /// and the `pip_*` options where not given explicitly.
    pub fn effective_build_args(&self) -> BTreeMap<String, String> {
        let mut args = self.build_args.clone();
        for var in
            ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy"]
        {
            if let Ok(v) = std::env::var(var) {
                args.entry(var.to_string()).or_insert(v);
            }
        }
        for (k, v) in [
            ("PIP_INDEX_URL", &self.pip_index_url),
            ("PIP_TRUSTED_HOST", &self.pip_trusted_host),
            ("PIP_EXTRA_INDEX_URL", &self.pip_extra_index_url),
        ] {
            if let Some(v) = v {
                args.entry(k.to_string()).or_insert_with(|| v.clone());
            }
        }
        args
    }

    /// The canonical name of an image: `[registry/]namespace/[prefix]image:tag`.
    pub fn canonical_name(&self, image: &str) -> String {
        format!("{}/{}{}:{}", self.namespace, self.image_prefix, image, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BuildArgs,
    }

    fn resolve(argv: &[&str], conf: &str) -> Result<KollaConfig, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(argv.iter().copied())).unwrap();
        let mut ini = IniData::default();
        ini.parse_str(Path::new("test.conf"), conf)?;
        KollaConfig::resolve(&cli.args, &ini)
    }

    #[test]
    fn defaults_and_derivations() {
        let c = resolve(&["--base-arch", "x86_64"], "").unwrap();
        assert_eq!((c.base.as_str(), c.base_tag.as_str(), c.base_image.as_str()), ("debian", "trixie", "debian"));
        assert_eq!(c.tag, "2026.2-debian-trixie");
        assert_eq!(c.supported_distro_name, "Debian GNU/Linux 13 (trixie)");
        assert_eq!(c.openstack_branch_slashed, "stable/2026.2");
        assert_eq!(c.namespace, "kolla");
        assert!(c.cache && c.pull && !c.push);
        assert_eq!(c.users["hacluster"].group, "haclient");
        assert_eq!(c.users.len(), 85);
        let c = resolve(&["-b", "rocky", "--registry", "r:5000", "--nocache", "--base-arch", "aarch64"], "").unwrap();
        assert_eq!((c.base_package_type.as_str(), c.distro_package_manager.as_str()), ("rpm", "dnf"));
        assert_eq!(c.namespace, "r:5000/kolla");
        assert_eq!(c.template_debian_arch, "arm64");
        assert!(!c.cache);
    }

    #[test]
    fn platform_and_base_arch_name_one_architecture() {
        let platform = |args: &[&str]| resolve(args, "").map(|c| (c.platform.to_string(), c.base_arch));
        let arm = ("linux/arm64/v8".to_string(), "aarch64".to_string());
        assert_eq!(platform(&["--base-arch", "aarch64"]).unwrap(), arm);
        assert_eq!(platform(&["--platform", "linux/arm64"]).unwrap(), arm);
        assert_eq!(platform(&["--platform", "linux/arm64", "--base-arch", "aarch64"]).unwrap(), arm);
        assert_eq!(platform(&["--base-arch", "x86_64"]).unwrap(), ("linux/amd64".to_string(), "x86_64".to_string()));
        assert_eq!(resolve(&["--platform", "linux/arm64"], "").unwrap().template_debian_arch, "arm64");
        let e = platform(&["--platform", "linux/arm64", "--base-arch", "x86_64"]).unwrap_err().to_string();
        assert!(e.contains("--base-arch x86_64 builds for linux/amd64"), "{e}");
        let c = resolve(&["--platform", "linux/amd64,linux/arm64"], "").unwrap();
        assert_eq!(c.platforms.len(), 2);
        let arm = c.for_platform(&c.platforms[1]);
        assert_eq!((arm.base_arch.as_str(), arm.template_debian_arch.as_str()), ("aarch64", "arm64"));
        assert_eq!(arm.platform.to_string(), "linux/arm64/v8");
    }

    #[test]
    fn run_network_is_private_unless_the_command_line_or_a_file_says_otherwise() {
        use crate::sandbox::NetworkMode;
        // kolla-build's `network_mode` maps onto it when given; its default ("host") does not.
        assert_eq!(resolve(&[], "").unwrap().network, NetworkMode::Private);
        assert_eq!(resolve(&["--network_mode", "host"], "").unwrap().network, NetworkMode::Host);
        assert_eq!(resolve(&["--network_mode", "none"], "").unwrap().network, NetworkMode::None);
        assert_eq!(resolve(&["--network_mode", "bridge"], "").unwrap().network, NetworkMode::Private);
        assert_eq!(resolve(&[], "[DEFAULT]\nnetwork_mode = host\n").unwrap().network, NetworkMode::Host);
        assert_eq!(resolve(&["--network", "none", "--network_mode", "host"], "").unwrap().network, NetworkMode::None);
        let e = resolve(&["--network_mode", "container:x"], "").unwrap_err().to_string();
        assert!(e.contains("network_mode") && e.contains("container:x"), "{e}");
        assert_eq!(resolve(&["--network", "host"], "").unwrap().network, NetworkMode::Host);
        assert_eq!(resolve(&[], "[DEFAULT]\nnetwork = none\n").unwrap().network, NetworkMode::None);
        assert_eq!(
            resolve(&["--network", "private"], "[DEFAULT]\nnetwork = none\n").unwrap().network,
            NetworkMode::Private
        );
        let e = resolve(&[], "[DEFAULT]\nnetwork = bridge\n").unwrap_err().to_string();
        assert!(e.contains("network") && e.contains("private, host, none"), "{e}");
    }

    #[test]
    fn files_cli_and_interpolation() {
        let conf = "[DEFAULT]\nbase = ubuntu\ntag = $openstack_release-x\nprofile = infra\npush = yes\n\
                    [profiles]\nmine = nova-,glance\n[nova-user]\nuid = 5\n[foo-user]\ngid = 7\n\
                    [nova-base]\ntype = url\nlocation = ${tarballs_base}/nova-${openstack_branch}.tgz\n\
                    sha256 = amd64:aa,arm64:bb\n";
        let c = resolve(&["-p", "main", "--nopush", "--openstack-release", "master"], conf).unwrap();
        assert_eq!(c.base, "ubuntu");
        assert_eq!(c.tag, "master-x");
        assert_eq!(c.profile, vec!["infra", "main"]);
        assert!(!c.push);
        assert_eq!(c.profiles["mine"], vec!["nova-", "glance"]);
        assert_eq!(c.users["nova"].uid, Some(5));
        assert_eq!(c.users["foo"], User { uid: None, gid: Some(7), group: "foo".into() });
        let s = &c.sources["nova-base"];
        assert_eq!(s.location, "https://tarballs.opendev.org/nova-master.tgz");
        assert_eq!(s.sha256["arm64"], "bb");
        let e = resolve(&[], "[DEFAULT]\nthreads = lots\n").unwrap_err().to_string();
        assert!(e.contains("threads") && e.contains("test.conf:2"), "{e}");
        let e = resolve(&[], "[DEFAULT]\ntag = $tag\n").unwrap_err();
        assert!(matches!(e, ConfigError::InterpolationLoop(_)), "{e}");
    }

    fn from_args(argv: &[&str]) -> Result<KollaConfig, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(argv.iter().copied())).unwrap();
        KollaConfig::from_args(&cli.args)
    }

    /// oslo.config's order: a `--config-file` (or `--config-dir`) overrides the options before it
    /// on the command line and is overridden by those after it; multi-valued options keep every
    /// value in that order; a named file or directory that is missing is an error naming it.
    #[test]
    fn config_files_count_where_they_stand_on_the_command_line() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f.conf");
        std::fs::write(&f, "[DEFAULT]\nbase = ubuntu\nprofile = infra\ndebug = true\n").unwrap();
        let d = tmp.path().join("d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("b.conf"), "[DEFAULT]\ntag = from-b\n").unwrap();
        std::fs::write(d.join("a.conf"), "[DEFAULT]\ntag = from-a\nnamespace = a\n").unwrap();
        std::fs::write(d.join("c.txt"), "[DEFAULT]\ntag = not-read\n").unwrap();
        let (f, d) = (f.to_str().unwrap(), d.to_str().unwrap());
        let c = from_args(&["--base", "rocky", "-p", "main", "--config-file", f]).unwrap();
        assert_eq!((c.base.as_str(), c.profile.clone()), ("ubuntu", vec!["main".to_string(), "infra".to_string()]));
        let c = from_args(&["--config-file", f, "--base", "rocky", "-p", "main"]).unwrap();
        assert_eq!((c.base.as_str(), c.profile.clone()), ("rocky", vec!["infra".to_string(), "main".to_string()]));
        let c = from_args(&["--tag", "cli", "--config-dir", d, "--namespace", "n"]).unwrap();
        assert_eq!((c.tag.as_str(), c.namespace.as_str()), ("from-b", "n"));
        assert_eq!(c.config_files.iter().filter(|p| p.starts_with(d)).count(), 2);
        let missing = tmp.path().join("nope.conf");
        let e = from_args(&["--config-file", missing.to_str().unwrap()]).unwrap_err().to_string();
        assert!(e.contains("nope.conf"), "{e}");
        let e = from_args(&["--config-dir", tmp.path().join("nodir").to_str().unwrap()]).unwrap_err().to_string();
        assert!(e.contains("nodir"), "{e}");
        // debug (and quiet) from a config file reach the console settings, the command line still wins
        let cli = |argv: &[&str]| Cli::try_parse_from(std::iter::once("x").chain(argv.iter().copied())).unwrap().args;
        assert_eq!(
            KollaConfig::console_settings(&cli(&["--config-file", f])),
            ConsoleSettings { debug: true, quiet: false }
        );
        let s = KollaConfig::console_settings(&cli(&["--config-file", f, "--nodebug", "-q"]));
        assert_eq!(s, ConsoleSettings { debug: false, quiet: true });
    }
}
