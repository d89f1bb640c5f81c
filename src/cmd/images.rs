//! `kolla-oci images`: one line per tag in the store.

use std::process::ExitCode;

use anyhow::Context as _;

/// `1234567` → `1.2MB` (decimal units, as `docker images` prints).
pub(super) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes}B") } else { format!("{value:.1}{}", UNITS[unit]) }
}

/// Run the subcommand: TAG, DIGEST (manifest, short), SIZE (config + layers, as stored), LAYERS, CREATED.
pub fn run(ctx: &super::Context) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let mut rows = vec![["TAG".to_owned(), "DIGEST".into(), "SIZE".into(), "LAYERS".into(), "CREATED".into()]];
    for (tag, _) in store.tags().context("reading index.json")? {
        let image = store.load_image(&tag).with_context(|| format!("loading image {tag}"))?;
        let size = image.manifest.config.size + image.manifest.layers.iter().map(|l| l.size).sum::<u64>();
        let created = image.config.created.as_deref().unwrap_or("-");
        // RFC 3339 → "YYYY-MM-DD HH:MM:SS" (UTC as written).
        let created: String = created.chars().take(19).map(|c| if c == 'T' { ' ' } else { c }).collect();
        rows.push([
            tag,
            image.manifest_digest.hex()[..12].to_owned(),
            human_size(size),
            image.manifest.layers.len().to_string(),
            created,
        ]);
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(ExitCode::SUCCESS)
}
