//! The capabilities a sandboxed command keeps: Docker's default set, and nothing else.
//!
//! The command starts as root of its user namespace with every capability *in that namespace*. The
//! namespace already keeps those from reaching the host, but inside it `CAP_SYS_ADMIN` would still let
//! a RUN step remount a read-only volume read-write or mount what it likes. Docker (and podman) give a
//! container only the list below; so do we, by shrinking the **bounding set** (what any later
//! `execve`, setuid `sudo` included, can give back) and emptying the inheritable and ambient sets.
//! The effective set is then recomputed by `execve` from the bounding set (root) or emptied (any
//! other user), exactly as under runc. `no_new_privs` stays off, so setuid `sudo` works as kolla's
//! `kolla_start` needs.

use std::io;

use rustix::thread::{CapabilitySet, CapabilitySets};

/// Docker's default capabilities (moby `oci/caps/defaults.go`): `CapEff` 0x00000000a80425fb.
pub(super) const DOCKER_DEFAULT: CapabilitySet = CapabilitySet::CHOWN
    .union(CapabilitySet::DAC_OVERRIDE)
    .union(CapabilitySet::FSETID)
    .union(CapabilitySet::FOWNER)
    .union(CapabilitySet::MKNOD)
    .union(CapabilitySet::NET_RAW)
    .union(CapabilitySet::SETGID)
    .union(CapabilitySet::SETUID)
    .union(CapabilitySet::SETFCAP)
    .union(CapabilitySet::SETPCAP)
    .union(CapabilitySet::NET_BIND_SERVICE)
    .union(CapabilitySet::SYS_CHROOT)
    .union(CapabilitySet::KILL)
    .union(CapabilitySet::AUDIT_WRITE);

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`).
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(63)
}

/// Drops every capability but [`DOCKER_DEFAULT`] from the bounding set, and empties the ambient and
/// inheritable sets. Run in the command's process before it changes user (dropping needs
/// `CAP_SETPCAP`, which it still has then).
pub(super) fn restrict_to_docker_default() -> io::Result<()> {
    for cap in 0..=last_cap().min(63) {
        if DOCKER_DEFAULT.bits() & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: plain prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) } != 0 {
            let e = io::Error::last_os_error();
            // EINVAL: a capability this kernel does not have after all.
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
    }
    rustix::thread::clear_ambient_capability_set()?;
    let CapabilitySets { effective, permitted, .. } = rustix::thread::capabilities(None)?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets { effective, permitted, inheritable: CapabilitySet::empty() },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_is_dockers() {
        assert_eq!(DOCKER_DEFAULT.bits(), 0xa80425fb);
        assert!(!DOCKER_DEFAULT.contains(CapabilitySet::SYS_ADMIN));
    }
}
