//! The one definition of every kolla-build option kolla-oci knows ([`OPTIONS`]); the
//! `kolla-oci build` command line is generated from it ([`super::cli`]).
//!
//! kolla-build declares each option once (oslo.config `cfg.StrOpt(...)`), and its command line,
//! config files and defaults all follow from that declaration. kolla-oci does the same: a row
//! of [`OPTIONS`] gives the name, kind, default and help of an option, and
//! - the command line is built from the rows (`--base-tag`, `-b`, the `--noX` twin of each
//!   boolean, …), so a flag cannot be missing from the config files or the other way round;
//! - the INI reader takes its `[DEFAULT]` defaults from the rows;
//! - the resolver refuses to read a name that has no row, or that has a row of another kind,
//!   so a typo in a lookup is an error instead of a silent `""`/`false`.

use clap::ValueEnum;
use clap::builder::PossibleValue;

use super::KOLLA_COMPAT_VERSION;

/// Layer compression for the images kolla-oci writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CompressionKind {
    /// `application/vnd.oci.image.layer.v1.tar+gzip`, readable by every runtime.
    #[default]
    Gzip,
    /// `...tar+zstd`: faster and smaller, needs a recent runtime.
    Zstd,
}

/// The type of an option, as oslo.config's `StrOpt`, `BoolOpt`, … ; the resolver reads an
/// option only through the reader of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `StrOpt`: one string.
    Str,
    /// `BoolOpt`: `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`; `--X` and `--noX` on the command line.
    Bool,
    /// `IntOpt`: one integer.
    Int,
    /// `ListOpt`: one comma-separated value.
    List,
    /// `DictOpt`: one `key:value,key:value` value.
    Dict,
    /// `StrOpt` naming a file or directory (empty means unset).
    Path,
    /// `MultiOpt`: repeatable; file values then command-line values, all kept.
    Multi,
}

/// How a boolean appears on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BoolFlags {
    /// `--X` and a hidden `--noX`, as oslo.config provides for every `BoolOpt`.
    Twins,
    /// `--X` and a `--noX` shown in the help with this text.
    TwinsShown(&'static str),
    /// Only `--X` (a kolla-oci addition that is off unless asked for).
    PositiveOnly,
    /// Only this negative flag and its alias, with this help (a kolla-oci addition that is on
    /// unless refused).
    NegativeOnly {
        /// The flag (`no-attestations`).
        long: &'static str,
        /// Its other spelling (`noattestations`, as oslo.config would spell it).
        alias: &'static str,
        /// Its help.
        help: &'static str,
    },
}

/// One option: its single definition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OptionDef {
    /// The config-file name (`base_tag`); also the clap argument id.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// The static default (`None`: unset, or derived from other options by the resolver).
    pub default: Option<&'static str>,
    /// One-line help (the command line's and the documentation's).
    pub help: &'static str,
    /// A kolla-oci addition rather than a kolla-build option.
    pub kolla_oci: bool,
    /// On the command line at all (kolla-build's `_BASE_OPTS` are config-file only).
    pub cli: bool,
    /// Short flag.
    pub short: Option<char>,
    /// Long flag when it is not the name with `-` for `_` (kolla-build registers a few names
    /// with underscores); the dashed spelling is then an alias.
    pub long: Option<&'static str>,
    /// A positional argument instead of a flag (`regex`).
    pub positional: bool,
    /// Placeholder in the help when not the upper-cased name.
    pub value_name: Option<&'static str>,
    /// Environment variable that sets the option when the flag is absent.
    pub env: Option<&'static str>,
    /// Command-line forms of a boolean.
    pub flags: BoolFlags,
    /// Values the command line accepts (checked at parse time and listed in the help).
    pub values: Option<fn() -> Vec<PossibleValue>>,
}

/// A kolla-build option: command line and config file.
const fn opt(name: &'static str, kind: Kind, default: Option<&'static str>, help: &'static str) -> OptionDef {
    OptionDef {
        name,
        kind,
        default,
        help,
        kolla_oci: false,
        cli: true,
        short: None,
        long: None,
        positional: false,
        value_name: None,
        env: None,
        flags: BoolFlags::Twins,
        values: None,
    }
}

/// Builders for the rows of [`OPTIONS`], each setting one field of [`opt`]'s row, so a row states only
/// what differs from a plain kolla-build option.
impl OptionDef {
    const fn short(mut self, c: char) -> Self {
        self.short = Some(c);
        self
    }
    const fn long(mut self, long: &'static str) -> Self {
        self.long = Some(long);
        self
    }
    const fn file_only(mut self) -> Self {
        self.cli = false;
        self
    }
    const fn kolla_oci(mut self) -> Self {
        self.kolla_oci = true;
        self
    }
    const fn flags(mut self, flags: BoolFlags) -> Self {
        self.flags = flags;
        self
    }
    const fn positional(mut self) -> Self {
        self.positional = true;
        self
    }
    const fn value_name(mut self, v: &'static str) -> Self {
        self.value_name = Some(v);
        self
    }
}

use Kind::{Bool, Dict, Int, List, Multi, Path, Str};

/// Every `[DEFAULT]` option kolla-oci knows: kolla-build 23.0.0's (`kolla/common/config.py`,
/// in its order: the command-line ones, then the config-file-only ones), then kolla-oci's.
/// Defaults are kolla-build's except `base` (debian, see the module doc of [`crate::config`]);
/// kolla-build's `base_tag`, `base_image`, `base_arch`, `debian_arch`, `tag` and branch defaults
/// are derived from other options by the resolver, so they have none here.
pub(crate) const OPTIONS: &[OptionDef] = &[
    opt(
        "regex",
        Multi,
        None,
        "Build only images whose name matches one of these regexes (Python `re.search`), plus their ancestors. Overrides --profile",
    )
    .positional()
    .value_name("REGEX"),
    opt("base", Str, Some("debian"), "Base distro: debian (default for kolla-oci), ubuntu, rocky, centos").short('b'),
    opt("base_tag", Str, None, "Base distro image tag [default: trixie for debian, 24.04 ubuntu, 10 rocky]"),
    opt("base_image", Str, None, "Base image name [default: from --base]"),
    opt("base_arch", Str, None, "Base architecture, x86_64 or aarch64 [default: the host's]"),
    opt("debian_arch", Str, None, "Debian architecture for downloaded binaries [default: from --base-arch]"),
    opt("use_dumb_init", Bool, Some("true"), "Use dumb-init as the entrypoint of `base` [default: true]"),
    opt("debug", Bool, Some("false"), "Debug logging").short('d'),
    opt("skip_parents", Bool, Some("false"), "Do not rebuild parents of matched images (they must exist already)"),
    opt("skip_existing", Bool, Some("false"), "Do not rebuild images already present in the store"),
    opt(
        "build_args",
        Dict,
        None,
        "Build arguments, `key:value,key:value` (proxy variables are added from the environment)",
    )
    .value_name("K:V,..."),
    opt("keep", Bool, Some("false"), "Keep failed intermediate state (engine option, accepted)"),
    opt("list_dependencies", Bool, Some("false"), "Print the selected images as a JSON tree of dependencies and exit")
        .short('l'),
    opt("list_images", Bool, Some("false"), "Print the selected images and exit"),
    opt("locals_base", Str, Some("./"), "Base directory for `$locals_base` in local sources [default: ./]"),
    opt("namespace", Str, Some("kolla"), "Image namespace [default: kolla]").short('n'),
    opt(
        "network_mode",
        Str,
        Some("host"),
        "The network of RUN steps, as Docker's build network mode: host, none, or default/bridge (a private namespace); when not given, kolla-oci's --network decides (private)",
    )
    .long("network_mode"),
    opt("buildkit", Bool, Some("true"), "Use BuildKit (engine option, accepted and ignored)"),
    opt("buildkit_builder", Str, None, "BuildKit builder (engine option, accepted and ignored)"),
    opt("cache", Bool, Some("true"), "Use the layer cache [default: true]")
        .flags(BoolFlags::TwinsShown("Do not use the layer cache")),
    opt("patches_path", Path, None, "Directory of per-image patches (`<dir>/<image>/series` + patches)"),
    opt("platform", Str, None, "Target platform (engine option, accepted)"),
    opt("profile", Multi, None, "Build a predefined set of images (see `[profiles]`); repeatable").short('p'),
    opt("push", Bool, Some("false"), "Push images after building").flags(BoolFlags::TwinsShown("Do not push")),
    opt("push_threads", Int, Some("1"), "Number of concurrent pushes [default: 1]"),
    opt("retries", Int, Some("3"), "Retries of each build or push [default: 3]").short('r'),
    opt("registry", Str, None, "Registry host prefixed onto the namespace"),
    opt("save_dependency", Path, None, "Write the dependency graph in Graphviz dot format to this file and exit"),
    opt("format", Str, Some("json"), "Summary format: json or none [default: json]").short('f'),
    opt("summary_json_file", Path, None, "Write the JSON summary to this file instead of stdout"),
    opt(
        "tarballs_base",
        Str,
        Some("https://tarballs.opendev.org"),
        "Base URL of OpenStack tarballs [default: https://tarballs.opendev.org]",
    ),
    opt("threads", Int, Some("8"), "Number of concurrent builds [default: 8]").short('T'),
    opt("tag", Str, None, "Image tag [default: <openstack_release>-<base>-<base_tag>]"),
    opt("template_only", Bool, Some("false"), "Render the Dockerfiles into the work dir and build nothing"),
    opt("timeout", Int, Some("120"), "HTTP timeout for source downloads, seconds [default: 120]"),
    opt("template_override", Multi, None, "Template override file(s); repeatable"),
    opt("docker_dir", Multi, None, "Extra template tree(s) merged over the main one; repeatable").short('D'),
    opt("logs_dir", Path, None, "Directory for one log per image"),
    opt("pull", Bool, Some("true"), "Pull root images' base [default: true]")
        .flags(BoolFlags::TwinsShown("Do not pull base images when present")),
    opt("work_dir", Path, None, "Working directory (output in `<dir>/docker/`) [default: a temporary dir]"),
    opt("squash", Bool, Some("false"), "Merge each image's own layers into one on top of its parent's layers"),
    opt("openstack_release", Str, Some("2026.2"), "OpenStack release [default: 2026.2]"),
    opt("openstack_release_codename", Str, Some("Hibiscus"), "OpenStack release codename [default: Hibiscus]"),
    opt("openstack_branch", Str, None, "Source branch, dashed [default: stable-<release>]"),
    opt("openstack_branch_slashed", Str, None, "Source branch, slashed [default: stable/<release>]"),
    opt("docker_healthchecks", Bool, Some("true"), "Install the healthcheck scripts in `base` [default: true]"),
    opt("quiet", Bool, Some("false"), "Do not print image logs").short('q'),
    opt("enable_unbuildable", Bool, Some("false"), "Also build images marked unbuildable for this base/arch"),
    opt("summary", Bool, Some("true"), "Print a summary at the end [default: true]"),
    opt("image_name_prefix", Str, Some(""), "Prefix of image names in canonical names and FROM lines"),
    opt("repos_yaml", Str, Some(""), "repos.yaml override merged over the default one"),
    opt("engine", Str, Some("docker"), "Container engine (accepted and ignored: kolla-oci needs none)"),
    opt("podman_base_url", Str, Some("unix:///run/podman/podman.sock"), "Podman socket (accepted and ignored)")
        .long("podman_base_url"),
    // kolla-build's config-file-only options (`_BASE_OPTS`)
    opt("maintainer", Str, Some("Kolla Project (https://launchpad.net/kolla)"), "Maintainer label value").file_only(),
    opt("distro_package_manager", Str, None, "Package manager [default: dnf for rocky/centos, else apt]").file_only(),
    opt("base_package_type", Str, None, "Package type [default: rpm for rocky/centos, else deb]").file_only(),
    opt("rpm_setup_config", List, Some(""), "`.rpm` and `.repo` files installed in `base`").file_only(),
    opt("apt_sources_list", Path, None, "apt `sources.list` copied into `base`").file_only(),
    opt("apt_preferences", Path, None, "apt preferences copied into `base`").file_only(),
    opt("squash_cleanup", Bool, Some("true"), "Remove the squash source image (engine option, accepted and ignored)")
        .file_only(),
    opt("squash_tmp_dir", Str, None, "Temporary directory of squashing (engine option, accepted and ignored)")
        .file_only(),
    opt("clean_package_cache", Bool, Some("true"), "Clean package caches after installs").file_only(),
    opt("allowed_to_fail", List, Some(""), "Images whose failure does not fail the run").file_only(),
    opt("pip_index_url", Str, None, "`PIP_INDEX_URL` build argument").file_only(),
    opt("pip_trusted_host", Str, None, "`PIP_TRUSTED_HOST` build argument").file_only(),
    opt("pip_extra_index_url", Str, None, "`PIP_EXTRA_INDEX_URL` build argument").file_only(),
    // kolla-oci additions
    opt("all", Bool, Some("false"), "kolla-oci: select every image (ignores regexes and profiles)")
        .kolla_oci()
        .flags(BoolFlags::PositiveOnly),
    OptionDef {
        values: Some(variants::<CompressionKind>),
        ..opt("compression", Str, Some("gzip"), "kolla-oci: layer compression").kolla_oci()
    },
    OptionDef {
        values: Some(variants::<crate::sandbox::NetworkMode>),
        ..opt(
            "network",
            Str,
            Some("private"),
            "kolla-oci: the network of RUN steps: private (own namespace, outbound through slirp4netns, the host's 127.0.0.1 out of reach), host, or none [default: private]",
        )
        .kolla_oci()
    },
    opt(
        "insecure_registry",
        Multi,
        None,
        "kolla-oci: registries to reach over plain HTTP / without TLS verification; repeatable",
    )
    .kolla_oci(),
    OptionDef {
        env: Some("KOLLA_OCI_TEMPLATE_TREE"),
        ..opt(
            "template_tree",
            Path,
            None,
            "kolla-oci: template tree to render instead of the bundled one (e.g. an installed kolla's `kolla/docker`)",
        )
        .kolla_oci()
    },
    opt("kolla_version", Str, Some(KOLLA_COMPAT_VERSION), "kolla-oci: value of `kolla_version` seen by templates [default: 23.0.0]")
        .kolla_oci(),
    opt(
        "attestations",
        Bool,
        Some("true"),
        "kolla-oci: record each built image's SBOM and provenance in the store, and push them with it",
    )
    .kolla_oci()
    .flags(BoolFlags::NegativeOnly {
        long: "no-attestations",
        alias: "noattestations",
        help: "kolla-oci: record no SBOM and provenance for the images built (and push none with them)",
    }),
    opt(
        "bootstrap",
        Bool,
        Some("false"),
        "kolla-oci: make `FROM debian:<suite>` with mmdebstrap from the Debian archive instead of pulling it from its registry (which is otherwise tried first, through the mirrors of registries.conf)",
    )
    .kolla_oci()
    .flags(BoolFlags::PositiveOnly),
    opt(
        "cache_repo",
        Str,
        None,
        "kolla-oci: a registry repository (REGISTRY/REPO) shared as the step cache of several machines: steps found there are not run, steps built here are published there",
    )
    .kolla_oci(),
];

/// The values of an enum option, with their help, for [`OptionDef::values`].
fn variants<E: ValueEnum>() -> Vec<PossibleValue> {
    E::value_variants().iter().filter_map(ValueEnum::to_possible_value).collect()
}

/// The row of `name`, if it has one.
pub(crate) fn option(name: &str) -> Option<&'static OptionDef> {
    OPTIONS.iter().find(|o| o.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kolla-build 23.0.0's options as oslo.config declares them (`kolla/common/config.py`,
    /// dumped to a table): name, short flag, type, default, command line or config file only.
    const KOLLA_OPTIONS: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kolla-options-23.0.0.tsv"));

    /// Options whose kolla-oci default differs from kolla-build's on purpose: `base` (the bundled
    /// tree is Debian's), and the defaults the resolver derives (from `--base` and the host) where
    /// kolla-build's are static; `None` booleans read as false in both.
    const OWN_DEFAULTS: &[&str] = &["base", "base_tag", "base_arch", "debian_arch", "list_dependencies", "list_images"];

    #[test]
    fn table_has_kolla_builds_options() {
        let mut kolla = Vec::new();
        for line in KOLLA_OPTIONS.lines().skip(1) {
            let f: Vec<&str> = line.split('\t').collect();
            let [group, name, short, kind, default, scope] = f[..] else { panic!("bad line {line:?}") };
            let dest = name.replace('-', "_");
            if group == "profiles" {
                let ours = super::super::DEFAULT_PROFILES.iter().find(|p| p.0 == name).unwrap().1.join(",");
                assert_eq!(ours, default, "profile {name}");
                continue;
            }
            let o = option(&dest).unwrap_or_else(|| panic!("kolla-build option {name} is not in the table"));
            kolla.push(o.name);
            assert!(!o.kolla_oci, "{name}");
            assert_eq!(o.cli, scope == "cli", "{name}: {scope}");
            if o.cli && !o.positional {
                assert_eq!(o.long.unwrap_or(&o.name.replace('_', "-")), name, "{name}: long flag");
            }
            assert_eq!(o.short, short.chars().next(), "{name}: short flag");
            let kinds: &[Kind] = match kind {
                "StrOpt" => &[Kind::Str, Kind::Path],
                "BoolOpt" => &[Kind::Bool],
                "IntOpt" => &[Kind::Int],
                "ListOpt" => &[Kind::List],
                "DictOpt" => &[Kind::Dict],
                "MultiOpt" => &[Kind::Multi],
                other => panic!("{name}: unexpected type {other}"),
            };
            assert!(kinds.contains(&o.kind), "{name}: {kind} but {:?}", o.kind);
            let theirs = match default {
                "None" => None,
                "[]" => Some(String::new()),
                "True" | "False" => Some(default.to_lowercase()),
                d => Some(d.trim_matches('\'').to_string()),
            };
            if !OWN_DEFAULTS.contains(&o.name) {
                assert_eq!(o.default.map(str::to_string), theirs, "{name}: default");
            }
        }
        let extra: Vec<&str> =
            OPTIONS.iter().filter(|o| !o.kolla_oci && !kolla.contains(&o.name)).map(|o| o.name).collect();
        assert!(extra.is_empty(), "not kolla-build options but not marked kolla-oci: {extra:?}");
    }
}
