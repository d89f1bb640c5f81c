//! kolla-build 23.0.0's command line, against kolla-build itself (installed from PyPI in a cached venv,
//! as `template_conformance.rs` does): its negative boolean flags (`--nodocker-healthchecks`, …) and
//! abbreviated long options render the same Dockerfiles, and `--list-images` with Python regexes
//! (lookahead, lookbehind) and profiles selects the same images.

#[path = "support/template.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use support::{assert_same_output, kolla_oci_build, kolla_tree, kolla_venv, run, run_ok};

/// `kolla-build <args>` with an empty HOME (no user config file).
fn kolla_build(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(kolla_venv().join("bin/kolla-build"));
    cmd.env("HOME", home).args(args);
    cmd
}

/// Every negative form kolla-build documents, each undoing an earlier positive one or a default, plus
/// abbreviated options argparse completes; both tools render the upstream tree byte for byte alike.
#[test]
fn negative_flags_and_abbreviations_render_as_kolla_build_renders() {
    let tree = kolla_tree(&kolla_venv());
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let flags = [
        "--notemplate-only",
        "--template-only",
        "--nodocker-healthchecks",
        "--nouse-dumb",
        "--skip-parents",
        "--noskip-parents",
        "--noskip-existing",
        "--enable-unbuildable",
        "--noenable-unbuildable",
        "--base",
        "rocky",
        "--image-name-pre",
        "pfx-",
        "--work-dir",
    ];
    let (reference, ours) = (tmp.path().join("kolla"), tmp.path().join("ours"));
    run_ok(kolla_build(&home, &flags).arg(&reference));
    run_ok(kolla_oci_build(&home).args(flags).arg(&ours).arg("--template-tree").arg(&tree));
    assert_same_output(&reference.join("docker"), &ours.join("docker"), "kolla 23.0.0 rocky, negative flags");
    let base = std::fs::read_to_string(ours.join("docker/base/Dockerfile")).unwrap();
    assert!(!base.contains("dumb-init\", \"--single-child") && !base.contains("healthcheck_curl"), "{base}");
    assert!(!ours.join("docker/collectd").exists(), "--noenable-unbuildable after --enable-unbuildable wins");

    // The spelling kolla-build refuses is refused here too, and so is an ambiguous prefix (exit 2).
    for bad in [["--nodocker_healthchecks"], ["--list"]] {
        let theirs = run(&mut kolla_build(&home, &bad));
        let mine = run(kolla_oci_build(&home).args(bad).arg("--template-tree").arg(&tree));
        assert_eq!(theirs.status.code(), Some(2), "kolla-build {bad:?}");
        assert_eq!(mine.status.code(), Some(2), "kolla-oci {bad:?}: {}", String::from_utf8_lossy(&mine.stderr));
    }
    let mine = run(kolla_oci_build(&home).args(["--list", "--template-tree"]).arg(&tree));
    let err = String::from_utf8_lossy(&mine.stderr);
    assert!(err.contains("ambiguous option: --list could match --list-dependencies, --list-images"), "{err}");
}

/// The image names `--list-images` printed (`N : name`), sorted.
fn listed(stdout: &str) -> Vec<String> {
    let mut names: Vec<String> =
        stdout.lines().filter_map(|l| l.split_once(" : ").map(|(_, n)| n.trim().to_string())).collect();
    names.sort();
    names
}

/// Selections kolla-build makes with Python's `re`: lookahead and lookbehind (which Rust's `regex`
/// refuses), profiles from the defaults and from a config file, the regexes overriding the profile.
#[test]
fn list_images_selects_as_kolla_build_selects() {
    let tree = kolla_tree(&kolla_venv());
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let conf = tmp.path().join("kolla-build.conf");
    std::fs::write(&conf, "[profiles]\nmine = ^(?!nova)\\w+-conductor$,(?<=ovn-)nb-\n").unwrap();
    let conf = conf.to_str().unwrap();
    let cases: [&[&str]; 5] = [
        &["^(?!nova).*-api$"],
        &["(?<=nova-)(api|compute)$", "^cron"],
        &["--profile", "main", "-p", "infra"],
        &["--config-file", conf, "-p", "mine", "-p", "aux"],
        &["--config-file", conf, "-p", "mine", "(?<!x)keystone-ssh"],
    ];
    for args in cases {
        let common = [&["--base", "debian", "--list-im"][..], args].concat();
        let theirs = listed(&run_ok(&mut kolla_build(&home, &common)));
        let ours = listed(&run_ok(kolla_oci_build(&home).args(&common).arg("--template-tree").arg(&tree)));
        println!("{args:?}: kolla-build lists {}, kolla-oci {}", theirs.len(), ours.len());
        assert!(theirs.len() > 3, "{args:?} selects something: {theirs:?}");
        assert_eq!(ours, theirs, "{args:?}");
    }
}
