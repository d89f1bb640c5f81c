//! Secrets at the most verbose log level: `kolla-oci push` through a Bearer token flow (password on
//! stdin), and `kolla-oci build --push` with credentials from docker's `config.json` (HTTP Basic against
//! an htpasswd registry, and Bearer through our token-service proxy) with `--logs-dir` and
//! `--summary-json-file`. The password, its Basic encoding and every token handed out must appear
//! nowhere: not in stdout, stderr, the log files, the summary, or any file of the state directory.

#[path = "support/hardening.rs"]
mod hardening;
#[path = "support/registry.rs"]
mod registry;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hardening::{Bench, run_bounded};
use registry::{Proxy, TestRegistry, skopeo_digest};

const USER: &str = "builder";

/// Secrets unique to this test run, so that a hit cannot be a coincidence.
struct Secrets {
    password: String,
    token_salt: String,
}

impl Secrets {
    fn new(bench: &Bench) -> Secrets {
        let id = bench.dir.file_name().unwrap().to_string_lossy().replace("kolla-oci-hard-", "");
        Secrets { password: format!("Pa55-{id}-Zebra"), token_salt: format!("-secret-token-{id}") }
    }

    /// Everything that must not leak.
    fn needles(&self) -> Vec<String> {
        vec![self.password.clone(), B64.encode(format!("{USER}:{}", self.password)), self.token_salt.clone()]
    }

    /// Panic if any secret occurs in `text` (found in `what`).
    fn assert_absent(&self, text: &str, what: &str) {
        for n in self.needles() {
            assert!(!text.contains(&n), "secret {n:?} leaked into {what}:\n{text}");
        }
    }

    /// Every file under `dir` but `except`.
    fn assert_absent_in_tree(&self, dir: &Path, except: Option<&Path>) {
        for entry in walkdir::WalkDir::new(dir).into_iter().filter_map(Result::ok) {
            if entry.file_type().is_file() && Some(entry.path()) != except {
                let bytes = std::fs::read(entry.path()).unwrap();
                let text = String::from_utf8_lossy(&bytes);
                for n in self.needles() {
                    assert!(!text.contains(&n), "secret {n:?} leaked into {}", entry.path().display());
                }
            }
        }
    }
}

/// docker's `config.json` with credentials for `registry`, in the bench's `$DOCKER_CONFIG`.
fn write_docker_config(bench: &Bench, registry: &str, password: &str) {
    let dir = bench.dir.join("home/.docker");
    std::fs::create_dir_all(&dir).unwrap();
    let auth = B64.encode(format!("{USER}:{password}"));
    let json = serde_json::json!({ "auths": { registry: { "auth": auth } } });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&json).unwrap()).unwrap();
}

#[test]
fn push_with_a_bearer_token_flow_at_trace_leaks_nothing() {
    let bench = Bench::new();
    let secrets = Secrets::new(&bench);
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    proxy.require_bearer_salted(USER, &secrets.password, &secrets.token_salt);
    let args = bench.build_all_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_bounded(&mut bench.kolla("seed", &args), Duration::from_secs(120)).ok();

    let addr = proxy.addr();
    let push = ["--log-level", "trace", "push", "--registry", &addr, "--namespace", "sec"];
    let mut cmd: Command = bench.kolla("seed", &push);
    cmd.args(["--username", USER, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{}\n", secrets.password).as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "push failed:\n{stdout}\n{stderr}");
    assert!(stderr.contains("TRACE"), "trace logging was not on:\n{stderr}");
    assert!(!proxy.issued_tokens().is_empty(), "no token was handed out: the Bearer flow did not run");
    secrets.assert_absent(&stdout, "stdout");
    secrets.assert_absent(&stderr, "stderr");
    secrets.assert_absent_in_tree(&bench.state("seed"), None);
    for (tag, digest) in bench.tree_digests("seed") {
        let name = tag.strip_prefix("kolla/").unwrap();
        assert_eq!(skopeo_digest(&format!("{}/sec/{name}", reg.addr()), &[]), digest, "{tag}");
    }

    // A wrong password: refused, and neither password leaks into the error.
    let wrong = format!("{}-wrong", secrets.password);
    let mut cmd: Command = bench.kolla("seed", &push);
    cmd.args(["--username", USER, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(wrong.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "push with a wrong password succeeded");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("401") || text.contains("UNAUTHORIZED"), "{text}");
    secrets.assert_absent(&text, "the output of a refused push");
    assert!(!text.contains(&B64.encode(format!("{USER}:{wrong}"))), "{text}");
}

/// `build --all --push` at trace with `--logs-dir` and `--summary-json-file`, credentials from
/// `config.json` for `registry`; everything it writes is searched for the secrets.
fn build_push_leaks_nothing(bench: &Bench, secrets: &Secrets, registry: &str, check_registry: &str, what: &str) {
    write_docker_config(bench, registry, &secrets.password);
    // One more image that prints its whole RUN environment into the build log.
    let extra = bench.dir.join(format!("dd-{what}"));
    std::fs::create_dir_all(extra.join("svc/svc-env")).unwrap();
    std::fs::write(
        extra.join("svc/svc-env/Dockerfile.j2"),
        "FROM {{ namespace }}/{{ image_prefix }}svc-base:{{ tag }}\nRUN env && busybox cat /proc/self/environ\n",
    )
    .unwrap();
    let state = format!("state-{what}");
    bench.fresh_state(&state);
    let logs = bench.dir.join(format!("logs-{what}"));
    let summary = bench.dir.join(format!("summary-{what}.json"));
    let mut args = bench.build_all_args();
    args.extend(["--docker-dir", extra.to_str().unwrap(), "--push", "--registry", registry].map(String::from));
    args.extend(
        ["--logs-dir", logs.to_str().unwrap(), "--summary-json-file", summary.to_str().unwrap()].map(String::from),
    );
    args.extend(["--log-level", "trace"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_bounded(&mut bench.kolla(&state, &args), Duration::from_secs(120)).ok();
    assert!(run.stderr.contains("TRACE"), "{what}: trace logging was not on");
    assert!(run.stderr.contains("pushed 5 images"), "{what}: {}", run.stderr);
    secrets.assert_absent(&run.stdout, "stdout");
    secrets.assert_absent(&run.stderr, "stderr");
    let log_files = hardening::list(&logs);
    assert!(log_files.iter().any(|f| f.contains("svc-env")), "{what}: no build log: {log_files:?}");
    let env_log =
        std::fs::read_to_string(logs.join(log_files.iter().find(|f| f.contains("svc-env")).unwrap())).unwrap();
    assert!(env_log.contains("PATH="), "{what}: the RUN environment is in its log: {env_log}");
    secrets.assert_absent_in_tree(&logs, None);
    secrets.assert_absent(&std::fs::read_to_string(&summary).unwrap(), "the summary");
    secrets.assert_absent_in_tree(&bench.state(&state), None);
    // Only docker's own config.json, which we wrote, holds the credentials under $HOME.
    let config = bench.dir.join("home/.docker/config.json");
    secrets.assert_absent_in_tree(&bench.dir.join("home"), Some(&config));
    let creds = format!("--creds={USER}:{}", secrets.password);
    let extra_args: &[&str] = if check_registry == registry { &[&creds] } else { &[] };
    let tags = hardening::tag_digests(&bench.state(&state).join("oci"));
    let pushed: Vec<_> = tags.iter().filter_map(|(t, d)| Some((t.strip_prefix(&format!("{registry}/"))?, d))).collect();
    assert_eq!(pushed.len(), 5, "{what}: {tags:?}");
    for (rest, digest) in pushed {
        assert_eq!(&skopeo_digest(&format!("{check_registry}/{rest}"), extra_args), digest, "{what}: {rest}");
    }
}

#[test]
fn build_push_with_basic_auth_at_trace_leaks_nothing() {
    let bench = Bench::new();
    let secrets = Secrets::new(&bench);
    let reg = TestRegistry::start_with_htpasswd(USER, &secrets.password);
    build_push_leaks_nothing(&bench, &secrets, &reg.addr(), &reg.addr(), "basic");
}

#[test]
fn build_push_with_a_bearer_token_flow_at_trace_leaks_nothing() {
    let bench = Bench::new();
    let secrets = Secrets::new(&bench);
    let reg = TestRegistry::start();
    let proxy = Proxy::start(reg.port);
    proxy.require_bearer_salted(USER, &secrets.password, &secrets.token_salt);
    build_push_leaks_nothing(&bench, &secrets, &proxy.addr(), &reg.addr(), "bearer");
    assert!(!proxy.issued_tokens().is_empty(), "no token was handed out: the Bearer flow did not run");
}
