//! `kolla-oci build-file -f Dockerfile CONTEXT -t NAME:TAG`: one Dockerfile, no Kolla tree.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use kolla_oci::attest::provenance::BUILD_TYPE_DOCKERFILE;
use kolla_oci::attest::{self, BuildFacts, ImageBuild};
use kolla_oci::builder::{BuildOptions, BuildRequest, RemoteCache, build_image};
use kolla_oci::sandbox::NetworkMode;

/// Options of `kolla-oci build-file`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile (default: `CONTEXT/Dockerfile`).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Tag of the image in the store (`NAME` alone means `NAME:latest`).
    #[arg(short = 't', long = "tag")]
    pub tag: String,
    /// A build argument `KEY=VALUE` for `ARG`; repeatable.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Do not use the step cache.
    #[arg(long = "no-cache", alias = "nocache")]
    pub no_cache: bool,
    /// Layer compression.
    #[arg(long, default_value = "gzip", value_parser = super::parse_compression)]
    pub compression: layers::Compression,
    /// How `FROM` images are pulled.
    #[command(flatten)]
    pub connection: super::RegistryArgs,
    /// The network of RUN steps: `private` (default: its own namespace with outbound access through
    /// slirp4netns; the host's 127.0.0.1 is out of reach), `host` (the host's, as docker build does),
    /// or `none` (loopback only). Layers and the step cache are the same in every mode.
    #[arg(long, value_enum, default_value_t = NetworkMode::Private)]
    pub network: NetworkMode,
    /// Write the build output (`STEP n/N:` lines, RUN output) here (default: standard error).
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Print only the image's digest (and warnings and errors): no build output, no progress.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Record no SBOM and provenance for the image.
    #[arg(long)]
    pub no_attestations: bool,
    /// A registry repository (REGISTRY/REPO) shared as the step cache of several machines.
    #[arg(long, value_name = "REGISTRY/REPO")]
    pub cache_repo: Option<String>,
    /// The platform to build for, `os/arch[/variant]` (default: this machine's): `FROM` images are
    /// pulled or bootstrapped for it, and on another architecture RUN executes through qemu-user.
    #[arg(long, value_name = "OS/ARCH", value_parser = |s: &str| kolla_oci::platform::parse(s))]
    pub platform: Option<kolla_oci::store::Platform>,
}

/// Build the image and print its manifest digest.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let ws = ctx.open_workspace()?;
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        let (k, v) = a.split_once('=').with_context(|| format!("bad --build-arg {a:?}: expected KEY=VALUE"))?;
        build_args.insert(k.to_owned(), v.to_owned());
    }
    let registry = args.connection.options(4)?;
    let cache_repo = match &args.cache_repo {
        Some(spec) => {
            Some(Arc::new(RemoteCache::new(spec, &registry).with_context(|| format!("--cache-repo {spec}"))?))
        }
        None => None,
    };
    let opts = BuildOptions {
        compression: args.compression,
        build_args,
        cache: !args.no_cache,
        registry,
        network: args.network,
        cache_repo,
        platform: args.platform.unwrap_or_else(kolla_oci::platform::host),
        ..BuildOptions::default()
    };
    let dockerfile = args.file.unwrap_or_else(|| args.context.join("Dockerfile"));
    let tag = super::with_latest(&args.tag);
    let req = BuildRequest { dockerfile: &dockerfile, context: &args.context, tag: &tag, in_run: None };
    let mut log: Box<dyn std::io::Write> = match &args.log_file {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None if args.quiet => Box::new(std::io::sink()),
        None => Box::new(std::io::stderr()),
    };
    let started_on = attest::build::now();
    let shown = args.log_file.is_none() && !args.quiet;
    let out = build_image(&ws, &req, &opts, &mut *log)
        .map_err(|e| super::build_error(e, shown))
        .with_context(|| format!("building {tag}"))?;
    tracing::info!(layers_built = out.layers_built, cached = out.layers_cached, "built {tag}");
    if !args.no_attestations {
        let facts = BuildFacts::new(BUILD_TYPE_DOCKERFILE, &opts.build_args, opts.source_date_epoch);
        let image = ImageBuild {
            tag: &tag,
            outcome: &out,
            kolla_image: None,
            parent: None,
            sources: &[],
            started_on,
            finished_on: attest::build::now(),
        };
        attest::record_build(&ws, &facts, &image).with_context(|| {
            format!(
                "{tag} was built ({}) but its SBOM and provenance could not be recorded (--no-attestations skips them)",
                out.manifest.digest
            )
        })?;
    }
    ws.trim_after_build();
    println!("{}", out.manifest.digest);
    Ok(ExitCode::SUCCESS)
}
