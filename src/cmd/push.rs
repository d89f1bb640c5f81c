//! `kolla-oci push`: push images from the store to a registry, naming them as kolla-build does.

use std::process::ExitCode;

use anyhow::Context as _;
use kolla_oci::registry::{self, RegistryOptions};

/// Options of `kolla-oci push`.
///
/// Target names follow kolla-build: a local `kolla/nova-api:TAG` pushed with `--registry R --namespace N`
/// goes to `R/N/nova-api:TAG`. Without `--namespace` the local repository path is kept; without
/// `--registry` the local tag's registry (`docker.io` for a bare `kolla/…`); `--tag` replaces the tag.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Local store tags to push (default: every tag in the store).
    pub images: Vec<String>,
    /// Registry to push to (`host[:port]`).
    #[arg(long)]
    pub registry: Option<String>,
    /// Namespace (repository path) to push into, replacing the local one.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Tag to push as, replacing the local one.
    #[arg(long)]
    pub tag: Option<String>,
    /// Parallel blob uploads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub push_threads: u16,
    #[command(flatten)]
    pub connection: super::RegistryArgs,
    /// Upload blobs in PATCH chunks of this size (bytes, or with a K/M/G suffix) instead of one PUT.
    #[arg(long, value_parser = parse_size)]
    pub chunk_size: Option<u64>,
    /// Push only the images, not the SBOM and provenance the store keeps for them.
    #[arg(long)]
    pub no_attestations: bool,
}

/// `4194304`, `512K`, `4M`, `1G` → bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("unknown size suffix in {s:?} (use K, M or G)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    match n.checked_mul(mult) {
        Some(0) | None => Err(format!("invalid size {s:?}")),
        Some(v) => Ok(v),
    }
}

/// Run the subcommand.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let local: Vec<String> = if args.images.is_empty() {
        store.tags().context("listing the store's tags")?.into_iter().map(|(t, _)| t).collect()
    } else {
        args.images.iter().map(|i| super::require_image(ctx, &store, i)).collect::<anyhow::Result<Vec<_>>>()?
    };
    anyhow::ensure!(!local.is_empty(), "nothing to push: the store has no tagged images");
    let images = local
        .iter()
        .map(|l| {
            let target =
                registry::push_target(l, args.registry.as_deref(), args.namespace.as_deref(), args.tag.as_deref())
                    .with_context(|| format!("naming the push target of {l:?}"))?;
            Ok((l.clone(), target))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opts = RegistryOptions { chunk_size: args.chunk_size, ..args.connection.options(args.push_threads)? };
    for (l, t) in &images {
        tracing::info!("{l} -> {t}");
    }
    let report = registry::push(&store, &images, &opts).context("push failed")?;
    println!(
        "pushed {} image(s): {} blob(s) uploaded ({} bytes), {} mounted, {} already present",
        report.manifests, report.uploaded_blobs, report.uploaded_bytes, report.mounted_blobs, report.existing_blobs
    );
    if !args.no_attestations {
        let r = registry::push_referrers_of(&store, &images, &opts)
            .context("pushing the images' attestations failed (the images are pushed; --no-attestations skips them)")?;
        if r.manifests > 0 {
            println!(
                "pushed {} attestation(s) (SBOM, provenance): {} blob(s) uploaded ({} bytes), {} referrers tag(s) written",
                r.manifests, r.uploaded_blobs, r.uploaded_bytes, r.referrers_tags
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("4M"), Ok(4 << 20));
        assert_eq!(super::parse_size("512k"), Ok(512 << 10));
        assert_eq!(super::parse_size("100"), Ok(100));
        assert!(super::parse_size("0").is_err());
        assert!(super::parse_size("4X").is_err());
        assert!(super::parse_size("M").is_err());
    }
}
