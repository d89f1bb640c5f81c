//! `kolla-oci images`: one line per tag in the store, filtered (`--filter`), as digests only (`-q`) or as
//! JSON (`--format json`), in the shape of podman's `images`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context as _;

/// Options of `kolla-oci images`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only the images that pass: `reference=PATTERN` (a glob over the name, or over `name:tag` when it
    /// has a `:`), `label=KEY` or `label=KEY=VALUE`, `dangling=true|false` (images without a tag: none,
    /// the store names every image). Repeatable; all must pass.
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Print only the images' digests (the DIGEST column, which `rmi`, `run` and `inspect` accept), once
    /// each.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// `table` (default) or `json` (one object per image: Id, Digest, Names, Size, Layers, Created, Labels).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
}

/// One `--filter`.
enum Filter {
    Reference(glob::Pattern, bool),
    Label(String, Option<String>),
    Dangling(bool),
}

impl Filter {
    fn parse(s: &str) -> anyhow::Result<Filter> {
        let (key, value) = s.split_once('=').with_context(|| format!("--filter {s:?}: expected KEY=VALUE"))?;
        Ok(match key {
            "reference" => {
                let pattern = glob::Pattern::new(value).with_context(|| format!("--filter {s:?}"))?;
                Filter::Reference(pattern, value.rsplit('/').next().is_some_and(|last| last.contains(':')))
            }
            "label" => match value.split_once('=') {
                Some((k, v)) => Filter::Label(k.to_owned(), Some(v.to_owned())),
                None => Filter::Label(value.to_owned(), None),
            },
            "dangling" => Filter::Dangling(value.parse().with_context(|| format!("--filter {s:?}: true or false"))?),
            _ => anyhow::bail!("--filter {s:?}: unknown filter {key:?} (reference, label, dangling)"),
        })
    }

    fn passes(&self, tag: &str, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Filter::Reference(p, with_tag) => {
                let name = tag.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map_or(tag, |(n, _)| n);
                p.matches(if *with_tag { tag } else { name })
            }
            Filter::Label(k, v) => labels.get(k).is_some_and(|have| v.as_ref().is_none_or(|v| v == have)),
            Filter::Dangling(d) => !d,
        }
    }
}

/// `1234567` → `1.2MB` (decimal units, as `docker images` prints).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes}B") } else { format!("{value:.1}{}", UNITS[unit]) }
}

/// RFC 3339 → `YYYY-MM-DD HH:MM:SS` (UTC as written); `-` when there is none.
pub fn short_time(rfc3339: &str) -> String {
    if rfc3339.is_empty() {
        return "-".into();
    }
    rfc3339.chars().take(19).map(|c| if c == 'T' { ' ' } else { c }).collect()
}

/// Rows printed as left-aligned columns, two spaces apart.
pub fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// Run the subcommand: TAG, DIGEST (manifest, short), SIZE (config + layers, as stored), LAYERS, CREATED.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let filters = args.filters.iter().map(|f| Filter::parse(f)).collect::<anyhow::Result<Vec<_>>>()?;
    let store = ctx.open_store()?;
    let mut rows = vec![["TAG".to_owned(), "DIGEST".into(), "SIZE".into(), "LAYERS".into(), "CREATED".into()]];
    let mut seen = std::collections::BTreeSet::new();
    let mut json: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for (tag, _) in store.tags().context("reading index.json")? {
        let image = store.load_image(&tag).with_context(|| format!("loading image {tag}"))?;
        if !filters.iter().all(|f| f.passes(&tag, &image.config.config.labels)) {
            continue;
        }
        let size = image.manifest.config.size + image.manifest.layers.iter().map(|l| l.size).sum::<u64>();
        let short = image.manifest_digest.hex()[..12].to_owned();
        let created = image.config.created.as_deref().unwrap_or_default();
        if args.quiet {
            if seen.insert(short.clone()) {
                println!("{short}");
            }
            continue;
        }
        let entry = json.entry(image.manifest_digest.to_string()).or_insert_with(|| {
            serde_json::json!({
                "Id": image.manifest.config.digest.hex(),
                "Digest": image.manifest_digest.to_string(),
                "Names": [],
                "Size": size,
                "Layers": image.manifest.layers.len(),
                "Created": created,
                "Labels": image.config.config.labels,
            })
        });
        if let Some(names) = entry["Names"].as_array_mut() {
            names.push(tag.clone().into());
        }
        rows.push([tag, short, human_size(size), image.manifest.layers.len().to_string(), short_time(created)]);
    }
    if args.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&json.into_values().collect::<Vec<_>>())?);
    } else {
        print_table(&rows);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let labels: BTreeMap<String, String> = [("kolla_version".to_owned(), "23.0.0".to_owned())].into();
        let pass = |f: &str, tag: &str| Filter::parse(f).unwrap().passes(tag, &labels);
        assert!(pass("reference=kolla/*", "kolla/nova-api:2026.2"));
        assert!(!pass("reference=kolla/*", "docker.io/library/debian:trixie"));
        assert!(pass("reference=*debian*", "docker.io/library/debian:trixie"));
        assert!(pass("reference=kolla/base:2026.*", "kolla/base:2026.2"));
        assert!(!pass("reference=kolla/base:2025.*", "kolla/base:2026.2"));
        assert!(pass("reference=127.0.0.1:5000/x", "127.0.0.1:5000/x:1"));
        assert!(pass("label=kolla_version", "a:1") && pass("label=kolla_version=23.0.0", "a:1"));
        assert!(!pass("label=kolla_version=22", "a:1") && !pass("label=other", "a:1"));
        assert!(!pass("dangling=true", "a:1") && pass("dangling=false", "a:1"));
        assert!(Filter::parse("bogus=1").is_err() && Filter::parse("reference").is_err());
    }
}
