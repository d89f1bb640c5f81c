//! Registry authentication and trust: htpasswd (Basic) on the real `docker-registry`, credentials from
//! docker's `config.json`, from `--password-stdin` and from `login` (podman's auth file), Bearer tokens
//! covering mount sources, secrets that never reach the output even at `--log-level trace`; a registry
//! with a private CA (and client certificates) reached with `--cert-dir`, `certs.d` or `--tls-verify=false`;
//! an unreachable registry reported in one line.

#[path = "support/registry.rs"]
mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kolla_oci::registry::{self, Credential, RegistryError, RegistryOptions, Secret};
use kolla_oci::store::Store;
use support::{Proxy, TestCa, TestRegistry, make_image_set, skopeo_digest};

const USER: &str = "builder";
const PASSWORD: &str = "Corr3ct-Horse-Battery";
const WRONG: &str = "Wr0ng-Pa55word-Zebra";

/// Run `kolla-oci --store <dir> --log-level trace <args>` with a clean credential environment.
fn kolla(store_dir: &Path, docker_config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kolla-oci"));
    cmd.arg("--store").arg(store_dir).args(["--log-level", "trace"]).args(args);
    cmd.env("DOCKER_CONFIG", docker_config)
        .env("HOME", docker_config)
        .env("REGISTRY_AUTH_FILE", docker_config.join("auth.json"))
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

fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// `login` checks the password with the registry's token service, saves it where podman reads it (podman
/// sees the login), and `push` then needs no `--username`; `logout` forgets it.
#[test]
fn login_then_push_uses_the_saved_credentials() {
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    proxy.require_bearer(USER, PASSWORD);
    let state = tempfile::tempdir().unwrap();
    let store = Store::open(&state.path().join("oci")).unwrap();
    let images = make_image_set(&store, &["keystone"], 20_000);
    let home = tempfile::tempdir().unwrap();
    let auth_file = home.path().join("auth.json");
    let login = |password: &str| {
        kolla(state.path(), home.path(), &["login", "-u", USER, "--password-stdin", &proxy.addr()], Some(password))
    };

    let out = login(WRONG);
    assert!(!out.status.success(), "login with a wrong password succeeded");
    assert!(String::from_utf8_lossy(&out.stderr).contains("UNAUTHORIZED"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!auth_file.exists(), "a refused login must save nothing");
    assert_no_leak(&out, WRONG);

    let out = login(&format!("{PASSWORD}\n"));
    assert!(ok(&out, "login").contains("Login Succeeded"));
    assert_no_leak(&out, PASSWORD);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&auth_file).unwrap().permissions().mode() & 0o777, 0o600);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&auth_file).unwrap()).unwrap();
    assert_eq!(saved["auths"][proxy.addr()]["auth"], B64.encode(format!("{USER}:{PASSWORD}")));
    // podman reads the same file.
    let podman = Command::new("podman")
        .args(["login", "--get-login", &proxy.addr()])
        .env("REGISTRY_AUTH_FILE", &auth_file)
        .output()
        .expect("running podman (tests/setup.sh installs it)");
    assert_eq!(String::from_utf8_lossy(&podman.stdout).trim(), USER, "{}", String::from_utf8_lossy(&podman.stderr));

    let push = ["push", "--registry", &proxy.addr(), "--namespace", "login"];
    let out = kolla(state.path(), home.path(), &push, None);
    assert!(ok(&out, "push after login").contains("pushed 1 image(s)"));
    let target = format!("{}/login/keystone:test", proxy.addr());
    assert_eq!(skopeo_digest(&target, &[&format!("--creds={USER}:{PASSWORD}")]), images[0].manifest.digest.to_string());

    let out = kolla(state.path(), home.path(), &["logout", &proxy.addr()], None);
    assert!(ok(&out, "logout").contains("Removed login credentials"));
    let out = kolla(state.path(), home.path(), &push, None);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no credentials found"));
    assert!(!kolla(state.path(), home.path(), &["logout", &proxy.addr()], None).status.success());
}

/// A registry whose certificate a private CA signed: refused with a hint, then reached with `--cert-dir`,
/// with the CA in `certs.d` (`$HOME/.config/containers/certs.d/HOST:PORT/`), and with `--tls-verify=false`;
/// a registry demanding a client certificate gets the one `--cert-dir` holds.
#[test]
fn private_ca_registry_with_cert_dir_certs_d_or_no_verification() {
    let ca = TestCa::new();
    let reg = TestRegistry::start_tls(&ca, false);
    let state = tempfile::tempdir().unwrap();
    let store = Store::open(&state.path().join("oci")).unwrap();
    let images = make_image_set(&store, &["nova"], 20_000);
    let home = tempfile::tempdir().unwrap();
    let addr = reg.addr();
    let push = |extra: &[&str], ns: &str| {
        let mut args = vec!["push", "--registry", &addr, "--namespace", ns];
        args.extend(extra);
        kolla(state.path(), home.path(), &args, None)
    };

    // Verified TLS without the CA: the certificate is refused, and the message says what to do.
    let out = push(&["--tls-verify"], "none");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
    assert!(!out.status.success());
    assert!(error.contains("UnknownIssuer") && error.contains("--cert-dir") && error.contains("certs.d"), "{stderr}");
    assert_eq!(error.matches("UnknownIssuer").count(), 1, "the cause once: {error}");
    // A loopback registry without TLS material is spoken to in plain HTTP: the answer says it speaks TLS.
    let out = push(&[], "none");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("speaks TLS"));

    let cert_dir = home.path().join("certs");
    ca.write_ca_dir(&cert_dir);
    ok(&push(&["--cert-dir", cert_dir.to_str().unwrap()], "certdir"), "push --cert-dir");
    let ca_opt = format!("--cert-dir={}", cert_dir.display());
    let digest = |ns: &str| skopeo_digest(&format!("{}/{ns}/nova:test", reg.addr()), &[&ca_opt]);
    assert_eq!(digest("certdir"), images[0].manifest.digest.to_string());

    ca.write_ca_dir(&home.path().join(".config/containers/certs.d").join(reg.addr()));
    ok(&push(&[], "certsd"), "push with certs.d");
    assert_eq!(digest("certsd"), images[0].manifest.digest.to_string());

    ok(&push(&["--tls-verify=false"], "noverify"), "push --tls-verify=false");
    assert_eq!(digest("noverify"), images[0].manifest.digest.to_string());

    // Client certificates: `client.cert` + `client.key` in the directory.
    let mtls = TestRegistry::start_tls(&ca, true);
    let mtls_push = |dir: &Path| {
        let args = ["push", "--registry", &mtls.addr(), "--namespace", "mtls", "--cert-dir", dir.to_str().unwrap()];
        kolla(state.path(), home.path(), &args, None)
    };
    assert!(!mtls_push(&cert_dir).status.success(), "no client certificate, yet the registry took the push");
    for f in ["client.cert", "client.key"] {
        std::fs::copy(ca.dir.path().join(f), cert_dir.join(f)).unwrap();
    }
    ok(&mtls_push(&cert_dir), "push with a client certificate");
    // A key without its certificate is named.
    std::fs::rename(cert_dir.join("client.cert"), cert_dir.join("other.crt.bak")).unwrap();
    let out = mtls_push(&cert_dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("client.key") && stderr.contains("without its client certificate"),
        "{stderr}"
    );
}

/// Nothing listens: one error line naming the registry and the refused connection, at once, no retries.
#[test]
fn unreachable_registry_is_one_line_without_retries() {
    let port = support::free_port();
    let state = tempfile::tempdir().unwrap();
    let store = Store::open(&state.path().join("oci")).unwrap();
    make_image_set(&store, &["nova"], 1000);
    let home = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kolla-oci"))
        .arg("--store")
        .arg(state.path())
        .args(["push", "--registry", &format!("127.0.0.1:{port}")])
        .env("HOME", home.path())
        .env("DOCKER_CONFIG", home.path())
        .env("REGISTRY_AUTH_FILE", home.path().join("auth.json"))
        .env_remove("KOLLA_OCI_LOG")
        .output()
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("retrying"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(&format!("127.0.0.1:{port}")) && errors[0].contains("Connection refused"), "{stderr}");
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
}
