//! Entering the user namespace at start-up, when not root (the podman/buildah `unshare` model).
//!
//! parent (the program as started): spawns `/proc/self/exe` with the same arguments and the
//! `_KOLLA_OCI_USERNS_CHILD` marker, fds 3 (ready) and 4 (go); waits for "ready", maps the child's ids
//! with `newuidmap`/`newgidmap` (0 → our id, 1.. → the subordinate ranges of /etc/subuid and
//! /etc/subgid) or, without subordinate ids, writes a single mapping itself; writes "go"; then forwards
//! signals to the child and exits with its status.
//! child: `unshare(CLONE_NEWUSER|CLONE_NEWNS)`, says "ready", waits for "go", and returns from
//! `early_init` as root of the new namespace. When the namespace cannot be made, the child exits
//! quietly and the parent carries on without one (commands that need no sandbox still work; `run`
//! then warns and fails).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::{Once, OnceLock};
use std::time::Duration;

use rustix::thread::UnshareFlags;
use tracing::warn;

use super::signals::{FORWARDED, SignalSet};
use super::{REPORT_FD, SPEC_FD, child_setup, fd_is_open, pipe};

/// Environment marker of the child (removed as soon as the child has read it).
const CHILD_ENV: &str = "_KOLLA_OCI_USERNS_CHILD";

/// A message for the user about a degraded set-up, logged at the first `run` (logging is not
/// configured yet when `early_init` runs).
static WARNING: OnceLock<String> = OnceLock::new();

/// See the module doc. Returns in the child, or in the parent when no namespace could be made.
pub(super) fn init() {
    if std::env::var_os(CHILD_ENV).is_some() {
        // SAFETY: `early_init` runs before any other thread exists.
        unsafe { std::env::remove_var(CHILD_ENV) };
        child();
    } else if !rustix::process::geteuid().is_root() {
        parent();
    }
}

/// Logs the set-up warning, once per process.
pub(super) fn log_warning_once() {
    static LOGGED: Once = Once::new();
    if let Some(w) = WARNING.get() {
        LOGGED.call_once(|| warn!("{w}"));
    }
}

/// The set-up warning, if any (for the self-test entry, which has no logger).
pub(super) fn warning() -> Option<&'static str> {
    WARNING.get().map(String::as_str)
}

fn child() {
    if !fd_is_open(SPEC_FD) || !fd_is_open(REPORT_FD) {
        return; // a stray marker, not our parent's doing
    }
    // SAFETY: the parent placed these fds for us (checked open); nothing else owns them.
    let (mut ready, mut go) = unsafe { (File::from_raw_fd(SPEC_FD), File::from_raw_fd(REPORT_FD)) };
    // SAFETY: single-threaded, see `init`.
    if let Err(e) = unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER | UnshareFlags::NEWNS) } {
        let _ = write!(ready, "unshare(CLONE_NEWUSER|CLONE_NEWNS): {e}");
        std::process::exit(0);
    }
    let _ = ready.write_all(b"ready");
    drop(ready);
    let mut msg = String::new();
    let _ = go.read_to_string(&mut msg);
    let Some(note) = msg.strip_prefix("go") else {
        std::process::exit(0); // the parent could not map us and carries on by itself
    };
    if !note.trim().is_empty() {
        let _ = WARNING.set(note.trim().to_owned());
    }
}

fn parent() {
    if let Err(reason) = try_parent() {
        let _ =
            WARNING.set(format!("no user namespace ({reason}): running without one, so RUN steps cannot be sandboxed"));
    }
}

/// Returns only on failure; on success it exits with the child's status.
fn try_parent() -> Result<(), String> {
    let plan = MapPlan::for_current_user();
    let (ready_r, ready_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let (go_r, go_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let signals = SignalSet::of(&FORWARDED, true);
    signals.block().map_err(|e| format!("blocking signals: {e}"))?;
    let mut args = std::env::args_os();
    let mut cmd = Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    cmd.args(args).env(CHILD_ENV, "1");
    let fds = [(ready_w.as_raw_fd(), SPEC_FD), (go_r.as_raw_fd(), REPORT_FD)];
    let parent = rustix::process::getpid();
    // SAFETY: the hook only makes async-signal-safe syscalls (fcntl, dup2, prctl, getppid).
    unsafe { cmd.pre_exec(move || child_setup(&fds, parent)) };
    let spawned = cmd.spawn();
    drop((ready_w, go_r));
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            signals.unblock();
            return Err(format!("re-executing /proc/self/exe: {e}"));
        }
    };
    let mut msg = String::new();
    let _ = File::from(ready_r).read_to_string(&mut msg);
    let mapped = if msg == "ready" {
        plan.apply(child.id())
    } else {
        Err(if msg.is_empty() { "the child died".into() } else { msg })
    };
    let note = match mapped {
        Ok(note) => note,
        Err(e) => {
            drop(go_w); // tells the child to exit quietly
            let _ = child.wait();
            signals.unblock();
            return Err(e);
        }
    };
    let _ = File::from(go_w).write_all(format!("go{}", note.unwrap_or_default()).as_bytes());
    forward_until_exit(&signals, &mut child)
}

/// How our ids get mapped into the child's namespace.
#[derive(Debug, PartialEq, Eq)]
struct MapPlan {
    uid: u32,
    gid: u32,
    user: String,
    /// `(start, count)` ranges from /etc/subuid and /etc/subgid; empty when the user has none.
    subuids: Vec<(u64, u64)>,
    subgids: Vec<(u64, u64)>,
}

impl MapPlan {
    fn for_current_user() -> MapPlan {
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let user = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[2].parse() == Ok(uid))
            .map_or_else(|| uid.to_string(), |f| f[0].to_owned());
        let read = |p| std::fs::read_to_string(p).unwrap_or_default();
        MapPlan {
            subuids: sub_ranges(&read("/etc/subuid"), &user, uid),
            subgids: sub_ranges(&read("/etc/subgid"), &user, uid),
            uid,
            gid,
            user,
        }
    }

    /// Maps the child's ids. `Ok(Some(note))` when only a single id could be mapped.
    fn apply(&self, pid: u32) -> Result<Option<String>, String> {
        let why_single = if self.subuids.is_empty() || self.subgids.is_empty() {
            format!("no subordinate ids for user {} in /etc/subuid and /etc/subgid", self.user)
        } else {
            match newidmap("newuidmap", pid, self.uid, &self.subuids)
                .and_then(|()| newidmap("newgidmap", pid, self.gid, &self.subgids))
            {
                Ok(()) => return Ok(None),
                Err(e) => e,
            }
        };
        let write = |file: &str, content: String| {
            std::fs::write(format!("/proc/{pid}/{file}"), content)
                .map_err(|e| format!("writing /proc/{pid}/{file}: {e}"))
        };
        write("uid_map", format!("0 {} 1\n", self.uid))?;
        write("setgroups", "deny".into())?;
        write("gid_map", format!("0 {} 1\n", self.gid))?;
        Ok(Some(format!(
            "{why_single}: only uid {} and gid {} are mapped (to root); RUN steps that chown files \
             to other ids (or switch USER) will fail",
            self.uid, self.gid
        )))
    }
}

/// The ranges of `/etc/subuid`-format `content` for `user` (by name or uid), duplicates dropped.
pub(super) fn sub_ranges(content: &str, user: &str, uid: u32) -> Vec<(u64, u64)> {
    let uid = uid.to_string();
    let mut out = Vec::new();
    for line in content.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split(':').collect();
        let [name, start, count] = f[..] else { continue };
        if name != user && name != uid {
            continue;
        }
        if let (Ok(start), Ok(count)) = (start.parse(), count.parse())
            && count > 0
            && !out.contains(&(start, count))
        {
            out.push((start, count));
        }
    }
    out
}

/// `newuidmap <pid> 0 <own> 1 1 <start> <count> [<next> <start> <count> ...]`.
fn newidmap(tool: &str, pid: u32, own: u32, ranges: &[(u64, u64)]) -> Result<(), String> {
    let mut args = vec![pid.to_string(), "0".into(), own.to_string(), "1".into()];
    let mut inside = 1u64;
    for &(start, count) in ranges {
        args.extend([inside.to_string(), start.to_string(), count.to_string()]);
        inside += count;
    }
    let out = Command::new(tool).args(&args).output().map_err(|e| format!("running {tool}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{tool} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Waits for `child` and exits with its status, passing on the signals other processes send us
/// (terminal-generated ones reach the child directly, through the process group).
fn forward_until_exit(signals: &SignalSet, child: &mut Child) -> ! {
    loop {
        if let Some((sig, info)) = signals.wait(Some(Duration::from_secs(1)))
            && sig != libc::SIGCHLD
            && info.si_code <= 0
        {
            // si_code <= 0: sent by a process (kill, sigqueue), not by the terminal.
            super::signals::send(child.id(), sig);
        }
        match child.try_wait() {
            Ok(Some(status)) => std::process::exit(super::exit_code(status)),
            Ok(None) => {}
            Err(_) => std::process::exit(super::SETUP_FAILED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_ranges_by_name_or_uid_in_order_without_duplicates() {
        let content = "# comment\nalice:100000:65536\nbob:165536:65536\n1001:300000:1000\n\
                       alice:100000:65536\nalice:400000:0\nbad line\n";
        assert_eq!(sub_ranges(content, "alice", 1001), vec![(100000, 65536), (300000, 1000)]);
        assert_eq!(sub_ranges(content, "bob", 7), vec![(165536, 65536)]);
        assert!(sub_ranges(content, "carol", 7).is_empty());
    }
}
