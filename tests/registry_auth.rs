//! Registry authentication: htpasswd (Basic) on the real `docker-registry`, credentials from docker's
//! `config.json` and from `--password-stdin`, Bearer tokens covering mount sources, and secrets that never
//! reach the output even at `--log-level trace`.

#[path = "support/registry.rs"]
mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kolla_oci::registry::{self, Credential, RegistryError, RegistryOptions, Secret};
use kolla_oci::store::Store;
use support::{Proxy, TestRegistry, make_image_set, skopeo_digest};

const USER: &str = "builder";
const PASSWORD: &str = "Corr3ct-Horse-Battery";
const WRONG: &str = "Wr0ng-Pa55word-Zebra";

/// Run `kolla-oci --store <dir> --log-level trace <args>` with a clean credential environment.
fn kolla(store_dir: &Path, docker_config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kolla-oci"));
    cmd.arg("--store").arg(store_dir).args(["--log-level", "trace"]).args(args);
    cmd.env("DOCKER_CONFIG", docker_config)
        .env("HOME", docker_config)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("KOLLA_OCI_LOG")
        .env_remove("RUST_LOG");
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("running kolla-oci");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn write_docker_config(dir: &Path, registry: &str, user: &str, password: &str) {
    let auth = B64.encode(format!("{user}:{password}"));
    let json = serde_json::json!({ "auths": { registry: { "auth": auth } } });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&json).unwrap()).unwrap();
}

/// Neither the secret nor its Basic-auth encoding appears in the process output.
fn assert_no_leak(out: &Output, secret: &str) {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for needle in [secret.to_string(), B64.encode(format!("{USER}:{secret}"))] {
        assert!(!text.contains(&needle), "secret {needle:?} leaked into the output:\n{text}");
    }
}

#[test]
fn htpasswd_registry_with_docker_config_and_password_stdin() {
    let reg = TestRegistry::start_with_htpasswd(USER, PASSWORD);
    let state = tempfile::tempdir().unwrap();
    let store = Store::open(&state.path().join("oci")).unwrap();
    let images = make_image_set(&store, &["keystone", "glance"], 100_000);
    let docker_config = tempfile::tempdir().unwrap();
    let push_args = ["push", "--registry", &reg.addr(), "--namespace", "auth"];

    // Right credentials from config.json.
    write_docker_config(docker_config.path(), &reg.addr(), USER, PASSWORD);
    let out = kolla(state.path(), docker_config.path(), &push_args, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "push failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("pushed 2 image(s): 6 blob(s) uploaded"), "{stdout}");
    assert!(stdout.contains("2 mounted"), "{stdout}");
    assert_no_leak(&out, PASSWORD);
    let creds = format!("--creds={USER}:{PASSWORD}");
    for img in &images {
        let name =
            format!("{}/auth/{}:test", reg.addr(), img.tag.trim_start_matches("kolla/").trim_end_matches(":test"));
        assert_eq!(skopeo_digest(&name, &[&creds]), img.manifest.digest.to_string());
    }

    // A wrong password from config.json: a clear 401 error, and the password nowhere in the output.
    write_docker_config(docker_config.path(), &reg.addr(), USER, WRONG);
    let out = kolla(state.path(), docker_config.path(), &push_args, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "push with a wrong password succeeded");
    assert!(stderr.contains("UNAUTHORIZED") && stderr.contains("401"), "{stderr}");
    assert_no_leak(&out, WRONG);

    // --username + --password-stdin override config.json.
    let mut args = push_args.to_vec();
    args.extend(["--username", USER, "--password-stdin"]);
    let out = kolla(state.path(), docker_config.path(), &args, Some(&format!("{PASSWORD}\n")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "push failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("0 blob(s) uploaded (0 bytes), 0 mounted, 8 already present"), "{stdout}");
    assert_no_leak(&out, PASSWORD);
    let out = kolla(state.path(), docker_config.path(), &args, Some(WRONG));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("UNAUTHORIZED"));
    assert_no_leak(&out, WRONG);

    // No credentials at all: the error says where credentials are looked for.
    std::fs::remove_file(docker_config.path().join("config.json")).unwrap();
    let out = kolla(state.path(), docker_config.path(), &push_args, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no credentials found"), "{stderr}");

    // Pull with the right credentials works too.
    write_docker_config(docker_config.path(), &reg.addr(), USER, PASSWORD);
    let other = tempfile::tempdir().unwrap();
    let name = format!("{}/auth/glance:test", reg.addr());
    let out = kolla(other.path(), docker_config.path(), &["pull", &name], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&images[1].manifest.digest.to_string()));
    assert_no_leak(&out, PASSWORD);
}

#[test]
fn bearer_token_covers_mount_source() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    proxy.require_bearer(USER, PASSWORD);
    let state = tempfile::tempdir().unwrap();
    let store = Store::open(&state.path().join("oci")).unwrap();
    let images = make_image_set(&store, &["nova", "cinder", "neutron"], 50_000);
    let pushes: Vec<_> = images
        .iter()
        .map(|i| (i.tag.clone(), registry::push_target(&i.tag, Some(&proxy.addr()), Some("tok"), None).unwrap()))
        .collect();
    let opts = |password: &str| RegistryOptions {
        credential: Some(Credential::Basic { username: USER.into(), password: Secret::new(password) }),
        threads: 3,
        ..RegistryOptions::default()
    };

    let report = registry::push(&store, &pushes, &opts(PASSWORD)).unwrap();
    assert_eq!((report.uploaded_blobs, report.mounted_blobs, report.manifests), (8, 4, 3));
    let mounts = proxy.mounts();
    assert_eq!(mounts.len(), 4);
    assert!(mounts.iter().all(|m| m.3 == 201), "{mounts:?}");
    // The mounting requests carried one token for the target (pull,push) and the source (pull).
    let requests = proxy.token_requests();
    for (repo, _, from, _) in &mounts {
        let mut want = vec![format!("repository:{from}:pull"), format!("repository:{repo}:pull,push")];
        want.sort();
        assert!(
            requests.iter().any(|r| {
                let mut r = r.clone();
                r.sort();
                r == want
            }),
            "no token asked for {want:?}: {requests:?}"
        );
    }
    // Tokens are cached per scope set: far fewer token requests than API requests.
    let distinct: std::collections::BTreeSet<_> = requests
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.sort();
            r
        })
        .collect();
    assert_eq!(requests.len(), distinct.len(), "a scope set was fetched twice: {requests:?}");
    for (img, (_, t)) in images.iter().zip(&pushes) {
        let pulled = tempfile::tempdir().unwrap();
        let s = Store::open(pulled.path()).unwrap();
        assert_eq!(registry::pull(&s, t, None, &opts(PASSWORD)).unwrap().digest, img.manifest.digest);
    }

    // A wrong password: UNAUTHORIZED from the token service, and the error text carries no secret.
    let err = registry::push(&store, &pushes, &opts(WRONG)).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { status: 401, .. }), "{err}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("bad credentials"), "{text}");
    assert!(!text.contains(WRONG) && !text.contains(&B64.encode(format!("{USER}:{WRONG}"))), "{text}");
}
