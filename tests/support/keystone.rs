//! Keystone as kolla-ansible runs it, for the tests that build a keystone image: a `config.json` start
//! contract (keystone.conf on sqlite, fernet keys, uWSGI serving `keystone.wsgi.api:application`), the
//! container started with `kolla-oci run`, and the two answers an operator checks first — `GET /v3` and
//! a password token request.
#![allow(dead_code)] // each test binary uses a different part of this helper

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin password given to `keystone-manage bootstrap` (the test's own throwaway secret).
pub const ADMIN_PASSWORD: &str = "kolla-oci-test-admin";

/// How the image runs keystone's processes.
pub struct KeystoneImage<'a> {
    /// The image (a tag in the store).
    pub image: &'a str,
    /// Extra `uwsgi` ini lines: `uid = keystone` when the image starts as root (upstream), Debian's
    /// plugin settings when uWSGI comes from Debian (the bundled tree).
    pub uwsgi_extra: &'a str,
    /// Prefix of the `keystone-manage` calls: `sudo -H -u keystone ` when the image starts as root.
    pub manage_as: &'a str,
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Write a kolla-ansible-style config directory for keystone listening on `port`; returns it.
pub fn write_config(dir: &Path, port: u16, img: &KeystoneImage) -> PathBuf {
    let cfg = dir.join("keystone-config");
    fs::create_dir_all(&cfg).unwrap();
    fs::write(
        cfg.join("keystone.conf"),
        "[DEFAULT]\nuse_stderr = true\n\
         [database]\nconnection = sqlite:////var/lib/keystone/keystone.db\n\
         [token]\nprovider = fernet\n\
         [fernet_tokens]\nkey_repository = /etc/keystone/fernet-keys\nmax_active_keys = 3\n",
    )
    .unwrap();
    let m = img.manage_as;
    let url = format!("http://127.0.0.1:{port}/v3");
    fs::write(
        cfg.join("keystone-startup.sh"),
        format!(
            "#!/bin/bash\nset -o errexit -o pipefail\n\
             {m}keystone-manage db_sync\n\
             {m}keystone-manage fernet_setup --keystone-user keystone --keystone-group keystone\n\
             {m}keystone-manage bootstrap --bootstrap-password \"$KEYSTONE_ADMIN_PASSWORD\" \
             --bootstrap-admin-url {url} --bootstrap-internal-url {url} --bootstrap-public-url {url} \
             --bootstrap-region-id RegionOne\n\
             exec uwsgi /etc/keystone/keystone-api-uwsgi.ini\n"
        ),
    )
    .unwrap();
    fs::write(
        cfg.join("keystone-uwsgi.ini"),
        format!(
            "[uwsgi]\nadd-header = Connection: close\nbuffer-size = 65535\ndie-on-term = true\n\
             enable-threads = true\nexit-on-reload = false\nhttp = 127.0.0.1:{port}\nlazy-apps = true\n\
             logto2 = /var/log/kolla/keystone/keystone-uwsgi.log\nmaster = true\n\
             module = keystone.wsgi.api:application\nprocesses = 1\nsocket-timeout = 30\n\
             worker-reload-mercy = 80\n{}\n",
            img.uwsgi_extra
        ),
    )
    .unwrap();
    fs::write(
        cfg.join("config.json"),
        r#"{
    "command": "/usr/bin/keystone-startup.sh",
    "config_files": [
        {"source": "/var/lib/kolla/config_files/keystone-startup.sh", "dest": "/usr/bin/keystone-startup.sh",
         "owner": "root", "perm": "0755"},
        {"source": "/var/lib/kolla/config_files/keystone.conf", "dest": "/etc/keystone/keystone.conf",
         "owner": "keystone", "perm": "0600"},
        {"source": "/var/lib/kolla/config_files/keystone-uwsgi.ini", "dest": "/etc/keystone/keystone-api-uwsgi.ini",
         "owner": "keystone", "perm": "0600"}
    ],
    "permissions": [
        {"path": "/var/log/kolla", "owner": "keystone:kolla"},
        {"path": "/etc/keystone/fernet-keys", "owner": "keystone:keystone", "perm": "0770"}
    ]
}
"#,
    )
    .unwrap();
    cfg
}

/// The running container; killed (with its sandbox) when dropped.
pub struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    /// What the container printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kolla-oci run` of the keystone image with `cfg` mounted as kolla's config directory, in the background.
pub fn start(kolla: Command, img: &KeystoneImage, cfg: &Path, log: &Path) -> Running {
    let mut cmd = kolla;
    let volume = format!("{}:/var/lib/kolla/config_files:ro", cfg.display());
    // kolla-ansible mounts a volume on the fernet key repository (`keystone_fernet_tokens`); the image does
    // not create it, and keystone-manage, running as keystone, cannot create it under /etc/keystone.
    let keys = cfg.with_file_name("fernet-keys");
    fs::create_dir_all(&keys).unwrap();
    let keys = format!("{}:/etc/keystone/fernet-keys", keys.display());
    // Killed when dropped, the run cannot remove its scratch dir: keep it in the test's own dir, not /tmp.
    let tmp = cfg.with_file_name("run-tmp");
    fs::create_dir_all(&tmp).unwrap();
    fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let out = fs::File::create(log).unwrap();
    cmd.env("TMPDIR", &tmp)
        .args(["run", "-e", "KOLLA_CONFIG_STRATEGY=COPY_ALWAYS", "-e"])
        .arg(format!("KEYSTONE_ADMIN_PASSWORD={ADMIN_PASSWORD}"))
        .args(["-v", &volume, "-v", &keys, img.image])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    Running { child: cmd.spawn().unwrap(), log: log.to_path_buf() }
}

/// An HTTP client for talking to keystone, built the way kolla-oci builds its own (which installs the
/// TLS crypto provider that reqwest's `rustls-no-provider` build needs, even for plain HTTP).
fn client(timeout: Duration) -> reqwest::blocking::Client {
    let timeouts = kolla_oci::http::Timeouts::default();
    kolla_oci::http::http_client(&timeouts).timeout(timeout).build().unwrap()
}

/// `GET /v3` until it answers 200 (keystone is up), within `limit`.
pub fn wait_for_api(running: &mut Running, port: u16, limit: Duration) {
    let http = client(Duration::from_secs(10));
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("http://127.0.0.1:{port}/v3")).send() {
            let status = r.status().as_u16();
            let body = r.text().unwrap_or_default();
            assert_eq!(status, 200, "GET /v3: {body}");
            assert!(body.contains("\"id\": \"v3") || body.contains("\"id\":\"v3"), "GET /v3: {body}");
            return;
        }
        if let Ok(Some(status)) = running.child.try_wait() {
            panic!("the keystone container exited ({status}):\n{}", running.log());
        }
        assert!(started.elapsed() < limit, "keystone did not answer within {limit:?}:\n{}", running.log());
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `POST /v3/auth/tokens` with the admin password: 201 with an `X-Subject-Token`. Returns the token.
pub fn issue_token(port: u16) -> String {
    let http = client(Duration::from_secs(30));
    let body = serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}});
    let mut r = http
        .post(format!("http://127.0.0.1:{port}/v3/auth/tokens"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let token = r.headers().get("X-Subject-Token").map(|v| v.to_str().unwrap().to_string());
    let mut text = String::new();
    r.read_to_string(&mut text).unwrap();
    assert_eq!(status, 201, "POST /v3/auth/tokens: {text}");
    let token = token.unwrap_or_else(|| panic!("no X-Subject-Token in the answer: {text}"));
    assert!(text.contains("\"catalog\""), "a scoped token carries the catalog: {text}");
    token
}

/// Start keystone from `img`, wait for it, and check both answers.
pub fn assert_keystone_answers(kolla: Command, img: &KeystoneImage, dir: &Path) {
    let port = free_port();
    let cfg = write_config(dir, port, img);
    let mut running = start(kolla, img, &cfg, &dir.join("keystone-run.log"));
    wait_for_api(&mut running, port, Duration::from_secs(300));
    let token = issue_token(port);
    assert!(token.len() > 20, "{token}");
}
