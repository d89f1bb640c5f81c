//! The `kolla-oci` command line: parses arguments, sets up logging, and hands each subcommand to `cmd::*`.

mod cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    Images,
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

fn main() -> std::process::ExitCode {
    // Must run before any thread exists: a threaded process cannot enter a new user namespace.
    kolla_oci::sandbox::early_init();
    let cli = Cli::parse();
    // kolla-build's `-d/--debug` raises our own log level (config files are read later).
    let debug = matches!(&cli.command, Command::Build(a) if a.kolla.debug_requested());
    cmd::init_logging(&if debug { format!("{},kolla_oci=debug", cli.log_level) } else { cli.log_level.clone() });
    let ctx = cmd::Context { store_dir: cli.store };
    let result = match cli.command {
        Command::Build(a) => cmd::build::run(&ctx, *a),
        Command::BuildFile(a) => cmd::build_file::run(&ctx, a),
        Command::Run(a) => cmd::run::run(&ctx, a),
        Command::Images => cmd::images::run(&ctx),
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
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
