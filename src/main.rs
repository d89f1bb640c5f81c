//! The `kolla-oci` command line: parses arguments, sets up logging, and hands each subcommand to `cmd::*`.

mod cmd;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

/// The system allocator, bounding the memory template renders may hold (see `template::budget`).
#[global_allocator]
static ALLOCATOR: kolla_oci::template::budget::RenderAccounting = kolla_oci::template::budget::RenderAccounting;

/// Build Kolla-style OpenStack image sets as OCI images, with no daemon and no root.
#[derive(Parser, Debug)]
#[command(name = "kolla-oci", version, about)]
struct Cli {
    /// State directory: the OCI image layout lives in `<store>/oci`, caches beside it.
    #[arg(long, global = true, env = "KOLLA_OCI_STORE", default_value_os_t = cmd::default_store_dir())]
    store: PathBuf,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `debug` or `kolla_oci::registry=trace`.
    #[arg(long, global = true, env = "KOLLA_OCI_LOG", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Render the Kolla template tree and build the selected images (kolla-build compatible options).
    Build(Box<cmd::build::Args>),
    /// Build one Dockerfile with its context into the store.
    BuildFile(cmd::build_file::Args),
    /// Run an image's entrypoint or command in the rootless sandbox.
    Run(cmd::run::Args),
    /// List the images the store holds.
    Images(cmd::images::Args),
    /// Give an image more names (tags).
    Tag(cmd::tag::Args),
    /// Remove image names (tags); `gc` then frees what no name reaches.
    Rmi(cmd::rmi::Args),
    /// Print an image's config, digest, tags, labels and layers (JSON, or a `--format` template).
    Inspect(cmd::inspect::Args),
    /// Print the steps that made an image.
    History(cmd::history::Args),
    /// Save credentials for a registry where podman keeps them, after checking them with the registry.
    Login(cmd::login::LoginArgs),
    /// Remove saved credentials.
    Logout(cmd::login::LogoutArgs),
    /// Verify every blob and every reference in the store.
    Fsck,
    /// Push images from the store to a registry.
    Push(cmd::push::Args),
    /// Pull an image from a registry into the store.
    Pull(cmd::pull::Args),
    /// Export images as a docker-archive tarball (`docker load`, `podman load`, `skopeo copy docker-archive:`).
    Save(cmd::save::Args),
    /// Print an image's SBOM (SPDX or CycloneDX JSON), computing and storing it if needed.
    Sbom(cmd::sbom::Args),
    /// Print an image's build provenance (in-toto statement, SLSA v1 predicate).
    Provenance(cmd::provenance::Args),
    /// Remove blobs, referrers and extracted layers that no tag reaches; keep each layer once.
    Gc(cmd::gc::Args),
    /// Show the disk space the state dir uses, by kind, and what `gc` would free.
    Df(cmd::df::Args),
}

/// `argv` with the long options of `build` written in full when given as an unambiguous prefix, as
/// kolla-build's argparse takes them (see [`kolla_oci::config::expand_abbreviations`]). The
/// subcommand is the first argument that is neither an option nor the value of `--store` or
/// `--log-level`.
fn build_abbreviations_expanded(
    argv: Vec<std::ffi::OsString>,
) -> Result<Vec<std::ffi::OsString>, kolla_oci::config::AmbiguousOption> {
    let mut at = 1;
    while let Some(arg) = argv.get(at) {
        match arg.to_str() {
            Some("--store" | "--log-level") => at += 2,
            Some(a) if a.starts_with('-') => at += 1,
            _ => break,
        }
    }
    if argv.get(at).is_none_or(|a| a != "build") {
        return Ok(argv);
    }
    let mut command = Cli::command();
    command.build();
    let build = command.find_subcommand("build").expect("the build subcommand");
    let ours: Vec<String> = build
        .get_arguments()
        .flat_map(|a| {
            a.get_long_and_visible_aliases().into_iter().flatten().chain(a.get_all_aliases().into_iter().flatten())
        })
        .map(str::to_string)
        .collect();
    let mut argv = argv;
    let tail = argv.split_off(at + 1);
    argv.extend(kolla_oci::config::expand_abbreviations(tail, &ours)?);
    Ok(argv)
}

fn main() -> std::process::ExitCode {
    // Must run before any thread exists: a threaded process cannot enter a new user namespace.
    kolla_oci::sandbox::early_init();
    let argv = match build_abbreviations_expanded(std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(argv);
    // Commands that start containers pass stop signals on to them (before any other thread exists).
    if matches!(cli.command, Command::Build(_) | Command::BuildFile(_) | Command::Run(_)) {
        kolla_oci::sandbox::signals::install();
    }
    // kolla-build's `-d/--debug` raises our own log level; `-q/--quiet` (and build-file's) hides the images'
    // own lines and lowers ours to warnings — from the command line or a config file (read here for these
    // two only, the rest comes later).
    let console = match &cli.command {
        Command::Build(a) => kolla_oci::config::KollaConfig::console_settings(&a.kolla),
        Command::BuildFile(a) => kolla_oci::config::ConsoleSettings { quiet: a.quiet, ..Default::default() },
        _ => kolla_oci::config::ConsoleSettings::default(),
    };
    let level = match (console.debug, console.quiet) {
        (true, _) => format!("{},kolla_oci=debug", cli.log_level),
        (false, true) => format!("{},kolla_oci=warn", cli.log_level),
        (false, false) => cli.log_level.clone(),
    };
    cmd::init_logging(&level, console.quiet);
    let ctx = cmd::Context { store_dir: cli.store };
    let result = match cli.command {
        Command::Build(a) => cmd::build::run(&ctx, *a),
        Command::BuildFile(a) => cmd::build_file::run(&ctx, a),
        Command::Run(a) => cmd::run::run(&ctx, a),
        Command::Images(a) => cmd::images::run(&ctx, a),
        Command::Tag(a) => cmd::tag::run(&ctx, a),
        Command::Rmi(a) => cmd::rmi::run(&ctx, a),
        Command::Inspect(a) => cmd::inspect::run(&ctx, a),
        Command::History(a) => cmd::history::run(&ctx, a),
        Command::Login(a) => cmd::login::login(a),
        Command::Logout(a) => cmd::login::logout(a),
        Command::Fsck => cmd::fsck::run(&ctx),
        Command::Push(a) => cmd::push::run(&ctx, a),
        Command::Pull(a) => cmd::pull::run(&ctx, a),
        Command::Save(a) => cmd::save::run(&ctx, a),
        Command::Sbom(a) => cmd::sbom::run(&ctx, a),
        Command::Provenance(a) => cmd::provenance::run(&ctx, a),
        Command::Gc(a) => cmd::gc::run(&ctx, a),
        Command::Df(a) => cmd::df::run(&ctx, a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: a message that already ends with its cause's
/// text (an error that shows its cause and also gives it as its `source`) is not followed by it again.
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::other("Permission denied (os error 13)");
        let e = anyhow::Error::new(io).context("/store/oci/blobs: Permission denied (os error 13)").context("opening");
        assert_eq!(super::describe(&e), "opening: /store/oci/blobs: Permission denied (os error 13)");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::describe(&e), "outer: inner");
    }
}
