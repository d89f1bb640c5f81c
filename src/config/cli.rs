//! The `kolla-oci build` command line, generated from the option table
//! ([`super::options::OPTIONS`]): one flag per command-line option, named as kolla-build names
//! it, with the `--noX` twin oslo.config gives every boolean, plus oslo's own `--config-file`
//! and `--config-dir`. What the command line gave is kept as strings keyed by option name, for
//! the resolver to read through the table like a config file's values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{Arg, ArgAction, ArgMatches, Command};

use super::options::{BoolFlags, Kind, OPTIONS, OptionDef};

/// Help of `--config-file`, one of oslo.config's own options, which name config files rather
/// than being read from them (so they have no row in the table).
const CONFIG_FILE_HELP: &str = "Config file(s), replacing the default search; later files win. Repeatable";
/// Help of `--config-dir`, oslo.config's other own option.
const CONFIG_DIR_HELP: &str = "Config directories: every `*.conf` in them, sorted, after the files. Repeatable";

/// Options of `kolla-oci build`: kolla-build's options with kolla-build's names (each boolean
/// also has a `--noX` form, as oslo.config provides), plus a few kolla-oci additions, all
/// generated from [`OPTIONS`]. Options not given here fall back to `kolla-build.conf`, then to
/// the defaults.
#[derive(Debug, Clone, Default)]
pub struct BuildArgs {
    /// The options given on the command line (or by their environment variable), as strings
    /// keyed by their config-file name; booleans as `"true"`/`"false"`.
    values: BTreeMap<&'static str, Vec<String>>,
    /// Config file(s), replacing the default search; later files win.
    pub config_file: Vec<PathBuf>,
    /// Config directories: every `*.conf` in them, sorted, after the files.
    pub config_dir: Vec<PathBuf>,
}

impl BuildArgs {
    /// Whether `-d/--debug` was given (the CLI edge uses it to pick the log level before
    /// config files are read).
    pub fn debug_requested(&self) -> bool {
        self.values.get("debug").is_some_and(|v| v.iter().any(|v| v == "true"))
    }

    /// Whether `-q/--quiet` was given (the CLI edge then logs warnings and errors only).
    pub fn quiet_requested(&self) -> bool {
        self.values.get("quiet").is_some_and(|v| v.iter().any(|v| v == "true"))
    }

    /// The options given on the command line, as strings keyed by their config-file name.
    pub(crate) fn cli_values(&self) -> &BTreeMap<&'static str, Vec<String>> {
        &self.values
    }
}

/// The clap id of the `--noX` twin of boolean `name`.
fn no_id(name: &str) -> String {
    format!("no{name}")
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
        let no = || Arg::new(no_id(o.name)).long(format!("no{}", o.name)).action(ArgAction::SetTrue);
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

impl clap::FromArgMatches for BuildArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut values = BTreeMap::new();
        for o in OPTIONS.iter().filter(|o| o.cli) {
            let value = if o.kind == Kind::Bool {
                let flag = |id: &str| m.try_get_one::<bool>(id).ok().flatten().copied().unwrap_or(false);
                match (flag(o.name), flag(&no_id(o.name))) {
                    (true, _) => Some(vec!["true".to_string()]),
                    (_, true) => Some(vec!["false".to_string()]),
                    _ => None,
                }
            } else {
                m.get_many::<String>(o.name).map(|v| v.cloned().collect())
            };
            if let Some(v) = value {
                values.insert(o.name, v);
            }
        }
        let paths = |id: &str| m.get_many::<PathBuf>(id).map(|v| v.cloned().collect()).unwrap_or_default();
        Ok(BuildArgs { values, config_file: paths("config_file"), config_dir: paths("config_dir") })
    }

    /// Options present in `m` replace those already held; the others stay.
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        let new = Self::from_arg_matches(m)?;
        self.values.extend(new.values);
        if !new.config_file.is_empty() {
            self.config_file = new.config_file;
        }
        if !new.config_dir.is_empty() {
            self.config_dir = new.config_dir;
        }
        Ok(())
    }
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
                        assert_eq!(twin.get_long(), Some(format!("no{}", o.name).as_str()));
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
            let values = |argv: &[&str]| parse(argv).cli_values().get(o.name).cloned();
            match (o.kind, o.flags, &flag) {
                (Kind::Bool, BoolFlags::NegativeOnly { long, alias, .. }, _) => {
                    assert_eq!(values(&[&format!("--{long}")]), Some(vec!["false".to_string()]));
                    assert_eq!(values(&[&format!("--{alias}")]), Some(vec!["false".to_string()]));
                }
                (Kind::Bool, flags, Some(flag)) => {
                    assert_eq!(values(&[flag]), Some(vec!["true".to_string()]), "{flag}");
                    if flags != BoolFlags::PositiveOnly {
                        let no = format!("--no{}", o.name);
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
        let a = parse(&["-b", "rocky", "-d", "--network-mode", "none", "--config-file", "a.conf"]);
        assert_eq!(a.cli_values()["base"], ["rocky"]);
        assert_eq!(a.cli_values()["network_mode"], ["none"]);
        assert!(a.debug_requested() && !parse(&["-d", "--nodebug"]).debug_requested());
        assert_eq!(a.config_file, [PathBuf::from("a.conf")]);
        assert!(command().try_get_matches_from(["build", "--compression", "lz4"]).is_err());
    }
}
