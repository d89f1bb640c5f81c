//! Conformance with kolla-build 23.0.0: `kolla-build --template-only` (installed from PyPI in a
//! cached venv) and `kolla-oci build --template-only` render the same installed template tree,
//! and every Dockerfile (and every copied context file) must be byte-identical. Both run with
//! the same environment (templates see `env`, e.g. `env.http_proxy`) and an empty HOME, so no
//! user config file is read by either.

#[path = "support/template.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use support::{assert_same_output, kolla_oci_build, kolla_tree, kolla_venv, run_ok};

/// Render with both tools into `<tmp>/kolla` and `<tmp>/ours` and compare; both get `--base <base>`
/// and `extra`, nothing else, so every other option takes each tool's default.
fn compare(tmp: &Path, base: &str, extra: &[&str], what: &str) {
    let venv = kolla_venv();
    let tree = kolla_tree(&venv);
    let home = tmp.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let reference = tmp.join("kolla");
    let ours = tmp.join("ours");

    let mut kolla = Command::new(venv.join("bin/kolla-build"));
    kolla.env("HOME", &home).args(["--template-only", "--base", base, "--work-dir"]).arg(&reference).args(extra);
    run_ok(&mut kolla);

    let mut ko = kolla_oci_build(&home);
    ko.args(["--template-only", "--base", base, "--template-tree"]).arg(&tree).arg("--work-dir").arg(&ours).args(extra);
    run_ok(&mut ko);

    assert_same_output(&reference.join("docker"), &ours.join("docker"), what);
}

/// With only `--base`, every default (base image and tag, tag, release, branches) is kolla-build's.
#[test]
fn upstream_tree_renders_identically_with_kolla_defaults() {
    for base in ["debian", "ubuntu", "rocky"] {
        let tmp = tempfile::tempdir().unwrap();
        compare(tmp.path(), base, &[], &format!("kolla 23.0.0 {base}, defaults"));
        let base_df = std::fs::read_to_string(tmp.path().join("ours/docker/base/Dockerfile")).unwrap();
        let want = match base {
            "debian" => "FROM debian:trixie\n",
            "ubuntu" => "FROM ubuntu:24.04\n",
            _ => "FROM quay.io/rockylinux/rockylinux:10\n",
        };
        assert!(base_df.starts_with(want), "{base}: {}", base_df.lines().next().unwrap_or_default());
    }
}

/// Two override files: the first used verbatim, the second appended without its `extends`.
/// They replace the common `footer` block (145 leaf images, using a macro and the
/// `customizable` filter), `base_header`, `<image>_header` blocks (with `super()`), an
/// `<image>_footer` block, and set `_append`, `_remove` and `_override` lists.
const OVERRIDE_ONE: &str = r#"{% extends parent_template %}

{# a footer for every leaf image #}
{% block footer %}
LABEL kolla-oci.test="footer of {{ image_name }}"
{{ macros.install_packages(['curl', 'jq'] | customizable('footer_packages')) }}
{% endblock %}

{% block base_header %}
ENV KOLLA_OCI_TEST_HEADER=1
{% endblock %}

{% block nova_compute_header %}
{{ super() }}
RUN echo "nova-compute header"
{% endblock %}

{% block keystone_header -%}
RUN true
{%- endblock %}

{% set horizon_packages_append = ['vim-tiny', 'git'] %}
{% set nova_compute_packages_remove = ['qemu-block-extra', 'not-there'] %}
{% set keystone_packages_override = ['apache2'] %}
{% set base_apt_packages_append = ['less'] %}
{% set nova_api_footer_packages_append = ['nova-extra'] %}
"#;

const OVERRIDE_TWO: &str = r#"{% extends parent_template %}
{% block ironic_conductor_footer %}
RUN echo "second override file" {{ namespace }}/{{ image_prefix }}x:{{ tag }}
{% endblock %}
{% set cron_packages_append = ['anacron'] %}
"#;

#[test]
fn template_overrides_render_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("overrides-one.j2");
    let two = tmp.path().join("overrides-two.j2");
    std::fs::write(&one, OVERRIDE_ONE).unwrap();
    std::fs::write(&two, OVERRIDE_TWO).unwrap();
    let (one_s, two_s) = (one.to_str().unwrap(), two.to_str().unwrap());
    compare(
        tmp.path(),
        "debian",
        &["--template-override", one_s, "--template-override", two_s],
        "kolla 23.0.0 debian + 2 template overrides",
    );
    // The overrides really took effect (not just equally ignored by both tools).
    let docker = tmp.path().join("ours/docker");
    let read = |rel: &str| std::fs::read_to_string(docker.join(rel).join("Dockerfile")).unwrap();
    assert!(read("base").contains("ENV KOLLA_OCI_TEST_HEADER=1"));
    assert!(read("base").contains("--no-install-recommends apt-utils") && read("base").contains(" patch less "));
    assert!(read("horizon").contains("vim-tiny git"));
    assert!(read("nova/nova-api").contains("curl jq nova-extra"));
    assert!(read("nova/nova-compute").contains("RUN echo \"nova-compute header\""));
    assert!(!read("nova/nova-compute").contains("qemu-block-extra"));
    assert!(read("keystone/keystone").contains("--no-install-recommends apache2 &&"));
    assert!(read("ironic/ironic-conductor").contains("\"second override file\" kolla/x:2026.2-debian-trixie"));
    assert!(read("cron").contains("anacron"));
    let footers = walkdir::WalkDir::new(&docker)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() == "Dockerfile")
        .filter(|e| std::fs::read_to_string(e.path()).unwrap().contains("LABEL kolla-oci.test=\"footer of "))
        .count();
    assert_eq!(footers, 145, "leaf images with the footer block");
}

/// Registry, namespace, prefix and tag change every FROM line and the graph; a config file
/// adds pip options (ARG lines after FROM), users and rpm setup; rocky exercises the rpm
/// repository code and the unbuildable matrix (removed directories).
#[test]
fn options_and_rocky_render_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("kolla-build.conf");
    std::fs::write(
        &conf,
        "[DEFAULT]\npip_index_url = http://pypi.local/simple\n\
         rpm_setup_config = http://x/a.repo,/tmp/b.repo,c.rpm\n\
         [foo-user]\nuid = 50000\ngid = 50001\n[hacluster-user]\ngroup = hagroup\n",
    )
    .unwrap();
    let venv = kolla_venv();
    let tree = kolla_tree(&venv);
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let common = [
        "--config-file",
        conf.to_str().unwrap(),
        "--template-only",
        "--base",
        "rocky",
        "--registry",
        "127.0.0.1:4000",
        "--namespace",
        "myns",
        "--image-name-prefix",
        "pfx-",
        "--tag",
        "t1",
        "--work-dir",
    ];
    let reference = tmp.path().join("kolla");
    let ours = tmp.path().join("ours");
    run_ok(Command::new(venv.join("bin/kolla-build")).env("HOME", &home).args(common).arg(&reference));
    run_ok(kolla_oci_build(&home).args(common).arg(&ours).arg("--template-tree").arg(&tree));
    assert_same_output(&reference.join("docker"), &ours.join("docker"), "kolla 23.0.0 rocky + options");
    let nova_api = std::fs::read_to_string(ours.join("docker/nova/nova-api/Dockerfile")).unwrap();
    assert!(nova_api.starts_with("FROM 127.0.0.1:4000/myns/pfx-nova-base:t1\nARG PIP_INDEX_URL\n"), "{nova_api}");
    assert!(!ours.join("docker/collectd").exists(), "unbuildable on rocky: removed like kolla-build does");
}

/// kolla's aarch64 rendering (`base_arch`, `debian_arch`, the per-arch package lists and unbuildable
/// matrix) with `--base-arch aarch64`, and the same through `--platform linux/arm64` on both tools.
#[test]
fn aarch64_renders_identically() {
    for extra in [&["--base-arch", "aarch64"][..], &["--base-arch", "aarch64", "--platform", "linux/arm64"][..]] {
        let tmp = tempfile::tempdir().unwrap();
        compare(tmp.path(), "debian", extra, &format!("kolla 23.0.0 debian {extra:?}"));
        let base_df = std::fs::read_to_string(tmp.path().join("ours/docker/base/Dockerfile")).unwrap();
        assert!(base_df.contains("aarch64") || base_df.contains("arm64"), "rendered for arm64: {base_df}");
    }
}
