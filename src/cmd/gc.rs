//! `kolla-oci gc [--dry-run] [--grace DURATION]`: free what no tag reaches — blobs, referrers of untagged
//! images, extracted layer dirs. Waits for builds running on the same state dir (see `builder::gc`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use kolla_oci::builder::{GcOptions, Workspace};

/// Options of `kolla-oci gc`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print what would be freed (the same lines `gc` prints), change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep what was written or reused more recently than this (`90s`, `15m`, `1h`, `0`): protects
    /// writers that do not lock the state dir (builds and pulls do: gc waits for them).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub grace: Duration,
}

/// `0`, `90s`, `15m`, `2h`, `1d`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("bad duration {s:?}: expected e.g. 90s, 15m, 1h"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("bad duration unit in {s:?}: expected s, m, h or d")),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

/// Run the subcommand. One line per item (`blob DIGEST BYTES`, `referrer DIGEST of SUBJECT`,
/// `layer PATH BYTES`), then a total.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let ws = Workspace::open(&ctx.store_dir).with_context(|| format!("opening {}", ctx.store_dir.display()))?;
    let opts = GcOptions { grace: args.grace, dry_run: args.dry_run };
    let out = ws.gc(&opts).with_context(|| format!("collecting garbage in {}", ctx.store_dir.display()))?;
    for (digest, size) in &out.store.removed {
        println!("blob {digest} {size}");
    }
    for r in &out.store.dropped_referrers {
        println!("referrer {} of {}", r.digest, r.referrer_subject().unwrap_or("?"));
    }
    for (path, size) in &out.layer_dirs {
        println!("layer {} {size}", path.display());
    }
    println!(
        "{} {} bytes: {} blobs, {} layer dirs, {} referrers ({} blobs and {} layer dirs younger than {}s kept)",
        if args.dry_run { "would free" } else { "freed" },
        out.bytes(),
        out.store.removed.len(),
        out.layer_dirs.len(),
        out.store.dropped_referrers.len(),
        out.store.kept_recent,
        out.kept_recent_dirs,
        args.grace.as_secs()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_parse() {
        use std::time::Duration;
        assert_eq!(super::parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(super::parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(super::parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(super::parse_duration("1w").is_err());
        assert!(super::parse_duration("h").is_err());
    }
}
