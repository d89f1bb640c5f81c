//! `kolla-oci run` behaves as `podman run` does where scripts notice: a `SIGTERM` sent to `kolla-oci`
//! reaches the container's `trap`, whose exit status `run` returns at once — as root and as an
//! unprivileged user with subordinate ids — and no scratch directory is left behind; a command that is
//! not there exits 127, one that cannot be executed 126.

mod support {
    pub mod busybox;
    pub mod cli;
    pub mod rootless;
}

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use std::{fs, thread};

use support::cli::ok;

/// The container: says it is ready, and on SIGTERM writes a marker into the volume and exits 3.
const DOCKERFILE: &str = r#"FROM scratch
COPY rootfs/ /
ENV PATH=/bin
CMD ["sh", "-c", "trap 'echo terminated > /m/marker; exit 3' TERM; echo ready; while :; do busybox sleep 0.1; done"]
"#;

/// A world-readable dir with the context, a store, a volume and a `TMPDIR`, owned by `owner` when given.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Fixture {
    fn new(owner: Option<&str>) -> Fixture {
        let (tmp, dir) = support::busybox::shared_context("kolla-oci-run-");
        fs::write(dir.join("ctx/Dockerfile"), DOCKERFILE).unwrap();
        for d in ["store", "vol", "tmp"] {
            fs::create_dir(dir.join(d)).unwrap();
        }
        support::rootless::copy_binary(&dir.join("kolla-oci"));
        if let Some(user) = owner {
            let st = Command::new("chown").args(["-R", &format!("{user}:{user}")]).arg(&dir).status().unwrap();
            assert!(st.success());
        }
        Fixture { _tmp: tmp, dir }
    }

    /// `kolla-oci ARGS`, as `uid:gid` when given (with `setpriv`, which execs: signals go straight to us).
    fn command(&self, ids: Option<(u32, u32)>, args: &[&str]) -> Command {
        let exe = self.dir.join("kolla-oci");
        let mut cmd = match ids {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.args([&format!("--reuid={uid}"), &format!("--regid={gid}"), "--clear-groups", "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &self.dir)
            .env("TMPDIR", self.dir.join("tmp"))
            .env("KOLLA_OCI_STORE", self.dir.join("store"));
        cmd
    }
}

fn ids_of(user: &str) -> (u32, u32) {
    let id = |flag| {
        let out = Command::new("id").args([flag, user]).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// Every entry under `dir`, for the "nothing left behind" check.
fn entries(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir).min_depth(1).into_iter().map(|e| e.unwrap().path().display().to_string()).collect()
}

fn sigterm_reaches_the_container(ids: Option<(u32, u32)>, f: &Fixture) {
    let ctx = f.dir.join("ctx");
    ok(f.command(ids, &["build-file", ctx.to_str().unwrap(), "-t", "trap:1"]).output().unwrap());
    let vol = format!("{}:/m", f.dir.join("vol").display());
    let mut child = f.command(ids, &["run", "-v", &vol, "trap:1"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n", "the container did not start");
    let sent = Instant::now();
    // SAFETY: kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(sent.elapsed() < Duration::from_secs(10), "kolla-oci run ignored SIGTERM");
        thread::sleep(Duration::from_millis(20));
    };
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(3), "run must return the container's status ({status})");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(fs::read_to_string(f.dir.join("vol/marker")).unwrap(), "terminated\n", "the trap did not run");
    assert_eq!(entries(&f.dir.join("tmp")), Vec::<String>::new(), "scratch dirs left in TMPDIR");
    assert_eq!(entries(&f.dir.join("store/tmp")), Vec::<String>::new(), "scratch dirs left in the store");
}

#[test]
fn sigterm_reaches_the_container_as_root() {
    assert!(rustix::process::geteuid().is_root(), "this test checks the root path (CI runs the suite as root)");
    sigterm_reaches_the_container(None, &Fixture::new(None));
}

#[test]
fn sigterm_reaches_the_container_rootless() {
    let user = support::rootless::rootless_user();
    sigterm_reaches_the_container(Some(ids_of(user)), &Fixture::new(Some(user)));
}

#[test]
fn missing_and_unexecutable_commands_exit_127_and_126() {
    let f = Fixture::new(None);
    let ctx = f.dir.join("ctx");
    fs::write(ctx.join("rootfs/bin/notexec"), "echo hi\n").unwrap();
    fs::set_permissions(ctx.join("rootfs/bin/notexec"), fs::Permissions::from_mode(0o644)).unwrap();
    ok(f.command(None, &["build-file", ctx.to_str().unwrap(), "-t", "trap:1"]).output().unwrap());
    for (cmd, code, says) in
        [("nosuch", 127, "executable file not found in $PATH"), ("/bin/notexec", 126, "Permission denied")]
    {
        let out = f.command(None, &["run", "trap:1", "--", cmd]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{cmd}: {err}");
        assert!(err.contains(says) && err.contains(cmd), "{cmd}: {err}");
    }
    let out = f.command(None, &["run", "trap:1", "--", "sh", "-c", "exit 4"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn interactive_and_terminal() {
    use std::io::Write as _;
    let f = Fixture::new(None);
    let ctx = f.dir.join("ctx");
    ok(f.command(None, &["build-file", ctx.to_str().unwrap(), "-t", "trap:1"]).output().unwrap());
    // -i: our stdin is the command's.
    let mut child = f
        .command(None, &["run", "-i", "trap:1", "--", "busybox", "wc", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"twelve bytes").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "12");
    // Without -i it reads nothing.
    let out = f.command(None, &["run", "trap:1", "--", "busybox", "wc", "-c"]).stdin(Stdio::piped()).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    // -t: stdin and stdout are a terminal (output in its line discipline: \r\n), the status comes back.
    let script = "test -t 0 && echo in-tty; test -t 1 && echo out-tty; busybox stty size; exit 5";
    let out = f.command(None, &["run", "-t", "trap:1", "--", "sh", "-c", script]).output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in-tty\r\nout-tty\r\n24 80\r\n");
}
