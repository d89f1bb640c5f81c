//! Test support for the registry client: Debian's real `docker-registry` on a free loopback port with its
//! own config in a temp dir, and a counting HTTP/1.1 proxy in front of it (per-request method, path,
//! status and body bytes; optionally corrupting one blob's bytes on GET, and injecting faults: error
//! statuses with `Retry-After`, connection resets mid-upload, slow answers, throttled uploads, stalled
//! downloads, upload sessions and blob redirects pointing at another listener; and optionally playing an
//! OCI 1.1 registry's referrers API, which Debian's docker-registry 2.8 lacks).
#![allow(dead_code)] // each test file uses a different part of this helper

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A running `docker-registry` serving plain http on 127.0.0.1.
pub struct TestRegistry {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    /// Its temp dir: `config.yml`, `data/` (storage), `registry.log`, optional `htpasswd`.
    pub dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Start an anonymous registry.
    pub fn start() -> TestRegistry {
        Self::start_inner(None, None)
    }

    /// Start a registry requiring HTTP Basic auth with one bcrypt htpasswd user.
    pub fn start_with_htpasswd(user: &str, password: &str) -> TestRegistry {
        Self::start_inner(Some((user, password)), None)
    }

    /// Start an anonymous registry serving HTTPS only, with the server certificate of `ca`; with
    /// `client_certs`, it also demands a client certificate that `ca` signed.
    pub fn start_tls(ca: &TestCa, client_certs: bool) -> TestRegistry {
        Self::start_inner(None, Some((ca, client_certs)))
    }

    fn start_inner(auth: Option<(&str, &str)>, tls: Option<(&TestCa, bool)>) -> TestRegistry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: install Debian's docker-registry package (apt-get install docker-registry)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let auth_section = match auth {
            Some((user, password)) => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("running htpasswd (Debian package apache2-utils)");
                assert!(out.status.success(), "htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, &out.stdout).unwrap();
                format!("auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n", path.display())
            }
            None => String::new(),
        };
        let tls_section = match tls {
            Some((ca, client_certs)) => {
                let d = ca.dir.path();
                let mut t = format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    d.join("server.crt").display(),
                    d.join("server.key").display()
                );
                if client_certs {
                    t.push_str(&format!("    clientcas:\n      - {}\n", d.join("ca.crt").display()));
                }
                t
            }
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: kolla-oci-test-secret\n{tls_section}\
             {auth_section}",
            data = data.display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let mut reg = TestRegistry { child, port, dir };
        reg.wait_ready(tls.is_some());
        reg
    }

    fn wait_ready(&mut self, tls: bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited with {status}; log:\n{}", self.log_text());
            }
            if tls {
                if self.log_text().contains(", tls") && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
            } else if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.1 401") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "docker-registry did not come up; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the registry logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The storage root.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private certificate authority made with `openssl` for the test, with a server certificate for
/// 127.0.0.1 (`server.crt`, `server.key`) and a client certificate (`client.cert`, `client.key`).
pub struct TestCa {
    /// `ca.crt`, `ca.key` and the certificates it signed.
    pub dir: tempfile::TempDir,
}

impl TestCa {
    /// Make the CA and its certificates (P-256 keys, valid for a day).
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(d).output().expect("running openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        fn new_key(key: &str) -> [&str; 7] {
            ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key]
        }
        let mut ca = vec!["req", "-x509", "-out", "ca.crt", "-days", "1", "-subj", "/CN=kolla-oci test CA"];
        ca.extend(new_key("ca.key"));
        ca.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(&ca);
        for (name, ext) in [
            ("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"),
            ("client", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"),
        ] {
            std::fs::write(d.join(format!("{name}.ext")), ext).unwrap();
            let (key, csr, crt, ext) =
                (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
            let subject = format!("/CN={name}");
            let mut req = vec!["req", "-out", &csr, "-subj", &subject];
            req.extend(new_key(&key));
            openssl(&req);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "1",
                "-extfile",
                &ext,
            ]);
        }
        std::fs::copy(d.join("client.crt"), d.join("client.cert")).unwrap();
        TestCa { dir }
    }

    /// A directory laid out as podman's `certs.d/<host:port>/`: the CA as `ca.crt` (and nothing else).
    pub fn write_ca_dir(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::copy(self.dir.path().join("ca.crt"), dir.join("ca.crt")).unwrap();
    }
}

/// A port that was free a moment ago (bind to :0, read, release).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One proxied request.
#[derive(Clone, Debug)]
pub struct Event {
    /// `GET`, `PUT`, …
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Raw query string (may be empty).
    pub query: String,
    /// Upstream's final status.
    pub status: u16,
    /// Decoded request body bytes.
    pub request_bytes: u64,
    /// Decoded response body bytes.
    pub response_bytes: u64,
    /// Whether the request carried an `Authorization` header.
    pub authorized: bool,
}

impl Event {
    /// A percent-decoded query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        query_param(&self.query, name)
    }
}

/// The percent-decoded value of `name` in a URL query string.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

/// What the proxy saw: the requests answered, and how many are being answered right now.
#[derive(Default)]
struct Log {
    events: Mutex<Vec<Event>>,
    inflight: std::sync::atomic::AtomicUsize,
}

/// Counts a request as being answered until dropped (after its event is recorded, or on any way out).
struct InFlight<'a>(&'a Log);

impl<'a> InFlight<'a> {
    fn enter(log: &'a Log) -> InFlight<'a> {
        log.inflight.fetch_add(1, Ordering::SeqCst);
        InFlight(log)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A counting HTTP/1.1 proxy on 127.0.0.1 in front of `upstream`.
pub struct Proxy {
    /// Its port.
    pub port: u16,
    log: Arc<Log>,
    corrupt: Arc<Mutex<Option<String>>>,
    bearer: Arc<Mutex<Option<Bearer>>>,
    faults: Arc<Mutex<Faults>>,
    stop: Arc<AtomicBool>,
}

/// Injected failures: the next `count` requests with this method get `status` (with `Retry-After: 0`
/// unless [`Proxy::set_retry_after`] says otherwise). The other knobs are set by the `Proxy` methods that
/// name them.
#[derive(Default)]
struct Faults {
    method: String,
    status: u16,
    count: usize,
    /// `Retry-After` seconds of injected failures.
    retry_after: u64,
    /// Request bodies are relayed upstream at this many bytes per second.
    throttle: Option<u64>,
    /// The next `reset_count` uploads (PUT/PATCH with a body) are cut after `reset_after` body bytes.
    reset_after: u64,
    reset_count: usize,
    /// The next `delay_count` upstream answers are held back this long.
    delay: Duration,
    delay_count: usize,
    /// The next `stall_count` blob downloads (200 answers to `GET …/blobs/<digest>`) longer than
    /// `stall_after` bytes send their headers and `stall_after` body bytes, then nothing.
    stall_after: u64,
    stall_count: usize,
    /// Upload sessions (`Location` of answers under `/blobs/uploads/`) are moved to this port.
    uploads_to: Option<u16>,
    /// Blob downloads are answered with a 307 to the same path on this port.
    blobs_to: Option<u16>,
    /// The referrers API, played by the proxy: entries by `<name>@<subject digest>`, recorded from the
    /// manifests with a `subject` put through it.
    referrers: Option<BTreeMap<String, Vec<serde_json::Value>>>,
    /// Repositories no push may write to: every POST, PUT and PATCH under `/v2/<name>/` is answered
    /// `403 DENIED`, as a registry answers a user without push rights there.
    denied: Vec<String>,
}

/// Token-auth mode of the proxy: it plays the registry's token service (`/token`) and demands a Bearer
/// token with the right scopes on every `/v2/` request, as Docker Hub or Harbor do.
#[derive(Default)]
struct Bearer {
    user: String,
    password: String,
    /// token → granted scopes
    tokens: BTreeMap<String, Vec<String>>,
    /// Appended to every token handed out (so tests can search their output for it).
    salt: String,
    /// scope sets asked for, in order
    requests: Vec<Vec<String>>,
}

/// The scopes a distribution API request needs.
fn required_scopes(method: &str, path: &str, query: &str) -> Vec<String> {
    let Some(rest) = path.strip_prefix("/v2/") else { return Vec::new() };
    let name = ["/blobs/", "/manifests/", "/tags/"].iter().find_map(|m| rest.split_once(m).map(|(n, _)| n));
    let Some(name) = name else { return Vec::new() };
    let action = if method == "GET" || method == "HEAD" { "pull" } else { "pull,push" };
    let mut scopes = vec![format!("repository:{name}:{action}")];
    if let (Some(_), Some(from)) = (query_param(query, "mount"), query_param(query, "from")) {
        scopes.push(format!("repository:{from}:pull"));
    }
    scopes
}

/// Does a granted scope list cover `need` (`repository:n:pull,push` needs both actions)?
fn covers(granted: &[String], need: &str) -> bool {
    let (res, actions) = need.rsplit_once(':').unwrap();
    actions.split(',').all(|a| {
        granted.iter().any(|g| g.rsplit_once(':').is_some_and(|(gr, ga)| gr == res && ga.split(',').any(|x| x == a)))
    })
}

impl Proxy {
    /// Start proxying to `127.0.0.1:upstream_port`.
    pub fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Log::default());
        let corrupt = Arc::new(Mutex::new(None));
        let bearer: Arc<Mutex<Option<Bearer>>> = Arc::new(Mutex::new(None));
        let faults = Arc::new(Mutex::new(Faults::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ev, co, be, fa, st) = (log.clone(), corrupt.clone(), bearer.clone(), faults.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (ev, co, be, fa) = (ev.clone(), co.clone(), be.clone(), fa.clone());
                std::thread::spawn(move || {
                    let _ = serve_connection(conn, port, upstream_port, &ev, &co, &be, &fa);
                });
            }
        });
        Proxy { port, log, corrupt, bearer, faults, stop }
    }

    /// Refuse every push into repository `name` (`ns/image`) with `403 DENIED`.
    pub fn deny_pushes_to(&self, name: &str) {
        self.faults.lock().unwrap().denied.push(name.to_string());
    }

    /// Answer the next `count` requests of `method` with `status` and `Retry-After: 0`, without
    /// forwarding them.
    pub fn fail_next(&self, method: &str, status: u16, count: usize) {
        let mut f = self.faults.lock().unwrap();
        (f.method, f.status, f.count) = (method.into(), status, count);
    }

    /// The `Retry-After` seconds sent with the failures of [`Proxy::fail_next`] (default 0).
    pub fn set_retry_after(&self, secs: u64) {
        self.faults.lock().unwrap().retry_after = secs;
    }

    /// Relay request bodies upstream at `bytes_per_sec` (None: full speed).
    pub fn throttle_request_bodies(&self, bytes_per_sec: Option<u64>) {
        self.faults.lock().unwrap().throttle = bytes_per_sec;
    }

    /// Cut the connection (both sides) of the next `count` uploads — PUT or PATCH requests with a body —
    /// once `after_bytes` of the body have gone upstream: a connection reset mid-upload. Each is recorded
    /// as an event with status 0.
    pub fn reset_uploads(&self, after_bytes: u64, count: usize) {
        let mut f = self.faults.lock().unwrap();
        (f.reset_after, f.reset_count) = (after_bytes, count);
    }

    /// Hold each of the next `count` upstream answers back for `delay` before relaying it.
    pub fn delay_answers(&self, delay: Duration, count: usize) {
        let mut f = self.faults.lock().unwrap();
        (f.delay, f.delay_count) = (delay, count);
    }

    /// Answer the next `count` blob downloads longer than `after_bytes` with their headers and `after_bytes`
    /// of the body, then nothing (the connection stays open for 20 s): a registry whose transfer stalls.
    pub fn stall_blob_downloads(&self, after_bytes: u64, count: usize) {
        let mut f = self.faults.lock().unwrap();
        (f.stall_after, f.stall_count) = (after_bytes, count);
    }

    /// Point upload sessions (`Location` answers under `/blobs/uploads/`) at `port` on 127.0.0.1 (None: as
    /// upstream says).
    pub fn send_uploads_to(&self, port: Option<u16>) {
        self.faults.lock().unwrap().uploads_to = port;
    }

    /// Answer blob downloads with `307` to the same path on `port` of 127.0.0.1 (None: serve them).
    pub fn redirect_blob_downloads_to(&self, port: Option<u16>) {
        self.faults.lock().unwrap().blobs_to = port;
    }

    /// Play an OCI 1.1 registry: answer `GET /v2/<name>/referrers/<digest>` from the manifests with a
    /// `subject` put through the proxy from now on, and answer their `PUT` with `OCI-Subject`.
    pub fn emulate_referrers_api(&self) {
        self.faults.lock().unwrap().referrers = Some(BTreeMap::new());
    }

    /// Like [`Proxy::require_bearer`], with `salt` appended to every token handed out.
    pub fn require_bearer_salted(&self, user: &str, password: &str, salt: &str) {
        *self.bearer.lock().unwrap() =
            Some(Bearer { user: user.into(), password: password.into(), salt: salt.into(), ..Bearer::default() });
    }

    /// Every token handed out so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.bearer.lock().unwrap().as_ref().map(|b| b.tokens.keys().cloned().collect()).unwrap_or_default()
    }

    /// Demand Bearer tokens from now on; `/token` hands them out for Basic `user:password`.
    pub fn require_bearer(&self, user: &str, password: &str) {
        *self.bearer.lock().unwrap() =
            Some(Bearer { user: user.into(), password: password.into(), ..Bearer::default() });
    }

    /// The scope sets requested from `/token` so far.
    pub fn token_requests(&self) -> Vec<Vec<String>> {
        self.bearer.lock().unwrap().as_ref().map(|b| b.requests.clone()).unwrap_or_default()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request seen so far.
    /// Requests still being answered are waited for (up to 5 s): an answer reaches the client a moment
    /// before its event is recorded.
    pub fn events(&self) -> Vec<Event> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.log.inflight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.log.events.lock().unwrap().clone()
    }

    /// Forget the requests seen so far.
    pub fn clear(&self) {
        self.log.events.lock().unwrap().clear();
    }

    /// Flip the first byte of 200 answers to `GET …/blobs/<digest>` (None: stop corrupting).
    pub fn corrupt_blob(&self, digest: Option<String>) {
        *self.corrupt.lock().unwrap() = digest;
    }

    /// Bytes received per blob digest by completed uploads: the PATCH bodies of a session plus the
    /// body of its final `PUT …?digest=` (201).
    pub fn uploaded_bytes(&self) -> BTreeMap<String, u64> {
        let mut per_session: BTreeMap<String, u64> = BTreeMap::new();
        let mut out = BTreeMap::new();
        for e in self.events() {
            let Some((_, uuid)) = e.path.split_once("/blobs/uploads/") else { continue };
            if uuid.is_empty() {
                continue;
            }
            match e.method.as_str() {
                "PATCH" => *per_session.entry(uuid.to_string()).or_default() += e.request_bytes,
                "PUT" if e.status == 201 => {
                    let total = per_session.remove(uuid).unwrap_or(0) + e.request_bytes;
                    if let Some(d) = e.param("digest") {
                        *out.entry(d).or_default() += total;
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Cross-repository mount requests: (target repository, digest, from, status).
    pub fn mounts(&self) -> Vec<(String, String, String, u16)> {
        self.events()
            .into_iter()
            .filter(|e| e.method == "POST")
            .filter_map(|e| {
                let d = e.param("mount")?;
                let repo = e.path.strip_prefix("/v2/")?.strip_suffix("/blobs/uploads/")?.to_string();
                Some((repo, d, e.param("from").unwrap_or_default(), e.status))
            })
            .collect()
    }

    /// Total request body bytes sent through the proxy.
    pub fn total_request_bytes(&self) -> u64 {
        self.events().iter().map(|e| e.request_bytes).sum()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request or response head: first line and headers (names lowercased for lookup).
struct Head {
    first: String,
    raw: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    fn chunked(&self) -> bool {
        self.get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
    fn content_length(&self) -> Option<u64> {
        self.get("content-length").and_then(|v| v.trim().parse().ok())
    }
    fn closes(&self) -> bool {
        self.get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut raw = Vec::new();
    let mut first = String::new();
    let mut headers = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return if raw.is_empty() { Ok(None) } else { Err(std::io::ErrorKind::UnexpectedEof.into()) };
        }
        raw.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if text.is_empty() {
            if first.is_empty() {
                continue; // tolerate stray CRLF between messages
            }
            return Ok(Some(Head { first, raw, headers }));
        }
        if first.is_empty() {
            first = text;
        } else if let Some((n, v)) = text.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
}

/// Copy a body framed by `head` from `r` to `w`; returns decoded body bytes. `corrupt` flips its first byte.
fn relay_body(
    r: &mut impl BufRead,
    w: &mut impl Write,
    head: &Head,
    no_body: bool,
    mut corrupt: bool,
) -> std::io::Result<(u64, bool)> {
    let copy = |r: &mut dyn Read, w: &mut dyn Write, n: Option<u64>, corrupt: &mut bool| -> std::io::Result<u64> {
        let mut buf = vec![0u8; 64 << 10];
        let mut done = 0u64;
        loop {
            let want = match n {
                Some(n) if done >= n => break,
                Some(n) => (n - done).min(buf.len() as u64) as usize,
                None => buf.len(),
            };
            let got = r.read(&mut buf[..want])?;
            if got == 0 {
                if n.is_some() {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                break;
            }
            if *corrupt {
                buf[0] ^= 0xff;
                *corrupt = false;
            }
            w.write_all(&buf[..got])?;
            done += got as u64;
        }
        Ok(done)
    };
    if no_body {
        return Ok((0, false));
    }
    if head.chunked() {
        let mut total = 0;
        loop {
            let mut line = Vec::new();
            r.read_until(b'\n', &mut line)?;
            w.write_all(&line)?;
            let text = String::from_utf8_lossy(&line);
            let size = u64::from_str_radix(text.trim().split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size line {text:?}")))?;
            if size == 0 {
                // trailers until an empty line
                loop {
                    let mut t = Vec::new();
                    r.read_until(b'\n', &mut t)?;
                    w.write_all(&t)?;
                    if t == b"\r\n" || t == b"\n" || t.is_empty() {
                        break;
                    }
                }
                return Ok((total, false));
            }
            total += copy(r, w, Some(size), &mut corrupt)?;
            let mut crlf = Vec::new();
            r.read_until(b'\n', &mut crlf)?;
            w.write_all(&crlf)?;
        }
    }
    match head.content_length() {
        Some(n) => Ok((copy(r, w, Some(n), &mut corrupt)?, false)),
        // A response without length or chunking runs until the connection closes.
        None if head.first.starts_with("HTTP/") => Ok((copy(r, w, None, &mut corrupt)?, true)),
        None => Ok((0, false)),
    }
}

/// Answer a request locally (token service or a 401), after draining its body.
fn answer_locally(
    client_r: &mut impl BufRead,
    client_w: &mut impl Write,
    req: &Head,
    status: &str,
    extra_headers: &str,
    body: &str,
) -> std::io::Result<u64> {
    let (n, _) = relay_body(client_r, &mut std::io::sink(), req, false, false)?;
    // A HEAD answer announces its length but carries no body.
    let sent = if req.first.starts_with("HEAD ") { "" } else { body };
    write!(
        client_w,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra_headers}\r\n{sent}",
        body.len()
    )?;
    client_w.flush()?;
    Ok(n)
}

/// Token-auth handling: `Some(status)` when the request was answered here (token or 401).
#[allow(clippy::too_many_arguments)]
fn bearer_gate(
    bearer: &Mutex<Option<Bearer>>,
    own_port: u16,
    req: &Head,
    method: &str,
    path: &str,
    query: &str,
    client_r: &mut impl BufRead,
    client_w: &mut impl Write,
) -> std::io::Result<Option<(u16, u64)>> {
    use base64::Engine as _;
    let mut guard = bearer.lock().unwrap();
    let Some(b) = guard.as_mut() else { return Ok(None) };
    if path == "/token" {
        let scopes: Vec<String> =
            query.split('&').filter_map(|kv| kv.strip_prefix("scope=")).map(percent_decode).collect();
        let expected =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", b.user, b.password)));
        if req.get("authorization") != Some(expected.as_str())
            || query_param(query, "service").as_deref() != Some("test-registry")
        {
            let n = answer_locally(
                client_r,
                client_w,
                req,
                "401 Unauthorized",
                "",
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
            )?;
            return Ok(Some((401, n)));
        }
        let token = format!("tok{}{}", b.tokens.len(), b.salt);
        b.tokens.insert(token.clone(), scopes.clone());
        b.requests.push(scopes);
        let n = answer_locally(
            client_r,
            client_w,
            req,
            "200 OK",
            "",
            &format!(r#"{{"token":"{token}","expires_in":300}}"#),
        )?;
        return Ok(Some((200, n)));
    }
    let granted =
        req.get("authorization").and_then(|a| a.strip_prefix("Bearer ")).and_then(|t| b.tokens.get(t)).cloned();
    let need = required_scopes(method, path, query);
    let ok = match &granted {
        Some(g) => need.iter().all(|n| covers(g, n)),
        None => false,
    };
    if ok {
        return Ok(None);
    }
    let scope_param = need.first().map(|s| format!(",scope=\"{s}\"")).unwrap_or_default();
    let challenge = format!(
        "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{own_port}/token\",service=\"test-registry\"{scope_param}\r\n"
    );
    let n = answer_locally(
        client_r,
        client_w,
        req,
        "401 Unauthorized",
        &challenge,
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
    )?;
    Ok(Some((401, n)))
}

/// The referrers API answer for `GET /v2/<name>/referrers/<digest>[?artifactType=…]`, when emulated.
fn referrers_answer(faults: &Mutex<Faults>, path: &str, query: &str) -> Option<(String, String)> {
    let f = faults.lock().unwrap();
    let known = f.referrers.as_ref()?;
    let (name, subject) = path.strip_prefix("/v2/")?.split_once("/referrers/")?;
    let wanted = query_param(query, "artifactType");
    let entries: Vec<&serde_json::Value> = known
        .get(&format!("{name}@{subject}"))
        .into_iter()
        .flatten()
        .filter(|e| wanted.as_deref().is_none_or(|t| e["artifactType"] == t))
        .collect();
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let filters = if wanted.is_some() { "OCI-Filters-Applied: artifactType\r\n" } else { "" };
    Some((body.to_string(), filters.to_string()))
}

/// Record a manifest put with a `subject` as its referrer; returns the subject digest.
fn record_referrer(faults: &Mutex<Faults>, path: &str, content_type: Option<&str>, body: &[u8]) -> Option<String> {
    let mut f = faults.lock().unwrap();
    let known = f.referrers.as_mut()?;
    let name = path.strip_prefix("/v2/")?.split_once("/manifests/")?.0;
    let m: serde_json::Value = serde_json::from_slice(body).ok()?;
    let subject = m["subject"]["digest"].as_str()?.to_string();
    let artifact_type = m.get("artifactType").unwrap_or(&m["config"]["mediaType"]).clone();
    let mut entry = serde_json::json!({
        "mediaType": m.get("mediaType").and_then(|v| v.as_str()).or(content_type).unwrap_or_default(),
        "digest": layers::Digest::of_bytes(body).to_string(),
        "size": body.len(),
        "artifactType": artifact_type,
    });
    if let Some(a) = m.get("annotations") {
        entry["annotations"] = a.clone();
    }
    known.entry(format!("{name}@{subject}")).or_default().push(entry);
    Some(subject)
}

/// A response head with its `Location` moved to `port` (when given) and `extra` header lines added.
fn edit_head(raw: &[u8], own_port: u16, move_location_to: Option<u16>, extra: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if line == "\r\n" {
            out.push_str(extra);
            out.push_str(line);
            continue;
        }
        match (line.split_once(':'), move_location_to) {
            (Some((name, value)), Some(port)) if name.eq_ignore_ascii_case("location") => {
                let value = value.trim();
                let moved = match value.strip_prefix(&format!("http://127.0.0.1:{own_port}")) {
                    Some(rest) => format!("http://127.0.0.1:{port}{rest}"),
                    None if value.starts_with('/') => format!("http://127.0.0.1:{port}{value}"),
                    None => value.to_string(),
                };
                out.push_str(&format!("Location: {moved}\r\n"));
            }
            _ => out.push_str(line),
        }
    }
    out.into_bytes()
}

fn serve_connection(
    client: TcpStream,
    own_port: u16,
    upstream_port: u16,
    log: &Log,
    corrupt: &Mutex<Option<String>>,
    bearer: &Mutex<Option<Bearer>>,
    faults: &Mutex<Faults>,
) -> std::io::Result<()> {
    let upstream = TcpStream::connect(("127.0.0.1", upstream_port))?;
    let mut client_w = client.try_clone()?;
    let mut client_r = BufReader::new(client);
    let mut up_w = upstream.try_clone()?;
    let mut up_r = BufReader::new(upstream);
    while let Some(req) = read_head(&mut client_r)? {
        let inflight = InFlight::enter(log);
        let mut parts = req.first.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.clone(), String::new()),
        };
        let authorized = req.get("authorization").is_some();
        let record =
            |method: String, path: String, query: String, status: u16, request_bytes: u64, response_bytes: u64| {
                log.events.lock().unwrap().push(Event {
                    method,
                    path,
                    query,
                    status,
                    request_bytes,
                    response_bytes,
                    authorized,
                });
            };
        let is_blob_get = method == "GET" && path.contains("/blobs/sha256:");
        let fault = {
            let mut f = faults.lock().unwrap();
            (f.count > 0 && f.method == method).then(|| {
                f.count -= 1;
                f.status
            })
        };
        let denied = ["POST", "PUT", "PATCH"].contains(&method.as_str())
            && faults.lock().unwrap().denied.iter().any(|name| path.starts_with(&format!("/v2/{name}/")));
        if denied {
            let body = r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#;
            let request_bytes = answer_locally(&mut client_r, &mut client_w, &req, "403 Forbidden", "", body)?;
            record(method, path, query, 403, request_bytes, 0);
            continue;
        }
        if let Some(status) = fault {
            let line = format!("{status} Injected");
            let body = r#"{"errors":[{"code":"UNAVAILABLE","message":"injected failure"}]}"#;
            let retry_after = format!("Retry-After: {}\r\n", faults.lock().unwrap().retry_after);
            let request_bytes = answer_locally(&mut client_r, &mut client_w, &req, &line, &retry_after, body)?;
            record(method, path, query, status, request_bytes, 0);
            continue;
        }
        if method == "GET"
            && let Some((body, headers)) = referrers_answer(faults, &path, &query)
        {
            let request_bytes = answer_locally(&mut client_r, &mut client_w, &req, "200 OK", &headers, &body)?;
            record(method, path, query, 200, request_bytes, body.len() as u64);
            continue;
        }
        let blobs_to = faults.lock().unwrap().blobs_to;
        if is_blob_get && let Some(port) = blobs_to {
            let location = format!("Location: http://127.0.0.1:{port}{target}\r\n");
            let request_bytes =
                answer_locally(&mut client_r, &mut client_w, &req, "307 Temporary Redirect", &location, "")?;
            record(method, path, query, 307, request_bytes, 0);
            continue;
        }
        if let Some((status, request_bytes)) =
            bearer_gate(bearer, own_port, &req, &method, &path, &query, &mut client_r, &mut client_w)?
        {
            record(method, path, query, status, request_bytes, 0);
            if req.closes() {
                break;
            }
            continue;
        }
        up_w.write_all(&req.raw)?;
        let has_body = req.chunked() || req.content_length().is_some_and(|n| n > 0);
        let (throttle, reset) = {
            let mut f = faults.lock().unwrap();
            let reset = (has_body && (method == "PUT" || method == "PATCH") && f.reset_count > 0).then(|| {
                f.reset_count -= 1;
                f.reset_after
            });
            (f.throttle, reset)
        };
        if let Some(after) = reset {
            // A connection reset mid-upload: part of the body goes upstream, then both sides are cut.
            let limit = req.content_length().map_or(after, |n| n.min(after));
            let sent = std::io::copy(&mut (&mut client_r).take(limit), &mut up_w)?;
            record(method, path, query, 0, sent, 0);
            let _ = client_w.shutdown(Shutdown::Both);
            let _ = up_w.shutdown(Shutdown::Both);
            return Ok(());
        }
        let is_manifest_put = method == "PUT" && path.contains("/manifests/");
        let tee = (is_manifest_put && faults.lock().unwrap().referrers.is_some()).then(Vec::new);
        let mut counted = Metered { inner: &mut up_w, bytes: 0, rate: throttle, start: Instant::now(), tee };
        let relayed = relay_body(&mut client_r, &mut counted, &req, false, false);
        let (sent, put_body) = (counted.bytes, counted.tee.take());
        let request_bytes = match relayed {
            Ok((n, _)) => n,
            Err(e) => {
                // The client went away mid-body (killed, or gave up): record the interrupted request.
                record(method, path, query, 0, sent, 0);
                return Err(e);
            }
        };
        up_w.flush()?;
        let corrupt_this = method == "GET"
            && corrupt.lock().unwrap().as_deref().is_some_and(|d| path.ends_with(&format!("/blobs/{d}")));
        let (delay, uploads_to) = {
            let mut f = faults.lock().unwrap();
            let delay = (f.delay_count > 0).then(|| {
                f.delay_count -= 1;
                f.delay
            });
            (delay, f.uploads_to.filter(|_| path.contains("/blobs/uploads/")))
        };
        // Forward interim 1xx answers, then the final one.
        let resp = loop {
            let Some(resp) = read_head(&mut up_r)? else { return Ok(()) };
            if let Some(d) = delay {
                std::thread::sleep(d); // a slow registry: the answer is ready but arrives late
            }
            let status = resp.first.split_whitespace().nth(1).unwrap_or("");
            let subject = match (&put_body, status) {
                (Some(body), "201") => record_referrer(faults, &path, req.get("content-type"), body),
                _ => None,
            };
            let extra = subject.map(|d| format!("OCI-Subject: {d}\r\n")).unwrap_or_default();
            client_w.write_all(&edit_head(&resp.raw, own_port, uploads_to, &extra))?;
            if status.starts_with('1') {
                continue;
            }
            break resp;
        };
        let status: u16 = resp.first.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let no_body = method == "HEAD" || status == 204 || status == 304;
        // A body no longer than the stall point is served whole (it cannot stall).
        let stall_after = {
            let mut f = faults.lock().unwrap();
            let longer = resp.content_length().is_some_and(|n| n > f.stall_after);
            (is_blob_get && status == 200 && longer && f.stall_count > 0).then(|| {
                f.stall_count -= 1;
                f.stall_after
            })
        };
        if let Some(after) = stall_after {
            // Headers and the start of the body, then silence on a live connection.
            let n = std::io::copy(&mut (&mut up_r).take(after), &mut client_w)?;
            client_w.flush()?;
            record(method, path, query, status, request_bytes, n);
            drop(inflight);
            std::thread::sleep(Duration::from_secs(20));
            break;
        }
        let (response_bytes, until_close) =
            relay_body(&mut up_r, &mut client_w, &resp, no_body, corrupt_this && status == 200)?;
        client_w.flush()?;
        record(method, path, query, status, request_bytes, response_bytes);
        if until_close || req.closes() || resp.closes() {
            break;
        }
    }
    let _ = client_w.shutdown(Shutdown::Both);
    let _ = up_w.shutdown(Shutdown::Both);
    Ok(())
}

/// A writer that counts what it passes on and, given a rate, paces it to that many bytes per second.
struct Metered<'a, W: Write> {
    inner: &'a mut W,
    bytes: u64,
    rate: Option<u64>,
    start: Instant,
    /// A copy of what passed, when wanted.
    tee: Option<Vec<u8>>,
}

impl<W: Write> Write for Metered<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Small writes keep the pacing smooth.
        let buf = if self.rate.is_some() { &buf[..buf.len().min(16 << 10)] } else { buf };
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        if let Some(t) = &mut self.tee {
            t.extend_from_slice(&buf[..n]);
        }
        if let Some(rate) = self.rate.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(self.start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// One image of the fixture set.
pub struct FixtureImage {
    /// Local tag in the store (`kolla/<name>:test`).
    pub tag: String,
    /// Manifest descriptor in the store.
    pub manifest: kolla_oci::store::Descriptor,
    /// Config digest.
    pub config: layers::Digest,
    /// Layer descriptors, base first.
    pub layers: Vec<kolla_oci::store::Descriptor>,
}

/// Deterministic incompressible bytes (xorshift), so layers have a real size after gzip.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Write a layer made of `files` (name, bytes) into the store.
pub fn put_layer(
    store: &kolla_oci::store::Store,
    files: &[(&str, Vec<u8>)],
) -> (kolla_oci::store::Descriptor, layers::Digest) {
    let tree = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        let p = tree.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    }
    let opts = layers::TreeOptions { source_date_epoch: Some(0), overlay_upper: false, threads: Some(1) };
    let mut w = store.blob_writer().unwrap();
    let info = layers::write_layer(tree.path(), &opts, layers::Compression::default(), &mut w).unwrap();
    let (digest, size) = w.commit(Some(&info.digest)).unwrap();
    assert_eq!(size, info.size);
    (kolla_oci::store::Descriptor::new(info.media_type, digest, size), info.diff_id)
}

/// `names.len()` images sharing two base layers (`base_bytes` of noise each), plus one own layer each;
/// tagged `kolla/<name>:test`.
pub fn make_image_set(store: &kolla_oci::store::Store, names: &[&str], base_bytes: usize) -> Vec<FixtureImage> {
    use kolla_oci::store::{ImageConfig, RootFs};
    let base = [
        put_layer(store, &[("usr/lib/base1.bin", noise(1, base_bytes)), ("etc/os-release", b"ID=test\n".to_vec())]),
        put_layer(store, &[("usr/lib/base2.bin", noise(2, base_bytes))]),
    ];
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let own = put_layer(store, &[(&format!("opt/{name}/data.bin"), noise(100 + i as u64, 20_000 + i * 1000))]);
            let all = [base[0].clone(), base[1].clone(), own];
            let config = ImageConfig {
                architecture: "amd64".into(),
                os: "linux".into(),
                rootfs: RootFs { typ: "layers".into(), diff_ids: all.iter().map(|(_, d)| *d).collect() },
                ..ImageConfig::default()
            };
            let descs: Vec<_> = all.iter().map(|(d, _)| d.clone()).collect();
            let manifest = store.write_image(&config, &descs).unwrap();
            let tag = format!("kolla/{name}:test");
            store.set_tag(&tag, &manifest).unwrap();
            let image = store.load_image(&tag).unwrap();
            FixtureImage { tag, manifest, config: image.manifest.config.digest, layers: descs }
        })
        .collect()
}

/// Run a command, panicking with its output when it fails (or cannot start).
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `skopeo inspect --raw`-independent digest of a pushed image, as skopeo reports it.
pub fn skopeo_digest(image: &str, extra: &[&str]) -> String {
    let out = run_ok(
        Command::new("skopeo").arg("inspect").arg("--tls-verify=false").args(extra).arg(format!("docker://{image}")),
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("skopeo inspect prints JSON");
    v["Digest"].as_str().expect("Digest in skopeo inspect output").to_string()
}
