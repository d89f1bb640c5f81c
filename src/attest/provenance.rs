//! Build provenance: an in-toto Statement v1 whose predicate is SLSA Provenance v1, saying which inputs
//! (template tree, kolla-build options and config files, build args, `FROM` images, source archives,
//! parent image) made an image, and which rendered Dockerfile the build ran.
//!
//! The builder fills a [`ProvenanceInput`] per image; [`statement`] turns it into JSON. Like the images,
//! the statement is reproducible: times appear only when `SOURCE_DATE_EPOCH` is set, and then clamped to
//! it, so an unchanged rebuild gives a byte-identical statement.

use std::collections::BTreeMap;

use layers::Digest;
use serde_json::{Value, json};

use super::{ImageRef, SourceArchive, SourceKind, purl};

/// in-toto Statement v1 `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA Provenance v1 `predicateType`.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The `buildType` of an image built by kolla-oci from a Kolla template tree (what
/// `externalParameters` and `resolvedDependencies` mean is defined by [`ProvenanceInput`]).
pub const BUILD_TYPE_KOLLA: &str = "urn:kolla-oci:build-type:kolla-image:v1";
/// The `buildType` of an image built by `kolla-oci build-file` from one Dockerfile.
pub const BUILD_TYPE_DOCKERFILE: &str = "urn:kolla-oci:build-type:dockerfile:v1";
/// The default `builder.id`: kolla-oci on the machine that ran it (a CI system may give its own id).
pub const BUILDER_ID: &str = "urn:kolla-oci:builder:local";

/// A file that shaped the build, by path and content digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// Where it was read (as given on the command line or found by the config search).
    pub path: String,
    /// sha256 of its content.
    pub sha256: Digest,
}

/// Everything the provenance of one image says. The builder fills it as it builds the image;
/// [`ProvenanceInput::new`] gives the defaults for what it does not know.
#[derive(Debug, Clone)]
pub struct ProvenanceInput {
    /// The image built: the statement's only subject (name and manifest digest).
    pub image: ImageRef,
    /// [`BUILD_TYPE_KOLLA`] or [`BUILD_TYPE_DOCKERFILE`].
    pub build_type: String,
    /// `runDetails.builder.id` ([`BUILDER_ID`] unless a CI system names itself).
    pub builder_id: String,
    /// The Kolla image name (`keystone`), for [`BUILD_TYPE_KOLLA`].
    pub kolla_image: Option<String>,
    /// Digest of the template tree the Dockerfile was rendered from (how it is computed is the
    /// builder's: e.g. sha256 of the sorted `path\0sha256\n` listing of the tree's files).
    pub template_tree: Option<Digest>,
    /// kolla-build options that affect the result, by kolla's option name (`base`, `base_tag`,
    /// `namespace`, `tag`, `openstack_release`, `profile`, `template_override`, ...), as strings.
    pub options: BTreeMap<String, String>,
    /// Config files read (`kolla-build.conf`, `--config-dir` files, template overrides).
    pub config_files: Vec<FileDigest>,
    /// Effective `--build-args` (name → value; proxies included as kolla forwards them).
    pub build_args: BTreeMap<String, String>,
    /// Each `FROM` image as resolved (name as written, manifest digest).
    pub from_images: Vec<ImageRef>,
    /// The parent image in the Kolla tree, when it was built in this run or taken from the store.
    pub parent: Option<ImageRef>,
    /// Source archives the build added (`<name>-archive`).
    pub sources: Vec<SourceArchive>,
    /// sha256 of the rendered Dockerfile the build ran.
    pub dockerfile: Option<Digest>,
    /// When the build of this image started and finished (Unix seconds). Written only when
    /// `source_date_epoch` is set, and clamped to it.
    pub started_on: Option<i64>,
    /// See `started_on`.
    pub finished_on: Option<i64>,
    /// `SOURCE_DATE_EPOCH` of the build.
    pub source_date_epoch: Option<i64>,
}

impl ProvenanceInput {
    /// The provenance of `image` built as `build_type`, by the default builder, with nothing else known.
    pub fn new(image: ImageRef, build_type: &str) -> ProvenanceInput {
        ProvenanceInput {
            image,
            build_type: build_type.to_owned(),
            builder_id: BUILDER_ID.to_owned(),
            kolla_image: None,
            template_tree: None,
            options: BTreeMap::new(),
            config_files: Vec::new(),
            build_args: BTreeMap::new(),
            from_images: Vec::new(),
            parent: None,
            sources: Vec::new(),
            dockerfile: None,
            started_on: None,
            finished_on: None,
            source_date_epoch: None,
        }
    }
}

fn sha256(d: &Digest) -> Value {
    json!({"sha256": d.hex()})
}

/// A SLSA ResourceDescriptor for an image, with its role (`from`, `parent`).
fn image_dependency(image: &ImageRef, role: &str) -> Value {
    let d = image.digest.to_string();
    json!({"uri": purl::oci(&image.name, &d), "name": image.name, "digest": sha256(&image.digest),
           "annotations": {"role": role}})
}

/// A SLSA ResourceDescriptor for a source archive (its location as an SPDX-style URI for git).
fn source_dependency(src: &SourceArchive) -> Value {
    let uri = match (src.kind, &src.reference) {
        (SourceKind::Git, Some(r)) => format!("git+{}@{r}", src.location),
        (SourceKind::Git, None) => format!("git+{}", src.location),
        (SourceKind::Url | SourceKind::Local, _) => src.location.clone(),
    };
    let mut annotations = json!({"role": "source"});
    if let Some(r) = &src.reference {
        annotations["reference"] = r.clone().into();
    }
    json!({"uri": uri, "name": src.name, "digest": sha256(&src.sha256), "annotations": annotations})
}

/// The in-toto statement for `input`, as a JSON value (serialize it canonically).
pub fn statement(input: &ProvenanceInput) -> Value {
    let mut external = json!({
        "options": input.options,
        "buildArgs": input.build_args,
        "configFiles": input.config_files.iter()
            .map(|f| json!({"path": f.path, "digest": sha256(&f.sha256)}))
            .collect::<Vec<_>>(),
    });
    if let Some(t) = &input.template_tree {
        external["templateTree"] = json!({"digest": sha256(t)});
    }
    if let Some(name) = &input.kolla_image {
        external["image"] = name.clone().into();
    }
    let mut deps: Vec<Value> = input.from_images.iter().map(|i| image_dependency(i, "from")).collect();
    deps.extend(input.parent.iter().map(|p| image_dependency(p, "parent")));
    deps.extend(input.sources.iter().map(source_dependency));
    deps.sort_by_key(|d| d.to_string());
    deps.dedup();

    let mut metadata = serde_json::Map::new();
    if let Some(epoch) = input.source_date_epoch {
        for (key, time) in [("startedOn", input.started_on), ("finishedOn", input.finished_on)] {
            if let Some(t) = time {
                metadata.insert(key.into(), super::timestamp(t.min(epoch)).into());
            }
        }
    }
    let mut run = json!({
        "builder": {"id": input.builder_id, "version": {super::TOOL_NAME: super::TOOL_VERSION}},
        "byproducts": input.dockerfile.iter()
            .map(|d| json!({"name": "Dockerfile", "digest": sha256(d), "mediaType": "text/plain"}))
            .collect::<Vec<_>>(),
    });
    if !metadata.is_empty() {
        run["metadata"] = metadata.into();
    }
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": input.image.name, "digest": sha256(&input.image.digest)}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": input.build_type,
                "externalParameters": external,
                "resolvedDependencies": deps,
            },
            "runDetails": run,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ProvenanceInput {
        let mut p = ProvenanceInput::new(
            ImageRef { name: "kolla/keystone:1".into(), digest: Digest::of_bytes(b"k") },
            BUILD_TYPE_KOLLA,
        );
        p.from_images.push(ImageRef { name: "kolla/keystone-base:1".into(), digest: Digest::of_bytes(b"kb") });
        p.sources.push(SourceArchive {
            name: "keystone-base-archive".into(),
            kind: SourceKind::Git,
            location: "https://opendev.org/openstack/keystone".into(),
            reference: Some("stable/2025.1".into()),
            sha256: Digest::of_bytes(b"src"),
        });
        p.dockerfile = Some(Digest::of_bytes(b"FROM x"));
        p.build_args.insert("http_proxy".into(), "http://proxy:3128".into());
        p.started_on = Some(1_800_000_000);
        p.finished_on = Some(1_800_000_100);
        p
    }

    #[test]
    fn statement_names_every_input() {
        let s = statement(&input());
        assert_eq!(s["_type"], STATEMENT_TYPE);
        assert_eq!(s["subject"][0]["digest"]["sha256"], Digest::of_bytes(b"k").hex());
        let deps = s["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
        assert_eq!(deps.len(), 2);
        let src = deps.iter().find(|d| d["name"] == "keystone-base-archive").unwrap();
        assert_eq!(src["digest"]["sha256"], Digest::of_bytes(b"src").hex());
        assert_eq!(src["uri"], "git+https://opendev.org/openstack/keystone@stable/2025.1");
        let from = deps.iter().find(|d| d["annotations"]["role"] == "from").unwrap();
        assert_eq!(from["digest"]["sha256"], Digest::of_bytes(b"kb").hex());
        assert_eq!(
            s["predicate"]["runDetails"]["byproducts"][0]["digest"]["sha256"],
            Digest::of_bytes(b"FROM x").hex()
        );
        assert_eq!(
            s["predicate"]["buildDefinition"]["externalParameters"]["buildArgs"]["http_proxy"],
            "http://proxy:3128"
        );
        // No SOURCE_DATE_EPOCH: no times, so a rebuild gives the same statement.
        assert!(s["predicate"]["runDetails"].get("metadata").is_none());
    }

    #[test]
    fn times_only_with_source_date_epoch_and_clamped() {
        let mut p = input();
        p.source_date_epoch = Some(1_800_000_050);
        let s = statement(&p);
        let m = &s["predicate"]["runDetails"]["metadata"];
        assert_eq!(m["startedOn"], "2027-01-15T08:00:00Z");
        assert_eq!(m["finishedOn"], "2027-01-15T08:00:50Z");
    }
}
