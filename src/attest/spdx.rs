//! SPDX 2.3 JSON: the image is the described package (`DESCRIBES`), `CONTAINS` each Debian package and
//! Python distribution (with its purl), is `GENERATED_FROM` each source archive and a `DESCENDANT_OF`
//! its base image.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{SbomInput, SourceArchive, SourceKind, purl};

/// The document's own identifier (fixed by the SPDX spec).
const DOCUMENT: &str = "SPDXRef-DOCUMENT";
/// The image's package identifier.
const IMAGE: &str = "SPDXRef-image";

/// Hands out SPDX identifiers (`SPDXRef-` + letters, digits, `.` and `-`), unique within the document.
#[derive(Default)]
struct Ids(BTreeSet<String>);

impl Ids {
    fn make(&mut self, parts: &[&str]) -> String {
        let raw: String = parts
            .join("-")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' })
            .collect();
        let base = format!("SPDXRef-{raw}");
        let mut id = base.clone();
        let mut n = 1;
        while !self.0.insert(id.clone()) {
            n += 1;
            id = format!("{base}-{n}");
        }
        id
    }
}

/// A package entry: nothing about its files is asserted (`filesAnalyzed: false`).
fn package(id: &str, name: &str, version: &str, purl: Option<&str>) -> serde_json::Map<String, Value> {
    let mut p = json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
    });
    if let Some(purl) = purl {
        p["externalRefs"] =
            json!([{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl}]);
    }
    match p {
        Value::Object(m) => m,
        _ => unreachable!("json! of an object"),
    }
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({"spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to})
}

/// An SPDX download location for a source archive: a URL as it is, a git repository as a VCS location
/// (`git+https://…@ref`), `NOASSERTION` for a local path (not a location) or anything unusable.
fn download_location(s: &SourceArchive) -> String {
    let l = s.location.as_str();
    let usable = ["https://", "http://", "ftp://", "ssh://", "git://"].iter().any(|p| l.starts_with(p))
        && !l.contains(char::is_whitespace);
    match s.kind {
        SourceKind::Url if usable => l.to_owned(),
        SourceKind::Git if usable => match &s.reference {
            Some(r) => format!("git+{l}@{r}"),
            None => format!("git+{l}"),
        },
        _ => "NOASSERTION".to_owned(),
    }
}

/// The SPDX 2.3 JSON document for `input`, as a JSON value (serialize it canonically).
pub fn document(input: &SbomInput) -> Value {
    let mut ids = Ids::default();
    ids.0.insert(IMAGE.to_owned());
    let image = &input.image;
    let digest = image.digest.to_string();
    let mut packages = Vec::new();
    let mut relationships = vec![relationship(DOCUMENT, "DESCRIBES", IMAGE)];

    let mut p = package(IMAGE, &image.name, &digest, Some(&purl::oci(&image.name, &digest)));
    p.insert("primaryPackagePurpose".into(), "CONTAINER".into());
    p.insert("checksums".into(), json!([{"algorithm": "SHA256", "checksumValue": image.digest.hex()}]));
    packages.push(p);

    if let Some(base) = &input.base {
        let id = ids.make(&["base-image"]);
        let d = base.digest.to_string();
        let mut p = package(&id, &base.name, &d, Some(&purl::oci(&base.name, &d)));
        p.insert("primaryPackagePurpose".into(), "CONTAINER".into());
        p.insert("checksums".into(), json!([{"algorithm": "SHA256", "checksumValue": base.digest.hex()}]));
        packages.push(p);
        relationships.push(relationship(IMAGE, "DESCENDANT_OF", &id));
    }

    let os = &input.contents.os;
    let distro = os.distro();
    for (deb, license) in &input.contents.debs {
        let id = ids.make(&["deb", &deb.name, &deb.architecture]);
        let purl = purl::deb(os.vendor(), &deb.name, &deb.version, &deb.architecture, distro.as_deref());
        let mut p = package(&id, &deb.name, &deb.version, Some(&purl));
        p.insert(
            "sourceInfo".into(),
            format!("built from {} source package {} {}", os.vendor(), deb.source, deb.source_version).into(),
        );
        set_license(&mut p, license);
        packages.push(p);
        relationships.push(relationship(IMAGE, "CONTAINS", &id));
    }
    for dist in &input.contents.python {
        let id = ids.make(&["pypi", &purl::pypi_name(&dist.name), &dist.version]);
        let mut p = package(&id, &dist.name, &dist.version, Some(&purl::pypi(&dist.name, &dist.version)));
        p.insert("sourceInfo".into(), format!("installed at {}", dist.path).into());
        set_license(&mut p, &dist.license);
        packages.push(p);
        relationships.push(relationship(IMAGE, "CONTAINS", &id));
    }
    for src in &input.sources {
        let id = ids.make(&["source", &src.name]);
        let mut p = package(&id, &src.name, src.reference.as_deref().unwrap_or("NOASSERTION"), None);
        if src.reference.is_none() {
            p.remove("versionInfo");
        }
        p.insert("primaryPackagePurpose".into(), "SOURCE".into());
        p.insert("downloadLocation".into(), download_location(src).into());
        p.insert("sourceInfo".into(), format!("kolla source archive from {}", src.location).into());
        p.insert("checksums".into(), json!([{"algorithm": "SHA256", "checksumValue": src.sha256.hex()}]));
        packages.push(p);
        relationships.push(relationship(IMAGE, "GENERATED_FROM", &id));
    }

    packages.sort_by(|a, b| a["SPDXID"].as_str().cmp(&b["SPDXID"].as_str()));
    relationships.sort_by_key(|r| r.to_string());
    let created = super::timestamp(input.source_date_epoch.unwrap_or(0));
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": DOCUMENT,
        "name": image.name,
        "documentNamespace": format!("urn:uuid:{}", super::uuid_from(&format!("spdx {} {digest}", image.name))),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: {}-{}", super::TOOL_NAME, super::TOOL_VERSION)],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

/// `licenseDeclared` from an expression; the package's own words, when not one, in `licenseComments`.
fn set_license(p: &mut serde_json::Map<String, Value>, license: &super::license::License) {
    if let Some(e) = &license.expression {
        p.insert("licenseDeclared".into(), e.clone().into());
    }
    if let Some(t) = &license.text {
        p.insert("licenseComments".into(), format!("declared as: {t}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::{ImageContents, ImageRef, dpkg, license::License, python::PythonDist};
    use layers::Digest;

    fn input(contents: &ImageContents) -> SbomInput<'_> {
        SbomInput {
            image: ImageRef { name: "kolla/keystone:1".into(), digest: Digest::of_bytes(b"m") },
            base: Some(ImageRef { name: "kolla/keystone-base:1".into(), digest: Digest::of_bytes(b"b") }),
            sources: vec![SourceArchive {
                name: "keystone-base-archive".into(),
                kind: SourceKind::Url,
                location: "https://tarballs.example/keystone-26.0.0.tar.gz".into(),
                reference: None,
                sha256: Digest::of_bytes(b"s"),
            }],
            contents,
            source_date_epoch: None,
        }
    }

    #[test]
    fn document_relates_the_image_to_everything_it_holds() {
        let deb = dpkg::DebPackage {
            name: "libc6".into(),
            version: "2.36-9".into(),
            architecture: "amd64".into(),
            source: "glibc".into(),
            source_version: "2.36-9".into(),
        };
        let contents = ImageContents {
            os: dpkg::OsRelease::parse("ID=debian\nVERSION_ID=12\n"),
            debs: vec![(deb, License { expression: Some("LGPL-2.1-or-later".into()), text: None })],
            python: vec![PythonDist {
                name: "six".into(),
                version: "1.16.0".into(),
                license: License { expression: None, text: Some("custom".into()) },
                path: "/usr/lib/python3/dist-packages/six-1.16.0.dist-info".into(),
            }],
        };
        let doc = document(&input(&contents));
        assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:00Z");
        let ids: Vec<&str> =
            doc["packages"].as_array().unwrap().iter().map(|p| p["SPDXID"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            [
                "SPDXRef-base-image",
                "SPDXRef-deb-libc6-amd64",
                "SPDXRef-image",
                "SPDXRef-pypi-six-1.16.0",
                "SPDXRef-source-keystone-base-archive"
            ]
        );
        let rels: Vec<String> = doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| format!("{} {} {}", r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"]))
            .map(|s| s.replace('"', ""))
            .collect();
        assert!(rels.contains(&"SPDXRef-DOCUMENT DESCRIBES SPDXRef-image".to_owned()), "{rels:?}");
        assert!(rels.contains(&"SPDXRef-image CONTAINS SPDXRef-pypi-six-1.16.0".to_owned()));
        assert!(rels.contains(&"SPDXRef-image DESCENDANT_OF SPDXRef-base-image".to_owned()));
        assert!(rels.contains(&"SPDXRef-image GENERATED_FROM SPDXRef-source-keystone-base-archive".to_owned()));
        let libc = &doc["packages"][1];
        assert_eq!(libc["licenseDeclared"], "LGPL-2.1-or-later");
        assert_eq!(
            libc["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/libc6@2.36-9?arch=amd64&distro=debian-12"
        );
        assert_eq!(doc["packages"][3]["licenseDeclared"], "NOASSERTION");
        assert_eq!(doc["packages"][4]["downloadLocation"], "https://tarballs.example/keystone-26.0.0.tar.gz");
        // Same input, same bytes.
        assert_eq!(doc, document(&input(&contents)));
    }

    #[test]
    fn source_locations_follow_spdx_forms() {
        let src = |kind, location: &str, reference: Option<&str>| SourceArchive {
            name: "x".into(),
            kind,
            location: location.into(),
            reference: reference.map(str::to_owned),
            sha256: Digest::of_bytes(b""),
        };
        assert_eq!(
            download_location(&src(SourceKind::Git, "https://opendev.org/openstack/keystone", Some("stable/2025.1"))),
            "git+https://opendev.org/openstack/keystone@stable/2025.1"
        );
        assert_eq!(download_location(&src(SourceKind::Local, "/srv/keystone", None)), "NOASSERTION");
        assert_eq!(
            download_location(&src(SourceKind::Url, "https://x/k-1.0.tar.gz", Some("1.0"))),
            "https://x/k-1.0.tar.gz"
        );
    }

    #[test]
    fn ids_stay_unique_after_sanitizing() {
        let mut ids = Ids::default();
        assert_eq!(ids.make(&["pypi", "a_b"]), "SPDXRef-pypi-a-b");
        assert_eq!(ids.make(&["pypi", "a+b"]), "SPDXRef-pypi-a-b-2");
    }
}
