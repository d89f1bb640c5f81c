//! The SBOM of a real Debian image matches what the image's own tools say: its Debian packages equal
//! `dpkg-query -W` run inside the image (`kolla-oci run`), its Python distributions equal `pip list` of
//! the image's Kolla venv plus what the system Python sees (`importlib.metadata`) — with a distribution
//! uninstalled in a later layer (a whiteout) absent from both. The SPDX validates with `pyspdxtools`
//! (PyPI spdx-tools) and the CycloneDX with cyclonedx-python-lib's JSON schema validator.

#[path = "support/pep503.rs"]
mod pep503;
#[path = "support/store.rs"]
mod support;
#[path = "support/template.rs"]
#[allow(unused_imports)]
mod venv;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use pep503::normalize;
use serde_json::Value;
use support::{kolla_oci, run_ok};

const IMAGE: &str = "sbom-test:1";

/// Run `argv` in the image; its stdout.
fn in_image(state: &Path, argv: &[&str]) -> String {
    run_ok(kolla_oci(state).args(["run", IMAGE, "--"]).args(argv))
}

/// `(name, version)` of the `pkg:pypi` packages of an SPDX document, normalized.
fn spdx_python(doc: &Value) -> BTreeSet<(String, String)> {
    packages(doc, "SPDXRef-pypi-")
        .map(|p| (normalize(p["name"].as_str().unwrap()), p["versionInfo"].as_str().unwrap().to_owned()))
        .collect()
}

fn packages<'a>(doc: &'a Value, prefix: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    doc["packages"].as_array().unwrap().iter().filter(move |p| p["SPDXID"].as_str().unwrap().starts_with(prefix))
}

#[test]
fn sbom_of_a_debian_image_matches_dpkg_and_pip() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM debian:bookworm\n\
         ENV DEBIAN_FRONTEND=noninteractive\n\
         RUN apt-get update && apt-get install -y --no-install-recommends python3-venv python3-yaml \
             && rm -rf /var/lib/apt/lists/*\n\
         RUN python3 -m venv /var/lib/kolla/venv \
             && /var/lib/kolla/venv/bin/pip install -q --no-cache-dir six==1.16.0 typing_extensions==4.12.2 \
                idna==3.10\n\
         RUN /var/lib/kolla/venv/bin/pip uninstall -q -y six\n",
    )
    .unwrap();
    run_ok(kolla_oci(&state).args(["build-file", ctx.to_str().unwrap(), "-t", IMAGE]));

    let spdx_text = run_ok(kolla_oci(&state).args(["sbom", IMAGE]));
    let spdx: Value = serde_json::from_str(&spdx_text).unwrap();

    // Debian: exactly the installed packages dpkg knows, with their versions and architectures.
    let dpkg =
        in_image(&state, &["dpkg-query", "-W", "-f", "${db:Status-Abbrev}|${Package}|${Version}|${Architecture}\n"]);
    let want: BTreeSet<String> =
        dpkg.lines().filter_map(|l| l.strip_prefix("ii |")).map(|l| l.replace('|', " ")).collect();
    assert!(want.len() > 80, "dpkg-query listed too little: {dpkg}");
    let got: BTreeSet<String> = packages(&spdx, "SPDXRef-deb-")
        .map(|p| {
            let purl = p["externalRefs"][0]["referenceLocator"].as_str().unwrap();
            let arch = purl.split("arch=").nth(1).unwrap().split('&').next().unwrap();
            assert!(purl.starts_with("pkg:deb/debian/") && purl.ends_with("&distro=debian-12"), "{purl}");
            format!("{} {} {arch}", p["name"].as_str().unwrap(), p["versionInfo"].as_str().unwrap())
        })
        .collect();
    assert_eq!(got, want, "SBOM Debian packages differ from dpkg-query -W");
    let licensed = packages(&spdx, "SPDXRef-deb-").filter(|p| p["licenseDeclared"] != "NOASSERTION").count();
    assert!(licensed >= 10, "only {licensed} Debian packages have a license from their copyright file");

    // Python: pip's view of the venv plus the system Python's (PyYAML from python3-yaml, an egg-info).
    let pip: Value = serde_json::from_str(&in_image(
        &state,
        &["/var/lib/kolla/venv/bin/python", "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
    ))
    .unwrap();
    let mut want: BTreeSet<(String, String)> = pip
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (normalize(d["name"].as_str().unwrap()), d["version"].as_str().unwrap().to_owned()))
        .collect();
    let system = in_image(
        &state,
        &[
            "python3",
            "-c",
            "import importlib.metadata as m\nfor d in m.distributions(): print(d.metadata['Name'], d.version)",
        ],
    );
    want.extend(system.lines().filter_map(|l| l.split_once(' ')).map(|(n, v)| (normalize(n), v.to_owned())));
    assert!(want.contains(&("pyyaml".into(), want.iter().find(|(n, _)| n == "pyyaml").unwrap().1.clone())));
    assert!(want.contains(&("typing-extensions".into(), "4.12.2".into())), "{want:?}");
    assert!(!want.iter().any(|(n, _)| n == "six"), "six was uninstalled: {want:?}");
    assert_eq!(spdx_python(&spdx), want, "SBOM Python distributions differ from pip list + importlib.metadata");

    // Other people's validators.
    let tools =
        venv::cached_venv("sbom-tools-venv", &["spdx-tools==0.8.3", "cyclonedx-python-lib[json-validation]==8.5.0"]);
    let file = tmp.path().join("sbom.spdx.json");
    std::fs::write(&file, &spdx_text).unwrap();
    run_ok(Command::new(tools.join("bin/pyspdxtools")).arg("-i").arg(&file));
    let cdx_text = run_ok(kolla_oci(&state).args(["sbom", IMAGE, "--format", "cyclonedx"]));
    let cdx: Value = serde_json::from_str(&cdx_text).unwrap();
    let components = cdx["components"].as_array().unwrap();
    let count =
        |prefix: &str| components.iter().filter(|c| c["purl"].as_str().is_some_and(|p| p.starts_with(prefix))).count();
    assert_eq!(
        (count("pkg:deb/"), count("pkg:pypi/")),
        (packages(&spdx, "SPDXRef-deb-").count(), packages(&spdx, "SPDXRef-pypi-").count())
    );
    let cdx_file = tmp.path().join("sbom.cdx.json");
    std::fs::write(&cdx_file, &cdx_text).unwrap();
    let validate = "import sys\nfrom cyclonedx.schema import SchemaVersion\n\
                    from cyclonedx.validation.json import JsonStrictValidator\n\
                    err = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\n\
                    sys.exit(f'invalid: {err}' if err else 0)\n";
    run_ok(Command::new(tools.join("bin/python")).args(["-c", validate]).arg(&cdx_file));
}
