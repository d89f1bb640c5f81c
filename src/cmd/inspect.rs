//! `kolla-oci inspect IMAGE…`: what podman's `image inspect` prints — the image config, digest, tags,
//! labels, layers and history — as a JSON array, or one `--format` template per image.

use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{Value, json};

/// Options of `kolla-oci inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The images (tags, names meaning `:latest`, or digests).
    #[arg(required = true)]
    pub images: Vec<String>,
    /// `json` (default), or a template such as `{{.Digest}}` or `{{.Config.Labels}}`: each `{{.Path}}` is
    /// replaced by that field (strings as they are, anything else as JSON).
    #[arg(short = 'f', long, default_value = "json")]
    pub format: String,
}

/// Print the images' descriptions.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let tags = store.tags().context("reading the store's index.json")?;
    let mut out = Vec::new();
    for name in &args.images {
        let tag = super::require_image(ctx, &store, name)?;
        out.push(describe(&store, &tag, &tags)?);
    }
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&Value::Array(out))?);
    } else {
        for doc in &out {
            println!("{}", fill(&args.format, doc)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// podman's inspect document of the image tagged `tag`.
fn describe(
    store: &kolla_oci::store::Store,
    tag: &str,
    tags: &[(String, kolla_oci::store::Descriptor)],
) -> anyhow::Result<Value> {
    let image = store.load_image(tag).with_context(|| format!("loading {tag}"))?;
    let repo_tags: Vec<&str> =
        tags.iter().filter(|(_, d)| d.digest == image.manifest_digest).map(|(t, _)| t.as_str()).collect();
    let config = serde_json::to_value(&image.config).context("serializing the image config")?;
    let size = image.manifest.config.size + image.manifest.layers.iter().map(|l| l.size).sum::<u64>();
    Ok(json!({
        "Id": image.manifest.config.digest.hex(),
        "Digest": image.manifest_digest.to_string(),
        "RepoTags": repo_tags,
        "Created": image.config.created,
        "Author": image.config.author.as_deref().unwrap_or_default(),
        "Architecture": image.config.architecture,
        "Os": image.config.os,
        "Config": config.get("config").cloned().unwrap_or(Value::Null),
        "Labels": image.config.config.labels,
        "RootFS": config.get("rootfs").cloned().unwrap_or(Value::Null),
        "Layers": image.manifest.layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
        "Size": size,
        "History": config.get("history").cloned().unwrap_or(Value::Null),
        "ManifestType": image.manifest.media_type.as_deref().unwrap_or("application/vnd.oci.image.manifest.v1+json"),
    }))
}

/// `template` with each `{{.A.B}}` replaced by that field of `doc`.
fn fill(template: &str, doc: &Value) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").with_context(|| format!("--format {template:?}: `{{{{` not closed"))?;
        let path = rest[start + 2..start + end].trim();
        let field =
            path.strip_prefix('.').with_context(|| format!("--format: expected {{{{.Field}}}}, got {path:?}"))?;
        let mut v = doc;
        for key in field.split('.').filter(|k| !k.is_empty()) {
            v = v.get(key).with_context(|| format!("--format: no field {key:?} in {path:?}"))?;
        }
        match v {
            Value::String(s) => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn templates() {
        let doc = serde_json::json!({"Digest": "sha256:ab", "Config": {"Labels": {"a": "b"}, "User": "kolla"}});
        assert_eq!(super::fill("{{.Digest}} {{ .Config.User }}", &doc).unwrap(), "sha256:ab kolla");
        assert_eq!(super::fill("{{.Config.Labels}}", &doc).unwrap(), r#"{"a":"b"}"#);
        assert!(super::fill("{{.Nope}}", &doc).is_err());
        assert!(super::fill("{{.Digest", &doc).is_err());
    }
}
