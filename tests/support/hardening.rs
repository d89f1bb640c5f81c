//! Shared helpers of the `hardening_*` tests: a busybox base image and a small Kolla-shaped template tree
//! built with the real `kolla-oci` binary, bounded runs of it (with peak memory), SIGKILL at chosen points
//! (after a delay, or when the n-th file appears in a state directory, seen through inotify), a scan for
//! stray processes of a killed run, and independent checks of the store on disk.
#![allow(dead_code)] // each hardening test binary uses a different part of this helper

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

#[path = "busybox.rs"]
mod busybox;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_kolla-oci");
/// `SOURCE_DATE_EPOCH` of every build here, so digests are reproducible.
pub const EPOCH: &str = "1700000000";
/// The tag kolla-oci gives the images of a `build` run (its default `--tag`).
pub const KOLLA_TAG: &str = "2026.2-debian-trixie";
/// The images of [`write_tree`], parents first.
pub const TREE_IMAGES: [&str; 4] = ["base", "svc-base", "svc-api", "svc-worker"];

/// Deterministic incompressible bytes (xorshift), so layers have a real size after gzip.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
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

/// What a bounded run of a process gave.
#[derive(Debug)]
pub struct Run {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Wall time until it exited.
    pub elapsed: Duration,
    /// Peak resident set size in KiB (`ru_maxrss` of the process and its waited-for children).
    pub max_rss_kib: i64,
    /// Whether we killed it.
    pub killed: bool,
}

impl Run {
    /// Panic with its output unless it succeeded; returns `self` for chaining.
    pub fn ok(self) -> Run {
        assert!(
            self.status.success(),
            "kolla-oci failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panic unless it failed with a non-zero exit code (not a signal); returns stderr.
    pub fn failed(&self) -> &str {
        assert!(
            self.status.code().is_some_and(|c| c != 0),
            "expected a clean failure, got {}:\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stderr
    }
}

/// When to SIGKILL a run.
#[derive(Debug, Clone)]
pub enum KillPoint {
    /// This long after it started.
    After(Duration),
    /// As soon as the `nth` (1-based) entry is created in (or renamed into) `dir`.
    Created {
        /// A directory that exists before the run starts.
        dir: PathBuf,
        /// Which creation kills.
        nth: usize,
    },
}

/// An inotify instance watching one directory for new entries.
struct Watch {
    fd: std::os::fd::OwnedFd,
}

impl Watch {
    fn new(dir: &Path) -> Watch {
        use std::os::fd::FromRawFd as _;
        // SAFETY: plain syscalls; the fd is owned from here on.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1: {}", std::io::Error::last_os_error());
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        let mask = libc::IN_CREATE | libc::IN_MOVED_TO;
        // SAFETY: valid fd and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(std::os::fd::AsRawFd::as_raw_fd(&fd), c.as_ptr(), mask) };
        assert!(wd >= 0, "inotify_add_watch {}: {}", dir.display(), std::io::Error::last_os_error());
        Watch { fd }
    }

    /// Wait up to `ms` for events; returns how many arrived.
    fn events(&self, ms: i32) -> usize {
        use std::os::fd::AsRawFd as _;
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
            return 0;
        }
        let mut buf = [0u8; 8192];
        let mut count = 0;
        loop {
            // SAFETY: reading into our buffer.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return count;
            }
            let mut off = 0usize;
            while off + 16 <= n as usize {
                let len = u32::from_ne_bytes(buf[off + 12..off + 16].try_into().unwrap()) as usize;
                count += 1;
                off += 16 + len;
            }
        }
    }
}

/// Run `cmd` to completion (stdin from /dev/null), killing it and panicking after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Run {
    let run = run_killed(cmd, None, limit);
    assert!(!run.killed, "{cmd:?} did not finish within {limit:?}:\nstdout: {}\nstderr: {}", run.stdout, run.stderr);
    run
}

/// Run `cmd`, SIGKILL it at `kill` (if it is still running then), and wait for it; panics when it runs
/// longer than `limit` without being killed at `kill`.
pub fn run_killed(cmd: &mut Command, kill: Option<&KillPoint>, limit: Duration) -> Run {
    let out_dir = tempfile::tempdir().unwrap();
    let (out, err) = (out_dir.path().join("out"), out_dir.path().join("err"));
    let watch = match kill {
        Some(KillPoint::Created { dir, nth }) => Some((Watch::new(dir), *nth)),
        _ => None,
    };
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut seen = 0usize;
    let mut killed = false;
    let mut timed_out = false;
    let (status, rss) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 on our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            break (ExitStatus::from_raw(status), usage.ru_maxrss);
        }
        let fire = match (kill, &watch) {
            (Some(KillPoint::After(d)), _) => start.elapsed() >= *d,
            (_, Some((w, nth))) => {
                seen += w.events(1);
                seen >= *nth
            }
            _ => false,
        };
        if !fire && watch.is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        if (fire || start.elapsed() > limit) && !killed {
            timed_out = !fire;
            // SAFETY: our own, not yet reaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
    };
    drop(child); // already reaped by wait4
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    let run =
        Run { status, stdout: read(&out), stderr: read(&err), elapsed: start.elapsed(), max_rss_kib: rss, killed };
    assert!(!timed_out, "{cmd:?} did not finish within {limit:?}:\nstdout: {}\nstderr: {}", run.stdout, run.stderr);
    run
}

/// Processes (pid, command line) whose environment holds `marker` (`NAME=value`).
pub fn processes_with(marker: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let me = std::process::id();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(environ) = fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()) {
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

/// Wait (up to 10 s) until no process carries `marker`; panic naming the survivors.
pub fn assert_no_strays(marker: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_with(marker);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: processes of the killed run survive it: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// sha256 of a file, as `hex`.
pub fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap();
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// Hash every blob of the OCI layout at `layout` ourselves: each must hold exactly the bytes its name
/// says (no half-written blob is visible). Returns the number of blobs.
pub fn assert_blobs_intact(layout: &Path) -> usize {
    let dir = layout.join("blobs/sha256");
    let mut n = 0;
    for entry in fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert_eq!(sha256_file(&entry.path()), name, "blob {name} does not hold its content");
        n += 1;
    }
    n
}

/// Manifest digest of every tag in the layout.
pub fn tag_digests(layout: &Path) -> BTreeMap<String, String> {
    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        // Referrers (SBOM, provenance) have untagged entries: only tags.
        .filter_map(|m| {
            let name = m["annotations"]["org.opencontainers.image.ref.name"].as_str()?.to_owned();
            Some((name, m["digest"].as_str().unwrap().to_owned()))
        })
        .collect()
}

/// Entries of a directory (empty when it is missing).
pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Run an external tool, panicking with its stderr when it fails or is missing; returns stdout.
pub fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is not runnable ({e}): install it (tests/setup.sh)"));
    assert!(out.status.success(), "{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Write the small Kolla-shaped tree: `base` (FROM the store's `bb-base:1`, a 1.5 MB COPY, a RUN that
/// sleeps and copies it) → `svc-base` (a RUN writing another 1 MB) → `svc-api`, `svc-worker`. Every RUN is
/// deterministic, so a rebuild gives the same digests. `env_marker` (`NAME=value`) is set with `ENV`, so
/// every RUN process carries it too.
pub fn write_tree(tree: &Path, env_marker: &str) {
    for d in ["base", "svc/svc-base", "svc/svc-api", "svc/svc-worker"] {
        fs::create_dir_all(tree.join(d)).unwrap();
    }
    fs::write(tree.join("base/blob1.bin"), noise(7, 1_500_000)).unwrap();
    fs::write(
        tree.join("base/Dockerfile.j2"),
        format!(
            "FROM bb-base:1\nENV {env_marker}\nLABEL name=\"{{{{ image_name }}}}\"\n\
             COPY blob1.bin /opt/blob1.bin\n\
             RUN busybox sleep 0.2 && busybox mkdir -p /var/lib/kolla && busybox cp /opt/blob1.bin /var/lib/kolla/a.bin\n\
             RUN busybox sha256sum /opt/blob1.bin > /etc/base-sum\n"
        ),
    )
    .unwrap();
    let child = |parent: &str, run: &str| {
        format!("FROM {{{{ namespace }}}}/{{{{ image_prefix }}}}{parent}:{{{{ tag }}}}\nRUN {run}\n")
    };
    fs::write(
        tree.join("svc/svc-base/Dockerfile.j2"),
        child("base", "busybox sleep 0.1 && busybox head -c 1000000 /var/lib/kolla/a.bin > /var/lib/kolla/b.bin"),
    )
    .unwrap();
    fs::write(tree.join("svc/svc-api/Dockerfile.j2"), child("svc-base", "echo api > /api.txt && busybox sleep 0.1"))
        .unwrap();
    fs::write(tree.join("svc/svc-worker/Dockerfile.j2"), child("svc-base", "echo worker > /worker.txt")).unwrap();
}

/// A world-readable scratch directory holding a busybox build context (`ctx/`), a Kolla-shaped template
/// tree (`tree/`), a private `home/`, and a seed state directory (`seed/`) whose store holds `bb-base:1`.
pub struct Bench {
    _tmp: tempfile::TempDir,
    /// The scratch directory.
    pub dir: PathBuf,
    /// `KOLLA_OCI_HARDENING=<unique>`: in the environment of every kolla-oci run and of every RUN of the
    /// tree, to find stray processes.
    pub marker: String,
}

impl Bench {
    /// Set everything up and build `bb-base:1` into `seed/`.
    pub fn new() -> Bench {
        let tmp = tempfile::Builder::new().prefix("kolla-oci-hard-").tempdir_in("/tmp").unwrap();
        let dir = tmp.path().to_path_buf();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let ctx = dir.join("ctx");
        fs::create_dir_all(&ctx).unwrap();
        busybox::write_busybox_context(&ctx);
        fs::create_dir_all(dir.join("home")).unwrap();
        // The runs' own temp dirs (render work dir, RUN scratch): a SIGKILLed run cannot remove them, so they
        // go where the bench's drop does.
        fs::create_dir_all(dir.join("tmp")).unwrap();
        fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        let marker = format!("KOLLA_OCI_HARDENING={}", dir.file_name().unwrap().to_string_lossy());
        write_tree(&dir.join("tree"), &marker);
        let bench = Bench { _tmp: tmp, dir, marker };
        let base = bench.ctx().join("Dockerfile.base");
        bench.build_file("seed", &base, "bb-base:1").ok();
        bench
    }

    /// The busybox build context.
    pub fn ctx(&self) -> PathBuf {
        self.dir.join("ctx")
    }

    /// The template tree.
    pub fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }

    /// A state directory under the bench.
    pub fn state(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A fresh state directory `name`: a copy of the seed (only `bb-base:1` in it).
    pub fn fresh_state(&self, name: &str) -> PathBuf {
        let dest = self.state(name);
        assert!(!dest.exists(), "{} exists", dest.display());
        tool("cp", &["-a", self.state("seed").to_str().unwrap(), dest.to_str().unwrap()]);
        dest
    }

    /// `kolla-oci` on state directory `state` (a name under the bench), with a clean environment.
    pub fn kolla(&self, state: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        let (k, v) = self.marker.split_once('=').unwrap();
        cmd.args(args)
            .current_dir(&self.dir)
            .env("KOLLA_OCI_STORE", self.state(state))
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .env("HOME", self.dir.join("home"))
            .env("DOCKER_CONFIG", self.dir.join("home/.docker"))
            .env("TMPDIR", self.dir.join("tmp"))
            .env(k, v)
            .env_remove("KOLLA_OCI_LOG")
            .env_remove("RUST_LOG")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_DATA_HOME");
        cmd
    }

    /// `kolla-oci build-file -f <dockerfile> <ctx> -t <tag>` to completion (2 min at most).
    pub fn build_file(&self, state: &str, dockerfile: &Path, tag: &str) -> Run {
        let (f, c) = (dockerfile.to_str().unwrap(), self.ctx());
        run_bounded(
            &mut self.kolla(state, &["build-file", "-f", f, c.to_str().unwrap(), "-t", tag]),
            Duration::from_secs(120),
        )
    }

    /// The arguments of `build --all` of the bench's tree.
    pub fn build_all_args(&self) -> Vec<String> {
        ["build", "--all", "--threads", "2", "--template-tree", self.tree().to_str().unwrap()]
            .map(String::from)
            .to_vec()
    }

    /// An uninterrupted `build --all` with `args` into a fresh `state`: the tag → digest map every disturbed
    /// run must reach.
    pub fn clean_build_all(&self, state: &str, args: &[&str], limit: Duration) -> BTreeMap<String, String> {
        self.fresh_state(state);
        run_bounded(&mut self.kolla(state, args), limit).ok();
        self.tree_digests(state)
    }

    /// `state`'s OCI layout with every blob in `blobs/` (`gc --max-extracted 0`), as tools that read layer
    /// blobs from a layout (`skopeo copy oci:`, `umoci unpack`) need it: a build keeps the layers other images
    /// build on as extracted directories only.
    pub fn plain_layout(&self, state: &str) -> PathBuf {
        let run = run_bounded(&mut self.kolla(state, &["gc", "--max-extracted", "0"]), Duration::from_secs(120));
        assert!(run.status.success(), "gc --max-extracted 0 of {state} failed:\n{}", run.stderr);
        self.state(state).join("oci")
    }

    /// `kolla-oci fsck` on `state` must pass; returns its report.
    pub fn fsck_ok(&self, state: &str) -> String {
        let run = run_bounded(&mut self.kolla(state, &["fsck"]), Duration::from_secs(60));
        assert!(run.status.success(), "fsck of {state} failed:\n{}\n{}", run.stdout, run.stderr);
        run.stdout
    }

    /// Manifest digests of the tree's images in `state`.
    pub fn tree_digests(&self, state: &str) -> BTreeMap<String, String> {
        tag_digests(&self.state(state).join("oci")).into_iter().filter(|(t, _)| t.starts_with("kolla/")).collect()
    }
}

/// Panic unless `hay` contains every needle.
pub fn assert_contains(hay: &str, needles: &[&str]) {
    for n in needles {
        assert!(hay.contains(n), "{n:?} missing from:\n{hay}");
    }
}
