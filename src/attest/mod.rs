//! Supply-chain documents for an image: what it holds (an SBOM, SPDX 2.3 or CycloneDX 1.6) and how it
//! was made (an in-toto statement with a SLSA v1 provenance predicate).
//!
//! Everything here is computed from what kolla-oci already has — the extracted layer dirs ([`contents`]
//! reads dpkg's database and Python's metadata through the layer stack; no scanner, no RUN) and the
//! inputs of the build ([`provenance::ProvenanceInput`]) — and is deterministic: sorted, and no
//! wall-clock time unless `SOURCE_DATE_EPOCH` gives one. The store keeps the documents as OCI 1.1
//! artifacts whose `subject` is the image manifest (see `store::referrers`), so they never change the
//! image's own digest.

pub mod build;
pub mod contents;
pub mod cyclonedx;
pub mod dpkg;
pub mod license;
pub mod provenance;
pub mod purl;
pub mod python;
pub mod record;
pub mod spdx;

use std::path::PathBuf;

use layers::Digest;

pub use build::{BuildFacts, ImageBuild, record_build};
pub use contents::ImageContents;
pub use record::{SbomFormat, Subject, record_provenance, record_sbom};

/// `artifactType` (and document media type) of an SPDX JSON SBOM.
pub const MEDIA_SPDX: &str = "application/spdx+json";
/// `artifactType` (and document media type) of a CycloneDX JSON SBOM.
pub const MEDIA_CYCLONEDX: &str = "application/vnd.cyclonedx+json";
/// `artifactType` (and document media type) of an in-toto statement.
pub const MEDIA_IN_TOTO: &str = "application/vnd.in-toto+json";

/// The name and version the documents give for the tool that wrote them.
pub const TOOL_NAME: &str = "kolla-oci";
/// This build of kolla-oci.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why a document could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// A file of the image could not be read.
    #[error("{path} in the image ({}): {reason}", host.display())]
    Image {
        /// The path inside the image.
        path: String,
        /// Where it is on this machine (in an extracted layer dir).
        host: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The store could not give the image or keep the document.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A layer could not be extracted.
    #[error(transparent)]
    Build(#[from] crate::builder::BuildError),
    /// A build input (config file, template tree) could not be read to take its digest.
    #[error("reading {}: {reason}", path.display())]
    Input {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// An image as the documents name it: its name (a store tag or reference) and manifest digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `[registry/]namespace/name:tag`, as the store or the Dockerfile's `FROM` names it.
    pub name: String,
    /// The manifest digest (the image's identity in a registry).
    pub digest: Digest,
}

/// A source archive a Kolla image was built from (kolla-build's `[<image>]` source sections: the
/// `<name>-archive` that the Dockerfile `ADD`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceArchive {
    /// The archive's name in the build context (`keystone-base-archive`).
    pub name: String,
    /// kolla-build's source `type`: how `location` is to be read.
    pub kind: SourceKind,
    /// Where it came from: a URL, a git repository, or a local path.
    pub location: String,
    /// The git reference or commit, or the release version, when known.
    pub reference: Option<String>,
    /// sha256 of the archive as added to the image.
    pub sha256: Digest,
}

/// kolla-build's source types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `type = url`: a tarball downloaded from `location`.
    Url,
    /// `type = git`: `location` is a repository, `reference` the branch, tag or commit.
    Git,
    /// `type = local`: a file or directory on the build machine.
    Local,
}

/// What an SBOM describes besides the packages found in the layers.
#[derive(Debug, Clone)]
pub struct SbomInput<'a> {
    /// The image itself (the described package).
    pub image: ImageRef,
    /// The image it was built `FROM`, when known.
    pub base: Option<ImageRef>,
    /// Source archives added by the build.
    pub sources: Vec<SourceArchive>,
    /// The packages found in the image's layers.
    pub contents: &'a ImageContents,
    /// `SOURCE_DATE_EPOCH`: the document's creation time (else the Unix epoch for SPDX, none for
    /// CycloneDX, whose timestamp is optional).
    pub source_date_epoch: Option<i64>,
}

/// An RFC 3339 UTC time (`1970-01-01T00:00:00Z`).
fn timestamp(secs: i64) -> String {
    crate::builder::rfc3339(secs)
}

/// A name-based UUID (RFC 9562 version 8: custom) from sha256 of `seed`, so the same input gives the same
/// document identifier.
fn uuid_from(seed: &str) -> String {
    let mut b = *Digest::of_bytes(seed.as_bytes()).as_bytes();
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b[..16].iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuids_are_stable_and_well_formed() {
        let u = super::uuid_from("x");
        assert_eq!(u, super::uuid_from("x"));
        assert_ne!(u, super::uuid_from("y"));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "8");
        assert!(u.split('-').map(str::len).eq([8, 4, 4, 4, 12]));
    }
}
