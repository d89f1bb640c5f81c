//! The `__sandbox-init` helper: a fresh, single-threaded process (so it may unshare and fork freely)
//! that builds one container and runs one command in it.
//!
//! helper: reads the spec and the scratch dir (fd 3), `unshare(NEWPID|NEWUTS|NEWIPC)` plus `NEWNET`
//!   unless the network is the host's, brings `lo` up, waits for the parent's network stack when the
//!   network is private (fds 5 and 6), fills the scratch dir, forks PID 1, waits for it and exits with
//!   its status.
//! PID 1: `unshare(NEWNS)` (its own mount namespace, so that `pivot_root` leaves the helper on the
//!   host's root), builds the root, resolves the user, forks the command and reaps every process until
//!   the command exits; then it exits with the command's status and the kernel kills the rest.
//! command: resets signals, drops to the user, `chdir`, `execve`.
//! Any setup failure is written (one line naming the step) to the report fd 4, which the command does
//! not inherit.

use std::ffi::CString;
use std::fmt::Display;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};
use rustix::thread::UnshareFlags;

use super::mounts::{self, Scratch};
use super::network::{self, NetworkMode};
use super::seccomp::Profile;
use super::signals::{self, FORWARDED, SignalSet};
use super::{HelperInput, NET_GO_FD, NET_READY_FD, REPORT_FD, RunSpec, SETUP_FAILED, SPEC_FD, fd_is_open};
use super::{caps, idmap, user};

/// How the helper's network-handshake errors start (the parent then reports the stack's own error).
pub(super) const NETWORK_HANDSHAKE: &str = "network handshake";

/// Docker's default `PATH` for a container whose environment has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A failed setup step, as reported to the caller: `"<step>: <detail>"`.
#[derive(Debug)]
pub(super) struct StepError(pub String);

impl StepError {
    /// `map_err` adapter: `.map_err(StepError::at("mount /proc"))`.
    pub(super) fn at<E: Display>(what: impl Display) -> impl FnOnce(E) -> StepError {
        move |e| StepError(format!("{what}: {e}"))
    }
}

/// Entry point of `kolla-oci __sandbox-init`.
pub(super) fn main() -> ! {
    if !fd_is_open(SPEC_FD) || !fd_is_open(REPORT_FD) {
        let _ = writeln!(std::io::stderr(), "kolla-oci: {} is internal to `kolla-oci`", super::HELPER_ARG);
        std::process::exit(2);
    }
    // SAFETY: checked open above; nothing else in this fresh process owns fds 3 and 4.
    let (spec_file, report) = unsafe { (File::from_raw_fd(SPEC_FD), File::from_raw_fd(REPORT_FD)) };
    // Nothing we were given reaches the command (the network fds are taken before it is forked).
    super::cloexec_from(3);
    // The command must not inherit the report channel: its closing tells nothing, its content is ours.
    let code = match rustix::io::fcntl_setfd(&report, rustix::io::FdFlags::CLOEXEC)
        .map_err(StepError::at("report fd"))
        .and_then(|()| helper(spec_file, &report))
    {
        Ok(code) => code,
        Err(e) => fail(&report, e),
    };
    std::process::exit(code)
}

/// Reports `e` to the caller; returns the exit status that goes with it.
fn fail(mut report: &File, e: StepError) -> i32 {
    let _ = writeln!(report, "{}", e.0);
    SETUP_FAILED
}

fn helper(mut spec_file: File, report: &File) -> Result<i32, StepError> {
    let mut json = Vec::new();
    spec_file.read_to_end(&mut json).map_err(StepError::at("read spec"))?;
    drop(spec_file);
    let HelperInput { spec, scratch, ids } = serde_json::from_slice(&json).map_err(StepError::at("parse spec"))?;
    // A session of our own: a terminal's Ctrl-C reaches the command only as `run` forwards it, once.
    rustix::process::setsid().map_err(StepError::at("setsid"))?;
    // From here on the scratch dir is `.`: nothing above it needs to be searchable by the container.
    rustix::process::chdir(&scratch).map_err(StepError::at(format_args!("chdir {}", scratch.display())))?;
    let spec = match &ids {
        Some(ids) => idmap::enter(spec, ids)?,
        None => spec,
    };
    let mut flags = UnshareFlags::NEWPID | UnshareFlags::NEWUTS | UnshareFlags::NEWIPC;
    if spec.network != NetworkMode::Host {
        flags |= UnshareFlags::NEWNET;
    }
    // SAFETY: this process is single-threaded (nothing has spawned a thread), so no other thread
    // can be confused by the new namespaces.
    unsafe { rustix::thread::unshare_unsafe(flags) }
        .map_err(StepError::at(format_args!("unshare namespaces ({flags:?})")))?;
    if spec.network != NetworkMode::Host {
        network::loopback_up()?;
    }
    // The parent starts the network stack while we build the root; PID 1 waits for it before the command.
    let net_go = match spec.network {
        NetworkMode::Private => Some(announce_network()?),
        NetworkMode::Host | NetworkMode::None => None,
    };
    let scratch = Scratch::prepare(&spec, PathBuf::from("."))?;
    let profile = Profile::docker_default().map_err(StepError::at("compile the seccomp profile"))?;
    // PID 1 sees no parent (`getppid()` is 0 across the pid namespace), so it learns whether we died
    // before it armed its parent-death signal from a pidfd of ours: readable once we have exited.
    let me = rustix::process::pidfd_open(rustix::process::getpid(), rustix::process::PidfdFlags::empty())
        .map_err(StepError::at("pidfd_open"))?;
    // Blocked before forking, so that PID 1 starts with them blocked too (see `signals.rs`).
    let signals = SignalSet::of(&FORWARDED, true);
    signals.block().map_err(StepError::at("block signals"))?;
    // SAFETY: single-threaded process, so the child may do anything after fork.
    match unsafe { libc::fork() } {
        -1 => Err(StepError::at("fork pid 1")(std::io::Error::last_os_error())),
        0 => pid1(&spec, &scratch, report, &me, net_go, profile),
        pid => {
            drop(net_go);
            Ok(exit_code(forward_until_exit(&signals, pid_of(pid))?))
        }
    }
}

/// Tells the parent the network namespace exists (so that it starts the network stack on it) and
/// returns the fd on which the parent says the stack is up; it is close-on-exec, like the other.
fn announce_network() -> Result<File, StepError> {
    if !fd_is_open(NET_READY_FD) || !fd_is_open(NET_GO_FD) {
        return Err(StepError(format!("{NETWORK_HANDSHAKE}: fds 5 and 6 are not open")));
    }
    // SAFETY: the parent placed these fds for us (checked open); nothing else owns them.
    let (mut ready, go) = unsafe { (File::from_raw_fd(NET_READY_FD), File::from_raw_fd(NET_GO_FD)) };
    rustix::io::fcntl_setfd(&go, rustix::io::FdFlags::CLOEXEC)
        .map_err(StepError::at(format_args!("{NETWORK_HANDSHAKE}: fd")))?;
    ready.write_all(b"1").map_err(StepError::at(format_args!("{NETWORK_HANDSHAKE}: write")))?;
    Ok(go)
}

/// Waits until the parent's network stack has configured the namespace's tap device.
fn network_up(mut go: File) -> Result<(), StepError> {
    let mut up = [0u8; 1];
    match go.read(&mut up) {
        Ok(1) => Ok(()),
        // The parent reports the reason (the stack's own message).
        Ok(_) => Err(StepError(format!("{NETWORK_HANDSHAKE}: the network stack did not start"))),
        Err(e) => Err(StepError::at(format_args!("{NETWORK_HANDSHAKE}: read"))(e)),
    }
}

fn pid_of(raw: libc::pid_t) -> Pid {
    Pid::from_raw(raw).expect("fork returned a positive pid")
}

/// Waits for `child`, passing it every forwarded signal that comes meanwhile.
fn forward_until_exit(signals: &SignalSet, child: Pid) -> Result<WaitStatus, StepError> {
    loop {
        match rustix::process::waitpid(Some(child), WaitOptions::NOHANG) {
            Ok(Some((_, status))) => return Ok(status),
            Ok(None) | Err(Errno::INTR) => {}
            Err(e) => return Err(StepError::at("wait for pid 1")(e)),
        }
        match signals.wait(None) {
            Some((libc::SIGCHLD, _)) | None => {}
            Some((sig, _)) => signals::send(child.as_raw_nonzero().get() as u32, sig),
        }
    }
}

fn exit_code(status: WaitStatus) -> i32 {
    super::shell_code(status.exit_status(), status.terminating_signal())
}

/// PID 1 of the new pid namespace. Never returns.
fn pid1(
    spec: &RunSpec,
    scratch: &Scratch,
    report: &File,
    parent: &OwnedFd,
    net_go: Option<File>,
    seccomp: Profile,
) -> ! {
    let setup =
        pid1_setup(spec, scratch, parent, seccomp).and_then(|exec| net_go.map_or(Ok(()), network_up).map(|()| exec));
    let code = match setup {
        Ok(exec) => {
            // SAFETY: single-threaded process.
            match unsafe { libc::fork() } {
                -1 => fail(report, StepError::at("fork command")(std::io::Error::last_os_error())),
                0 => exec.exec(report),
                pid => reap(pid_of(pid)),
            }
        }
        Err(e) => fail(report, e),
    };
    std::process::exit(code)
}

fn pid1_setup(spec: &RunSpec, scratch: &Scratch, parent: &OwnedFd, seccomp: Profile) -> Result<Exec, StepError> {
    // Docker's umask, so that what lands in the layer does not depend on the builder's umask.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(StepError::at("set parent-death signal"))?;
    let mut poll = libc::pollfd { fd: parent.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    if unsafe { libc::poll(&mut poll, 1, 0) } > 0 {
        return Err(StepError::at("the sandbox helper")(std::io::Error::other("exited before PID 1 started")));
    }
    // SAFETY: single-threaded process.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }.map_err(StepError::at("unshare mount namespace"))?;
    mounts::setup_root(spec, scratch)?;
    if !spec.hostname.is_empty() {
        rustix::system::sethostname(spec.hostname.as_bytes())
            .map_err(StepError::at(format_args!("sethostname {:?}", spec.hostname)))?;
    }
    Exec::prepare(spec, seccomp)
}

/// Waits for every process of the namespace (orphans are re-parented to us) until `main` exits,
/// passing `main` every forwarded signal (they are blocked here since the helper forked us).
fn reap(main: Pid) -> i32 {
    let signals = SignalSet::of(&FORWARDED, true);
    loop {
        loop {
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) if pid == main => return exit_code(status),
                Ok(Some(_)) | Err(Errno::INTR) => continue,
                Ok(None) => break,
                Err(_) => return SETUP_FAILED, // ECHILD: cannot happen while `main` is unreaped
            }
        }
        match signals.wait(None) {
            Some((libc::SIGCHLD, _)) | None => {}
            Some((sig, _)) => signals::send(main.as_raw_nonzero().get() as u32, sig),
        }
    }
}

/// Everything the command's process needs, computed in PID 1 (inside the new root) before forking.
struct Exec {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    cwd: CString,
    /// Where to look for `argv[0]`, in order.
    candidates: Vec<CString>,
    argv: Vec<CString>,
    env: Vec<CString>,
    seccomp: Profile,
    /// Make stdin (a pseudo-terminal) the controlling terminal (`run -t`).
    tty: bool,
}

fn cstring(what: &str, s: impl Into<Vec<u8>>) -> Result<CString, StepError> {
    CString::new(s).map_err(StepError::at(what))
}

impl Exec {
    fn prepare(spec: &RunSpec, seccomp: Profile) -> Result<Exec, StepError> {
        let read = |path: &str| match std::fs::read_to_string(path) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(StepError::at(format_args!("read {path}"))(e)),
        };
        let user = user::resolve(&spec.user, &read("/etc/passwd")?, &read("/etc/group")?)
            .map_err(StepError::at(format_args!("resolve user {:?}", spec.user)))?;
        let mut env = spec.env.clone();
        let has = |env: &[String], key: &str| env.iter().any(|e| e.split_once('=').is_some_and(|(k, _)| k == key));
        if !has(&env, "PATH") {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        if !has(&env, "HOME") {
            env.push(format!("HOME={}", user.home));
        }
        let path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH).to_owned();
        std::fs::create_dir_all(&spec.cwd)
            .map_err(StepError::at(format_args!("create working directory {}", spec.cwd)))?;
        let prog = &spec.argv[0];
        let candidates = if prog.contains('/') {
            vec![cstring("argv[0]", prog.as_bytes())?]
        } else {
            path.split(':')
                .map(|dir| if dir.is_empty() { "." } else { dir })
                .map(|dir| cstring("PATH", Path::new(dir).join(prog).as_os_str().as_bytes()))
                .collect::<Result<_, _>>()?
        };
        Ok(Exec {
            uid: user.uid,
            gid: user.gid,
            groups: user.groups,
            cwd: cstring("cwd", spec.cwd.as_bytes())?,
            candidates,
            argv: spec.argv.iter().map(|a| cstring("argv", a.as_bytes())).collect::<Result<_, _>>()?,
            env: env.into_iter().map(|e| cstring("env", e)).collect::<Result<_, _>>()?,
            seccomp,
            tty: spec.tty,
        })
    }

    /// In the command's process: confine it, drop privileges and execute. Never returns.
    fn exec(&self, report: &File) -> ! {
        match self.confine().and_then(|()| self.switch_user()) {
            Ok(()) => {
                // As podman reports it: 127 for a command not found, 126 for one that cannot run.
                let (code, err) = self.execve();
                let mut report = report;
                let _ = writeln!(report, "{}{}", super::EXEC_FAILED, err.0);
                std::process::exit(code)
            }
            Err(e) => std::process::exit(fail(report, e)),
        }
    }

    /// Docker's defaults: default signal handling, no inherited fds, Docker's capability set and
    /// seccomp profile (installed while we still have `CAP_SYS_ADMIN` here, see `seccomp.rs`).
    fn confine(&self) -> Result<(), StepError> {
        reset_signals();
        super::cloexec_from(3);
        if self.tty {
            // A session of its own whose controlling terminal is the one on its stdin, so that the
            // terminal's Ctrl-C and job control reach it.
            rustix::process::setsid().map_err(StepError::at("setsid"))?;
            rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())
                .map_err(StepError::at("make stdin the controlling terminal"))?;
        }
        caps::restrict_to_docker_default().map_err(StepError::at("drop capabilities"))?;
        self.seccomp.install().map_err(StepError::at("install the seccomp filter"))
    }

    fn switch_user(&self) -> Result<(), StepError> {
        let groups: Vec<_> = self.groups.iter().map(|&g| rustix::process::Gid::from_raw(g)).collect();
        match rustix::thread::set_thread_groups(&groups) {
            // A user namespace with a single-id mapping has setgroups disabled ("deny").
            Ok(()) | Err(Errno::PERM) => {}
            Err(e) => return Err(StepError::at(format_args!("setgroups {:?}", self.groups))(e)),
        }
        let gid = rustix::process::Gid::from_raw(self.gid);
        rustix::thread::set_thread_res_gid(gid, gid, gid)
            .map_err(StepError::at(format_args!("setgid {}", self.gid)))?;
        let uid = rustix::process::Uid::from_raw(self.uid);
        rustix::thread::set_thread_res_uid(uid, uid, uid)
            .map_err(StepError::at(format_args!("setuid {}", self.uid)))?;
        rustix::process::chdir(self.cwd.as_c_str())
            .map_err(StepError::at(format_args!("chdir {:?} as uid {}", self.cwd, self.uid)))
    }

    /// Like `execvpe`: the first candidate that exists wins; returns only on failure, with the most
    /// telling error and the shell's exit status for it (127 not found, 126 not executable).
    fn execve(&self) -> (i32, StepError) {
        let argv: Vec<*const libc::c_char> = self.argv.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
        let envp: Vec<*const libc::c_char> = self.env.iter().map(|e| e.as_ptr()).chain([std::ptr::null()]).collect();
        let mut best = libc::ENOENT;
        for path in &self.candidates {
            // SAFETY: NUL-terminated arrays of pointers into CStrings that outlive the call.
            unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::ENOENT);
            if !matches!(errno, libc::ENOENT | libc::ENOTDIR) {
                best = errno;
            }
        }
        let prog = self.argv[0].to_string_lossy();
        let code = if matches!(best, libc::ENOENT | libc::ENOTDIR) { 127 } else { 126 };
        let err = match best {
            libc::ENOENT if !prog.contains('/') => {
                StepError(format!("exec {prog:?}: executable file not found in $PATH"))
            }
            e => StepError::at(format_args!("exec {prog:?}"))(std::io::Error::from_raw_os_error(e)),
        };
        (code, err)
    }
}

/// Rust ignores SIGPIPE and ignored signals survive `execve`: the command gets the default signal
/// dispositions and an empty signal mask, as under Docker.
fn reset_signals() {
    // SAFETY: plain signal-disposition syscalls on this (single-threaded) process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}
