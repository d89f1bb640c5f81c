//! `kolla-oci save`: export images as a docker-archive tar (also an OCI layout, like Docker 25's `docker save`),
//! loadable by `docker load` and readable by `skopeo copy docker-archive:` / `oci-archive:`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// Options of `kolla-oci save`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Images to export, by store tag (e.g. `kolla/base:2026.2-debian-bookworm`; `:latest` when none is
    /// given) or digest.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Output tar file (`-` for stdout). Written to a temp file beside it and renamed when complete.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Of a tag holding one image per platform (an image index), the image to export
    /// (`os/arch[/variant]`; default: this machine's).
    #[arg(long, value_name = "OS/ARCH", value_parser = |s: &str| kolla_oci::platform::parse(s))]
    pub platform: Option<kolla_oci::store::Platform>,
}

/// Run the subcommand.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let platform = args.platform.unwrap_or_else(kolla_oci::platform::host);
    let images =
        args.images.iter().map(|i| super::require_image(ctx, &store, i)).collect::<anyhow::Result<Vec<_>>>()?;
    let stats = if args.output.as_os_str() == "-" {
        let stdout = std::io::stdout().lock();
        let stats = kolla_oci::store::write_docker_archive(&store, &images, &platform, std::io::BufWriter::new(stdout))
            .context("writing archive to stdout")?;
        std::io::stdout().flush().context("flushing stdout")?;
        stats
    } else {
        let out = &args.output;
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => std::path::Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".kolla-oci-save-")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temp file in {}", dir.display()))?;
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, temp);
        let stats = kolla_oci::store::write_docker_archive(&store, &images, &platform, &mut writer)
            .with_context(|| format!("writing {}", out.display()))?;
        let temp =
            writer.into_inner().map_err(|e| e.into_error()).with_context(|| format!("writing {}", out.display()))?;
        // tempfile creates 0600; an exported archive is meant to be shared.
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o644);
        temp.as_file().set_permissions(perms).with_context(|| format!("chmod {}", out.display()))?;
        temp.as_file().sync_all().with_context(|| format!("syncing {}", out.display()))?;
        temp.persist(out).with_context(|| format!("renaming to {}", out.display()))?;
        stats
    };
    tracing::info!(images = stats.images, blobs = stats.blobs, bytes = stats.bytes, "saved {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}
