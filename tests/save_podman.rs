//! `kolla-oci save` output loads into a real client: `podman load` (private storage, vfs driver) of two
//! images sharing a base layer lists both under their names, with image ids equal to our config digests.

#[path = "support/store.rs"]
mod support;

use std::process::Command;

use serde_json::Value;
use support::{add_files, busybox_store, kolla_oci, make_image, require_tool, run_ok};

const BASE: &str = "kolla/base:2026.2";
const APP: &str = "kolla/keystone:2026.2";

#[test]
fn podman_loads_a_save_of_two_images_sharing_a_base() {
    let podman = require_tool("podman");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let (store, _, _) = busybox_store(state, BASE);
    let app_root = state.join("rootfs-app");
    add_files(&app_root, &[("etc/keystone/keystone.conf", "[DEFAULT]\n")]);
    make_image(&store, APP, &[&state.join("rootfs-base"), &app_root]);
    let archive = state.join("images.tar");
    run_ok(kolla_oci(state).args(["save", BASE, APP, "-o"]).arg(&archive));

    let podman = |args: &[&str]| {
        let mut cmd = Command::new(&podman);
        cmd.arg("--root")
            .arg(state.join("podman/root"))
            .arg("--runroot")
            .arg(state.join("podman/run"))
            .args(["--storage-driver", "vfs", "--events-backend", "none", "--cgroup-manager", "cgroupfs"])
            .args(args)
            .env("CONTAINERS_CONF", "/dev/null")
            .env("XDG_RUNTIME_DIR", state.join("podman/xdg"));
        run_ok(&mut cmd)
    };
    podman(&["load", "-i", archive.to_str().unwrap()]);
    let listed: Value = serde_json::from_str(&podman(&["images", "--format", "json"])).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:#?}");
    for tag in [BASE, APP] {
        let config = store.load_image(tag).unwrap().manifest.config.digest;
        let entry = listed
            .iter()
            .find(|i| i["Names"].as_array().unwrap().iter().any(|n| n == format!("localhost/{tag}").as_str()))
            .unwrap_or_else(|| panic!("{tag} not listed by podman: {listed:#?}"));
        assert_eq!(entry["Id"].as_str().unwrap(), config.hex(), "podman's id of {tag} is not our config digest");
    }
    // podman saw the shared base: the app's parent is the base image.
    let id = |tag: &str| store.load_image(tag).unwrap().manifest.config.digest.hex();
    let app = listed.iter().find(|i| i["Id"] == id(APP).as_str()).unwrap();
    assert_eq!(app["ParentId"].as_str().unwrap(), id(BASE));
}
