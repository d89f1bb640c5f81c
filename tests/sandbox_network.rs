//! The network of RUN steps (`--network`), on a real Debian image bootstrapped from the archive:
//!
//! * default (`private`): a RUN has its own network namespace with outbound access through slirp4netns —
//!   `apt-get update` reaches Debian's archive and `pip download` reaches PyPI — but a service the test
//!   runs on the host's 127.0.0.1 is out of reach, both at 127.0.0.1 and through slirp4netns' host
//!   alias 10.0.2.2 (the server sees no request);
//! * `host`: the same RUN reaches that service (TCP connect and HTTP GET);
//! * `none`: the loopback, apt-get and pip RUNs fail, and kolla-oci's error shows the RUN's own message;
//! * the mode is not part of the step cache key: a step built with `host` is a cache hit with `private`;
//! * a host whose /etc/resolv.conf names a loopback resolver (systemd-resolved, dnsmasq): a private RUN
//!   resolves through slirp4netns' forwarder, which reaches that resolver (a busybox root, run as root
//!   in a mount namespace where /etc/resolv.conf names a relay the test runs on 127.x.y.z:53).

#[path = "support/http.rs"]
mod http;
#[path = "support/sandbox.rs"]
mod sandbox;
#[path = "support/store.rs"]
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::{kolla_oci, run, run_ok};

/// The base of every build here: Debian with pip, installed by a RUN in the default network mode.
const BASE: &str = "net-base:1";

/// Builds `dockerfile` as `tag` with `extra` options; `Ok(stdout)` or `Err(stderr)`.
fn build(state: &Path, dir: &Path, tag: &str, extra: &[&str], dockerfile: &str) -> Result<String, String> {
    let ctx = dir.join(tag.replace(':', "-"));
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let out = run(kolla_oci(state).args(["build-file", ctx.to_str().unwrap(), "-t", tag]).args(extra));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if out.status.success() { Ok(text(&out.stdout)) } else { Err(text(&out.stderr)) }
}

fn ok(result: Result<String, String>, what: &str) -> String {
    result.unwrap_or_else(|stderr| panic!("{what} failed:\n{stderr}"))
}

fn fails(result: Result<String, String>, what: &str, wanted: &[&str]) {
    let stderr = match result {
        Ok(out) => panic!("{what} succeeded but should fail: {out}"),
        Err(e) => e,
    };
    assert!(stderr.contains("returned a non-zero code"), "{what}: not a failed RUN:\n{stderr}");
    assert!(wanted.iter().any(|w| stderr.contains(w)), "{what}: none of {wanted:?} in the error:\n{stderr}");
}

#[test]
fn run_network_is_private_by_default_host_on_request_and_absent_with_none() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, state) = (tmp.path(), tmp.path().join("state"));

    // Debian's archive from the default (private) network: the base image's own RUN.
    ok(
        build(
            &state,
            dir,
            BASE,
            &[],
            "FROM debian:bookworm\nENV DEBIAN_FRONTEND=noninteractive\n\
             RUN grep -qx 'nameserver 10.0.2.3' /etc/resolv.conf \
                 && apt-get update && apt-get install -y --no-install-recommends python3-pip \
                 && rm -rf /var/lib/apt/lists/*\n",
        ),
        "apt-get update + install with the default network",
    );
    // PyPI from the default network.
    let pip = "RUN pip download --no-deps --disable-pip-version-check -d /tmp/dl six && ls /tmp/dl | grep -q '^six-'\n";
    ok(build(&state, dir, "pip:1", &[], &format!("FROM {BASE}\n{pip}")), "pip download with the default network");

    // A service on the host's loopback.
    let server = http::FileServer::start(BTreeMap::from([("secret".to_string(), b"host-only".to_vec())]));
    let url = server.url("secret");
    let port = url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().to_owned();
    let probe = |host: &str| {
        format!(
            "FROM {BASE}\nRUN python3 -c \"import socket, urllib.request as u; \
             socket.create_connection(('{host}', {port}), timeout=10).close(); \
             body = u.build_opener(u.ProxyHandler({{}})).open('http://{host}:{port}/secret', timeout=10).read(); \
             print('GOT', body.decode())\"\n"
        )
    };
    fails(
        build(&state, dir, "loop:private", &[], &probe("127.0.0.1")),
        "host loopback from the default network",
        &["ConnectionRefusedError"],
    );
    fails(
        build(&state, dir, "alias:private", &[], &probe("10.0.2.2")),
        "slirp4netns' host alias 10.0.2.2 from the default network",
        &["Network is unreachable", "ConnectionRefusedError", "timed out"],
    );
    assert!(server.hits().is_empty(), "a RUN in the private network reached the host: {:?}", server.hits());
    ok(build(&state, dir, "loop:host", &["--network", "host"], &probe("127.0.0.1")), "host loopback with host");
    let gets = || server.hits().iter().filter(|h| h.path == "secret" && h.status == 200).count();
    assert_eq!(gets(), 1, "the --network host RUN's GET: {:?}", server.hits());
    let seen = server.hits().len();

    // No network: the RUN's own messages reach kolla-oci's error output. (--no-cache: the probe and pip
    // steps are cached from above, and the network mode is not part of the key.)
    let none = ["--network", "none", "--no-cache"];
    fails(
        build(&state, dir, "loop:none", &none, &probe("127.0.0.1")),
        "host loopback with none",
        &["ConnectionRefusedError"],
    );
    fails(
        build(&state, dir, "apt:none", &none, &format!("FROM {BASE}\nRUN apt-get update --error-on=any\n")),
        "apt-get update with none",
        &["Temporary failure resolving 'deb.debian.org'"],
    );
    fails(
        build(&state, dir, "pip:none", &none, &format!("FROM {BASE}\n{pip}")),
        "pip download with none",
        &["Temporary failure in name resolution", "Failed to establish a new connection"],
    );
    assert_eq!(server.hits().len(), seen, "a RUN without network reached the host: {:?}", server.hits());

    // Same layers whatever the mode: a step built with `host` is a cache hit with `private`.
    let stamp = format!("FROM {BASE}\nRUN date +%s%N > /stamp\n");
    let first = ok(build(&state, dir, "stamp:1", &["--network", "host"], &stamp), "stamp with host");
    let second = ok(build(&state, dir, "stamp:2", &[], &stamp), "stamp with the default network");
    assert_eq!(first, second, "the network mode changed the step cache key");
    let listing = run_ok(kolla_oci(&state).arg("images"));
    assert!(listing.contains("stamp:2"), "{listing}");
}

/// The first nameserver of the host's /etc/resolv.conf.
fn host_nameserver() -> String {
    let conf = fs::read_to_string("/etc/resolv.conf").expect("reading /etc/resolv.conf");
    conf.lines()
        .find_map(|l| l.strip_prefix("nameserver").map(|a| a.trim().to_owned()))
        .expect("no nameserver in /etc/resolv.conf")
}

/// A DNS relay on `addr`:53 to the host's resolver; counts the answers it relayed.
fn dns_relay(addr: &str) -> Arc<AtomicUsize> {
    let sock = UdpSocket::bind((addr, 53)).unwrap_or_else(|e| panic!("binding {addr}:53: {e}"));
    let upstream = (host_nameserver(), 53);
    let relayed = Arc::new(AtomicUsize::new(0));
    let count = relayed.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let up = UdpSocket::bind("0.0.0.0:0").unwrap();
            up.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            let mut answer = [0u8; 4096];
            if up.send_to(&buf[..n], (upstream.0.as_str(), upstream.1)).is_ok()
                && let Ok(m) = up.recv(&mut answer)
                && sock.send_to(&answer[..m], from).is_ok()
            {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    relayed
}

#[test]
fn private_run_resolves_through_the_forwarder_when_the_host_resolver_is_on_loopback() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (a mount namespace over /etc/resolv.conf, a resolver on port 53), as CI runs it"
    );
    let addr = format!("127.53.{}.1", std::process::id() % 250 + 1);
    let relayed = dns_relay(&addr);
    let f = sandbox::Fixture::new();
    let resolv = f.path().join("resolv.conf");
    fs::write(&resolv, format!("nameserver {addr}\n")).unwrap();
    let spec = f.spec("cat /etc/resolv.conf; nslookup deb.debian.org");
    let spec_file = f.path().join("spec.json");
    fs::write(&spec_file, serde_json::to_vec(&spec).unwrap()).unwrap();
    let out = run(Command::new("unshare")
        .args(["--mount", "sh", "-c"])
        .arg(format!("mount --bind {} /etc/resolv.conf && exec {}", resolv.display(), sandbox::kolla_oci().display()))
        .env(kolla_oci::sandbox::SELFTEST_ENV, &spec_file));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the private RUN could not resolve:\n{stdout}\n{stderr}");
    assert!(stdout.starts_with("nameserver 10.0.2.3\n"), "{stdout}");
    assert!(stdout.contains("Name:") && stdout.contains("deb.debian.org"), "{stdout}");
    assert!(relayed.load(Ordering::SeqCst) > 0, "the host's loopback resolver saw no query: {stdout}");
}
