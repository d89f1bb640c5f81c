//! The documents a build makes for every image it tags: its SPDX SBOM and its provenance, stored as the
//! image's referrers right after the tag is set, so that `push` finds them beside the image.
//!
//! What is the same for every image of a run (builder, template tree, options, config files, build
//! args) is gathered once into [`BuildFacts`]; what belongs to one image (its `FROM` digests, rendered
//! Dockerfile, source archives, parent) comes with [`ImageBuild`]. The image's manifest is not touched:
//! attestations never change its digest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use layers::Digest;

use super::provenance::{BUILDER_ID, FileDigest, ProvenanceInput};
use super::record::{SbomFormat, Subject};
use super::{AttestError, SourceArchive, record_provenance, record_sbom};
use crate::builder::{BuildOutcome, Workspace};
use crate::store::Platform;

/// What every image's provenance of one run says alike.
#[derive(Debug, Clone)]
pub struct BuildFacts {
    /// `buildType`: [`super::provenance::BUILD_TYPE_KOLLA`] or [`super::provenance::BUILD_TYPE_DOCKERFILE`].
    pub build_type: String,
    /// `runDetails.builder.id`.
    pub builder_id: String,
    /// Digest of the template tree(s) rendered ([`tree_digest`]), for Kolla builds.
    pub template_tree: Option<Digest>,
    /// Options that shape the images, by kolla-build's option names.
    pub options: BTreeMap<String, String>,
    /// Config files read, with their digests.
    pub config_files: Vec<FileDigest>,
    /// Effective build args, redacted ([`crate::redact::value`]): the statement is pushed to registries
    /// and must not carry a proxy's credentials or a secret passed as an argument.
    pub build_args: BTreeMap<String, String>,
    /// `SOURCE_DATE_EPOCH`: the SBOM's creation time, and the only case where times are written.
    pub source_date_epoch: Option<i64>,
}

impl BuildFacts {
    /// Facts with the default builder and nothing else known yet; `build_args` are redacted here.
    pub fn new(build_type: &str, build_args: &BTreeMap<String, String>, source_date_epoch: Option<i64>) -> BuildFacts {
        BuildFacts {
            build_type: build_type.to_owned(),
            builder_id: BUILDER_ID.to_owned(),
            template_tree: None,
            options: BTreeMap::new(),
            config_files: Vec::new(),
            build_args: build_args.iter().map(|(k, v)| (k.clone(), crate::redact::value(k, v))).collect(),
            source_date_epoch,
        }
    }
}

/// One image a build has just tagged.
#[derive(Debug, Clone, Copy)]
pub struct ImageBuild<'a> {
    /// The tag it got in the store (the documents' name for it).
    pub tag: &'a str,
    /// What the build reported (manifest, `FROM` digests, Dockerfile digest).
    pub outcome: &'a BuildOutcome,
    /// The Kolla image name (`keystone`), for Kolla builds.
    pub kolla_image: Option<&'a str>,
    /// The `FROM` name of its parent in the Kolla tree (a root image has none).
    pub parent: Option<&'a str>,
    /// Source archives put into its build context.
    pub sources: &'a [SourceArchive],
    /// When its build started and finished (Unix seconds).
    pub started_on: i64,
    /// See `started_on`.
    pub finished_on: i64,
}

/// Make and store the SPDX SBOM and the provenance of the image `image` names, as its referrers; logs
/// how long that took (the cost a build pays per image).
pub fn record_build(ws: &Workspace, facts: &BuildFacts, image: &ImageBuild) -> Result<(), AttestError> {
    let t0 = Instant::now();
    let store = ws.store();
    // The descriptor the build wrote, not a fresh tag lookup: another run may retag meanwhile.
    let subject = Subject {
        name: image.tag.to_owned(),
        image: store.load_image_from(&image.outcome.manifest, &Platform::host())?,
        descriptor: image.outcome.manifest.clone(),
    };
    let from = &image.outcome.from_images;
    let base = from.last().cloned();
    // A build that made no layer produced the very image it found: its SBOM describes the same bytes, from the
    // same base and sources (both are in the image), so it is kept rather than read out of the layers again —
    // that read is most of a no-op rebuild's time. The provenance is recorded anew: it is this build's.
    let kept = image.outcome.layers_built == 0
        && !store.referrers(&subject.descriptor.digest, Some(SbomFormat::Spdx.media_type()))?.is_empty();
    let sbom = if kept {
        Vec::new()
    } else {
        record_sbom(ws, &subject, SbomFormat::Spdx, base, image.sources.to_vec(), facts.source_date_epoch)?
    };

    let mut input = ProvenanceInput::new(subject.image_ref(), &facts.build_type);
    input.builder_id = facts.builder_id.clone();
    input.kolla_image = image.kolla_image.map(str::to_owned);
    input.template_tree = facts.template_tree;
    input.options = facts.options.clone();
    input.config_files = facts.config_files.clone();
    input.build_args = facts.build_args.clone();
    input.from_images = from.clone();
    input.parent = image.parent.and_then(|p| from.iter().find(|f| f.name == p).cloned());
    input.sources = image.sources.to_vec();
    input.dockerfile = Some(image.outcome.dockerfile);
    input.started_on = Some(image.started_on);
    input.finished_on = Some(image.finished_on);
    input.source_date_epoch = facts.source_date_epoch;
    record_provenance(store, &subject.descriptor, &input)?;
    tracing::info!(
        image = image.tag,
        sbom_bytes = sbom.len(),
        ms = t0.elapsed().as_millis() as u64,
        "attestations recorded ({}, provenance)",
        if kept { "SPDX SBOM kept: no layer changed" } else { "SPDX SBOM" }
    );
    Ok(())
}

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// sha256 of a file's content, as a provenance config-file entry named `path` as given.
pub fn file_digest(path: &Path) -> Result<FileDigest, AttestError> {
    let err = |e: std::io::Error| AttestError::Input { path: path.to_path_buf(), reason: e.to_string() };
    let (sha256, _) = layers::digest_reader(std::fs::File::open(path).map_err(err)?).map_err(err)?;
    Ok(FileDigest { path: path.display().to_string(), sha256 })
}

/// Digest of template trees: sha256 of the listing `<tree index>/<relative path>\0<what>\n` over
/// every file, symlink and directory of each tree in order (files by content digest, symlinks by
/// target), sorted by path. Two checkouts of the same tree give the same digest wherever they are.
pub fn tree_digest(trees: &[PathBuf]) -> Result<Digest, AttestError> {
    let mut listing = String::new();
    for (i, tree) in trees.iter().enumerate() {
        let err = |p: &Path, e: String| AttestError::Input { path: p.to_path_buf(), reason: e };
        for entry in walkdir::WalkDir::new(tree).follow_links(false).sort_by_file_name() {
            let entry = entry.map_err(|e| err(tree, e.to_string()))?;
            let rel = entry.path().strip_prefix(tree).unwrap_or(entry.path()).to_string_lossy().into_owned();
            let ft = entry.file_type();
            let what = if ft.is_symlink() {
                let target = std::fs::read_link(entry.path()).map_err(|e| err(entry.path(), e.to_string()))?;
                format!("symlink {}", target.display())
            } else if ft.is_file() {
                format!("file {}", file_digest(entry.path())?.sha256)
            } else if ft.is_dir() {
                "dir".to_owned()
            } else {
                continue;
            };
            listing.push_str(&format!("{i}/{rel}\0{what}\n"));
        }
    }
    Ok(Digest::of_bytes(listing.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_digest_follows_content_not_location() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            std::fs::create_dir(d.join("base")).unwrap();
            std::fs::write(d.join("base/Dockerfile.j2"), "FROM x\n").unwrap();
        }
        let da = tree_digest(&[a.path().to_path_buf()]).unwrap();
        assert_eq!(da, tree_digest(&[b.path().to_path_buf()]).unwrap());
        std::fs::write(b.path().join("base/Dockerfile.j2"), "FROM y\n").unwrap();
        assert_ne!(da, tree_digest(&[b.path().to_path_buf()]).unwrap());
    }
}
