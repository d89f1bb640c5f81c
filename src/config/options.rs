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
    /// What kolla-oci does with a kolla-build option, for the options reference
    /// (`docs/kolla-build-options.md`); empty: exactly what kolla-build does.
    pub does: &'static str,
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
        does: "",
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
    const fn does(mut self, text: &'static str) -> Self {
        self.does = text;
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
    .value_name("REGEX")
        .does("As kolla-build: the patterns are joined as `(a|b)` and searched (`re.search`) with Python `re` semantics (lookahead, lookbehind, backreferences, through fancy-regex; groups count from 2 because of the join, as in kolla-build). fancy-regex accepts some variable-width lookbehinds Python refuses."),
    opt("base", Str, Some("debian"), "Base distro: debian (default for kolla-oci), ubuntu, rocky, centos").short('b')
        .does("Deliberately different default: `debian` (kolla-build: `rocky`), because the bundled tree is Debian's. With `--base` given, upstream trees render byte for byte as kolla-build renders them."),
    opt("base_tag", Str, None, "Base distro image tag [default: trixie for debian, 24.04 ubuntu, 10 rocky]")
        .does("As kolla-build (derived from `--base`: `trixie`, `24.04`, `10`)."),
    opt("base_image", Str, None, "Base image name [default: from --base]")
        .does("As kolla-build. The `FROM` of `base` is pulled from its registry (through registries.conf mirrors); `debian:<suite>` is bootstrapped with mmdebstrap when no registry serves it (see `--pull`, `--bootstrap`)."),
    opt("base_arch", Str, None, "Base architecture, x86_64 or aarch64 [default: the host's]")
        .does("As kolla-build (the host's by default, or `--platform`'s when only that is given): the tree is rendered for it, and images are built for its platform (`aarch64` is `linux/arm64/v8`), on another architecture through qemu-user (see `--platform`)."),
    opt("debian_arch", Str, None, "Debian architecture for downloaded binaries [default: from --base-arch]"),
    opt("use_dumb_init", Bool, Some("true"), "Use dumb-init as the entrypoint of `base` [default: true]")
        .does("As kolla-build; `--nouse-dumb-init` turns it off."),
    opt("debug", Bool, Some("false"), "Debug logging").short('d')
        .does("As kolla-build, from the command line or a config file: debug logging."),
    opt("skip_parents", Bool, Some("false"), "Do not rebuild parents of matched images (they must exist already)")
        .does("As kolla-build; the skipped parents must be in the store."),
    opt("skip_existing", Bool, Some("false"), "Do not rebuild images already present in the store")
        .does("As kolla-build, but asks kolla-oci's store (not a container engine) whether the image exists."),
    opt(
        "build_args",
        Dict,
        None,
        "Build arguments, `key:value,key:value` (proxy variables are added from the environment)",
    )
    .value_name("K:V,...")
        .does("As kolla-build: `key:value,...`, plus the host's proxy variables and the `pip_*` options where not given."),
    opt("keep", Bool, Some("false"), "Keep failed intermediate state (engine option, accepted)")
        .does("Accepted, no effect: there are no intermediate containers to keep (a failed RUN's scratch directory is removed)."),
    opt("list_dependencies", Bool, Some("false"), "Print the selected images as a JSON tree of dependencies and exit")
        .short('l')
        .does("As kolla-build (the same nested JSON tree)."),
    opt("list_images", Bool, Some("false"), "Print the selected images and exit")
        .does("As kolla-build (`N : name`; kolla-oci lists in name order, kolla-build in directory-walk order)."),
    opt("locals_base", Str, Some("./"), "Base directory for `$locals_base` in local sources [default: ./]"),
    opt("namespace", Str, Some("kolla"), "Image namespace [default: kolla]").short('n'),
    opt(
        "network_mode",
        Str,
        Some("host"),
        "The network of RUN steps, as Docker's build network mode: host, none, or default/bridge (a private namespace); when not given, kolla-oci's --network decides (private)",
    )
    .long("network_mode")
        .does("The network of RUN steps: `host` and `none` as Docker's; `default`/`bridge` (and kolla-build's default when not given) are kolla-oci's private namespace (outbound through slirp4netns, the host's loopback out of reach). `--network` (kolla-oci's) wins when both are given; other Docker modes (`container:…`) are refused."),
    opt("buildkit", Bool, Some("true"), "Use BuildKit (engine option, accepted and ignored)")
        .does("Accepted, no effect: kolla-oci is the builder (no BuildKit, no daemon)."),
    opt("buildkit_builder", Str, None, "BuildKit builder (engine option, accepted and ignored)")
        .does("Accepted, no effect (see `--buildkit`)."),
    opt("cache", Bool, Some("true"), "Use the layer cache [default: true]")
        .flags(BoolFlags::TwinsShown("Do not use the layer cache"))
        .does("As kolla-build: kolla-oci's step cache (content-addressed, ignores mtimes); `--nocache` builds every step again and downloads sources again."),
    opt("patches_path", Path, None, "Directory of per-image patches (`<dir>/<image>/series` + patches)"),
    opt("platform", Str, None, "Target platform(s), os/arch[/variant][,…] [default: --base-arch's]")
        .does("Builds real images for that platform (`linux/amd64`, `linux/arm64`, …; must agree with `--base-arch`): the root image bootstrapped or pulled for it, and on another architecture every RUN executed through qemu-user registered in binfmt_misc with the F flag (`apt-get install qemu-user-static binfmt-support`; without it the build fails, naming the interpreter). Config, manifest and index carry its `architecture` and `variant`; step cache keys take it. Several, comma-separated (`linux/amd64,linux/arm64`), build the selection for every platform at once (at most `--threads` images at a time over all of them), each rendered for its architecture, and tag each image as one OCI image index (one image per platform) that `--push` pushes whole, each platform's SBOM and provenance beside its own manifest; no `--push` needed."),
    opt("profile", Multi, None, "Build a predefined set of images (see `[profiles]`); repeatable").short('p')
        .does("As kolla-build (`[profiles]` of the config files; an unknown or empty profile is an error)."),
    opt("push", Bool, Some("false"), "Push images after building").flags(BoolFlags::TwinsShown("Do not push"))
        .does("Each image is pushed as soon as it is built, over the registry HTTP API (credentials from `~/.docker/config.json` or containers' `auth.json`), while the other images build; a push that fails (after `--retries`) makes the image `push_error` in the summary and the exit status 1. Its SBOM and provenance go with it unless `--no-attestations`."),
    opt("push_threads", Int, Some("1"), "Number of concurrent pushes [default: 1]")
        .does("As kolla-build: the number of push workers; each push also sends that many blobs at once."),
    opt("retries", Int, Some("3"), "Retries of each build or push [default: 3]").short('r')
        .does("As kolla-build: a failed build or push of an image is tried again up to this many times (every attempt is in the image's log). Downloads and registry requests are retried on transient errors as well."),
    opt("registry", Str, None, "Registry host prefixed onto the namespace")
        .does("As kolla-build."),
    opt("save_dependency", Path, None, "Write the dependency graph in Graphviz dot format to this file and exit")
        .does("As kolla-build (Graphviz dot), without needing the Python `graphviz` package."),
    opt("format", Str, Some("json"), "Summary format: json or none [default: json]").short('f')
        .does("As kolla-build: `none` writes no summary."),
    opt("summary_json_file", Path, None, "Write the JSON summary to this file instead of stdout")
        .does("As kolla-build: the summary is written there (indented by 4, as Python writes it) and not on stdout; without it, one line on stdout. kolla-oci adds `layers_built` and `layers_cached` after kolla's keys."),
    opt(
        "tarballs_base",
        Str,
        Some("https://tarballs.opendev.org"),
        "Base URL of OpenStack tarballs [default: https://tarballs.opendev.org]",
    ),
    opt("threads", Int, Some("8"), "Number of concurrent builds [default: 8]").short('T')
        .does("As kolla-build: images built at the same time (a child starts as soon as its parent's steps are done)."),
    opt("tag", Str, None, "Image tag [default: <openstack_release>-<base>-<base_tag>]")
        .does("As kolla-build."),
    opt("template_only", Bool, Some("false"), "Render the Dockerfiles into the work dir and build nothing")
        .does("As kolla-build (needs no Docker SDK or engine)."),
    opt("timeout", Int, Some("120"), "HTTP timeout for source downloads, seconds [default: 120]")
        .does("As kolla-build: the HTTP timeout of `url` source downloads."),
    opt("template_override", Multi, None, "Template override file(s); repeatable")
        .does("As kolla-build."),
    opt("docker_dir", Multi, None, "Extra template tree(s) merged over the main one; repeatable").short('D')
        .does("As kolla-build."),
    opt("logs_dir", Path, None, "Directory for one log per image")
        .does("As kolla-build (`<image>.log`, `000_FAILED_<image>.log`), every attempt in one log; deliberately, the directory is created when missing."),
    opt("pull", Bool, Some("true"), "Pull root images' base [default: true]")
        .flags(BoolFlags::TwinsShown("Do not pull base images when present"))
        .does("As kolla-build (applies to root images only): the `FROM` tag of each root image is re-resolved against its registry (through registries.conf mirrors) and a changed image is pulled, so the tree is rebuilt on it. When the registry cannot be reached the stored image is kept with a warning (Docker would fail the build). `--nopull` uses the stored image and pulls only a missing one, as Docker does."),
    opt("work_dir", Path, None, "Working directory (output in `<dir>/docker/`) [default: a temporary dir]")
        .does("As kolla-build; without it, only the directories of the images being built are copied into a temporary work dir, removed afterwards."),
    opt("squash", Bool, Some("false"), "Merge each image's own layers into one on top of its parent's layers")
        .does("As Docker's squash: each image's own layers become one, on top of its parent's unchanged layers (kept in the step cache, so a rebuild keeps the digest). Needs no `docker-squash`."),
    opt("openstack_release", Str, Some("2026.2"), "OpenStack release [default: 2026.2]"),
    opt("openstack_release_codename", Str, Some("Hibiscus"), "OpenStack release codename [default: Hibiscus]"),
    opt("openstack_branch", Str, None, "Source branch, dashed [default: stable-<release>]"),
    opt("openstack_branch_slashed", Str, None, "Source branch, slashed [default: stable/<release>]"),
    opt("docker_healthchecks", Bool, Some("true"), "Install the healthcheck scripts in `base` [default: true]")
        .does("As kolla-build; `--nodocker-healthchecks` turns it off."),
    opt("quiet", Bool, Some("false"), "Do not print image logs").short('q')
        .does("As kolla-build, from the command line or a config file: no per-image lines on the console (the logs in `--logs-dir` keep them)."),
    opt("enable_unbuildable", Bool, Some("false"), "Also build images marked unbuildable for this base/arch"),
    opt("summary", Bool, Some("true"), "Print a summary at the end [default: true]")
        .does("As kolla-build: `--nosummary` writes no summary at all."),
    opt("image_name_prefix", Str, Some(""), "Prefix of image names in canonical names and FROM lines"),
    opt("repos_yaml", Str, Some(""), "repos.yaml override merged over the default one"),
    opt("engine", Str, Some("docker"), "Container engine (accepted and ignored: kolla-oci needs none)")
        .does("Accepted (`docker` or `podman`), no effect: kolla-oci needs no container engine."),
    opt("podman_base_url", Str, Some("unix:///run/podman/podman.sock"), "Podman socket (accepted and ignored)")
        .long("podman_base_url")
        .does("Accepted, no effect (see `--engine`)."),
    // kolla-build's config-file-only options (`_BASE_OPTS`)
    opt("maintainer", Str, Some("Kolla Project (https://launchpad.net/kolla)"), "Maintainer label value").file_only()
        .does("As kolla-build (also the `org.opencontainers.image.authors` label)."),
    opt("distro_package_manager", Str, None, "Package manager [default: dnf for rocky/centos, else apt]").file_only(),
    opt("base_package_type", Str, None, "Package type [default: rpm for rocky/centos, else deb]").file_only(),
    opt("rpm_setup_config", List, Some(""), "`.rpm` and `.repo` files installed in `base`").file_only(),
    opt("apt_sources_list", Path, None, "apt `sources.list` copied into `base`").file_only(),
    opt("apt_preferences", Path, None, "apt preferences copied into `base`").file_only(),
    opt("squash_cleanup", Bool, Some("true"), "Remove the squash source image (engine option, accepted and ignored)")
        .file_only()
        .does("Accepted, no effect: squashing leaves no intermediate image."),
    opt("squash_tmp_dir", Str, None, "Temporary directory of squashing (engine option, accepted and ignored)")
        .file_only()
        .does("Accepted, no effect: squashing works in the store's own temporary directory."),
    opt("clean_package_cache", Bool, Some("true"), "Clean package caches after installs").file_only(),
    opt("allowed_to_fail", List, Some(""), "Images whose failure does not fail the run").file_only()
        .does("As kolla-build: listed images may fail without failing the run."),
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
    opt(
        "allow_private_host",
        Multi,
        None,
        "kolla-oci: a host on a loopback or private network that a registry or a source download may redirect to (HOST or HOST:PORT); repeatable",
    )
    .kolla_oci()
    .does("Without it, a redirect of a registry or of a `type = url` source to a loopback, private or link-local host other than its own is refused."),
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
