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

pub mod ini;
mod users;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ini::IniData;

/// The Kolla release whose templates and options kolla-oci follows; templates see it as
/// `kolla_version` (kolla-build installed from PyPI passes its package version).
pub const KOLLA_COMPAT_VERSION: &str = "23.0.0";

/// The bundled template tree (Debian trixie), found at compile time next to `Cargo.toml`.
pub const BUNDLED_TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");

/// kolla-build's default profiles (kolla 23.0.0, `kolla/common/config.py`): lists of regexes.
pub const DEFAULT_PROFILES: &[(&str, &[&str])] = &[
    (
        "infra",
        &[
            "cron",
            "etcd",
            "fluentd",
            "haproxy",
            "hacluster",
            "keepalived",
            "kolla-toolbox",
            "letsencrypt",
            "mariadb",
            "memcached",
            "opensearch",
            "openvswitch",
            "proxysql",
            "rabbitmq",
            "tgtd",
            "valkey",
        ],
    ),
    (
        "main",
        &["ceilometer", "cinder", "glance", "heat", "horizon", "iscsi", "keystone", "neutron", "nova-", "placement"],
    ),
    (
        "aux",
        &[
            "aodh",
            "blazar",
            "cloudkitty",
            "designate",
            "gnocchi",
            "ironic",
            "kerbside",
            "magnum",
            "manila",
            "masakari",
            "mistral",
            "octavia",
            "tacker",
            "trove",
            "valkey",
        ],
    ),
    (
        "default",
        &[
            "cron",
            "kolla-toolbox",
            "fluentd",
            "glance",
            "haproxy",
            "heat",
            "horizon",
            "keepalived",
            "keystone",
            "mariadb",
            "memcached",
            "neutron",
            "nova-",
            "placement",
            "proxysql",
            "openvswitch",
            "rabbitmq",
        ],
    ),
];

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
}

/// Layer compression for the images kolla-oci writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CompressionKind {
    /// `application/vnd.oci.image.layer.v1.tar+gzip`, readable by every runtime.
    #[default]
    Gzip,
    /// `...tar+zstd`: faster and smaller, needs a recent runtime.
    Zstd,
}

/// Options of `kolla-oci build`: kolla-build's options with kolla-build's names (each boolean
/// also has a `--noX` form, as oslo.config provides), plus a few kolla-oci additions.
/// Options not given here fall back to `kolla-build.conf`, then to the defaults.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Kolla options")]
pub struct BuildArgs {
    /// Build only images whose name matches one of these regexes (Python `re.search`), plus
    /// their ancestors. Overrides --profile.
    #[arg(value_name = "REGEX")]
    pub regex: Vec<String>,
    /// Base distro: debian (default for kolla-oci), ubuntu, rocky, centos.
    #[arg(short = 'b', long)]
    pub base: Option<String>,
    /// Base distro image tag [default: trixie for debian, 24.04 ubuntu, 10 rocky].
    #[arg(long)]
    pub base_tag: Option<String>,
    /// Base image name [default: from --base].
    #[arg(long)]
    pub base_image: Option<String>,
    /// Base architecture, x86_64 or aarch64 [default: the host's].
    #[arg(long)]
    pub base_arch: Option<String>,
    /// Debian architecture for downloaded binaries [default: from --base-arch].
    #[arg(long)]
    pub debian_arch: Option<String>,
    /// Use dumb-init as the entrypoint of `base` [default: true].
    #[arg(long, overrides_with = "nouse_dumb_init")]
    pub use_dumb_init: bool,
    #[arg(long, hide = true, overrides_with = "use_dumb_init")]
    nouse_dumb_init: bool,
    /// Debug logging.
    #[arg(short = 'd', long, overrides_with = "nodebug")]
    pub debug: bool,
    #[arg(long, hide = true, overrides_with = "debug")]
    nodebug: bool,
    /// Do not rebuild parents of matched images (they must exist already).
    #[arg(long, overrides_with = "noskip_parents")]
    pub skip_parents: bool,
    #[arg(long, hide = true, overrides_with = "skip_parents")]
    noskip_parents: bool,
    /// Do not rebuild images already present in the store.
    #[arg(long, overrides_with = "noskip_existing")]
    pub skip_existing: bool,
    #[arg(long, hide = true, overrides_with = "skip_existing")]
    noskip_existing: bool,
    /// Build arguments, `key:value,key:value` (proxy variables are added from the environment).
    #[arg(long, value_name = "K:V,...")]
    pub build_args: Option<String>,
    /// Keep failed intermediate state (engine option, accepted).
    #[arg(long, overrides_with = "nokeep")]
    pub keep: bool,
    #[arg(long, hide = true, overrides_with = "keep")]
    nokeep: bool,
    /// Print the selected images as a JSON tree of dependencies and exit.
    #[arg(short = 'l', long, overrides_with = "nolist_dependencies")]
    pub list_dependencies: bool,
    #[arg(long, hide = true, overrides_with = "list_dependencies")]
    nolist_dependencies: bool,
    /// Print the selected images and exit.
    #[arg(long, overrides_with = "nolist_images")]
    pub list_images: bool,
    #[arg(long, hide = true, overrides_with = "list_images")]
    nolist_images: bool,
    /// Base directory for `$locals_base` in local sources [default: ./].
    #[arg(long)]
    pub locals_base: Option<String>,
    /// Image namespace [default: kolla].
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Build network mode (engine option, accepted).
    #[arg(long = "network_mode", alias = "network-mode")]
    pub network_mode: Option<String>,
    /// Use BuildKit (engine option, accepted and ignored).
    #[arg(long, overrides_with = "nobuildkit")]
    pub buildkit: bool,
    #[arg(long, hide = true, overrides_with = "buildkit")]
    nobuildkit: bool,
    /// BuildKit builder (engine option, accepted and ignored).
    #[arg(long)]
    pub buildkit_builder: Option<String>,
    /// Use the layer cache [default: true].
    #[arg(long, overrides_with = "nocache")]
    pub cache: bool,
    /// Do not use the layer cache.
    #[arg(long, overrides_with = "cache")]
    pub nocache: bool,
    /// Directory of per-image patches (`<dir>/<image>/series` + patches).
    #[arg(long)]
    pub patches_path: Option<String>,
    /// Target platform (engine option, accepted).
    #[arg(long)]
    pub platform: Option<String>,
    /// Build a predefined set of images (see `[profiles]`); repeatable.
    #[arg(short = 'p', long)]
    pub profile: Vec<String>,
    /// Push images after building.
    #[arg(long, overrides_with = "nopush")]
    pub push: bool,
    /// Do not push.
    #[arg(long, overrides_with = "push")]
    pub nopush: bool,
    /// Number of concurrent pushes [default: 1].
    #[arg(long)]
    pub push_threads: Option<String>,
    /// Retries of each build or push [default: 3].
    #[arg(short = 'r', long)]
    pub retries: Option<String>,
    /// Registry host prefixed onto the namespace.
    #[arg(long)]
    pub registry: Option<String>,
    /// Write the dependency graph in Graphviz dot format to this file and exit.
    #[arg(long)]
    pub save_dependency: Option<String>,
    /// Summary format: json or none [default: json].
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Write the JSON summary to this file instead of stdout.
    #[arg(long)]
    pub summary_json_file: Option<String>,
    /// Base URL of OpenStack tarballs [default: https://tarballs.opendev.org].
    #[arg(long)]
    pub tarballs_base: Option<String>,
    /// Number of concurrent builds [default: 8].
    #[arg(short = 'T', long)]
    pub threads: Option<String>,
    /// Image tag [default: <openstack_release>-<base>-<base_tag>].
    #[arg(long)]
    pub tag: Option<String>,
    /// Render the Dockerfiles into the work dir and build nothing.
    #[arg(long, overrides_with = "notemplate_only")]
    pub template_only: bool,
    #[arg(long, hide = true, overrides_with = "template_only")]
    notemplate_only: bool,
    /// HTTP timeout for source downloads, seconds [default: 120].
    #[arg(long)]
    pub timeout: Option<String>,
    /// Template override file(s); repeatable.
    #[arg(long)]
    pub template_override: Vec<String>,
    /// Extra template tree(s) merged over the main one; repeatable.
    #[arg(short = 'D', long)]
    pub docker_dir: Vec<String>,
    /// Directory for one log per image.
    #[arg(long)]
    pub logs_dir: Option<String>,
    /// Pull root images' base [default: true].
    #[arg(long, overrides_with = "nopull")]
    pub pull: bool,
    /// Do not pull base images when present.
    #[arg(long, overrides_with = "pull")]
    pub nopull: bool,
    /// Working directory (output in `<dir>/docker/`) [default: a temporary dir].
    #[arg(long)]
    pub work_dir: Option<String>,
    /// Squash image layers (engine option, accepted and ignored).
    #[arg(long, overrides_with = "nosquash")]
    pub squash: bool,
    #[arg(long, hide = true, overrides_with = "squash")]
    nosquash: bool,
    /// OpenStack release [default: 2026.2].
    #[arg(long)]
    pub openstack_release: Option<String>,
    /// OpenStack release codename [default: Hibiscus].
    #[arg(long)]
    pub openstack_release_codename: Option<String>,
    /// Source branch, dashed [default: stable-<release>].
    #[arg(long)]
    pub openstack_branch: Option<String>,
    /// Source branch, slashed [default: stable/<release>].
    #[arg(long)]
    pub openstack_branch_slashed: Option<String>,
    /// Install the healthcheck scripts in `base` [default: true].
    #[arg(long, overrides_with = "nodocker_healthchecks")]
    pub docker_healthchecks: bool,
    #[arg(long, hide = true, overrides_with = "docker_healthchecks")]
    nodocker_healthchecks: bool,
    /// Do not print image logs.
    #[arg(short = 'q', long, overrides_with = "noquiet")]
    pub quiet: bool,
    #[arg(long, hide = true, overrides_with = "quiet")]
    noquiet: bool,
    /// Also build images marked unbuildable for this base/arch.
    #[arg(long, overrides_with = "noenable_unbuildable")]
    pub enable_unbuildable: bool,
    #[arg(long, hide = true, overrides_with = "enable_unbuildable")]
    noenable_unbuildable: bool,
    /// Print a summary at the end [default: true].
    #[arg(long, overrides_with = "nosummary")]
    pub summary: bool,
    #[arg(long, hide = true, overrides_with = "summary")]
    nosummary: bool,
    /// Prefix of image names in canonical names and FROM lines.
    #[arg(long)]
    pub image_name_prefix: Option<String>,
    /// repos.yaml override merged over the default one.
    #[arg(long)]
    pub repos_yaml: Option<String>,
    /// Container engine (accepted and ignored: kolla-oci needs none).
    #[arg(long)]
    pub engine: Option<String>,
    /// Podman socket (accepted and ignored).
    #[arg(long = "podman_base_url", alias = "podman-base-url")]
    pub podman_base_url: Option<String>,
    /// Config file(s), replacing the default search; later files win. Repeatable.
    #[arg(long)]
    pub config_file: Vec<PathBuf>,
    /// Config directories: every `*.conf` in them, sorted, after the files. Repeatable.
    #[arg(long)]
    pub config_dir: Vec<PathBuf>,
    /// kolla-oci: select every image (ignores regexes and profiles).
    #[arg(long, help_heading = "kolla-oci options")]
    pub all: bool,
    /// kolla-oci: layer compression.
    #[arg(long, value_enum, help_heading = "kolla-oci options")]
    pub compression: Option<CompressionKind>,
    /// kolla-oci: registries to reach over plain HTTP / without TLS verification; repeatable.
    #[arg(long, help_heading = "kolla-oci options")]
    pub insecure_registry: Vec<String>,
    /// kolla-oci: template tree to render instead of the bundled one (e.g. an installed
    /// kolla's `kolla/docker`).
    #[arg(long, env = "KOLLA_OCI_TEMPLATE_TREE", help_heading = "kolla-oci options")]
    pub template_tree: Option<PathBuf>,
    /// kolla-oci: value of `kolla_version` seen by templates [default: 23.0.0].
    #[arg(long, help_heading = "kolla-oci options")]
    pub kolla_version: Option<String>,
    /// kolla-oci: record no SBOM and provenance for the images built (and push none with them).
    #[arg(long = "no-attestations", alias = "noattestations", help_heading = "kolla-oci options")]
    pub no_attestations: bool,
    /// kolla-oci: a registry repository (REGISTRY/REPO) shared as the step cache of several machines:
    /// steps found there are not run, steps built here are published there.
    #[arg(long, value_name = "REGISTRY/REPO", help_heading = "kolla-oci options")]
    pub cache_repo: Option<String>,
}

fn pair(yes: bool, no: bool) -> Option<bool> {
    match (yes, no) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

impl BuildArgs {
    /// Whether `-d/--debug` was given (the CLI edge uses it to pick the log level before
    /// config files are read).
    pub fn debug_requested(&self) -> bool {
        self.debug
    }

    /// The options given on the command line, as strings keyed by their config-file name.
    fn cli_values(&self) -> BTreeMap<&'static str, Vec<String>> {
        let mut m: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        let mut s = |k: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                m.insert(k, vec![v.clone()]);
            }
        };
        s("base", &self.base);
        s("base_tag", &self.base_tag);
        s("base_image", &self.base_image);
        s("base_arch", &self.base_arch);
        s("debian_arch", &self.debian_arch);
        s("build_args", &self.build_args);
        s("locals_base", &self.locals_base);
        s("namespace", &self.namespace);
        s("network_mode", &self.network_mode);
        s("buildkit_builder", &self.buildkit_builder);
        s("patches_path", &self.patches_path);
        s("platform", &self.platform);
        s("push_threads", &self.push_threads);
        s("retries", &self.retries);
        s("registry", &self.registry);
        s("save_dependency", &self.save_dependency);
        s("format", &self.format);
        s("summary_json_file", &self.summary_json_file);
        s("tarballs_base", &self.tarballs_base);
        s("threads", &self.threads);
        s("tag", &self.tag);
        s("timeout", &self.timeout);
        s("logs_dir", &self.logs_dir);
        s("work_dir", &self.work_dir);
        s("openstack_release", &self.openstack_release);
        s("openstack_release_codename", &self.openstack_release_codename);
        s("openstack_branch", &self.openstack_branch);
        s("openstack_branch_slashed", &self.openstack_branch_slashed);
        s("image_name_prefix", &self.image_name_prefix);
        s("repos_yaml", &self.repos_yaml);
        s("engine", &self.engine);
        s("cache_repo", &self.cache_repo);
        s("podman_base_url", &self.podman_base_url);
        s("kolla_version", &self.kolla_version);
        let tree = self.template_tree.as_ref().map(|p| p.to_string_lossy().into_owned());
        s("template_tree", &tree);
        let comp = self.compression.map(|c| match c {
            CompressionKind::Gzip => "gzip".to_string(),
            CompressionKind::Zstd => "zstd".to_string(),
        });
        s("compression", &comp);
        let bools = [
            ("use_dumb_init", pair(self.use_dumb_init, self.nouse_dumb_init)),
            ("debug", pair(self.debug, self.nodebug)),
            ("skip_parents", pair(self.skip_parents, self.noskip_parents)),
            ("skip_existing", pair(self.skip_existing, self.noskip_existing)),
            ("keep", pair(self.keep, self.nokeep)),
            ("list_dependencies", pair(self.list_dependencies, self.nolist_dependencies)),
            ("list_images", pair(self.list_images, self.nolist_images)),
            ("buildkit", pair(self.buildkit, self.nobuildkit)),
            ("cache", pair(self.cache, self.nocache)),
            ("push", pair(self.push, self.nopush)),
            ("template_only", pair(self.template_only, self.notemplate_only)),
            ("pull", pair(self.pull, self.nopull)),
            ("squash", pair(self.squash, self.nosquash)),
            ("docker_healthchecks", pair(self.docker_healthchecks, self.nodocker_healthchecks)),
            ("quiet", pair(self.quiet, self.noquiet)),
            ("enable_unbuildable", pair(self.enable_unbuildable, self.noenable_unbuildable)),
            ("summary", pair(self.summary, self.nosummary)),
            ("all", self.all.then_some(true)),
            ("attestations", self.no_attestations.then_some(false)),
        ];
        for (k, v) in bools {
            if let Some(v) = v {
                m.insert(k, vec![v.to_string()]);
            }
        }
        let multi = [
            ("regex", &self.regex),
            ("profile", &self.profile),
            ("template_override", &self.template_override),
            ("docker_dir", &self.docker_dir),
            ("insecure_registry", &self.insecure_registry),
        ];
        for (k, v) in multi {
            if !v.is_empty() {
                m.insert(k, v.clone());
            }
        }
        m
    }
}

/// `[DEFAULT]` options kolla-oci knows, with their static defaults (`None`: unset or derived
/// from other options). Names are the config-file names (`_`).
const DEFAULT_OPTIONS: &[(&str, Option<&str>)] = &[
    ("base", Some("debian")),
    ("base_tag", None),
    ("base_image", None),
    ("base_arch", None),
    ("debian_arch", None),
    ("use_dumb_init", Some("true")),
    ("debug", Some("false")),
    ("skip_parents", Some("false")),
    ("skip_existing", Some("false")),
    ("build_args", None),
    ("keep", Some("false")),
    ("list_dependencies", Some("false")),
    ("list_images", Some("false")),
    ("locals_base", Some("./")),
    ("namespace", Some("kolla")),
    ("network_mode", Some("host")),
    ("buildkit", Some("true")),
    ("buildkit_builder", None),
    ("cache", Some("true")),
    ("patches_path", None),
    ("platform", None),
    ("profile", None),
    ("push", Some("false")),
    ("push_threads", Some("1")),
    ("retries", Some("3")),
    ("regex", None),
    ("registry", None),
    ("save_dependency", None),
    ("format", Some("json")),
    ("summary_json_file", None),
    ("tarballs_base", Some("https://tarballs.opendev.org")),
    ("threads", Some("8")),
    ("tag", None),
    ("template_only", Some("false")),
    ("timeout", Some("120")),
    ("template_override", None),
    ("docker_dir", None),
    ("logs_dir", None),
    ("pull", Some("true")),
    ("work_dir", None),
    ("squash", Some("false")),
    ("openstack_release", Some("2026.2")),
    ("openstack_release_codename", Some("Hibiscus")),
    ("openstack_branch", None),
    ("openstack_branch_slashed", None),
    ("docker_healthchecks", Some("true")),
    ("quiet", Some("false")),
    ("enable_unbuildable", Some("false")),
    ("summary", Some("true")),
    ("image_name_prefix", Some("")),
    ("repos_yaml", Some("")),
    ("engine", Some("docker")),
    ("cache_repo", None),
    ("podman_base_url", Some("unix:///run/podman/podman.sock")),
    // config-file-only options
    ("maintainer", Some("Kolla Project (https://launchpad.net/kolla)")),
    ("distro_package_manager", None),
    ("base_package_type", None),
    ("rpm_setup_config", Some("")),
    ("apt_sources_list", None),
    ("apt_preferences", None),
    ("squash_cleanup", Some("true")),
    ("squash_tmp_dir", None),
    ("clean_package_cache", Some("true")),
    ("allowed_to_fail", Some("")),
    ("pip_index_url", None),
    ("pip_trusted_host", None),
    ("pip_extra_index_url", None),
    // kolla-oci additions
    ("all", Some("false")),
    ("attestations", Some("true")),
    ("compression", Some("gzip")),
    ("insecure_registry", None),
    ("template_tree", None),
    ("kolla_version", Some(KOLLA_COMPAT_VERSION)),
];

/// `(base, default image, default tag, /etc/os-release PRETTY_NAME pattern)`, as kolla-build 23.0.0.
const BASES: &[(&str, &str, &str, &str)] = &[
    ("debian", "debian", "trixie", "Debian GNU/Linux 13 (trixie)"),
    ("ubuntu", "ubuntu", "24.04", "Ubuntu 24.04.* LTS"),
    ("rocky", "quay.io/rockylinux/rockylinux", "10", "Rocky Linux 10.* (Red Quartz)"),
    ("centos", "quay.io/centos/centos", "stream10", "CentOS Stream 10"),
];

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
    /// Build network mode (`host`).
    pub network_mode: String,
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
    /// Registries allowed over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// kolla-oci: record each built image's SBOM and provenance in the store, and push them with it.
    pub attestations: bool,
    /// `--cache-repo`: the registry repository shared as a step cache.
    pub cache_repo: Option<String>,
    /// The config files read, in order (what the provenance names with their digests); empty when
    /// resolved over files parsed elsewhere ([`KollaConfig::resolve`]).
    pub config_files: Vec<PathBuf>,
}

/// Where an option value came from (for error messages).
fn origin_of(e: &ini::Entry) -> String {
    format!("{}:{}", e.file.display(), e.line)
}

/// Looks option values up with oslo.config's precedence and interpolation.
struct Resolver<'a> {
    ini: &'a IniData,
    cli: BTreeMap<&'static str, Vec<String>>,
    /// Defaults of non-DEFAULT groups (from `sources.yaml`), as strings.
    group_defaults: BTreeMap<String, BTreeMap<String, String>>,
}

const MAX_DEPTH: usize = 32;

impl Resolver<'_> {
    fn origin(&self, group: &str, name: &str) -> String {
        if group == "DEFAULT" && self.cli.contains_key(name) {
            return "command line".into();
        }
        match self.ini.get_last(group, name) {
            Some(e) => origin_of(e),
            None => "default".into(),
        }
    }

    /// The raw (uninterpolated) value: command line, then files, then group defaults.
    fn raw(&self, group: &str, name: &str) -> Option<String> {
        if let Some(v) = self.cli.get(name).and_then(|v| v.last()).filter(|_| group == "DEFAULT") {
            return Some(v.clone());
        }
        if let Some(e) = self.ini.get_last(group, name) {
            return Some(e.value.clone());
        }
        self.group_defaults.get(group).and_then(|g| g.get(name)).cloned()
    }

    fn expand(&self, group: &str, value: &str, depth: usize) -> Result<String, ConfigError> {
        ini::interpolate(value, &mut |name| {
            let (g, n) = match name.split_once('.') {
                Some((g, n)) => (g.to_string(), n),
                None => (group.to_string(), name),
            };
            if let Some(v) = self.get_at(&g, n, depth + 1)? {
                return Ok(Some(v));
            }
            if g != "DEFAULT" {
                return self.get_at("DEFAULT", name, depth + 1);
            }
            Ok(None)
        })
    }

    /// A single-valued option, interpolated, with its default.
    fn get(&self, group: &str, name: &str) -> Result<Option<String>, ConfigError> {
        self.get_at(group, name, 0)
    }

    fn get_at(&self, group: &str, name: &str, depth: usize) -> Result<Option<String>, ConfigError> {
        if depth > MAX_DEPTH {
            return Err(ConfigError::InterpolationLoop(format!("[{group}] {name}")));
        }
        if let Some(raw) = self.raw(group, name) {
            return self.expand(group, &raw, depth).map(Some);
        }
        if group != "DEFAULT" {
            return Ok(None);
        }
        self.default_of(name, depth)
    }

    /// kolla-build's derived defaults (`base_tag`, `tag`, branches, arch) and static ones.
    fn default_of(&self, name: &str, depth: usize) -> Result<Option<String>, ConfigError> {
        let get =
            |n: &str| -> Result<String, ConfigError> { Ok(self.get_at("DEFAULT", n, depth + 1)?.unwrap_or_default()) };
        let base_row = |base: &str| BASES.iter().find(|b| b.0 == base);
        let v = match name {
            "base_tag" => base_row(&get("base")?).map(|b| b.2.to_string()),
            "base_image" => base_row(&get("base")?).map(|b| b.1.to_string()),
            "base_arch" => Some(host_arch().to_string()),
            "debian_arch" => Some(debian_arch_of(&get("base_arch")?).to_string()),
            "tag" => Some(format!("{}-{}-{}", get("openstack_release")?, get("base")?, get("base_tag")?)),
            "openstack_branch" | "openstack_branch_slashed" => {
                let release = get("openstack_release")?;
                let branch = if release == "master" { release } else { format!("stable-{release}") };
                Some(if name == "openstack_branch" { branch } else { branch.replace('-', "/") })
            }
            _ => match DEFAULT_OPTIONS.iter().find(|o| o.0 == name) {
                Some((_, Some(d))) => Some(self.expand("DEFAULT", d, depth)?),
                _ => None,
            },
        };
        Ok(v)
    }

    /// All values of a multi-valued `[DEFAULT]` option: files first, then the command line.
    fn multi(&self, name: &str) -> Result<Vec<String>, ConfigError> {
        let mut out = Vec::new();
        for e in self.ini.get_all("DEFAULT", name) {
            out.push(self.expand("DEFAULT", &e.value, 0)?);
        }
        for v in self.cli.get(name).into_iter().flatten() {
            out.push(self.expand("DEFAULT", v, 0)?);
        }
        Ok(out)
    }

    fn err(&self, group: &str, name: &str, value: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Value {
            option: format!("[{group}] {name}"),
            value: value.to_string(),
            origin: self.origin(group, name),
            message: message.into(),
        }
    }

    fn string(&self, name: &str) -> Result<String, ConfigError> {
        Ok(self.get("DEFAULT", name)?.unwrap_or_default())
    }

    fn opt_string(&self, name: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.get("DEFAULT", name)?.filter(|s| !s.is_empty()))
    }

    fn opt_path(&self, name: &str) -> Result<Option<PathBuf>, ConfigError> {
        Ok(self.opt_string(name)?.map(PathBuf::from))
    }

    fn boolean_in(&self, group: &str, name: &str) -> Result<Option<bool>, ConfigError> {
        let Some(v) = self.get(group, name)? else { return Ok(None) };
        parse_bool(&v)
            .map(Some)
            .ok_or_else(|| self.err(group, name, &v, "not a boolean (true/false, yes/no, on/off, 1/0)"))
    }

    fn boolean(&self, name: &str) -> Result<bool, ConfigError> {
        Ok(self.boolean_in("DEFAULT", name)?.unwrap_or(false))
    }

    fn integer<T: std::str::FromStr>(&self, name: &str, min: i64) -> Result<T, ConfigError> {
        let v = self.string(name)?;
        let n: i64 = v.trim().parse().map_err(|_| self.err("DEFAULT", name, &v, "not an integer"))?;
        if n < min {
            return Err(self.err("DEFAULT", name, &v, format!("must be at least {min}")));
        }
        v.trim().parse().map_err(|_| self.err("DEFAULT", name, &v, "out of range"))
    }

    fn list(&self, group: &str, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
        Ok(self.get(group, name)?.map(|v| split_list(&v)))
    }

    fn dict(&self, group: &str, name: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let Some(v) = self.get(group, name)? else { return Ok(BTreeMap::new()) };
        let mut out = BTreeMap::new();
        for item in split_list(&v) {
            let (k, val) =
                item.split_once(':').ok_or_else(|| self.err(group, name, &v, format!("{item:?} is not key:value")))?;
            out.insert(k.trim().to_string(), val.trim().to_string());
        }
        Ok(out)
    }

    fn choice(&self, name: &str, choices: &[&str]) -> Result<String, ConfigError> {
        let v = self.string(name)?;
        if choices.contains(&v.as_str()) {
            Ok(v)
        } else {
            Err(self.err("DEFAULT", name, &v, format!("must be one of {}", choices.join(", "))))
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "on" | "yes" => Some(true),
        "false" | "0" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// oslo `ListOpt`: comma-separated, items trimmed, `""` is the empty list.
fn split_list(v: &str) -> Vec<String> {
    if v.trim().is_empty() {
        return Vec::new();
    }
    v.split(',').map(|s| s.trim().to_string()).collect()
}

/// The host architecture in kolla's spelling.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" | "arm64" => "aarch64",
        other => other,
    }
}

/// Debian's name for `base_arch` (kolla: aarch64 → arm64, anything else → amd64).
pub fn debian_arch_of(base_arch: &str) -> &'static str {
    if base_arch == "aarch64" { "arm64" } else { "amd64" }
}

/// kolla's `rpm_setup`: `.rpm` → `RUN dnf -y install`, remote `.repo` → `RUN curl`, local
/// `.repo` → `COPY`, empty → empty line.
fn rpm_setup_lines(items: &[String]) -> Result<Vec<String>, String> {
    items
        .iter()
        .map(|c| {
            if c.ends_with(".rpm") {
                Ok(format!("RUN dnf -y install {c}"))
            } else if c.ends_with(".repo") {
                if c.starts_with("http") {
                    let name = c.rsplit('/').next().unwrap_or(c);
                    Ok(format!("RUN curl -L {c} -o /etc/yum.repos.d/{name}"))
                } else {
                    Ok(format!("COPY {c} /etc/yum.repos.d/"))
                }
            } else if c.is_empty() {
                Ok(String::new())
            } else {
                Err(format!("{c:?}: RPM setup must be provided as .rpm or .repo files"))
            }
        })
        .collect()
}

/// The default config files oslo.config would read for kolla-build: the first `kolla.conf` and
/// the first `kolla-build.conf` found in `~/.kolla/`, `~/`, `/etc/kolla/`, `/etc/`, then every
/// `*.conf` in the first `kolla.conf.d/` and `kolla-build.conf.d/` found in the same places.
pub fn default_config_files() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let home = PathBuf::from(home);
        dirs.push(home.join(".kolla"));
        dirs.push(home);
    }
    dirs.push(PathBuf::from("/etc/kolla"));
    dirs.push(PathBuf::from("/etc"));
    let mut files = Vec::new();
    for name in ["kolla.conf", "kolla-build.conf"] {
        if let Some(f) = dirs.iter().map(|d| d.join(name)).find(|p| p.exists()) {
            files.push(f);
        }
    }
    for name in ["kolla.conf.d", "kolla-build.conf.d"] {
        if let Some(d) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_dir()) {
            files.extend(conf_files_in(&d).unwrap_or_default());
        }
    }
    files
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
fn load_sources_yaml(path: &Path) -> Result<BTreeMap<String, BTreeMap<String, String>>, ConfigError> {
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
    /// Resolve `args` with the config files it names (or oslo's default search when it names
    /// none) and the defaults.
    pub fn from_args(args: &BuildArgs) -> Result<KollaConfig, ConfigError> {
        let mut files: Vec<PathBuf> =
            if args.config_file.is_empty() { default_config_files() } else { args.config_file.clone() };
        for d in &args.config_dir {
            files.extend(conf_files_in(d)?);
        }
        let mut ini = IniData::default();
        for f in &files {
            tracing::debug!(file = %f.display(), "reading config file");
            ini.read_file(f)?;
        }
        let mut cfg = Self::resolve(args, &ini)?;
        cfg.config_files = files;
        Ok(cfg)
    }

    /// Resolve `args` over already-parsed config files.
    pub fn resolve(args: &BuildArgs, ini: &IniData) -> Result<KollaConfig, ConfigError> {
        let mut r = Resolver { ini, cli: args.cli_values(), group_defaults: BTreeMap::new() };
        for key in ini.keys("DEFAULT") {
            if !DEFAULT_OPTIONS.iter().any(|o| o.0 == key) {
                tracing::debug!(option = key, "ignoring unknown [DEFAULT] option");
            }
        }
        let template_tree = r.opt_path("template_tree")?.unwrap_or_else(|| PathBuf::from(BUNDLED_TEMPLATES));
        if let Some(y) = tree_data_file(&template_tree, "sources.yaml", "common") {
            r.group_defaults = load_sources_yaml(&y)?;
        }

        let base = r.choice("base", &BASES.iter().map(|b| b.0).collect::<Vec<_>>())?;
        let base_arch = r.choice("base_arch", &["x86_64", "aarch64"])?;
        let debian_arch = r.choice("debian_arch", &["amd64", "arm64"])?;
        let base_tag = r.string("base_tag")?;
        let base_row = BASES.iter().find(|b| b.0 == base).expect("checked by choice");
        let (mut base_package_type, mut distro_package_manager) =
            if matches!(base.as_str(), "rocky" | "centos") { ("rpm", "dnf") } else { ("deb", "apt") };
        let pkg_type = r.opt_string("base_package_type")?;
        if let Some(t) = &pkg_type {
            base_package_type = t;
        }
        let pkg_mgr = r.get("DEFAULT", "distro_package_manager")?;
        if let Some(m) = &pkg_mgr {
            distro_package_manager = m;
        }
        let supported_distro_name = if base == "debian" && (base_tag.starts_with("bookworm") || base_tag == "12") {
            "Debian GNU/Linux 12 (bookworm)".to_string()
        } else {
            base_row.3.to_string()
        };

        let registry = r.opt_string("registry")?;
        let ns = r.string("namespace")?;
        let namespace = match &registry {
            Some(reg) => format!("{reg}/{ns}"),
            None => ns,
        };

        let rpm_setup = rpm_setup_lines(&r.list("DEFAULT", "rpm_setup_config")?.unwrap_or_default())
            .map_err(|m| r.err("DEFAULT", "rpm_setup_config", &r.string("rpm_setup_config").unwrap_or_default(), m))?;

        let users = Self::resolve_users(&r)?;
        let sources = Self::resolve_sources(&r)?;

        let mut profiles: BTreeMap<String, Vec<String>> =
            DEFAULT_PROFILES.iter().map(|(n, l)| (n.to_string(), l.iter().map(|s| s.to_string()).collect())).collect();
        for key in ini.keys("profiles") {
            if let Some(list) = r.list("profiles", key)? {
                profiles.insert(key.to_string(), list);
            }
        }

        let format = r.choice("format", &["json", "none"])?;
        let compression = match r.choice("compression", &["gzip", "zstd"])?.as_str() {
            "zstd" => CompressionKind::Zstd,
            _ => CompressionKind::Gzip,
        };
        r.choice("engine", &["docker", "podman"])?;
        for ignored in ["engine", "podman_base_url", "buildkit", "buildkit_builder", "squash", "keep", "platform"] {
            if r.cli.contains_key(ignored) || r.ini.get_last("DEFAULT", ignored).is_some() {
                tracing::debug!(option = ignored, "engine option accepted and ignored (kolla-oci needs no engine)");
            }
        }

        let paths = |name: &str| -> Result<Vec<PathBuf>, ConfigError> {
            Ok(r.multi(name)?.into_iter().map(PathBuf::from).collect())
        };

        Ok(KollaConfig {
            base_image: r.string("base_image")?,
            template_debian_arch: debian_arch_of(&base_arch).to_string(),
            base_package_type: base_package_type.to_string(),
            distro_package_manager: distro_package_manager.to_string(),
            supported_distro_name,
            registry,
            namespace,
            tag: r.string("tag")?,
            image_prefix: r.string("image_name_prefix")?,
            openstack_release: r.string("openstack_release")?,
            openstack_release_codename: r.string("openstack_release_codename")?,
            openstack_branch: r.string("openstack_branch")?,
            openstack_branch_slashed: r.string("openstack_branch_slashed")?,
            maintainer: r.string("maintainer")?,
            kolla_version: r.string("kolla_version")?,
            use_dumb_init: r.boolean("use_dumb_init")?,
            docker_healthchecks: r.boolean("docker_healthchecks")?,
            clean_package_cache: r.boolean("clean_package_cache")?,
            rpm_setup,
            apt_sources_list: r.opt_path("apt_sources_list")?,
            apt_preferences: r.opt_path("apt_preferences")?,
            patches_path: r.opt_path("patches_path")?,
            repos_yaml: r.string("repos_yaml")?,
            default_repos_yaml: tree_data_file(&template_tree, "repos.yaml", "template"),
            pip_index_url: r.opt_string("pip_index_url")?,
            pip_trusted_host: r.opt_string("pip_trusted_host")?,
            pip_extra_index_url: r.opt_string("pip_extra_index_url")?,
            users,
            sources,
            profiles,
            regex: r.multi("regex")?,
            profile: r.multi("profile")?,
            all: r.boolean("all")?,
            skip_parents: r.boolean("skip_parents")?,
            skip_existing: r.boolean("skip_existing")?,
            template_only: r.boolean("template_only")?,
            list_images: r.boolean("list_images")?,
            list_dependencies: r.boolean("list_dependencies")?,
            save_dependency: r.opt_path("save_dependency")?,
            enable_unbuildable: r.boolean("enable_unbuildable")?,
            allowed_to_fail: r.list("DEFAULT", "allowed_to_fail")?.unwrap_or_default(),
            docker_dirs: paths("docker_dir")?,
            template_overrides: paths("template_override")?,
            template_tree,
            work_dir: r.opt_path("work_dir")?,
            threads: r.integer("threads", 1)?,
            push: r.boolean("push")?,
            push_threads: r.integer("push_threads", 1)?,
            retries: r.integer("retries", 0)?,
            cache: r.boolean("cache")?,
            pull: r.boolean("pull")?,
            build_args: r.dict("DEFAULT", "build_args")?,
            network_mode: r.string("network_mode")?,
            logs_dir: r.opt_path("logs_dir")?,
            summary: r.boolean("summary")?,
            format_json: format == "json",
            summary_json_file: r.opt_path("summary_json_file")?,
            debug: r.boolean("debug")?,
            quiet: r.boolean("quiet")?,
            locals_base: r.string("locals_base")?,
            tarballs_base: r.string("tarballs_base")?,
            timeout: r.integer("timeout", 0)?,
            compression,
            insecure_registries: r.multi("insecure_registry")?,
            attestations: r.boolean("attestations")?,
            cache_repo: r.opt_string("cache_repo")?,
            config_files: Vec::new(),
            base,
            base_tag,
            base_arch,
            debian_arch,
        })
    }

    fn resolve_users(r: &Resolver<'_>) -> Result<BTreeMap<String, User>, ConfigError> {
        let mut users: BTreeMap<String, User> = users::KOLLA_USERS
            .iter()
            .map(|(n, uid, gid, group)| {
                (n.to_string(), User { uid: Some(*uid), gid: Some(*gid), group: group.unwrap_or(n).to_string() })
            })
            .collect();
        let sections: Vec<&str> = r.ini.section_names().filter(|s| s.ends_with("-user")).collect();
        for section in sections {
            let name = &section[..section.len() - 5];
            let current = users.get(name).cloned();
            let int = |key: &str, cur: Option<u32>| -> Result<Option<u32>, ConfigError> {
                match r.get(section, key)? {
                    Some(v) => v.trim().parse().map(Some).map_err(|_| r.err(section, key, &v, "not a valid id")),
                    None => Ok(cur),
                }
            };
            let user = User {
                uid: int("uid", current.as_ref().and_then(|u| u.uid))?,
                gid: int("gid", current.as_ref().and_then(|u| u.gid))?,
                group: r.get(section, "group")?.or(current.map(|u| u.group)).unwrap_or_else(|| name.to_string()),
            };
            users.insert(name.to_string(), user);
        }
        Ok(users)
    }

    fn resolve_sources(r: &Resolver<'_>) -> Result<BTreeMap<String, Source>, ConfigError> {
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
                    sha256: r.dict(&name, "sha256")?,
                    name,
                },
            );
        }
        Ok(out)
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
}
