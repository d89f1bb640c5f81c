//! Signals reach the sandboxed command as they reach a podman container: `kill -TERM`, `timeout` or
//! Ctrl-C on `kolla-oci run` (or a build) are forwarded to the command, whose own exit status then
//! comes back; a second Ctrl-C (or [`STOP_TIMEOUT`] after the first signal) kills it.
//!
//! The chain, one hop per process, each forwarding what it takes with `sigwaitinfo`:
//! kolla-oci (a thread of [`install`]) → the helper (`helper.rs`, in a session of its own, so that a
//! terminal's Ctrl-C reaches the command only through us, once) → PID 1 of the container → the
//! command. A pid namespace's init only gets signals from outside that it handles: PID 1 keeps them
//! blocked and takes them with `sigwaitinfo`, which counts as handling.
//! Without a sandbox running, a signal does what it did before [`install`]: it ends the program.

use std::sync::Mutex;
use std::time::Duration;

/// Signals forwarded to the command.
pub(super) const FORWARDED: [libc::c_int; 6] =
    [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2];

/// How long a command has to exit after a forwarded signal before it is killed (podman's default).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Pids of the helpers of running sandboxes, and whether a stop signal came.
struct Live {
    helpers: Vec<u32>,
    stopping: bool,
}

static LIVE: Mutex<Live> = Mutex::new(Live { helpers: Vec::new(), stopping: false });

/// A set of signals, for `pthread_sigmask` and `sigwaitinfo`.
pub(super) struct SignalSet(libc::sigset_t);

impl SignalSet {
    /// `signals` (and `SIGCHLD` when `with_child`).
    pub(super) fn of(signals: &[libc::c_int], with_child: bool) -> SignalSet {
        // SAFETY: sigset manipulation on a local set.
        unsafe {
            let mut set = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut set);
            for &s in signals.iter().chain(with_child.then_some(&libc::SIGCHLD)) {
                libc::sigaddset(&mut set, s);
            }
            SignalSet(set)
        }
    }

    /// Blocks the set in the calling thread (threads it starts later inherit the mask; `Command`
    /// clears it in the programs it starts).
    pub(super) fn block(&self) -> std::io::Result<()> {
        // SAFETY: changes this thread's mask only.
        match unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &self.0, std::ptr::null_mut()) } {
            0 => Ok(()),
            e => Err(std::io::Error::from_raw_os_error(e)),
        }
    }

    /// Unblocks the set in the calling thread.
    pub(super) fn unblock(&self) {
        // SAFETY: changes this thread's mask only.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &self.0, std::ptr::null_mut()) };
    }

    /// The next pending signal of the set with its info, waiting at most `timeout` (`None`: forever).
    /// `None` on timeout or interruption.
    pub(super) fn wait(&self, timeout: Option<Duration>) -> Option<(libc::c_int, libc::siginfo_t)> {
        // SAFETY: `info` is written by the kernel; the set is a valid sigset.
        let mut info = unsafe { std::mem::zeroed::<libc::siginfo_t>() };
        let sig = match timeout {
            None => unsafe { libc::sigwaitinfo(&self.0, &mut info) },
            Some(t) => {
                let ts = libc::timespec { tv_sec: t.as_secs() as libc::time_t, tv_nsec: t.subsec_nanos() as _ };
                unsafe { libc::sigtimedwait(&self.0, &mut info, &ts) }
            }
        };
        (sig > 0).then_some((sig, info))
    }
}

/// Sends `sig` to `pid` (ignoring a process that is already gone).
pub(super) fn send(pid: u32, sig: libc::c_int) {
    // SAFETY: plain kill(2).
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Makes this program forward [`FORWARDED`] signals to the commands of running sandboxes (see the
/// module doc). Call it early in `main`, before other threads exist (they inherit the blocked mask).
pub fn install() {
    if SignalSet::of(&FORWARDED, false).block().is_err() {
        return;
    }
    let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
        let set = SignalSet::of(&FORWARDED, false);
        let mut interrupts = 0;
        loop {
            let Some((sig, _)) = set.wait(None) else { continue };
            let helpers = {
                let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
                live.stopping = true;
                live.helpers.clone()
            };
            if helpers.is_empty() {
                die_of(sig);
            }
            interrupts += usize::from(sig == libc::SIGINT);
            let hard = interrupts > 1;
            tracing::info!(
                "{}: {}",
                signal_name(sig),
                if hard { "killing the container" } else { "passed on to the container" }
            );
            for &pid in &helpers {
                send(pid, if hard { libc::SIGKILL } else { sig });
            }
            if !hard {
                std::thread::spawn(move || {
                    std::thread::sleep(STOP_TIMEOUT);
                    let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
                    for &pid in live.helpers.iter().filter(|p| helpers.contains(p)) {
                        send(pid, libc::SIGKILL);
                    }
                });
            }
        }
    });
    if spawned.is_err() {
        SignalSet::of(&FORWARDED, false).unblock();
    }
}

/// Ends the program by `sig`, as if it had never been blocked (its default action).
fn die_of(sig: libc::c_int) -> ! {
    // SAFETY: restoring the default disposition and re-raising; only this thread has it unblocked.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        SignalSet::of(&[sig], false).unblock();
        libc::raise(sig);
    }
    std::process::exit(128 + sig)
}

fn signal_name(sig: libc::c_int) -> String {
    match sig {
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGQUIT => "SIGQUIT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGUSR1 => "SIGUSR1".into(),
        libc::SIGUSR2 => "SIGUSR2".into(),
        n => format!("signal {n}"),
    }
}

/// A running helper, registered for forwarding while it lives.
pub(super) struct Registered(u32);

impl Registered {
    /// Registers `pid`; `None` once a stop signal came (no new sandbox is started then).
    pub(super) fn new(pid: u32) -> Option<Registered> {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        if live.stopping {
            return None;
        }
        live.helpers.push(pid);
        Some(Registered(pid))
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).helpers.retain(|&p| p != self.0);
    }
}
