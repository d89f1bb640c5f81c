//! `kolla-oci sbom IMAGE [--format spdx|cyclonedx]`: print the image's SBOM, computing it from the image's
//! layers and storing it beside the image (an OCI artifact referring to it) when there is none yet.

use std::process::ExitCode;

use anyhow::Context as _;
use kolla_oci::attest::{self, SbomFormat, Subject};

/// Options of `kolla-oci sbom`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image (a tag in the store, as `kolla-oci images` lists it).
    pub image: String,
    /// Document format.
    #[arg(long, value_enum, default_value = "spdx")]
    pub format: SbomFormat,
    /// Compute it again even if one is stored (and replace the stored one).
    #[arg(long)]
    pub recompute: bool,
}

/// Run the subcommand.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let ws = ctx.open_workspace()?;
    let image = super::require_image(ctx, ws.store(), &args.image)?;
    let subject = Subject::load(ws.store(), &image).with_context(|| format!("loading {image}"))?;
    let stored = if args.recompute { None } else { subject.stored(ws.store(), args.format.media_type())? };
    let doc = match stored {
        Some(doc) => doc,
        None => {
            let epoch = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.trim().parse().ok());
            let base = subject.base_image(ws.store())?;
            attest::record_sbom(&ws, &subject, args.format, base, Vec::new(), epoch)
                .with_context(|| format!("making the SBOM of {}", args.image))?
        }
    };
    super::print_document(&doc)?;
    Ok(ExitCode::SUCCESS)
}
