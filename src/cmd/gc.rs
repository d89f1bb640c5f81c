//! `kolla-oci gc [--dry-run] [--grace DURATION] [--max-extracted SIZE]`: free what no tag reaches — blobs,
//! referrers of untagged images, extracted layer dirs — and keep each remaining layer once, its extracted
//! dirs within a budget. Waits for builds running on the same state dir (see `builder::gc`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use kolla_oci::builder::GcOptions;

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
    /// Keep at most this much disk in extracted layer dirs (`500M`, `2G`, `0`): the least recently used
    /// go, their blobs written back first; they are extracted again when needed. `0` leaves every blob in
    /// `oci/blobs/`, a plain OCI layout for other tools (skopeo, umoci).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_extracted: Option<u64>,
}

/// `0`, `4096`, `500K`, `500M`, `2G`, `1.5T` (powers of 1024; a trailing `B` or `iB` is allowed).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("bad size unit in {s:?}: expected K, M, G or T")),
            };
            (&t[..i], 1u64 << shift)
        }
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad size {s:?}: expected e.g. 0, 500M, 2G"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("bad size {s:?}"));
    }
    Ok((n * mult as f64) as u64)
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

/// Run the subcommand. One line per item (`blob DIGEST BYTES`, `referrer DIGEST of SUBJECT`, `layer PATH
/// BYTES` — what no tag reaches —, `kept-as-layer DIGEST BYTES` — a blob dropped, its layer dir gives it
/// back —, `extracted PATH BYTES` — a reachable layer's dir removed, its blob kept —, `restored DIGEST`),
/// then a total.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let ws = ctx.open_workspace()?;
    let opts = GcOptions { grace: args.grace, dry_run: args.dry_run, max_extracted: args.max_extracted };
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
    for digest in &out.trim.restored_blobs {
        println!("restored {digest}");
    }
    for (digest, size) in &out.trim.dropped_blobs {
        println!("kept-as-layer {digest} {size}");
    }
    for (path, size) in &out.trim.removed_dirs {
        println!("extracted {} {size}", path.display());
    }
    println!(
        "{} {} bytes: {} blobs, {} layer dirs, {} referrers no tag reaches ({} blobs and {} layer dirs younger than \
         {}s kept); each layer once: {} blobs kept as their layer dirs, {} layer dirs removed ({} blobs written back)",
        if args.dry_run { "would free" } else { "freed" },
        out.bytes(),
        out.store.removed.len(),
        out.layer_dirs.len(),
        out.store.dropped_referrers.len(),
        out.store.kept_recent,
        out.kept_recent_dirs,
        args.grace.as_secs(),
        out.trim.dropped_blobs.len(),
        out.trim.removed_dirs.len(),
        out.trim.restored_blobs.len(),
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

    #[test]
    fn sizes_parse() {
        use super::parse_size;
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert!(parse_size("2X").is_err() && parse_size("-1").is_err() && parse_size("G").is_err());
    }
}
