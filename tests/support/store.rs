//! Shared helpers of the `store_*` integration tests: external tools, a busybox image, child processes.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kolla_oci::store::{Descriptor, History, ImageConfig, Platform, RootFs, Store};
use layers::{Compression, Digest, TreeOptions};

/// Path of an external tool; a missing tool fails the test with a clear message (never a skip).
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("required tool `{name}` is not in PATH: install it (see tests/setup.sh)"))
}

/// Run a command; panic with its stderr unless it succeeds. Returns stdout.
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

/// Run a command and return its output whatever the status.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// The `kolla-oci` binary, with `--store` pointing at `state` (whose `oci/` is the layout).
pub fn kolla_oci(state: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kolla-oci"));
    cmd.arg("--store").arg(state).env("KOLLA_OCI_LOG", "warn");
    cmd
}

/// A rootfs with `/bin/busybox` (from busybox-static) and `bin/sh -> busybox`, plus `files`
/// (`path`, contents) under it.
pub fn busybox_rootfs(dir: &Path, files: &[(&str, &str)]) {
    let busybox = Path::new("/bin/busybox");
    assert!(busybox.is_file(), "/bin/busybox is missing: install busybox-static");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy(busybox, dir.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).unwrap();
    add_files(dir, files);
}

/// Write `files` (`path`, contents) under `dir`.
pub fn add_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, contents) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }
}

/// Turn `root` into a gzip layer blob with `layers::write_layer`; returns its descriptor and diff_id.
pub fn put_layer(store: &Store, root: &Path) -> (Descriptor, Digest) {
    let opts = TreeOptions { source_date_epoch: Some(1_700_000_000), overlay_upper: false, threads: Some(2) };
    let mut w = store.blob_writer().unwrap();
    let info = layers::write_layer(root, &opts, Compression::default(), &mut w).unwrap();
    let (digest, size) = w.commit(Some(&info.digest)).unwrap();
    assert_eq!((digest, size), (info.digest, info.size));
    (Descriptor::new(info.media_type, info.digest, info.size), info.diff_id)
}

/// A config for the host platform over `diff_ids`.
pub fn config_for(diff_ids: &[Digest]) -> ImageConfig {
    let host = Platform::host();
    let mut config = ImageConfig {
        architecture: host.architecture,
        os: host.os,
        variant: host.variant,
        created: Some("2024-01-02T03:04:05Z".into()),
        rootfs: RootFs { typ: "layers".into(), diff_ids: diff_ids.to_vec() },
        ..ImageConfig::default()
    };
    config.config.cmd = Some(vec!["/bin/sh".into()]);
    config.config.env = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()];
    config.history =
        diff_ids.iter().map(|d| History { created_by: Some(format!("layer {d}")), ..History::default() }).collect();
    config
}

/// Build a tagged image from `layer_roots` (base first); returns the manifest descriptor and the diff_ids.
pub fn make_image(store: &Store, tag: &str, layer_roots: &[&Path]) -> (Descriptor, Vec<Digest>) {
    let (descs, diff_ids): (Vec<Descriptor>, Vec<Digest>) = layer_roots.iter().map(|r| put_layer(store, r)).unzip();
    let desc = store.write_image(&config_for(&diff_ids), &descs).unwrap();
    store.set_tag(tag, &desc).unwrap();
    (desc, diff_ids)
}

/// The standard one-layer busybox image, tagged `tag`, in a new store at `<state>/oci`.
pub fn busybox_store(state: &Path, tag: &str) -> (Store, Descriptor, Vec<Digest>) {
    let store = Store::open(&state.join("oci")).unwrap();
    let root = state.join("rootfs-base");
    busybox_rootfs(&root, &[("etc/os-release", "ID=busybox\n")]);
    let (desc, diff_ids) = make_image(&store, tag, &[&root]);
    (store, desc, diff_ids)
}

/// The environment variable that turns a test binary run into a child helper (see [`spawn_child`]).
pub const CHILD_ENV: &str = "KOLLA_OCI_STORE_TEST_CHILD";

/// Re-run this test binary as a child process executing only test `test_name` with `CHILD_ENV=role`.
/// The test itself checks `child_role()` first and plays the child's part when it is set.
pub fn spawn_child(test_name: &str, role: &str, envs: &[(&str, &Path)]) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test_name, "--exact", "--nocapture", "--test-threads=1"]).env(CHILD_ENV, role);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::piped());
    cmd.spawn().expect("spawning the test binary as a child")
}

/// The child role of this process, if it was started by [`spawn_child`].
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Wait until `path` exists (a child's signal), failing after 30 s.
pub fn wait_for_file(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {}", path.display());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Names of the regular files directly in `dir`, sorted.
pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}
