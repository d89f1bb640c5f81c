//! `kolla-oci tag SOURCE TARGET…`: more names for an image in the store (podman's `tag`).

use std::process::ExitCode;

use anyhow::Context as _;

/// Options of `kolla-oci tag`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image (a tag, a name without tag meaning `:latest`, or a digest).
    pub source: String,
    /// The new names (`:latest` when no tag is given).
    #[arg(required = true)]
    pub targets: Vec<String>,
}

/// Point each target at the source's manifest.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let source = super::require_image(ctx, &store, &args.source)?;
    let desc = store.resolve(&source)?.with_context(|| format!("{source} vanished from the store"))?;
    for target in &args.targets {
        let target = super::with_latest(target);
        kolla_oci::registry::Reference::parse(&target).with_context(|| format!("tag {target:?}"))?;
        store.set_tag(&target, &desc).with_context(|| format!("tagging {source} as {target}"))?;
        tracing::debug!("tagged {source} as {target}");
    }
    Ok(ExitCode::SUCCESS)
}
