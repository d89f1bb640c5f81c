//! `kolla-oci history IMAGE`: the steps that made an image, newest first, with the size of the layer each
//! added (podman's `history`).

use std::process::ExitCode;

use anyhow::Context as _;

/// Options of `kolla-oci history`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image (a tag, a name meaning `:latest`, or a digest).
    pub image: String,
    /// Show each step in full (default: cut at 60 characters).
    #[arg(long)]
    pub no_trunc: bool,
    /// `table` (default) or `json` (one object per step: created, created_by, comment, empty_layer, layer,
    /// size).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
}

/// Print the history.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let tag = super::require_image(ctx, &store, &args.image)?;
    let image = store.load_image(&tag).with_context(|| format!("loading {tag}"))?;
    // Each history entry that is not an empty layer made the next layer, in order.
    let mut layers = image.manifest.layers.iter();
    let mut rows: Vec<serde_json::Value> = image
        .config
        .history
        .iter()
        .map(|h| {
            let layer = if h.empty_layer == Some(true) { None } else { layers.next() };
            serde_json::json!({
                "created": h.created,
                "created_by": h.created_by.as_deref().unwrap_or_default(),
                "comment": h.comment.as_deref().unwrap_or_default(),
                "empty_layer": layer.is_none(),
                "layer": layer.map(|l| l.digest.to_string()),
                "size": layer.map_or(0, |l| l.size),
            })
        })
        .collect();
    rows.reverse();
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = vec![["LAYER".to_owned(), "CREATED".into(), "CREATED BY".into(), "SIZE".into(), "COMMENT".into()]];
    for r in &rows {
        let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
        let created_by = text("created_by");
        let created_by = match created_by.char_indices().nth(60) {
            Some((i, _)) if !args.no_trunc => format!("{}…", &created_by[..i]),
            _ => created_by,
        };
        let layer =
            r["layer"].as_str().map_or("<missing>".to_owned(), |d| d.trim_start_matches("sha256:")[..12].to_owned());
        let size = if r["empty_layer"] == true {
            "0B".to_owned()
        } else {
            super::images::human_size(r["size"].as_u64().unwrap_or(0))
        };
        table.push([layer, super::images::short_time(&text("created")), created_by, size, text("comment")]);
    }
    super::images::print_table(&table);
    Ok(ExitCode::SUCCESS)
}
