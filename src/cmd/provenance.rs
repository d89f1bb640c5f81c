//! `kolla-oci provenance IMAGE`: print the build provenance stored beside the image (an in-toto statement
//! with a SLSA v1 predicate, recorded when the image was built).

use std::process::ExitCode;

use anyhow::Context as _;
use kolla_oci::attest::{MEDIA_IN_TOTO, Subject};

/// Options of `kolla-oci provenance`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image (a tag in the store, as `kolla-oci images` lists it).
    pub image: String,
}

/// Run the subcommand: the statement on stdout, or an error when the image has none.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let image = super::require_image(ctx, &store, &args.image)?;
    let subject = Subject::load(&store, &image).with_context(|| format!("loading {image}"))?;
    let doc = subject.stored(&store, MEDIA_IN_TOTO)?.with_context(|| {
        format!(
            "{} ({}) has no provenance in the store: it is recorded when kolla-oci builds the image",
            args.image, subject.descriptor.digest
        )
    })?;
    super::print_document(&doc)?;
    Ok(ExitCode::SUCCESS)
}
