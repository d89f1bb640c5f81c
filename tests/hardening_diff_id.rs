//! Extracted layers are shared by diff_id (`layers/<diff_id>`) across every image of a store, so an image
//! whose config lies about a layer's diff_id must never get its content filed under that name. Here a
//! "liar" image carries its own layer but claims the diff_id of an honest image's layer: extraction refuses
//! it before adopting the directory, `fsck` reports it, and — through our proxy in front of a real
//! `docker-registry` — `pull` and a build `FROM` it refuse it, while the honest image keeps its layer.

#[path = "support/registry.rs"]
mod registry;

use std::path::Path;
use std::process::{Command, Output};

use kolla_oci::builder::{BuildError, Workspace};
use kolla_oci::store::{ImageConfig, RootFs, Store};
use registry::{FixtureImage, Proxy, TestRegistry, make_image_set, put_layer};

fn kolla(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kolla-oci"))
        .arg("--store")
        .arg(state)
        .args(args)
        .env("HOME", state)
        .env("DOCKER_CONFIG", state)
        .env_remove("KOLLA_OCI_LOG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A store with the honest image `kolla/honest:test` (two base layers + its own) and
/// `kolla/liar:test`: the first base layer plus a layer of its own that claims the honest image's own
/// layer's diff_id. Returns (honest, the liar's layer digest, the diff_id it claims).
fn honest_and_liar(store: &Store) -> (FixtureImage, layers::Digest, layers::Digest) {
    let honest = make_image_set(store, &["honest"], 1000).remove(0);
    let honest_config = store.load_image(&honest.tag).unwrap().config;
    let claimed = honest_config.rootfs.diff_ids[2];
    let (evil, _) = put_layer(store, &[("opt/honest/data.bin", b"planted".to_vec())]);
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs { typ: "layers".into(), diff_ids: vec![honest_config.rootfs.diff_ids[0], claimed] },
        ..ImageConfig::default()
    };
    let manifest = store.write_image(&config, &[honest.layers[0].clone(), evil.clone()]).unwrap();
    store.set_tag("kolla/liar:test", &manifest).unwrap();
    (honest, evil.digest, claimed)
}

#[test]
fn extraction_and_fsck_refuse_a_config_that_lies_about_a_diff_id() {
    let state = tempfile::tempdir().unwrap();
    let ws = Workspace::open(state.path()).unwrap();
    let (honest, evil, claimed) = honest_and_liar(ws.store());

    let liar = ws.store().load_image("kolla/liar:test").unwrap();
    match ws.lower_dirs(&liar) {
        Err(BuildError::DiffIdMismatch { layer, claimed: c, actual }) => {
            assert_eq!((layer, c), (evil, claimed));
            assert_ne!(actual, claimed);
        }
        other => panic!("the lying layer was extracted: {other:?}"),
    }
    assert!(!ws.layer_dir(&claimed).exists(), "the lying layer got the honest layer's name");

    let dirs = ws.lower_dirs(&ws.store().load_image(&honest.tag).unwrap()).unwrap();
    assert_eq!(dirs[0], ws.layer_dir(&claimed));
    assert_eq!(std::fs::read(dirs[0].join("opt/honest/data.bin")).unwrap().len(), 20_000);
    // Once the honest layer is there, the liar still cannot use it under the claimed name: extraction
    // is skipped for an existing dir, so the lie must be (and is) caught by pull and fsck.
    let out = kolla(state.path(), &["fsck"]);
    assert!(!out.status.success(), "fsck passed a lying config:\n{}", text(&out));
    let report = text(&out);
    assert!(report.contains(&evil.to_string()) && report.contains(&claimed.to_string()), "{report}");
    let problems = ws.store().fsck().unwrap().problems;
    assert_eq!(problems.len(), 1, "exactly the lie is reported: {problems:?}");

    ws.store().untag("kolla/liar:test").unwrap();
    let out = kolla(state.path(), &["fsck"]);
    assert!(out.status.success(), "fsck of the honest store:\n{}", text(&out));
}

#[test]
fn pull_and_build_refuse_a_lying_image_and_leave_the_honest_layer_alone() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    let src = tempfile::tempdir().unwrap();
    let (_, evil, claimed) = honest_and_liar(&Store::open(&src.path().join("oci")).unwrap());
    let addr = proxy.addr();
    let out = kolla(src.path(), &["push", "--registry", &addr, "--namespace", "src"]);
    assert!(out.status.success(), "push:\n{}", text(&out));

    // A store that already holds the honest image and its extracted layer.
    let state = tempfile::tempdir().unwrap();
    let honest = format!("{addr}/src/honest:test");
    let out = kolla(state.path(), &["pull", &honest]);
    assert!(out.status.success(), "pull honest:\n{}", text(&out));
    let ws = Workspace::open(state.path()).unwrap();
    let dirs = ws.lower_dirs(&ws.store().load_image(&honest).unwrap()).unwrap();
    let data = dirs[0].join("opt/honest/data.bin");
    let before = std::fs::read(&data).unwrap();

    let liar = format!("{addr}/src/liar:test");
    let out = kolla(state.path(), &["pull", &liar]);
    assert!(!out.status.success(), "a lying image was pulled:\n{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains(&evil.to_string()) && msg.contains("diff_id") && msg.contains(&claimed.to_string()), "{msg}");
    assert!(ws.store().resolve(&liar).unwrap().is_none(), "the lying image got a tag");

    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), format!("FROM {liar}\nLABEL poisoned=yes\n")).unwrap();
    let out = kolla(state.path(), &["build-file", "--tag", "kolla/poisoned:test", ctx.path().to_str().unwrap()]);
    assert!(!out.status.success(), "a build FROM a lying image succeeded:\n{}", text(&out));
    assert!(text(&out).contains("diff_id"), "{}", text(&out));

    assert_eq!(std::fs::read(&data).unwrap(), before, "the honest layer dir changed");
    let out = kolla(state.path(), &["fsck"]);
    assert!(out.status.success(), "fsck after the refusals:\n{}", text(&out));
}
