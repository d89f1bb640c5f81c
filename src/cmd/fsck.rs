//! `kolla-oci fsck`: verify every blob (those kept only as their layer dirs written again) and every
//! reference; exit status 1 on any inconsistency.

use std::process::ExitCode;

use anyhow::Context as _;

/// Run the subcommand.
pub fn run(ctx: &super::Context) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let report = store.fsck().with_context(|| format!("checking {}", store.root().display()))?;
    println!(
        "{}: {} blobs ({} bytes) hashed ({} of them kept as their layer dirs, written again), {} tags, {} reachable, \
         {} unreferenced",
        store.root().display(),
        report.blobs,
        report.bytes,
        report.kept_as_layers,
        report.tags,
        report.reachable,
        report.unreferenced.len()
    );
    for (digest, size) in &report.unreferenced {
        println!("unreferenced: {digest} ({size} bytes)");
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    for problem in &report.problems {
        println!("ERROR: {problem}");
    }
    if report.is_ok() {
        println!("ok");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} problem(s) found", report.problems.len());
        Ok(ExitCode::FAILURE)
    }
}
