//! The network of a sandboxed command ([`NetworkMode`]): the host's, none, or (the default) a private
//! network namespace with outbound access through **slirp4netns**, a user-mode TCP/IP stack.
//!
//! Why a private namespace: a RUN that shares the host's network namespace reaches every service the
//! build host has on 127.0.0.1 (databases, caches, a cloud metadata proxy, the docker socket proxy…)
//! and can read or change them. In a namespace of its own, 127.0.0.1 is the command's own loopback.
//!
//! Why slirp4netns rather than pasta (both packaged by Debian, both used by podman): measured on the
//! 2-core build machine (Debian 12: slirp4netns 1.2.0, passt 0.0~git20230309), a 34 MB download from
//! deb.debian.org ran at 1.0× the host's speed through slirp4netns and 0.75× through pasta, and the stack
//! was up 5–18 ms after start with slirp4netns against 20–100 ms with pasta. slirp4netns also has the
//! two handshakes the sandbox needs, `--ready-fd` (written once the tap device is configured) and
//! `--exit-fd` (it exits when that pipe closes, so it cannot outlive us even if we are killed). That
//! pasta, run as root, drops to `nobody` unless told `--runas 0:0`, then cannot open a `/proc/PID/ns`
//! path, and by default forwards the host's loopback ports into the namespace (`-T`/`-U auto`, and the
//! gateway address mapped to the host) unless told `-T none -U none --no-map-gw`.
//! In kolla-oci (`benches/network.sh`): downloads in a RUN run at 0.93–1.02× `--network host`; each
//! RUN costs 24–34 ms more, mostly the kernel's tear-down of the tap device when slirp4netns exits.
//!
//! How: the helper `unshare`s the network namespace (with its pid, uts and ipc ones, see `helper.rs`),
//! brings `lo` up and says so on a pipe; [`run`](super::run), in the parent, then starts slirp4netns
//! against the helper's pid and waits for its ready fd while the helper builds the root, and then tells
//! PID 1, which waits for that before it starts the command (a pipe handshake: no sleep, and the
//! stack's start-up overlaps the mounts). The stack is killed and reaped when the run ends
//! ([`Stack`]'s `Drop`), whatever the outcome.
//!
//! Guarantees: `--disable-host-loopback` makes slirp4netns refuse connections to its host alias
//! 10.0.2.2 (which would otherwise reach the host's 127.0.0.1); DNS goes through slirp4netns' forwarder
//! at 10.0.2.3, which resolves the way the host does — even when the host's /etc/resolv.conf names a
//! loopback resolver (systemd-resolved, dnsmasq), which the command could not reach itself.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::helper::StepError;
use super::{SandboxError, child_setup, pipe};

/// The user-mode network stack of [`NetworkMode::Private`].
pub const STACK: &str = "slirp4netns";

/// slirp4netns' DNS forwarder, as the command's only nameserver.
pub(super) const DNS_FORWARDER: &str = "10.0.2.3";

/// How long slirp4netns may take to configure the tap device (it takes milliseconds).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The network a sandboxed command sees; spelled as buildah's and podman's `--network`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Its own network namespace, with outbound access through slirp4netns and the host's loopback
    /// out of reach (the default for builds).
    #[default]
    Private,
    /// The host's network namespace, 127.0.0.1 included (the default of `kolla-oci run`, for services
    /// tested from the host).
    Host,
    /// Its own network namespace with only `lo` up: no network at all.
    None,
}

impl NetworkMode {
    /// The name on the command line (`private`, `host`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Private => "private",
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
        }
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The slirp4netns program, found in `PATH` before the helper starts (a clear error rather than a
/// failed handshake).
pub(super) fn stack_program() -> Result<PathBuf, SandboxError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(STACK)).find(|p| p.is_file()).ok_or_else(|| {
        SandboxError::Network(format!(
            "{STACK} is not in PATH; install it (apt-get install {STACK}) or give --network host"
        ))
    })
}

/// A running slirp4netns; killed and reaped when dropped.
pub(super) struct Stack {
    child: Child,
    /// Its `--exit-fd`: closing it asks it to exit (and the kernel closes it if we die).
    exit: Option<OwnedFd>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.exit = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Stack {
    /// Starts slirp4netns on the network namespace of process `pid` and returns once the namespace's
    /// `tap0` is configured (address 10.0.2.100/24, default route via 10.0.2.2, `lo` up).
    pub(super) fn start(program: &Path, pid: u32) -> Result<Stack, SandboxError> {
        let io_err = |step| move |e: io::Error| SandboxError::Network(format!("{step}: {e}"));
        let (ready_r, ready_w) = pipe().map_err(io_err("creating the ready pipe"))?;
        let (exit_r, exit_w) = pipe().map_err(io_err("creating the exit pipe"))?;
        let mut log = tempfile::tempfile().map_err(io_err("creating the log file"))?;
        let stderr = log.try_clone().map_err(io_err("creating the log file"))?;
        let mut cmd = Command::new(program);
        cmd.args(["--configure", "--mtu=65520", "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp"])
            .args(["--ready-fd=3", "--exit-fd=4"])
            .arg(pid.to_string())
            .arg("tap0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let fds = [(ready_w.as_raw_fd(), 3), (exit_r.as_raw_fd(), 4)];
        let parent = rustix::process::getpid();
        // SAFETY: the hook only makes async-signal-safe syscalls (fcntl, dup2, prctl, getppid).
        unsafe { cmd.pre_exec(move || child_setup(&fds, parent)) };
        let child = cmd.spawn().map_err(|e| SandboxError::Network(format!("starting {}: {e}", program.display())))?;
        drop(cmd);
        drop((ready_w, exit_r));
        let stack = Stack { child, exit: Some(exit_w) };
        match wait_ready(ready_r) {
            Ok(()) => Ok(stack),
            Err(why) => {
                drop(stack); // kills and reaps it: its log is complete
                let mut out = String::new();
                let _ = log.rewind().and_then(|()| log.read_to_string(&mut out));
                let tail: Vec<&str> = out.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
                let hint = if out.contains("/dev/net/tun") {
                    " (it needs /dev/net/tun open to all, mode 0666 as udev sets it; or give --network host)"
                } else {
                    ""
                };
                Err(SandboxError::Network(format!("{STACK} {why}: {}{hint}", tail.join("; "))))
            }
        }
    }
}

/// Waits for slirp4netns' `1` on its ready fd.
fn wait_ready(ready: OwnedFd) -> Result<(), String> {
    let mut pfd = libc::pollfd { fd: ready.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, READY_TIMEOUT.as_millis() as libc::c_int) };
        match n {
            0 => return Err(format!("did not get ready within {} s", READY_TIMEOUT.as_secs())),
            n if n > 0 => break,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            _ => return Err(format!("poll: {}", io::Error::last_os_error())),
        }
    }
    let mut byte = [0u8; 1];
    match File::from(ready).read(&mut byte) {
        Ok(1) if byte[0] == b'1' => Ok(()),
        Ok(_) => Err("exited before the network was up".into()),
        Err(e) => Err(format!("ready fd: {e}")),
    }
}

/// The command's /etc/resolv.conf in a private namespace: the host's `search`, `domain` and `options`
/// lines, with the forwarder as the only nameserver (the host's may be on its loopback).
pub(super) fn private_resolv_conf(host: &str) -> String {
    let mut out = format!("nameserver {DNS_FORWARDER}\n");
    for line in host.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if matches!(first, "search" | "domain" | "options") {
            out.push_str(line.trim());
            out.push('\n');
        }
    }
    out
}

/// Brings `lo` up in the (new) network namespace of this process.
pub(super) fn loopback_up() -> Result<(), StepError> {
    let at = |what: &str| StepError::at(format!("bring up lo: {what}"));
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(at("socket")(io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    // SAFETY: an all-zero ifreq is a valid value; the name fits (3 bytes + NUL of IFNAMSIZ 16).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass; flags is the active member.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(at("SIOCGIFFLAGS")(io::Error::last_os_error()));
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(at("SIOCSIFFLAGS")(io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_resolv_conf_keeps_search_and_options_but_only_the_forwarder() {
        let host = "# generated\nnameserver 127.0.0.53\nsearch example.org corp\noptions edns0 trust-ad\n\
                    nameserver 10.1.1.1\ndomain example.org\n";
        assert_eq!(
            private_resolv_conf(host),
            "nameserver 10.0.2.3\nsearch example.org corp\noptions edns0 trust-ad\ndomain example.org\n"
        );
        assert_eq!(private_resolv_conf(""), "nameserver 10.0.2.3\n");
    }

    #[test]
    fn network_modes_are_spelled_as_podman_does() {
        for (mode, name) in
            [(NetworkMode::Private, "private"), (NetworkMode::Host, "host"), (NetworkMode::None, "none")]
        {
            assert_eq!(mode.to_string(), name);
            assert_eq!(serde_json::to_string(&mode).unwrap(), format!("\"{name}\""));
            assert_eq!(<NetworkMode as clap::ValueEnum>::from_str(name, false), Ok(mode));
        }
        assert_eq!(NetworkMode::default(), NetworkMode::Private);
    }
}
