//! The reference page of kolla-build's options (`docs/kolla-build-options.md`): every option of the
//! table ([`super::options::OPTIONS`]) with its flags, default and what kolla-oci does with it, so a
//! kolla-build user sees every difference in one place. Generated from the table, and checked by a
//! unit test to be the committed page (`KOLLA_OCI_BLESS=1 cargo test --lib config::reference`
//! rewrites it).

use super::options::{BoolFlags, Kind, OPTIONS, OptionDef};

/// Where the page lives, relative to the repository root.
pub const PAGE: &str = "docs/kolla-build-options.md";

const INTRO: &str = "# kolla-build's options in kolla-oci

<!-- Generated from src/config/options.rs by src/config/reference.rs: do not edit by hand.
     `KOLLA_OCI_BLESS=1 cargo test --lib config::reference` rewrites it. -->

`kolla-oci build` takes kolla-build 23.0.0's options, with kolla-build's names, in the same places: the
command line and `kolla-build.conf`. This page lists every one of them, and what kolla-oci does with it.
\"As kolla-build\" means the same behaviour, checked against kolla-build itself where it runs without a
container engine (`tests/template_conformance.rs`, `tests/template_kolla_cli.rs`).

How options are read, as oslo.config reads them for kolla-build:

- **Config files.** Unless `--config-file` is given, the first `kolla.conf` and the first `kolla-build.conf`
  found in `~/.kolla/`, `~/`, `/etc/kolla/`, `/etc/`; unless `--config-dir` is given, every `*.conf` of the
  first `kolla.conf.d/` and `kolla-build.conf.d/` found there. Then each `--config-file` and `--config-dir`
  where it stands on the command line: its values override the options before it and are overridden by
  those after it. A named file or directory that does not exist is an error.
- **Booleans** have a negative form, `--no` and the option's name: `--nocache`, `--nodocker-healthchecks`.
- **Abbreviations.** A long option may be shortened to any prefix that names only one of kolla-build's
  options (`--list-im`); a prefix of several is refused (`ambiguous option`), as argparse does.
- **Values** in files use `_` for `-`, may refer to other options as `$name`/`${name}`, and multi-valued
  options (`profile`, `template_override`, `docker_dir`) collect the values of files and command line.
- **Sections** `[profiles]`, `[<image>]` (sources: `type`, `location`, `reference`, `enabled`, `sha256`),
  `[<image>-plugin-*]`, `[<image>-additions-*]` and `[<name>-user]` are read as kolla-build reads them.

Every image gets the labels kolla-build 23.0.0 gives it at build time: `org.opencontainers.image.title`,
`description`, `version`, `created`, `authors`, `url`, `licenses` (and `source`, `revision` for templates in
a git checkout), and `build-date`. `created` and `build-date` are `SOURCE_DATE_EPOCH` when set, else the time
the image's newest layer was made, so a rebuild that builds nothing keeps every digest (kolla-build dates
them with the time of the run).
";

/// The flags of `o` as the command line spells them (`--base`, `-b`, `--nocache`), or `config file
/// only`.
fn flags(o: &OptionDef) -> String {
    if !o.cli {
        return format!("`{}` (config file only)", o.name);
    }
    if o.positional {
        return format!("`{}…` (positional)", o.name.to_uppercase());
    }
    let long = o.long.map_or_else(|| o.name.replace('_', "-"), str::to_string);
    let mut out = vec![format!("`--{long}`")];
    if let Some(c) = o.short {
        out.push(format!("`-{c}`"));
    }
    if o.kind == Kind::Bool {
        match o.flags {
            BoolFlags::Twins | BoolFlags::TwinsShown(_) => out.push(format!("`--no{long}`")),
            BoolFlags::NegativeOnly { long, alias, .. } => out = vec![format!("`--{long}`"), format!("`--{alias}`")],
            BoolFlags::PositiveOnly => {}
        }
    }
    out.join(", ")
}

/// One table row: flags, default, help, what kolla-oci does.
fn row(o: &OptionDef) -> String {
    let default = match o.default {
        Some("") => "empty".to_string(),
        Some(d) => format!("`{d}`"),
        None => "–".to_string(),
    };
    let does = if o.does.is_empty() { "As kolla-build." } else { o.does };
    let cell = |s: &str| s.replace('|', "\\|");
    format!("| {} | {} | {} | {} |\n", flags(o), cell(&default), cell(o.help), cell(does))
}

/// Which options a section of the page lists.
type Pick = fn(&OptionDef) -> bool;

/// The page (see the module docs).
pub fn render() -> String {
    let mut page = String::from(INTRO);
    let sections: [(&str, Pick); 3] = [
        ("kolla-build's command-line options", |o| !o.kolla_oci && o.cli),
        ("kolla-build's config-file-only options (`[DEFAULT]`)", |o| !o.kolla_oci && !o.cli),
        ("kolla-oci's own options", |o| o.kolla_oci),
    ];
    for (title, pick) in sections {
        page.push_str(&format!(
            "\n## {title}\n\n| Option | Default | What it is | What kolla-oci does |\n|---|---|---|---|\n"
        ));
        for o in OPTIONS.iter().filter(|o| pick(o)) {
            page.push_str(&row(o));
        }
    }
    page.push_str(
        "\n## oslo.config's own options\n\n| Option | What kolla-oci does |\n|---|---|\n\
         | `--config-file PATH` | As kolla-build (see above). |\n\
         | `--config-dir DIR` | As kolla-build (see above). |\n\
         | `--version` | `kolla-oci --version` prints kolla-oci's version; `build --version` is refused. |\n\
         | `--shell_completion` | Refused: kolla-oci has no shell completion script. |\n",
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    const KOLLA_OPTIONS: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kolla-options-23.0.0.tsv"));

    /// The committed page is the generated one, and it names every option kolla-build 23.0.0 declares
    /// (from kolla-build's own table, not ours) with its flag and its negative form.
    #[test]
    fn the_reference_page_lists_every_kolla_build_option() {
        let page = render();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PAGE);
        if std::env::var_os("KOLLA_OCI_BLESS").is_some() {
            std::fs::write(&path, &page).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == page,
            "{PAGE} is not the generated page: KOLLA_OCI_BLESS=1 cargo test --lib config::reference"
        );
        for line in KOLLA_OPTIONS.lines().skip(1) {
            let f: Vec<&str> = line.split('\t').collect();
            let (group, name, kind, scope) = (f[0], f[1], f[3], f[5]);
            if group != "DEFAULT" {
                continue;
            }
            let shown = match (scope, name) {
                (_, "regex") => "`REGEX…` (positional)".to_string(),
                ("cli", _) => format!("| `--{name}`"),
                _ => format!("| `{}` (config file only)", name.replace('-', "_")),
            };
            assert!(page.contains(&shown), "{name} is not on the page as {shown}");
            if scope == "cli" && kind == "BoolOpt" {
                assert!(page.contains(&format!("`--no{name}`")), "--no{name} is not on the page");
            }
        }
    }
}
