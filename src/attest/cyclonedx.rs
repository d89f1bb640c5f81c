//! CycloneDX 1.6 JSON: the image is `metadata.component`; the operating system, every Debian package and
//! Python distribution (each with its purl), the base image and the source archives are components,
//! and the image `dependsOn` all of them.

use serde_json::{Value, json};

use super::license::License;
use super::{SbomInput, SourceKind, purl};

/// CycloneDX `licenses`: an expression, or the package's own words as a license name.
fn licenses(license: &License) -> Option<Value> {
    match (&license.expression, &license.text) {
        (Some(e), _) => Some(json!([{"expression": e}])),
        (None, Some(t)) => Some(json!([{"license": {"name": t}}])),
        (None, None) => None,
    }
}

fn properties(pairs: &[(&str, &str)]) -> Value {
    pairs.iter().map(|(n, v)| json!({"name": format!("kolla-oci:{n}"), "value": v})).collect()
}

/// The CycloneDX 1.6 JSON document for `input`, as a JSON value (serialize it canonically).
pub fn document(input: &SbomInput) -> Value {
    let image = &input.image;
    let digest = image.digest.to_string();
    let image_ref = purl::oci(&image.name, &digest);
    let mut components = Vec::new();

    let os = &input.contents.os;
    if let Some(id) = &os.id {
        let version = os.version_id.as_deref().or(os.codename.as_deref()).unwrap_or("");
        components.push(json!({
            "type": "operating-system", "bom-ref": format!("os:{id}-{version}"), "name": id, "version": version,
        }));
    }
    if let Some(base) = &input.base {
        let d = base.digest.to_string();
        components.push(json!({
            "type": "container", "bom-ref": purl::oci(&base.name, &d), "name": base.name, "version": d,
            "purl": purl::oci(&base.name, &d), "hashes": [{"alg": "SHA-256", "content": base.digest.hex()}],
        }));
    }
    let distro = os.distro();
    for (deb, license) in &input.contents.debs {
        let p = purl::deb(os.vendor(), &deb.name, &deb.version, &deb.architecture, distro.as_deref());
        let mut c = json!({
            "type": "library", "bom-ref": p, "name": deb.name, "version": deb.version, "purl": p,
            "properties": properties(&[("deb:source", &deb.source), ("deb:source-version", &deb.source_version)]),
        });
        if let Some(l) = licenses(license) {
            c["licenses"] = l;
        }
        components.push(c);
    }
    for dist in &input.contents.python {
        let p = purl::pypi(&dist.name, &dist.version);
        let mut c = json!({
            "type": "library", "bom-ref": p, "name": dist.name, "version": dist.version, "purl": p,
            "properties": properties(&[("python:path", &dist.path)]),
        });
        if let Some(l) = licenses(&dist.license) {
            c["licenses"] = l;
        }
        components.push(c);
    }
    for src in &input.sources {
        let reference = match src.kind {
            SourceKind::Git => "vcs",
            SourceKind::Url | SourceKind::Local => "source-distribution",
        };
        let mut c = json!({
            "type": "file", "bom-ref": format!("source:{}", src.name), "name": src.name,
            "hashes": [{"alg": "SHA-256", "content": src.sha256.hex()}],
            "externalReferences": [{"type": reference, "url": src.location}],
        });
        if let Some(r) = &src.reference {
            c["version"] = r.clone().into();
        }
        components.push(c);
    }

    components.sort_by(|a, b| a["bom-ref"].as_str().cmp(&b["bom-ref"].as_str()));
    let depends: Vec<&Value> = components.iter().map(|c| &c["bom-ref"]).collect();
    let mut metadata = json!({
        "component": {
            "type": "container", "bom-ref": image_ref, "name": image.name, "version": digest, "purl": image_ref,
            "hashes": [{"alg": "SHA-256", "content": image.digest.hex()}],
        },
        "tools": {"components": [{"type": "application", "name": super::TOOL_NAME, "version": super::TOOL_VERSION}]},
    });
    if let Some(epoch) = input.source_date_epoch {
        metadata["timestamp"] = super::timestamp(epoch).into();
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", super::uuid_from(&format!("cyclonedx {} {digest}", image.name))),
        "version": 1,
        "metadata": metadata,
        "components": components,
        "dependencies": [{"ref": image_ref, "dependsOn": depends}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::{ImageContents, ImageRef, SourceArchive, dpkg, python::PythonDist};
    use layers::Digest;

    #[test]
    fn components_and_dependencies_cover_the_image() {
        let contents = ImageContents {
            os: dpkg::OsRelease::parse("ID=debian\nVERSION_ID=12\n"),
            debs: vec![(
                dpkg::DebPackage {
                    name: "zlib1g".into(),
                    version: "1:1.2.13.dfsg-1".into(),
                    architecture: "amd64".into(),
                    source: "zlib".into(),
                    source_version: "1:1.2.13.dfsg-1".into(),
                },
                License { expression: Some("Zlib".into()), text: None },
            )],
            python: vec![PythonDist {
                name: "PyYAML".into(),
                version: "6.0.1".into(),
                license: License { expression: None, text: Some("MIT-ish".into()) },
                path: "/p".into(),
            }],
        };
        let input = SbomInput {
            image: ImageRef { name: "img:1".into(), digest: Digest::of_bytes(b"i") },
            base: None,
            sources: vec![SourceArchive {
                name: "a-archive".into(),
                kind: SourceKind::Git,
                location: "https://git.example/a".into(),
                reference: Some("abc123".into()),
                sha256: Digest::of_bytes(b"a"),
            }],
            contents: &contents,
            source_date_epoch: Some(1_700_000_000),
        };
        let doc = document(&input);
        assert_eq!(doc["metadata"]["timestamp"], "2023-11-14T22:13:20Z");
        let refs: Vec<&str> =
            doc["components"].as_array().unwrap().iter().map(|c| c["bom-ref"].as_str().unwrap()).collect();
        assert_eq!(
            refs,
            [
                "os:debian-12",
                "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12",
                "pkg:pypi/pyyaml@6.0.1",
                "source:a-archive"
            ]
        );
        assert_eq!(doc["dependencies"][0]["dependsOn"].as_array().unwrap().len(), 4);
        assert_eq!(doc["components"][1]["licenses"][0]["expression"], "Zlib");
        assert_eq!(doc["components"][2]["licenses"][0]["license"]["name"], "MIT-ish");
        assert_eq!(doc["components"][3]["externalReferences"][0]["type"], "vcs");
        let serial = doc["serialNumber"].as_str().unwrap();
        assert!(serial.starts_with("urn:uuid:") && serial.len() == 45, "{serial}");
    }
}
