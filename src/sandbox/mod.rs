//! The sandbox of Dockerfile `RUN` and `kolla-oci run`: no daemon, no runc, and never host root — one
//! small face, a [`RunSpec`] in and an exit status out.
//!
//! Process structure (a threaded process cannot enter a new user namespace, hence the re-execs):
//!
//! 1. [`early_init`], first thing in `main()`. When not root, the program re-executes itself inside a new
//!    user + mount namespace mapped with the caller's subordinate id range (`newuidmap`/`newgidmap`, the
//!    podman/buildah model; see `userns.rs`). From then on the whole program is "root" and sees the image's
//!    real ids (a file chowned to 42400 stays 42400), so nothing else translates uids. As root the program
//!    stays in the host's namespace, and each command gets a namespace of its own instead (`idmap.rs`).
//! 2. [`run`] starts `/proc/self/exe __sandbox-init`, a fresh single-threaded helper (`helper.rs`), hands it
//!    the [`RunSpec`] and a scratch dir (which `run` removes afterwards) as JSON on fd 3, and reads setup
//!    errors back from fd 4; the command's stdout and stderr come back on one pipe. The helper creates
//!    pid/uts/ipc namespaces and forks PID 1, which creates a mount namespace, builds the root
//!    (`mounts.rs`: overlayfs, /proc, /dev, /sys, resolv.conf, hosts, hostname, binds, `pivot_root`) and
//!    forks the command. PID 1 reaps everything and exits with the command's status, which the helper
//!    hands on.
//! 3. Unless [`RunSpec::network`] is [`NetworkMode::Host`], the helper also creates a network namespace;
//!    for [`NetworkMode::Private`] `run` starts slirp4netns on it, and PID 1 starts the command only once
//!    the namespace's tap device is up (a pipe handshake on fds 5 and 6; see `network.rs`).
//!
//! 4. The command itself starts confined as Docker confines it: Docker's capability set (`caps.rs`), its
//!    seccomp profile (`seccomp.rs`), runc's masked kernel files (`mounts.rs`), no inherited fds; stop
//!    signals reach it through every hop (`signals.rs`).
//!
//! The overlay's upper dir then holds exactly the command's changes, in overlayfs' `userxattr` format
//! (a deleted lower file is a `c 0:0` device, a replaced lower dir carries `user.overlay.opaque=y`),
//! ready for `layers::write_layer(upper, &TreeOptions { overlay_upper: true, .. }, ..)`.

mod caps;
mod helper;
mod idmap;
mod mounts;
mod network;
mod seccomp;
pub mod signals;
mod tty;
mod user;
mod userns;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tracing::debug;

pub use idmap::DEFAULT_ROOT_RANGE_START;
pub use network::NetworkMode;

/// `argv[1]` that turns the program into the per-RUN helper (see [`early_init`]).
const HELPER_ARG: &str = "__sandbox-init";

/// Debug entry used by the rootless tests: `KOLLA_OCI_SANDBOX_SELFTEST=<spec.json> kolla-oci` enters the
/// user namespace like any invocation, runs that [`RunSpec`] with [`run`], copies the command's output to
/// stdout and exits with its code (125 and a message on stderr when the sandbox could not be set up).
pub const SELFTEST_ENV: &str = "KOLLA_OCI_SANDBOX_SELFTEST";

/// How the report of a command that could not be executed starts (the helper then exits 126 or 127).
const EXEC_FAILED: &str = "exec failed: ";

/// Exit status of the helper when setup failed (the reason is on the report fd).
const SETUP_FAILED: i32 = 125;

/// The fd numbers the helper finds its spec and its report channel on.
const SPEC_FD: RawFd = 3;
const REPORT_FD: RawFd = 4;
/// [`NetworkMode::Private`] only: the helper says "namespace made" on the first; PID 1 waits on the
/// second for "network up" (end of file without it: the network could not be set up).
const NET_READY_FD: RawFd = 5;
const NET_GO_FD: RawFd = 6;

/// One command to run in a fresh container whose root is an overlay of `lowerdirs` + `upperdir`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Read-only image layers, **top first** (an empty list is `FROM scratch`).
    pub lowerdirs: Vec<PathBuf>,
    /// Receives every change the command makes (a fresh, empty directory per run).
    pub upperdir: PathBuf,
    /// overlayfs work dir: empty, on the same filesystem as `upperdir`.
    pub workdir: PathBuf,
    /// The command; `argv[0]` is looked up in the `PATH` of `env` unless it contains a `/`.
    pub argv: Vec<String>,
    /// The whole environment, `KEY=value` (`HOME` and `PATH` get Docker's defaults when missing).
    pub env: Vec<String>,
    /// `name`, `uid`, `name:group` or `uid:gid`, resolved against the image's /etc/passwd and
    /// /etc/group; empty means root.
    #[serde(default)]
    pub user: String,
    /// Absolute working directory inside the container, created if missing; empty means `/`.
    #[serde(default)]
    pub cwd: String,
    /// Hostname inside the container (and in its /etc/hostname); empty keeps the host's.
    #[serde(default)]
    pub hostname: String,
    /// Extra bind mounts (`kolla-oci run -v HOST:CTR[:ro]`). Their mount points, when missing in the
    /// image, are created in the container and so do land in `upperdir`.
    #[serde(default)]
    pub binds: Vec<Bind>,
    /// The network the command sees. Not part of what the command produces: the step cache key leaves
    /// it out, so a build gives the same layers in every mode.
    #[serde(default)]
    pub network: NetworkMode,
    /// Give the command our standard input (`run -i`); otherwise it reads `/dev/null`.
    #[serde(default)]
    pub stdin: bool,
    /// Give the command a terminal (`run -t`): a pseudo-terminal for its stdin, stdout and stderr, whose
    /// other side [`run`] copies to `output` (and our stdin to, with [`RunSpec::stdin`]), with our own
    /// terminal in raw mode meanwhile, as `podman run -it` does.
    #[serde(default)]
    pub tty: bool,
}

/// A host path mounted into the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// Host file or directory (bound recursively).
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    /// Mount it read-only.
    #[serde(default)]
    pub readonly: bool,
}

/// Why a command could not be run (its own non-zero exit is not an error: see [`run`]).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec is unusable (names the field and what is wrong).
    #[error("invalid run spec: {0}")]
    InvalidSpec(String),
    /// The helper process could not be started.
    #[error("starting the sandbox helper {}: {source}", exe.display())]
    Spawn {
        /// The program that was executed.
        exe: PathBuf,
        /// What `execve` said.
        source: io::Error,
    },
    /// Plumbing between us and the helper failed.
    #[error("sandbox {step}: {source}")]
    Io {
        /// What we were doing.
        step: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The container could not be set up; the message names the step, e.g.
    /// `mount overlay: lowerdir+=/x: No such file or directory (os error 2)`.
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    /// The network of [`NetworkMode::Private`] could not be set up (says why, with slirp4netns' own
    /// last words).
    #[error("network (--network private): {0}")]
    Network(String),
    /// Writing the command's output to the caller's writer failed (the command was killed).
    #[error("copying the command's output: {0}")]
    Output(#[source] io::Error),
    /// Started as root, the container's user namespace cannot be mapped (says why and what to do).
    #[error("the container's user namespace: {0}")]
    UserNamespace(String),
    /// The command could not be executed: `code` is 127 when it was not found, 126 when it could not
    /// run (what a shell and podman return).
    #[error("{message}")]
    Exec {
        /// 126 or 127.
        code: i32,
        /// Names the command and why, e.g. `exec "foo": executable file not found in $PATH`.
        message: String,
    },
    /// A stop signal came (see [`signals`]): no new command is started.
    #[error("interrupted: not starting a new command")]
    Interrupted,
}

/// What [`run`] sends the helper on fd 3.
#[derive(Serialize, Deserialize)]
struct HelperInput {
    spec: RunSpec,
    /// An empty directory for the helper's mount point, shim layer and /etc files (see `mounts.rs`).
    scratch: PathBuf,
    /// Started as root: the host ids the container's ids map to (see `idmap.rs`). `None` when we run
    /// in a user namespace already (rootless).
    ids: Option<idmap::IdRanges>,
}

/// The id ranges of root's containers, or `None` when this program is not host root (see `idmap.rs`).
fn container_ids() -> Result<Option<idmap::IdRanges>, SandboxError> {
    static IDS: OnceLock<Result<Option<idmap::IdRanges>, String>> = OnceLock::new();
    IDS.get_or_init(|| {
        if rustix::process::geteuid().is_root() && idmap::in_initial_userns() {
            idmap::for_root().map(Some)
        } else {
            Ok(None)
        }
    })
    .clone()
    .map_err(SandboxError::UserNamespace)
}

static HELPER_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Use `exe` instead of `/proc/self/exe` as the helper program: for programs (such as integration
/// tests) whose own `main` does not call [`early_init`]. `exe` must call it, as `kolla-oci` does.
/// The first call wins.
pub fn set_helper_exe(exe: impl Into<PathBuf>) {
    let _ = HELPER_EXE.set(exe.into());
}

fn helper_exe() -> &'static Path {
    HELPER_EXE.get().map_or(Path::new("/proc/self/exe"), PathBuf::as_path)
}

/// Called first in `main()`, before any thread exists.
///
/// * `kolla-oci __sandbox-init`: runs the per-RUN helper and exits with its status (never returns).
/// * not root: re-executes the program in a new user + mount namespace (see the module doc) and exits
///   with the child's status; only the child returns.
/// * every inherited fd above 2 becomes close-on-exec, so that no program we start (a RUN step above
///   all) inherits what our caller left open. Without subordinate ids in /etc/subuid and
///   /etc/subgid only our own ids are mapped (to 0), and without user namespaces at all the program
///   carries on without one; both are reported by a warning at the first [`run`].
/// * [`SELFTEST_ENV`] set: runs that spec and exits (a debug entry for the rootless tests).
pub fn early_init() {
    if std::env::args_os().nth(1).as_deref() == Some(OsStr::new(HELPER_ARG)) {
        helper::main();
    }
    userns::init();
    // Descriptors our caller left open (a directory fd, a key file…) must reach no program we start,
    // least of all a RUN step: from here on every fd we did not open ourselves is close-on-exec.
    cloexec_from(3);
    if let Some(spec) = std::env::var_os(SELFTEST_ENV) {
        selftest(spec);
    }
}

fn selftest(spec: OsString) -> ! {
    if let Some(w) = userns::warning() {
        let _ = writeln!(io::stderr(), "kolla-oci sandbox selftest: warning: {w}");
    }
    let result = std::fs::read(&spec)
        .map_err(|e| format!("{}: {e}", Path::new(&spec).display()))
        .and_then(|json| serde_json::from_slice::<RunSpec>(&json).map_err(|e| e.to_string()))
        .and_then(|spec| run(&spec, &mut io::stdout().lock()).map_err(|e| e.to_string()));
    let _ = io::stdout().flush();
    match result {
        Ok(code) => std::process::exit(code),
        Err(msg) => {
            let _ = writeln!(io::stderr(), "kolla-oci sandbox selftest: {msg}");
            std::process::exit(SETUP_FAILED)
        }
    }
}

/// Run `spec.argv` in a fresh sandbox; its stdout and stderr (interleaved, as written) are copied to
/// `output` while it runs. Returns the command's exit code, 128 + N when signal N killed it.
///
/// If the calling thread dies the sandbox is killed with it (`PR_SET_PDEATHSIG` follows the thread
/// that spawned the helper), so call this from a thread that outlives the run.
pub fn run(spec: &RunSpec, output: &mut dyn Write) -> Result<i32, SandboxError> {
    userns::log_warning_once();
    let io_err = |step| move |source| SandboxError::Io { step, source };
    // Ours to remove (when dropped, after the helper), even if the helper gets killed.
    let scratch =
        tempfile::Builder::new().prefix("kolla-oci-run-").tempdir().map_err(io_err("creating a scratch dir"))?;
    let input = HelperInput { spec: checked(spec)?, scratch: scratch.path().to_owned(), ids: container_ids()? };
    let json = serde_json::to_vec(&input).map_err(|e| SandboxError::InvalidSpec(format!("encoding: {e}")))?;
    let spec = &input.spec;
    let (spec_r, spec_w) = pipe().map_err(io_err("creating the spec pipe"))?;
    let (report_r, report_w) = pipe().map_err(io_err("creating the report pipe"))?;
    let (out_r, out_w) = pipe().map_err(io_err("creating the output pipe"))?;
    let out_w2 = out_w.try_clone().map_err(io_err("creating the output pipe"))?;

    let stack_program = match spec.network {
        NetworkMode::Private => Some(network::stack_program()?),
        NetworkMode::Host | NetworkMode::None => None,
    };
    let net_pipes = match stack_program {
        Some(_) => Some((
            pipe().map_err(io_err("creating the network pipe"))?,
            pipe().map_err(io_err("creating the network pipe"))?,
        )),
        None => None,
    };

    let exe = helper_exe();
    let mut cmd = Command::new(exe);
    cmd.arg(HELPER_ARG);
    // With a terminal, the command's output comes from its other side instead of the pipe.
    let (mut out_r, mut terminal) = if spec.tty {
        let t = tty::Terminal::open().map_err(io_err("opening a pseudo-terminal"))?;
        let slave = |t: &tty::Terminal| t.slave().map(Stdio::from).map_err(io_err("opening a pseudo-terminal"));
        cmd.stdin(slave(&t)?).stdout(slave(&t)?).stderr(slave(&t)?);
        drop((out_r, out_w, out_w2));
        (t.master().map_err(io_err("opening a pseudo-terminal"))?, Some(t))
    } else {
        cmd.stdin(if spec.stdin { Stdio::inherit() } else { Stdio::null() });
        cmd.stdout(Stdio::from(out_w)).stderr(Stdio::from(out_w2));
        (File::from(out_r), None)
    };
    let mut fds = vec![(spec_r.as_raw_fd(), SPEC_FD), (report_w.as_raw_fd(), REPORT_FD)];
    if let Some(((_, ready_w), (go_r, _))) = &net_pipes {
        fds.extend([(ready_w.as_raw_fd(), NET_READY_FD), (go_r.as_raw_fd(), NET_GO_FD)]);
    }
    let parent = rustix::process::getpid();
    // SAFETY: the hook only makes async-signal-safe syscalls (fcntl, dup2, prctl, getppid).
    unsafe { cmd.pre_exec(move || child_setup(&fds, parent)) };
    debug!(argv = ?spec.argv, user = %spec.user, cwd = %spec.cwd, layers = spec.lowerdirs.len(), network = %spec.network, "sandbox run");
    let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn { exe: exe.to_owned(), source })?;
    drop(cmd); // our copies of the output pipe's write end (or of the terminal's command side)
    if let Some(t) = &mut terminal {
        t.release_slave();
    }
    // Forwards stop signals to the helper while it runs; none once a stop signal came.
    let Some(_registered) = signals::Registered::new(child.id()) else {
        return Err(kill(child, SandboxError::Interrupted));
    };
    drop((spec_r, report_w));

    // A helper that died early makes this fail with EPIPE; its report tells why.
    let _ = File::from(spec_w).write_all(&json);

    // Dropped (killed and reaped) on every way out of this function, after the helper is waited for.
    let mut _stack = None;
    if let (Some(program), Some(((ready_r, ready_w), (go_r, go_w)))) = (&stack_program, net_pipes) {
        drop((ready_w, go_r));
        let mut made = [0u8; 1];
        // End of file instead: the helper failed before making the namespace; its report says why.
        if matches!(File::from(ready_r).read(&mut made), Ok(1)) {
            match network::Stack::start(program, child.id()) {
                Ok(stack) => {
                    _stack = Some(stack);
                    let _ = File::from(go_w).write_all(b"1");
                }
                Err(e) => {
                    drop(go_w);
                    // The helper builds the root meanwhile: if that failed, it has exited (so the
                    // stack found no namespace), and its own report is the error to show.
                    let _ = child.kill();
                    let _ = child.wait();
                    let mut report = String::new();
                    let _ = File::from(report_r).read_to_string(&mut report);
                    let report = report.trim();
                    if !report.is_empty() && !report.starts_with(helper::NETWORK_HANDSHAKE) {
                        return Err(SandboxError::Setup(report.to_owned()));
                    }
                    return Err(e);
                }
            }
        }
    }

    // Our terminal raw while the command has one of its own (restored when this is dropped).
    let _raw = match &terminal {
        Some(t) => Some(t.attach(spec.stdin).map_err(io_err("attaching the terminal"))?),
        None => None,
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match out_r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A terminal's master reads EIO once every process holding its other side has exited.
            Err(e) if terminal.is_some() && e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => return Err(kill(child, io_err("reading the command's output")(e))),
        };
        if let Err(e) = output.write_all(&buf[..n]) {
            return Err(kill(child, SandboxError::Output(e)));
        }
    }
    let status = child.wait().map_err(io_err("waiting for the helper"))?;
    let mut report = String::new();
    File::from(report_r).read_to_string(&mut report).map_err(io_err("reading the helper's report"))?;
    let code = exit_code(status);
    if let Some(why) = report.trim().strip_prefix(EXEC_FAILED) {
        return Err(SandboxError::Exec { code, message: why.to_owned() });
    }
    if !report.trim().is_empty() {
        return Err(SandboxError::Setup(report.trim().to_owned()));
    }
    debug!(code, "sandbox command finished");
    Ok(code)
}

fn kill(mut child: std::process::Child, err: SandboxError) -> SandboxError {
    let _ = child.kill(); // PID 1 follows by its parent-death signal, and the pid namespace with it
    let _ = child.wait();
    err
}

fn exit_code(status: ExitStatus) -> i32 {
    shell_code(status.code(), status.signal())
}

/// A shell's `$?`: the exit code, or 128 + the signal that killed the process.
fn shell_code(code: Option<i32>, signal: Option<i32>) -> i32 {
    code.or(signal.map(|s| 128 + s)).unwrap_or(SETUP_FAILED)
}

/// Checks the spec and makes its host paths absolute and canonical (the helper runs elsewhere).
fn checked(spec: &RunSpec) -> Result<RunSpec, SandboxError> {
    let invalid = |msg: String| SandboxError::InvalidSpec(msg);
    let canon =
        |what: &str, p: &Path| std::fs::canonicalize(p).map_err(|e| invalid(format!("{what} {}: {e}", p.display())));
    if spec.argv.is_empty() {
        return Err(invalid("argv is empty".into()));
    }
    let mut out = spec.clone();
    // An image may hold the same layer twice (two steps with identical changes). overlayfs refuses a
    // repeated lowerdir (ELOOP), and the lower copy is fully shadowed by the upper one — every path
    // and whiteout it has, the upper copy has too — so keeping only the topmost gives the same view.
    let mut seen = std::collections::HashSet::new();
    out.lowerdirs.clear();
    for l in &spec.lowerdirs {
        let l = canon("lowerdir", l)?;
        if seen.insert(l.clone()) {
            out.lowerdirs.push(l);
        }
    }
    out.upperdir = canon("upperdir", &spec.upperdir)?;
    out.workdir = canon("workdir", &spec.workdir)?;
    if out.cwd.is_empty() {
        out.cwd = "/".into();
    }
    if !out.cwd.starts_with('/') {
        return Err(invalid(format!("cwd {:?} is not absolute", out.cwd)));
    }
    if out.hostname.len() > 64 {
        return Err(invalid(format!("hostname {:?} is longer than 64 bytes", out.hostname)));
    }
    if let Some(e) = out.env.iter().find(|e| !e.contains('=')) {
        return Err(invalid(format!("env entry {e:?} has no '='")));
    }
    for b in &mut out.binds {
        b.source = canon("bind source", &b.source)?;
        if !b.target.starts_with('/') {
            return Err(invalid(format!("bind target {:?} is not absolute", b.target)));
        }
    }
    let strings = out.argv.iter().chain(&out.env).chain([&out.user, &out.cwd, &out.hostname]);
    if let Some(s) = strings.chain(out.binds.iter().map(|b| &b.target)).find(|s| s.contains('\0')) {
        return Err(invalid(format!("{s:?} contains a NUL byte")));
    }
    Ok(out)
}

/// Marks every fd from `first` up close-on-exec (`close_range(CLOSE_RANGE_CLOEXEC)`, Linux ≥ 5.11).
fn cloexec_from(first: u32) {
    // SAFETY: only sets the close-on-exec flag of this process's own descriptors.
    unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
}

fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only inspects the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// In a freshly forked child (`pre_exec`): put `fds[i].0` on fd number `fds[i].1` (inheritable) and
/// die with the parent thread. Only async-signal-safe calls.
///
/// A parent that died between fork and `prctl` sends no signal: the child would live on as an orphan
/// holding the sandbox. Re-parenting shows it — `getppid()` is no longer `parent` — so check after
/// arming the signal and give up then.
fn child_setup(fds: &[(RawFd, RawFd)], parent: rustix::process::Pid) -> io::Result<()> {
    let mut moved = [0; 4];
    if fds.len() > moved.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // Move everything above the targets first, so that placing one cannot clobber another.
    for (slot, &(fd, _)) in moved.iter_mut().zip(fds) {
        // SAFETY: plain fcntl on an fd we own in this process.
        *slot = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        if *slot < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    for (&from, &(_, to)) in moved.iter().zip(fds) {
        // SAFETY: dup2 between fds of this process; the result (without CLOEXEC) is inherited.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    if rustix::process::getppid() != Some(parent) {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}
