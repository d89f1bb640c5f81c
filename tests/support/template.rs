//! Shared helpers of the `template_*` and `graph_*` tests: fixture trees, option parsing, the
//! kolla 23.0.0 reference installation, and output comparison; and of the tests that build upstream's
//! tree: what it needs on this network.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::Parser;
use kolla_oci::config::{BuildArgs, KollaConfig};

/// The kolla release the conformance tests compare against.
pub const KOLLA_VERSION: &str = "23.0.0";

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BuildArgs,
}

/// Parse `kolla-oci build` options.
pub fn args(argv: &[&str]) -> BuildArgs {
    Cli::try_parse_from(std::iter::once("build").chain(argv.iter().copied()))
        .unwrap_or_else(|e| panic!("bad test arguments {argv:?}: {e}"))
        .args
}

/// Resolve options with no config file except those named by `--config-file`.
pub fn config(argv: &[&str]) -> KollaConfig {
    let a = args(argv);
    if a.config_sources().is_empty() {
        KollaConfig::resolve(&a, &Default::default()).expect("resolve options")
    } else {
        KollaConfig::from_args(&a).expect("resolve options")
    }
}

/// Write `files` (relative path, content) under `root`.
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (rel, content) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }
}

/// A template whose parent is the image `parent` of the tree.
pub fn child_of(parent: &str) -> String {
    format!(
        "FROM {{{{ namespace }}}}/{{{{ image_prefix }}}}{parent}:{{{{ tag }}}}\nLABEL name=\"{{{{ image_name }}}}\"\n"
    )
}

/// A small Kolla-shaped tree: base → openstack-base → nova-base → nova-api / nova-compute,
/// openstack-base → glance-api, base → cron.
pub fn small_tree(root: &Path) {
    write_tree(
        root,
        &[
            ("base/Dockerfile.j2", "FROM {{ base_image }}:{{ base_distro_tag }}\nLABEL name=\"{{ image_name }}\"\n"),
            ("openstack-base/Dockerfile.j2", &child_of("base")),
            ("nova/nova-base/Dockerfile.j2", &child_of("openstack-base")),
            ("nova/nova-api/Dockerfile.j2", &child_of("nova-base")),
            ("nova/nova-compute/Dockerfile.j2", &child_of("nova-base")),
            ("glance/glance-api/Dockerfile.j2", &child_of("openstack-base")),
            ("cron/Dockerfile.j2", &child_of("base")),
            ("cron/extend_start.sh", "#!/bin/sh\n"),
        ],
    );
}

/// Run a command and return its output whatever the status.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Run a command; panic with its output unless it succeeds. Returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// `kolla-oci build` with a private store and HOME (no user config files).
pub fn kolla_oci_build(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kolla-oci"));
    cmd.env("HOME", home).env_remove("KOLLA_OCI_TEMPLATE_TREE").arg("--store").arg(home.join("store")).arg("build");
    cmd
}

/// Cargo's target directory (where the reference venv is cached).
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target/tmp has a parent").to_path_buf()
}

/// A Python venv at `target/<name>` with `packages` installed from PyPI, created once and reused (a
/// lock serializes test binaries; a marker naming the packages says it is complete and current). The
/// interpreter is `KOLLA_OCI_TEST_PYTHON`, else `python3.11`. Returns the venv directory.
pub fn cached_venv(name: &str, packages: &[&str]) -> PathBuf {
    let venv = target_dir().join(name);
    let marker = venv.join(".kolla-oci-complete");
    let lock_path = target_dir().join(format!("{name}.lock"));
    let lock = std::fs::File::create(&lock_path).expect("create venv lock file");
    lock.lock().expect("lock the venv");
    // The venv's own path too: its scripts name their interpreter by absolute path, so a moved target dir
    // holds a venv that no longer runs.
    let want = format!("{} {}", venv.display(), packages.join(" "));
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(want.as_str()) {
        let python = std::env::var("KOLLA_OCI_TEST_PYTHON").unwrap_or_else(|_| "python3.11".into());
        if venv.exists() {
            std::fs::remove_dir_all(&venv).expect("remove a partial venv");
        }
        let out = run(Command::new(&python).args(["-m", "venv"]).arg(&venv));
        assert!(
            out.status.success(),
            "cannot create the venv {name} with `{python} -m venv` (install python3.11 and python3-venv, see \
             tests/setup.sh): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        run_ok(
            Command::new(venv.join("bin/pip")).args(["install", "-q", "--disable-pip-version-check"]).args(packages),
        );
        std::fs::write(&marker, want).unwrap();
    }
    drop(lock);
    venv
}

/// The kolla 23.0.0 reference: a Python 3.11 venv with `kolla==23.0.0` and the `docker` SDK
/// (kolla-build refuses to start without it, even for `--template-only`), created once and
/// cached in `target/kolla-venv-23.0.0`. Returns the venv directory.
pub fn kolla_venv() -> PathBuf {
    cached_venv(&format!("kolla-venv-{KOLLA_VERSION}"), &[&format!("kolla=={KOLLA_VERSION}"), "docker"])
}

/// The template tree of the reference installation (`kolla/docker` inside site-packages).
pub fn kolla_tree(venv: &Path) -> PathBuf {
    let tree = venv.join("lib/python3.11/site-packages/kolla/docker");
    assert!(tree.join("base/Dockerfile.j2").is_file(), "no kolla template tree at {}", tree.display());
    tree
}

/// Every regular file under `root`, as sorted relative paths.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Compare every `Dockerfile` of two work dirs byte for byte, print `N identical, M different`
/// (and a diff of the first few), and fail on any difference, on a Dockerfile present on one
/// side only, or on any difference in the rest of the copied tree.
pub fn assert_same_output(reference: &Path, ours: &Path, what: &str) {
    let ref_files = files_under(reference);
    let our_files = files_under(ours);
    let dockerfiles: Vec<&String> = ref_files.iter().filter(|f| f.ends_with("/Dockerfile")).collect();
    assert!(dockerfiles.len() > 100, "{what}: kolla-build rendered only {} Dockerfiles", dockerfiles.len());
    let (mut same, mut different) = (0, Vec::new());
    for f in &dockerfiles {
        let a = std::fs::read(reference.join(f)).unwrap();
        match std::fs::read(ours.join(f)) {
            Ok(b) if a == b => same += 1,
            _ => different.push((*f).clone()),
        }
    }
    println!("{what}: {same} identical, {} different (of {} Dockerfiles)", different.len(), dockerfiles.len());
    for f in different.iter().take(3) {
        let out = run(Command::new("diff").arg("-u").arg(reference.join(f)).arg(ours.join(f)));
        println!("--- {f}\n{}", String::from_utf8_lossy(&out.stdout));
    }
    assert!(different.is_empty(), "{what}: {} Dockerfiles differ: {:?}", different.len(), different);
    let only_ref: Vec<&String> = ref_files.iter().filter(|f| !our_files.contains(f)).collect();
    let only_ours: Vec<&String> = our_files.iter().filter(|f| !ref_files.contains(f)).collect();
    assert!(
        only_ref.is_empty() && only_ours.is_empty(),
        "{what}: file sets differ: only in kolla-build's output {only_ref:?}, only in ours {only_ours:?}"
    );
    let changed: Vec<&String> = ref_files
        .iter()
        .filter(|f| std::fs::read(reference.join(f)).unwrap() != std::fs::read(ours.join(f)).unwrap())
        .collect();
    assert!(changed.is_empty(), "{what}: copied context files differ: {changed:?}");
}

/// Upstream's base template without the steps that reach hosts other than Debian's archive.
fn air_gapped_base(upstream: &str) -> String {
    // The extrepo step (Debian's OpenStack repositories from a third-party host).
    let start =
        upstream.find("RUN apt update \\\n && apt install -y --no-install-recommends extrepo").expect("extrepo step");
    let end = start + upstream[start..].find("apt clean\n").expect("end of the extrepo step") + "apt clean\n".len();
    let mut out = format!("{}{}", &upstream[..start], &upstream[end..]);
    // The third-party apt keys (a keyserver and vendors' sites): the block that fetches them, emptied.
    let block = "{%- block base_ubuntu_package_key_installation %}";
    let start = out.find(block).expect("apt key block");
    let end = start + out[start..].find("{% endblock %}").expect("end of the apt key block");
    out.replace_range(start + block.len()..end, "\n    ");
    assert!(!out.contains("extrepo enable") && !out.contains("gpg --keyserver") && !out.contains("curl {{ key.url }}"));
    out
}

/// What upstream kolla 23.0.0 needs to build `base` on this network, written under `dir`.
pub struct AirGapped {
    /// A `--docker-dir` whose `base/Dockerfile.j2` is upstream's through [`air_gapped_base`].
    pub overlay: PathBuf,
    /// A `CONTAINERS_REGISTRIES_CONF` naming a Docker Hub mirror that nothing answers, so that `FROM
    /// debian:trixie` is bootstrapped (as Docker Hub itself is not reachable here either).
    pub registries: PathBuf,
}

/// Write [`AirGapped`]'s files for the upstream `tree` under `dir`.
pub fn air_gapped(tree: &Path, dir: &Path) -> AirGapped {
    let overlay = dir.join("docker-dir");
    std::fs::create_dir_all(overlay.join("base")).unwrap();
    let base = std::fs::read_to_string(tree.join("base/Dockerfile.j2")).unwrap();
    std::fs::write(overlay.join("base/Dockerfile.j2"), air_gapped_base(&base)).unwrap();
    let unreachable = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let registries = dir.join("registries.conf");
    std::fs::write(
        &registries,
        format!(
            "[[registry]]\nprefix = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"127.0.0.1:{unreachable}\"\n"
        ),
    )
    .unwrap();
    AirGapped { overlay, registries }
}
