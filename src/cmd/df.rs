//! `kolla-oci df`: the disk space the state dir uses, by kind, and what `gc` would free — as `podman system
//! df` shows for its storage.

use std::process::ExitCode;

use anyhow::Context as _;
use kolla_oci::builder::{KindUsage, Workspace};

/// Options of `kolla-oci df`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Exact byte counts instead of human-readable sizes.
    #[arg(long)]
    pub bytes: bool,
}

/// Human-readable sizes as `kolla-oci images` prints them (decimal units), or plain bytes.
fn size(n: u64, exact: bool) -> String {
    if exact { n.to_string() } else { super::images::human_size(n) }
}

/// Run the subcommand: one line per kind (`KIND COUNT SIZE RECLAIMABLE`), a total, and the blobs kept only
/// as their layer dirs.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let ws = Workspace::open(&ctx.store_dir).with_context(|| format!("opening {}", ctx.store_dir.display()))?;
    let grace = std::time::Duration::from_secs(3600);
    let usage = ws.usage(grace).with_context(|| format!("measuring {}", ctx.store_dir.display()))?;
    let row = |kind: &str, k: &KindUsage| {
        println!("{kind:<18} {:>8} {:>12} {:>12}", k.count, size(k.bytes, args.bytes), size(k.reclaimable, args.bytes))
    };
    println!("{:<18} {:>8} {:>12} {:>12}", "KIND", "COUNT", "SIZE", "RECLAIMABLE");
    row("blobs", &usage.blobs);
    row("extracted layers", &usage.extracted);
    row("layer skeletons", &usage.skeletons);
    row("step cache", &usage.cache);
    row("sources", &usage.sources);
    row("temporary", &usage.temporary);
    row("total", &usage.total());
    println!(
        "{} blobs kept only as their extracted layers ({} once written back); reclaimable: what `kolla-oci gc` \
         (grace 1h) would free",
        usage.kept_as_layers.count,
        size(usage.kept_as_layers.bytes, args.bytes)
    );
    Ok(ExitCode::SUCCESS)
}
