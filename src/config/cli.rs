//! The `kolla-oci build` command line, generated from the option table
//! ([`super::options::OPTIONS`]): one flag per command-line option, named as kolla-build names
//! it, with the `--noX` twin oslo.config gives every boolean (`--nodocker-healthchecks`), plus
//! oslo's own `--config-file` and `--config-dir`. What the command line gave is kept as strings
//! keyed by option name, each with its position, for the resolver to read through the table like a
//! config file's values: oslo.config lets whichever of a flag and a `--config-file` comes later win.
//!
//! kolla-build's parser is Python's argparse, which also takes any unambiguous prefix of a long
//! option (`--list-im`); [`expand_abbreviations`] gives kolla-oci's command line the same rule.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

use super::options::{BoolFlags, Kind, OPTIONS, OptionDef};

/// Help of `--config-file`, one of oslo.config's own options, which name config files rather
/// than being read from them (so they have no row in the table).
const CONFIG_FILE_HELP: &str = "Config file, read instead of the default kolla.conf/kolla-build.conf (the default \
     kolla.conf.d/kolla-build.conf.d directories are still read); its values override the options before it on the \
     command line, not those after it. Repeatable";
/// Help of `--config-dir`, oslo.config's other own option.
const CONFIG_DIR_HELP: &str = "Config directory: every `*.conf` in it, sorted, read at this point of the command \
     line, instead of the default kolla.conf.d/kolla-build.conf.d directories. Repeatable";

/// Where an option value or a config file was given, in the order oslo.config reads them: the
/// default config files first, then (a kolla-oci addition) environment variables, then the
/// command line from left to right, a `--config-file` or `--config-dir` counting at its own place.
/// Of two values of a single-valued option the later wins; a multi-valued option keeps them all
/// in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position(u8, usize);

impl Position {
    /// The default config files (`~/.kolla/kolla-build.conf`, …), read before the command line.
    pub const DEFAULT_FILES: Position = Position(0, 0);
    /// An option's environment variable.
    pub const ENV: Position = Position(1, 0);

    /// The argument at `index` of the command line.
    pub fn argv(index: usize) -> Position {
        Position(2, index)
    }
}

/// A `--config-file` or `--config-dir` of the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config-file PATH`.
    File(PathBuf),
    /// `--config-dir DIR`.
    Dir(PathBuf),
}

/// Options of `kolla-oci build`: kolla-build's options with kolla-build's names (each boolean
/// also has a `--noX` form, as oslo.config provides), plus a few kolla-oci additions, all
/// generated from [`OPTIONS`]. Options not given here fall back to `kolla-build.conf`, then to
/// the defaults.
#[derive(Debug, Clone, Default)]
pub struct BuildArgs {
    /// The options given on the command line (or by their environment variable), as strings
    /// keyed by their config-file name, each with its position; booleans as `"true"`/`"false"`.
    values: BTreeMap<&'static str, Vec<(Position, String)>>,
    /// `--config-file` and `--config-dir`, in command-line order.
    config: Vec<(Position, ConfigSource)>,
}

impl BuildArgs {
    /// The options given on the command line, as strings keyed by their config-file name.
    pub(crate) fn cli_values(&self) -> &BTreeMap<&'static str, Vec<(Position, String)>> {
        &self.values
    }

    /// `--config-file` and `--config-dir`, in command-line order, with their positions.
    pub fn config_sources(&self) -> &[(Position, ConfigSource)] {
        &self.config
    }
}

/// The clap id of the `--noX` twin of boolean `name`.
fn no_id(name: &str) -> String {
    format!("no{name}")
}

/// oslo.config's spelling of the negative form of boolean `name`: `no` and the option's own
/// (dashed) flag name, `--nodocker-healthchecks`.
fn no_long(o: &OptionDef) -> String {
    format!("no{}", o.name.replace('_', "-"))
}

/// The command-line argument(s) of one option.
fn args_of(o: &OptionDef) -> Vec<Arg> {
    let dashed = o.name.replace('_', "-");
    let mut arg = Arg::new(o.name).help(o.help);
    if !o.positional {
        arg = match o.long {
            Some(long) => arg.long(long).alias(dashed),
            None => arg.long(dashed),
        };
    }
    if let Some(c) = o.short {
        arg = arg.short(c);
    }
    if o.kolla_oci {
        arg = arg.help_heading("kolla-oci options");
    }
    if o.kind == Kind::Bool {
        let no = || Arg::new(no_id(o.name)).long(no_long(o)).action(ArgAction::SetTrue);
        return match o.flags {
            BoolFlags::Twins => vec![
                arg.action(ArgAction::SetTrue).overrides_with(no_id(o.name)),
                no().hide(true).overrides_with(o.name),
            ],
            BoolFlags::TwinsShown(help) => vec![
                arg.action(ArgAction::SetTrue).overrides_with(no_id(o.name)),
                no().help(help).overrides_with(o.name),
            ],
            BoolFlags::PositiveOnly => vec![arg.action(ArgAction::SetTrue)],
            BoolFlags::NegativeOnly { long, alias, help } => {
                vec![
                    Arg::new(no_id(o.name))
                        .long(long)
                        .alias(alias)
                        .help(help)
                        .help_heading("kolla-oci options")
                        .action(ArgAction::SetTrue),
                ]
            }
        };
    }
    arg = arg
        .value_name(o.value_name.map_or_else(|| o.name.to_uppercase(), str::to_string))
        .action(if o.kind == Kind::Multi { ArgAction::Append } else { ArgAction::Set });
    if let Some(env) = o.env {
        arg = arg.env(env);
    }
    if let Some(values) = o.values {
        arg = arg.value_parser(PossibleValuesParser::new(values()));
    }
    vec![arg]
}

/// `--config-file` or `--config-dir`: repeatable paths.
fn config_arg(id: &'static str, help: &'static str) -> Arg {
    Arg::new(id)
        .long(id.replace('_', "-"))
        .help(help)
        .value_name(id.to_uppercase())
        .action(ArgAction::Append)
        .value_parser(clap::value_parser!(PathBuf))
}

impl clap::Args for BuildArgs {
    fn augment_args(cmd: Command) -> Command {
        let mut cmd = cmd.next_help_heading("Kolla options");
        let cli = || OPTIONS.iter().filter(|o| o.cli);
        for o in cli().filter(|o| !o.kolla_oci) {
            cmd = cmd.args(args_of(o));
        }
        cmd = cmd.arg(config_arg("config_file", CONFIG_FILE_HELP)).arg(config_arg("config_dir", CONFIG_DIR_HELP));
        for o in cli().filter(|o| o.kolla_oci) {
            cmd = cmd.args(args_of(o));
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

/// Where the value(s) of `id` came from: their command-line positions, or the environment.
fn positions(m: &ArgMatches, id: &str, count: usize) -> Vec<Position> {
    match (m.value_source(id), m.indices_of(id)) {
        (Some(ValueSource::CommandLine), Some(indices)) => indices.map(Position::argv).collect(),
        _ => vec![Position::ENV; count],
    }
}

impl clap::FromArgMatches for BuildArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut values = BTreeMap::new();
        for o in OPTIONS.iter().filter(|o| o.cli) {
            let value = if o.kind == Kind::Bool {
                // `--X` and `--noX` override each other: at most one of them is still set.
                let given = |id: &str| {
                    let set = m.try_get_one::<bool>(id).ok().flatten().copied().unwrap_or(false);
                    set.then(|| m.index_of(id).map_or(Position::ENV, Position::argv))
                };
                match (given(o.name), given(&no_id(o.name))) {
                    (Some(at), _) => Some(vec![(at, "true".to_string())]),
                    (_, Some(at)) => Some(vec![(at, "false".to_string())]),
                    _ => None,
                }
            } else {
                m.get_many::<String>(o.name).map(|v| {
                    let v: Vec<String> = v.cloned().collect();
                    positions(m, o.name, v.len()).into_iter().zip(v).collect()
                })
            };
            if let Some(v) = value {
                values.insert(o.name, v);
            }
        }
        let mut config = Vec::new();
        for (id, kind) in [("config_file", ConfigSource::File as fn(PathBuf) -> _), ("config_dir", ConfigSource::Dir)] {
            if let (Some(paths), Some(indices)) = (m.get_many::<PathBuf>(id), m.indices_of(id)) {
                config.extend(indices.map(Position::argv).zip(paths.cloned().map(kind)));
            }
        }
        config.sort_by_key(|(at, _)| *at);
        Ok(BuildArgs { values, config })
    }

    /// Options present in `m` replace those already held; the others stay.
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        let new = Self::from_arg_matches(m)?;
        self.values.extend(new.values);
        if !new.config.is_empty() {
            self.config = new.config;
        }
        Ok(())
    }
}

/// A long option of the command line that is a prefix of several options (argparse's
/// "ambiguous option").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ambiguous option: --{given} could match {}", .candidates.iter().map(|c| format!("--{c}")).collect::<Vec<_>>().join(", "))]
pub struct AmbiguousOption {
    /// The option as given, without its `--`.
    pub given: String,
    /// The long options it is a prefix of.
    pub candidates: Vec<String>,
}

/// The long options of kolla-build 23.0.0's own parser (argparse via oslo.config), without their
/// `--`: every command-line option of the table that is not a kolla-oci addition, the `--noX` of
/// each boolean, oslo's `--config-file`, `--config-dir`, `--shell_completion` and `--version`, and
/// `--help`. Abbreviations are resolved against these first, so that a kolla-build command line
/// means the same here whatever kolla-oci adds.
pub fn kolla_long_options() -> Vec<String> {
    let mut out = Vec::new();
    for o in OPTIONS.iter().filter(|o| o.cli && !o.kolla_oci && !o.positional) {
        out.push(o.long.map_or_else(|| o.name.replace('_', "-"), str::to_string));
        if o.kind == Kind::Bool {
            out.push(no_long(o));
        }
    }
    out.extend(["config-file", "config-dir", "shell_completion", "version", "help"].map(String::from));
    out
}

/// argparse's prefix matching (`allow_abbrev`, kolla-build's behaviour) on the arguments of
/// `kolla-oci build`: a `--name` or `--name=value` that is not one of `ours` (every long option
/// and alias the command knows) but the start of exactly one of kolla-build's options
/// ([`kolla_long_options`]) — else of exactly one of `ours` — is replaced by that option. A prefix
/// of several is an error naming them, as argparse's; anything else is left for clap to judge.
/// Nothing after `--` is touched.
pub fn expand_abbreviations(args: Vec<OsString>, ours: &[String]) -> Result<Vec<OsString>, AmbiguousOption> {
    let kolla = kolla_long_options();
    let mut out = Vec::with_capacity(args.len());
    let mut rest = args.into_iter();
    for arg in rest.by_ref() {
        if arg == "--" {
            out.push(arg);
            break;
        }
        let Some(text) = arg.to_str().and_then(|a| a.strip_prefix("--")).filter(|t| !t.is_empty()) else {
            out.push(arg);
            continue;
        };
        let (name, value) = match text.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (text, None),
        };
        if ours.iter().any(|o| o == name) {
            out.push(arg);
            continue;
        }
        let matching =
            |set: &[String]| -> Vec<String> { set.iter().filter(|o| o.starts_with(name)).cloned().collect() };
        let (in_kolla, in_ours) = (matching(&kolla), matching(ours));
        let full = match (in_kolla.as_slice(), in_ours.as_slice()) {
            ([one], _) | ([], [one]) => one.clone(),
            ([], []) => {
                out.push(arg);
                continue;
            }
            _ => {
                let mut candidates = if in_kolla.is_empty() { in_ours } else { in_kolla };
                candidates.dedup();
                return Err(AmbiguousOption { given: name.to_string(), candidates });
            }
        };
        let mut expanded = OsString::from(format!("--{full}"));
        if let Some(v) = value {
            expanded.push("=");
            expanded.push(OsStr::new(v));
        }
        out.push(expanded);
    }
    out.extend(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::options::option;
    use clap::{Args, FromArgMatches};

    fn command() -> Command {
        BuildArgs::augment_args(Command::new("build"))
    }

    fn parse(argv: &[&str]) -> BuildArgs {
        let m = command().try_get_matches_from(std::iter::once("build").chain(argv.iter().copied())).unwrap();
        BuildArgs::from_arg_matches(&m).unwrap()
    }

    /// The command line and the table agree exactly: every command-line option of the table is
    /// a flag of its kind (with its `--noX` twin for a boolean), and every flag is an option of
    /// the table or one of oslo's `--config-file`/`--config-dir`.
    #[test]
    fn command_line_and_table_agree() {
        let cmd = command();
        let arg = |id: &str| cmd.get_arguments().find(|a| a.get_id() == id);
        for o in OPTIONS {
            let own = arg(o.name);
            let twin = arg(&no_id(o.name));
            if !o.cli {
                assert!(own.is_none() && twin.is_none(), "{}: config-file only, but on the command line", o.name);
                continue;
            }
            let dashed = o.name.replace('_', "-");
            if o.kind == Kind::Bool && o.flags == BoolFlags::PositiveOnly {
                assert!(twin.is_none(), "{}: positive only", o.name);
            } else if o.kind == Kind::Bool {
                let twin = twin.unwrap_or_else(|| panic!("{}: boolean without --no twin", o.name));
                assert!(matches!(twin.get_action(), ArgAction::SetTrue), "{}", o.name);
                match o.flags {
                    BoolFlags::Twins | BoolFlags::TwinsShown(_) => {
                        assert_eq!(twin.get_long(), Some(format!("no{dashed}").as_str()));
                        assert_eq!(twin.is_hide_set(), o.flags == BoolFlags::Twins, "{}", o.name);
                    }
                    BoolFlags::NegativeOnly { long, .. } => {
                        assert_eq!(twin.get_long(), Some(long));
                        assert!(own.is_none(), "{}: negative only", o.name);
                        continue;
                    }
                    BoolFlags::PositiveOnly => unreachable!("handled above"),
                }
            } else {
                assert!(twin.is_none() && o.flags == BoolFlags::Twins, "{}: not a boolean", o.name);
            }
            let own = own.unwrap_or_else(|| panic!("{}: not on the command line", o.name));
            let action = own.get_action();
            match o.kind {
                Kind::Bool => assert!(matches!(action, ArgAction::SetTrue), "{}", o.name),
                Kind::Multi => assert!(matches!(action, ArgAction::Append), "{}", o.name),
                _ => assert!(matches!(action, ArgAction::Set), "{}", o.name),
            }
            if o.positional {
                assert!(own.is_positional(), "{}", o.name);
            } else {
                assert_eq!(own.get_long(), Some(o.long.unwrap_or(&dashed)), "{}", o.name);
            }
            assert_eq!(own.get_short(), o.short, "{}", o.name);
            assert_eq!(own.get_help().map(|h| h.to_string()).as_deref(), Some(o.help), "{}", o.name);
        }
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            let known = option(id).is_some_and(|o| o.cli)
                || id.strip_prefix("no").and_then(option).is_some_and(|o| o.cli && o.kind == Kind::Bool)
                || ["config_file", "config_dir"].contains(&id);
            assert!(known, "flag {id} is not in the option table");
        }
    }

    #[test]
    fn every_flag_reaches_its_option() {
        for o in OPTIONS.iter().filter(|o| o.cli) {
            let flag = match o.long {
                _ if o.positional => None,
                Some(l) => Some(format!("--{l}")),
                None => Some(format!("--{}", o.name.replace('_', "-"))),
            };
            let values = |argv: &[&str]| {
                parse(argv).cli_values().get(o.name).map(|v| v.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>())
            };
            match (o.kind, o.flags, &flag) {
                (Kind::Bool, BoolFlags::NegativeOnly { long, alias, .. }, _) => {
                    assert_eq!(values(&[&format!("--{long}")]), Some(vec!["false".to_string()]));
                    assert_eq!(values(&[&format!("--{alias}")]), Some(vec!["false".to_string()]));
                }
                (Kind::Bool, flags, Some(flag)) => {
                    assert_eq!(values(&[flag]), Some(vec!["true".to_string()]), "{flag}");
                    if flags != BoolFlags::PositiveOnly {
                        let no = format!("--no{}", o.name.replace('_', "-"));
                        assert_eq!(values(&[&no]), Some(vec!["false".to_string()]), "{no}");
                        assert_eq!(values(&[flag, &no]), Some(vec!["false".to_string()]), "{flag} {no}");
                        assert_eq!(values(&[&no, flag]), Some(vec!["true".to_string()]), "{no} {flag}");
                    }
                }
                (Kind::Multi, _, None) => assert_eq!(values(&["a", "b"]), Some(vec!["a".into(), "b".into()])),
                (Kind::Multi, _, Some(flag)) => {
                    assert_eq!(values(&[flag, "a", flag, "b"]), Some(vec!["a".into(), "b".into()]), "{flag}")
                }
                (_, _, Some(flag)) => {
                    let v = o.values.map_or_else(|| "v".to_string(), |values| values()[1].get_name().to_string());
                    assert_eq!(values(&[flag, &v]), Some(vec![v.clone()]), "{flag}");
                }
                (_, _, None) => unreachable!("only regex is positional"),
            }
            assert_eq!(values(&[]), None, "{}: set without a flag", o.name);
        }
        let a = parse(&["-b", "rocky", "-d", "--network-mode", "none", "--config-file", "a.conf", "--config-dir", "d"]);
        assert_eq!(a.cli_values()["base"], [(Position::argv(2), "rocky".to_string())]);
        assert_eq!(a.cli_values()["network_mode"], [(Position::argv(5), "none".to_string())]);
        assert_eq!(a.cli_values()["debug"], [(Position::argv(3), "true".to_string())]);
        assert_eq!(parse(&["-d", "--nodebug"]).cli_values()["debug"], [(Position::argv(2), "false".to_string())]);
        assert_eq!(
            a.config_sources(),
            [
                (Position::argv(7), ConfigSource::File(PathBuf::from("a.conf"))),
                (Position::argv(9), ConfigSource::Dir(PathBuf::from("d")))
            ]
        );
        assert!(command().try_get_matches_from(["build", "--compression", "lz4"]).is_err());
    }
}

#[cfg(test)]
mod abbreviations {
    use super::*;

    fn expand(argv: &[&str]) -> Result<Vec<String>, AmbiguousOption> {
        let ours: Vec<String> = ["network", "network_mode", "list-images", "list-shards", "log-level", "all"]
            .iter()
            .map(|s| s.to_string())
            .chain(kolla_long_options())
            .collect();
        let args = argv.iter().map(OsString::from).collect();
        expand_abbreviations(args, &ours).map(|v| v.into_iter().map(|a| a.into_string().unwrap()).collect())
    }

    /// argparse's rules: an exact option stays, a unique prefix becomes the option (kolla-build's
    /// options first, so that kolla-oci's additions never make a kolla-build prefix ambiguous), a
    /// prefix of several is refused naming them; values, short options and what follows `--` stay.
    #[test]
    fn unique_prefixes_expand_like_argparse() {
        assert_eq!(
            expand(&["--list-im", "--nodocker-h", "x"]).unwrap(),
            ["--list-images", "--nodocker-healthchecks", "x"]
        );
        assert_eq!(expand(&["--net=host", "--network", "none"]).unwrap(), ["--network_mode=host", "--network", "none"]);
        assert_eq!(expand(&["--log", "d", "--list-s", "3"]).unwrap(), ["--logs-dir", "d", "--list-shards", "3"]);
        assert_eq!(expand(&["-b", "rocky", "--", "--list-im"]).unwrap(), ["-b", "rocky", "--", "--list-im"]);
        assert_eq!(expand(&["--nosuch"]).unwrap(), ["--nosuch"]);
        let e = expand(&["--list"]).unwrap_err();
        assert_eq!(e.to_string(), "ambiguous option: --list could match --list-dependencies, --list-images");
        assert!(expand(&["--no"]).is_err());
    }

    /// Every flag of the table spelled out, and its negative form, is kept as it is.
    #[test]
    fn kolla_options_are_all_known() {
        let kolla = kolla_long_options();
        for o in OPTIONS.iter().filter(|o| o.cli && !o.kolla_oci && !o.positional) {
            let long = o.long.map_or_else(|| o.name.replace('_', "-"), str::to_string);
            assert!(kolla.contains(&long), "{long}");
        }
        assert!(kolla.contains(&"nodocker-healthchecks".to_string()) && kolla.contains(&"notemplate-only".to_string()));
        assert!(!kolla.iter().any(|o| o.contains("attestations") || o == "all"));
    }
}
