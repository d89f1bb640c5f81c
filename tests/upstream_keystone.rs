//! Upstream kolla 23.0.0's keystone, end to end: its own template tree (installed from PyPI) built
//! rootless by kolla-oci — base → openstack-base → keystone-base → keystone — with nothing but kolla's own
//! mechanisms for what this network needs:
//!
//! * a `-D` folder whose `base/Dockerfile.j2` is upstream's with only the steps that reach hosts other
//!   than Debian's archive removed (the extrepo repository, the third-party apt keys: see
//!   `support/template.rs`, `air_gapped`);
//! * `[openstack-base] type = local`: the openstack/requirements files kolla downloads from
//!   tarballs.opendev.org (`tests/data/openstack-requirements`);
//! * `[keystone-base] type = local`: keystone 30.0.0's sdist, fetched by `pip download`.
//!
//! `FROM debian:trixie` is bootstrapped (the registries.conf mirror named for Docker Hub is not
//! reachable, nor is Docker Hub) and laid out as the official image, so upstream's apt steps print no
//! "configured multiple times" warning.
//!
//! Then the keystone image runs under upstream's `kolla_start` with a kolla-ansible-style `config.json`,
//! and answers `GET /v3` and a password token request.

#[path = "support/keystone.rs"]
mod keystone;
#[path = "support/template.rs"]
mod template;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use keystone::{KeystoneImage, assert_keystone_answers};
use template::{AirGapped, air_gapped, kolla_tree, kolla_venv, run_ok, target_dir};

const KEYSTONE_VERSION: &str = "30.0.0";
const TAG: &str = "2026.2-debian-trixie";

/// keystone's sdist from PyPI, downloaded once into `target/`.
fn keystone_sdist(venv: &Path) -> PathBuf {
    let dir = target_dir().join("keystone-sdist");
    let sdist = dir.join(format!("keystone-{KEYSTONE_VERSION}.tar.gz"));
    if !sdist.is_file() {
        run_ok(
            Command::new(venv.join("bin/pip"))
                .args(["download", "-q", "--no-deps", "--no-binary", ":all:", "-d"])
                .arg(&dir)
                .arg(format!("keystone=={KEYSTONE_VERSION}")),
        );
    }
    assert!(sdist.is_file(), "pip download gave no {}", sdist.display());
    sdist
}

#[test]
fn upstream_keystone_chain_builds_rootless_and_issues_a_token() {
    let venv = kolla_venv();
    let tree = kolla_tree(&venv);
    let tmp = tempfile::Builder::new().prefix("kolla-oci-upstream-").tempdir_in("/tmp").unwrap();
    let dir = tmp.path();

    let AirGapped { overlay, registries } = air_gapped(&tree, dir);

    let requirements = dir.join("requirements");
    fs::create_dir_all(&requirements).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/openstack-requirements");
    for f in ["upper-constraints.txt", "global-requirements.txt"] {
        fs::copy(data.join(f), requirements.join(f)).unwrap();
    }
    let sdist = keystone_sdist(&venv);
    let conf = dir.join("kolla-build.conf");
    fs::write(
        &conf,
        format!(
            "[openstack-base]\ntype = local\nlocation = {}\n[keystone-base]\ntype = local\nlocation = {}\n",
            requirements.display(),
            sdist.display()
        ),
    )
    .unwrap();

    let store = dir.join("state");
    let kolla = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kolla-oci"));
        c.env("KOLLA_OCI_STORE", &store).env("HOME", dir).env_remove("KOLLA_OCI_TEMPLATE_TREE");
        c.env("CONTAINERS_REGISTRIES_CONF", &registries);
        c
    };
    let summary = dir.join("summary.json");
    let build = || {
        let out = kolla()
            .args(["build", "--base", "debian", "--template-tree"])
            .arg(&tree)
            .arg("--docker-dir")
            .arg(&overlay)
            .arg("--config-file")
            .arg(&conf)
            .arg("--summary-json-file")
            .arg(&summary)
            .args(["--logs-dir"])
            .arg(dir.join("logs"))
            .arg("^keystone$")
            .output()
            .unwrap();
        let s: serde_json::Value = serde_json::from_str(&fs::read_to_string(&summary).unwrap_or_default())
            .unwrap_or_else(|e| panic!("no summary ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        assert!(out.status.success(), "build failed: {s}\n{}", String::from_utf8_lossy(&out.stderr));
        (s, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (cold, stderr) = build();
    assert!(stderr.contains("bootstrapping debian:trixie"), "{stderr}");
    let base_log = fs::read_to_string(dir.join("logs/base.log")).unwrap();
    assert!(base_log.contains("apt-get") && base_log.contains("Reading package lists"), "{base_log}");
    assert!(!base_log.contains("configured multiple times"), "apt warned about its sources:\n{base_log}");
    let mut built: Vec<&str> = cold["built"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    built.sort();
    assert_eq!(built, ["base", "keystone", "keystone-base", "openstack-base"]);

    // The sources are where upstream's templates put them.
    let image = format!("kolla/keystone:{TAG}");
    let ls = run_ok(kolla().args(["run", "--entrypoint", "", &image, "--", "ls", "/requirements/", "/keystone/"]));
    assert!(ls.contains("upper-constraints.txt") && ls.contains("setup.cfg"), "{ls}");

    // A rebuild builds nothing.
    let (again, _) = build();
    assert_eq!(again["layers_built"], 0, "{again}");

    let img = KeystoneImage {
        image: &image,
        uwsgi_extra: "uid = keystone\ngid = keystone",
        manage_as: "sudo -H -u keystone ",
    };
    assert_keystone_answers(kolla(), &img, dir);
}
