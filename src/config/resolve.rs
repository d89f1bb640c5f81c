//! Resolution of options into a [`KollaConfig`]: oslo.config's precedence (command line, then
//! config files, later files winning, then defaults) and `$name` interpolation, kolla-build's
//! derived defaults (`base_tag` from `base`, `tag` from release and base, …), and the typed
//! readers through which every `[DEFAULT]` option is read.
//!
//! Every `[DEFAULT]` reader checks the name against the option table ([`super::options`]) and
//! refuses a name it does not declare with that kind, so a typo in a lookup fails the first
//! resolution (and the unit tests) instead of yielding `""` or `false`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::bases::{BASES, DEFAULT_PROFILES, debian_arch_of, host_arch, rpm_setup_lines};
use super::cli::Position;
use super::ini::{self, IniData};
use super::options::{self, CompressionKind, Kind};
use super::sources::{load_sources_yaml, tree_data_file};
use super::{BUNDLED_TEMPLATES, BuildArgs, ConfigError, KollaConfig, User, users};

/// Where an option value came from (for error messages).
fn origin_of(e: &ini::Entry) -> String {
    format!("{}:{}", e.file.display(), e.line)
}

/// Looks option values up with oslo.config's precedence and interpolation.
pub(super) struct Resolver<'a> {
    pub(super) ini: &'a IniData,
    cli: &'a BTreeMap<&'static str, Vec<(Position, String)>>,
    /// Defaults of non-DEFAULT groups (from `sources.yaml`), as strings.
    pub(super) group_defaults: BTreeMap<String, BTreeMap<String, String>>,
    /// The `[DEFAULT]` options read so far (the unit tests check that all of them are).
    read: RefCell<BTreeSet<&'static str>>,
}

const MAX_DEPTH: usize = 32;

impl<'a> Resolver<'a> {
    pub(super) fn new(args: &'a BuildArgs, ini: &'a IniData) -> Self {
        Resolver { ini, cli: args.cli_values(), group_defaults: BTreeMap::new(), read: RefCell::default() }
    }

    fn origin(&self, group: &str, name: &str) -> String {
        match self.winner(group, name) {
            Some(Err(_)) => "command line".into(),
            Some(Ok(e)) => origin_of(e),
            None => "default".into(),
        }
    }

    /// The value that counts of a single-valued option, as oslo.config picks it: of the command
    /// line's last value and the config files' last one, whichever comes later (a `--config-file`
    /// overrides the options before it on the command line, not those after it). `Ok` is a file
    /// entry, `Err` a command-line value.
    fn winner(&self, group: &str, name: &str) -> Option<Result<&ini::Entry, &str>> {
        let cli = self.cli.get(name).and_then(|v| v.last()).filter(|_| group == "DEFAULT");
        match (cli, self.ini.get_last(group, name)) {
            (Some((at, v)), Some(e)) if *at > e.position => Some(Err(v.as_str())),
            (_, Some(e)) => Some(Ok(e)),
            (Some((_, v)), None) => Some(Err(v.as_str())),
            (None, None) => None,
        }
    }

    /// The raw (uninterpolated) value: the later of the command line and the files, then group
    /// defaults.
    fn raw(&self, group: &str, name: &str) -> Option<String> {
        match self.winner(group, name) {
            Some(Ok(e)) => Some(e.value.clone()),
            Some(Err(v)) => Some(v.to_string()),
            None => self.group_defaults.get(group).and_then(|g| g.get(name)).cloned(),
        }
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

    /// A single-valued option of any group, interpolated, with its default. `[DEFAULT]`
    /// options are read through the typed readers below, which check the option table.
    pub(super) fn get(&self, group: &str, name: &str) -> Result<Option<String>, ConfigError> {
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
            // kolla's default is the host's; kolla-oci's follows `--platform` when that is given alone.
            "base_arch" => Some(
                crate::platform::parse(&get("platform")?)
                    .ok()
                    .and_then(|p| crate::platform::base_arch(&p))
                    .unwrap_or_else(host_arch)
                    .to_string(),
            ),
            "debian_arch" => Some(debian_arch_of(&get("base_arch")?).to_string()),
            "tag" => Some(format!("{}-{}-{}", get("openstack_release")?, get("base")?, get("base_tag")?)),
            "openstack_branch" | "openstack_branch_slashed" => {
                let release = get("openstack_release")?;
                let branch = if release == "master" { release } else { format!("stable-{release}") };
                Some(if name == "openstack_branch" { branch } else { branch.replace('-', "/") })
            }
            _ => match options::option(name).and_then(|o| o.default) {
                Some(d) => Some(self.expand("DEFAULT", d, depth)?),
                None => None,
            },
        };
        Ok(v)
    }

    pub(super) fn err(&self, group: &str, name: &str, value: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Value {
            option: format!("[{group}] {name}"),
            value: value.to_string(),
            origin: self.origin(group, name),
            message: message.into(),
        }
    }

    /// Refuse a `[DEFAULT]` name the option table does not declare as `kind`, and note it read.
    fn declared(&self, name: &str, kind: Kind) -> Result<(), ConfigError> {
        match options::option(name) {
            Some(o) if o.kind == kind => {
                self.read.borrow_mut().insert(o.name);
                Ok(())
            }
            found => Err(ConfigError::Undeclared {
                name: name.to_string(),
                kind: format!("{kind:?}"),
                declared: found.map_or_else(|| "no such option".to_string(), |o| format!("{:?}", o.kind)),
            }),
        }
    }

    /// A `[DEFAULT]` `StrOpt`, `""` when unset.
    fn string(&self, name: &str) -> Result<String, ConfigError> {
        Ok(self.string_if_set(name)?.unwrap_or_default())
    }

    /// A `[DEFAULT]` `StrOpt` as set (an empty value counts as set).
    fn string_if_set(&self, name: &str) -> Result<Option<String>, ConfigError> {
        self.declared(name, Kind::Str)?;
        self.get("DEFAULT", name)
    }

    /// A `[DEFAULT]` `StrOpt`; empty means unset.
    fn opt_string(&self, name: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.string_if_set(name)?.filter(|s| !s.is_empty()))
    }

    /// A `[DEFAULT]` path option; empty means unset.
    fn opt_path(&self, name: &str) -> Result<Option<PathBuf>, ConfigError> {
        self.declared(name, Kind::Path)?;
        Ok(self.get("DEFAULT", name)?.filter(|s| !s.is_empty()).map(PathBuf::from))
    }

    /// A boolean of any group (`None` when unset).
    pub(super) fn boolean_in(&self, group: &str, name: &str) -> Result<Option<bool>, ConfigError> {
        let Some(v) = self.get(group, name)? else { return Ok(None) };
        parse_bool(&v)
            .map(Some)
            .ok_or_else(|| self.err(group, name, &v, "not a boolean (true/false, yes/no, on/off, 1/0)"))
    }

    /// A `[DEFAULT]` `BoolOpt`.
    fn boolean(&self, name: &str) -> Result<bool, ConfigError> {
        self.declared(name, Kind::Bool)?;
        Ok(self.boolean_in("DEFAULT", name)?.unwrap_or(false))
    }

    /// A `[DEFAULT]` `IntOpt` of at least `min`.
    fn integer<T: std::str::FromStr>(&self, name: &str, min: i64) -> Result<T, ConfigError> {
        self.declared(name, Kind::Int)?;
        let v = self.get("DEFAULT", name)?.unwrap_or_default();
        let n: i64 = v.trim().parse().map_err(|_| self.err("DEFAULT", name, &v, "not an integer"))?;
        if n < min {
            return Err(self.err("DEFAULT", name, &v, format!("must be at least {min}")));
        }
        v.trim().parse().map_err(|_| self.err("DEFAULT", name, &v, "out of range"))
    }

    /// A list of any group (`None` when unset).
    pub(super) fn list_in(&self, group: &str, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
        Ok(self.get(group, name)?.map(|v| split_list(&v)))
    }

    /// A `[DEFAULT]` `ListOpt`, empty when unset.
    fn list(&self, name: &str) -> Result<Vec<String>, ConfigError> {
        self.declared(name, Kind::List)?;
        Ok(self.list_in("DEFAULT", name)?.unwrap_or_default())
    }

    /// A dict of any group, empty when unset.
    pub(super) fn dict_in(&self, group: &str, name: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let Some(v) = self.get(group, name)? else { return Ok(BTreeMap::new()) };
        let mut out = BTreeMap::new();
        for item in split_list(&v) {
            let (k, val) =
                item.split_once(':').ok_or_else(|| self.err(group, name, &v, format!("{item:?} is not key:value")))?;
            out.insert(k.trim().to_string(), val.trim().to_string());
        }
        Ok(out)
    }

    /// A `[DEFAULT]` `DictOpt`.
    fn dict(&self, name: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        self.declared(name, Kind::Dict)?;
        self.dict_in("DEFAULT", name)
    }

    /// A `[DEFAULT]` `StrOpt` that must be one of `choices`.
    fn choice(&self, name: &str, choices: &[&str]) -> Result<String, ConfigError> {
        let v = self.string(name)?;
        if choices.contains(&v.as_str()) {
            Ok(v)
        } else {
            Err(self.err("DEFAULT", name, &v, format!("must be one of {}", choices.join(", "))))
        }
    }

    /// All values of a `[DEFAULT]` `MultiOpt`, files' and command line's in the order they were
    /// given (a file's values where the file was named).
    fn multi(&self, name: &str) -> Result<Vec<String>, ConfigError> {
        self.declared(name, Kind::Multi)?;
        let mut given: Vec<(Position, &str)> =
            self.ini.get_all("DEFAULT", name).iter().map(|e| (e.position, e.value.as_str())).collect();
        given.extend(self.cli.get(name).into_iter().flatten().map(|(at, v)| (*at, v.as_str())));
        given.sort_by_key(|(at, _)| *at);
        given.into_iter().map(|(_, v)| self.expand("DEFAULT", v, 0)).collect()
    }

    /// Whether a `[DEFAULT]` option of `kind` is given on the command line or in a file (for
    /// options accepted and ignored).
    fn given(&self, name: &str, kind: Kind) -> Result<bool, ConfigError> {
        self.declared(name, kind)?;
        Ok(self.cli.contains_key(name) || self.ini.get_last("DEFAULT", name).is_some())
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

/// `debug` and `quiet` of `args` over the config files `ini` (see [`KollaConfig::console_settings`]).
pub(super) fn console_settings(args: &BuildArgs, ini: &IniData) -> super::ConsoleSettings {
    let r = Resolver::new(args, ini);
    let flag = |name| r.boolean(name).unwrap_or(false);
    super::ConsoleSettings { debug: flag("debug"), quiet: flag("quiet") }
}

/// Docker's build network modes (kolla-build's `network_mode`) as kolla-oci's RUN networks: `host`
/// and `none` are the same; Docker's own `default`/`bridge` network is a private one, and so is
/// kolla-build's unset default (`host`, which Docker needs for a build to reach a proxy on the build
/// host but kolla-oci does not: its private network reaches the outside world through slirp4netns).
fn network_of_mode(mode: &str) -> Option<crate::sandbox::NetworkMode> {
    use crate::sandbox::NetworkMode;
    match mode {
        "host" => Some(NetworkMode::Host),
        "none" => Some(NetworkMode::None),
        "default" | "bridge" | "private" => Some(NetworkMode::Private),
        _ => None,
    }
}

/// Engine options kolla-oci accepts for compatibility and ignores: it needs no engine.
const IGNORED: &[(&str, Kind)] = &[
    ("engine", Kind::Str),
    ("podman_base_url", Kind::Str),
    ("buildkit", Kind::Bool),
    ("buildkit_builder", Kind::Str),
    ("squash_cleanup", Kind::Bool),
    ("squash_tmp_dir", Kind::Str),
    ("keep", Kind::Bool),
];

impl KollaConfig {
    /// Resolve `args` over already-parsed config files.
    pub fn resolve(args: &BuildArgs, ini: &IniData) -> Result<KollaConfig, ConfigError> {
        Self::resolve_with(&mut Resolver::new(args, ini))
    }

    pub(super) fn resolve_with(r: &mut Resolver<'_>) -> Result<KollaConfig, ConfigError> {
        for key in r.ini.keys("DEFAULT") {
            if options::option(key).is_none() {
                tracing::debug!(option = key, "ignoring unknown [DEFAULT] option");
            }
        }
        let template_tree = r.opt_path("template_tree")?.unwrap_or_else(|| PathBuf::from(BUNDLED_TEMPLATES));
        if let Some(y) = tree_data_file(&template_tree, "sources.yaml", "common") {
            r.group_defaults = load_sources_yaml(&y)?;
        }
        let r = &*r;

        let base = r.choice("base", &BASES.iter().map(|b| b.0).collect::<Vec<_>>())?;
        let base_arch = r.choice("base_arch", &["x86_64", "aarch64"])?;
        let debian_arch = r.choice("debian_arch", &["amd64", "arm64"])?;
        let platforms = Self::resolve_platforms(r, &base_arch)?;
        let base_tag = r.string("base_tag")?;
        let base_row = BASES.iter().find(|b| b.0 == base).expect("checked by choice");
        let (mut base_package_type, mut distro_package_manager) =
            if matches!(base.as_str(), "rocky" | "centos") { ("rpm", "dnf") } else { ("deb", "apt") };
        let pkg_type = r.opt_string("base_package_type")?;
        if let Some(t) = &pkg_type {
            base_package_type = t;
        }
        let pkg_mgr = r.string_if_set("distro_package_manager")?;
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

        let rpm_setup = rpm_setup_lines(&r.list("rpm_setup_config")?).map_err(|m| {
            r.err(
                "DEFAULT",
                "rpm_setup_config",
                &r.get("DEFAULT", "rpm_setup_config").ok().flatten().unwrap_or_default(),
                m,
            )
        })?;

        let users = Self::resolve_users(r)?;
        let sources = Self::resolve_sources(r)?;

        let mut profiles: BTreeMap<String, Vec<String>> =
            DEFAULT_PROFILES.iter().map(|(n, l)| (n.to_string(), l.iter().map(|s| s.to_string()).collect())).collect();
        for key in r.ini.keys("profiles") {
            if let Some(list) = r.list_in("profiles", key)? {
                profiles.insert(key.to_string(), list);
            }
        }

        let format = r.choice("format", &["json", "none"])?;
        let compression = match r.choice("compression", &["gzip", "zstd"])?.as_str() {
            "zstd" => CompressionKind::Zstd,
            _ => CompressionKind::Gzip,
        };
        // kolla-oci's `network` if given, else kolla-build's `network_mode` if given, else private.
        let network_choice = r.choice("network", &["private", "host", "none"])?;
        let network_mode = r.string("network_mode")?;
        let network = if r.given("network", Kind::Str)? {
            network_of_mode(&network_choice).expect("checked by choice")
        } else if r.given("network_mode", Kind::Str)? {
            network_of_mode(&network_mode).ok_or_else(|| {
                r.err("DEFAULT", "network_mode", &network_mode, "must be one of host, none, default, bridge, private")
            })?
        } else {
            crate::sandbox::NetworkMode::Private
        };
        r.choice("engine", &["docker", "podman"])?;
        for (ignored, kind) in IGNORED {
            if r.given(ignored, *kind)? {
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
            allowed_to_fail: r.list("allowed_to_fail")?,
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
            squash: r.boolean("squash")?,
            bootstrap: r.boolean("bootstrap")?,
            build_args: r.dict("build_args")?,
            network_mode,
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
            network,
            insecure_registries: r.multi("insecure_registry")?,
            allowed_private_hosts: r.multi("allow_private_host")?,
            attestations: r.boolean("attestations")?,
            cache_repo: r.opt_string("cache_repo")?,
            config_files: Vec::new(),
            base,
            base_tag,
            base_arch,
            debian_arch,
            platform: platforms[0].clone(),
            platforms,
        })
    }

    /// The platforms to build for: `--platform` (`os/arch[/variant]`, or several separated by commas),
    /// else `--base-arch`'s (kolla's `aarch64` is `linux/arm64/v8`). One platform and `--base-arch` must
    /// name the same architecture: the tree rendered for one and built for the other would be neither.
    /// With several, each is rendered for its own architecture (see [`KollaConfig::for_platform`]).
    fn resolve_platforms(r: &Resolver<'_>, base_arch: &str) -> Result<Vec<crate::store::Platform>, ConfigError> {
        let of_arch = crate::platform::of_base_arch(base_arch).ok_or_else(|| {
            r.err("DEFAULT", "base_arch", base_arch, "kolla-oci knows no platform for this architecture")
        })?;
        let Some(given) = r.opt_string("platform")? else { return Ok(vec![of_arch]) };
        let platforms =
            crate::platform::parse_list(&given).map_err(|e| r.err("DEFAULT", "platform", &given, e.to_string()))?;
        if let [platform] = platforms.as_slice()
            && *platform != of_arch
        {
            return Err(r.err(
                "DEFAULT",
                "platform",
                &given,
                format!("--base-arch {base_arch} builds for {of_arch}; give both for the same architecture"),
            ));
        }
        Ok(platforms)
    }

    /// kolla's users, with `[<name>-user]` sections overriding or adding uid, gid and group.
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_option_is_read_by_resolve() {
        let (args, ini) = (BuildArgs::default(), IniData::default());
        let mut r = Resolver::new(&args, &ini);
        KollaConfig::resolve_with(&mut r).unwrap();
        let read = r.read.into_inner();
        let unread: Vec<&str> = options::OPTIONS.iter().map(|o| o.name).filter(|n| !read.contains(n)).collect();
        assert!(unread.is_empty(), "options in the table that resolve never reads: {unread:?}");
    }

    #[test]
    fn undeclared_names_and_kinds_are_refused() {
        let (args, ini) = (BuildArgs::default(), IniData::default());
        let r = Resolver::new(&args, &ini);
        assert_eq!(r.string("namespace").unwrap(), "kolla");
        let e = r.string("namespce").unwrap_err();
        assert!(
            matches!(&e, ConfigError::Undeclared { name, declared, .. } if name == "namespce" && declared == "no such option"),
            "{e}"
        );
        let e = r.boolean("tag").unwrap_err();
        assert!(
            matches!(&e, ConfigError::Undeclared { kind, declared, .. } if kind == "Bool" && declared == "Str"),
            "{e}"
        );
        assert!(matches!(r.multi("base"), Err(ConfigError::Undeclared { .. })));
        assert!(matches!(r.opt_path("registry"), Err(ConfigError::Undeclared { .. })));
        assert!(matches!(r.integer::<u32>("pull", 0), Err(ConfigError::Undeclared { .. })));
        assert!(r.read.borrow().contains("namespace") && !r.read.borrow().contains("tag"));
    }
}
