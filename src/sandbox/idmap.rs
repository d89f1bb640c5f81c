//! Started as root, the sandbox still runs its command in a user namespace of its own: container ids
//! 0..65535 are host ids `start..start+65535` that no host user owns, so container root is nobody on
//! the host (it cannot read a 0600 host file, load a module, `mknod` a disk or mount anything).
//!
//! The store keeps files with the **container's** ids (a layer's uid 42400 is uid 42400 on disk, as a
//! rootless build's store shows them inside its namespace), so that the same layers come out of a root
//! build, a rootless build and older builds. The command sees them through **idmapped mounts**: each
//! layer dir, the upper/work dir and each bind source is cloned (`open_tree`) and idmapped
//! (`mount_setattr(MOUNT_ATTR_IDMAP)`) with the container's namespace, so that disk id `k` shows as
//! container id `k`, and a file the command creates as container uid `k` lands on disk as `k`.
//!
//! Order matters, and each step was found necessary on Linux 6.18:
//! 1. as host root, in a new mount namespace of the host's user namespace: make the user namespace
//!    (a forked child unshares it; we write its maps — root needs no `newuidmap`), clone and idmap the
//!    directories and attach them under the scratch dir (`idmap/…`): only host root may idmap;
//! 2. enter the namespace (`setns`) and become its root;
//! 3. from then on the helper carries on exactly as rootless: the mount namespace PID 1 creates is owned
//!    by the container's user namespace, so overlayfs is mounted by container root (`userxattr`; an
//!    overlay mounted by host root could not write through the idmapped upper dir: EOVERFLOW), over
//!    the *attached* idmapped dirs (a detached clone made by host root is refused as a layer).
//!
//! Paths under the scratch dir are used relative to it (the helper's working directory), so that no
//! directory above it needs to be searchable by the container's root.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::CWD;
use rustix::mount::{MountPropagationFlags, MoveMountFlags, OpenTreeFlags};
use serde::{Deserialize, Serialize};

use super::helper::StepError;
use super::{RunSpec, userns};

/// Container ids a namespace maps: 0..65536, the range every distribution's `useradd` and kolla's
/// users (42400…) fit in.
pub(super) const CONTAINER_IDS: u64 = 65536;

/// The host ids root's containers get when root has no `/etc/subuid` entry: above every id a
/// distribution hands out (and above systemd-nspawn's container range, 0x80000..0x6fffffff), below
/// 2^31 (ids that some tools take for negative numbers).
pub const DEFAULT_ROOT_RANGE_START: u64 = 2_000_000_000;

/// Host id ranges that container ids 0.. map to, in order (uids and gids alike).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct IdRanges {
    /// `(host start, count)` for uids.
    pub uids: Vec<(u64, u64)>,
    /// `(host start, count)` for gids.
    pub gids: Vec<(u64, u64)>,
}

impl IdRanges {
    /// The host uid and gid of container root.
    fn root(&self) -> (u32, u32) {
        let first = |r: &[(u64, u64)]| r.first().map_or(0, |&(s, _)| s as u32);
        (first(&self.uids), first(&self.gids))
    }
}

/// The ranges root's containers use: root's own `/etc/subuid` and `/etc/subgid` entries (by name or
/// uid 0) when it has them, else [`DEFAULT_ROOT_RANGE_START`], refused if any host user or other
/// subordinate range owns one of those ids.
pub(super) fn for_root() -> Result<IdRanges, String> {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let (subuid, subgid) = (read("/etc/subuid"), read("/etc/subgid"));
    let pick = |content: &str, file: &str| -> Result<Vec<(u64, u64)>, String> {
        let own = userns::sub_ranges(content, "root", 0);
        if own.is_empty() {
            return Ok(vec![(DEFAULT_ROOT_RANGE_START, CONTAINER_IDS)]);
        }
        let mut out = Vec::new();
        let mut left = CONTAINER_IDS;
        for (start, count) in own {
            let take = count.min(left);
            out.push((start, take));
            left -= take;
            if left == 0 {
                return Ok(out);
            }
        }
        Err(format!(
            "root's ranges in {file} hold {} ids; containers need {CONTAINER_IDS} (kolla's users are 42400 and up): \
             give root a range of {CONTAINER_IDS}, e.g. `root:{DEFAULT_ROOT_RANGE_START}:{CONTAINER_IDS}`",
            CONTAINER_IDS - left
        ))
    };
    let ranges = IdRanges { uids: pick(&subuid, "/etc/subuid")?, gids: pick(&subgid, "/etc/subgid")? };
    if ranges.uids == [(DEFAULT_ROOT_RANGE_START, CONTAINER_IDS)] {
        check_unowned(&ranges.uids, &read("/etc/passwd"), &subuid, "/etc/passwd", "/etc/subuid")?;
    }
    if ranges.gids == [(DEFAULT_ROOT_RANGE_START, CONTAINER_IDS)] {
        check_unowned(&ranges.gids, &read("/etc/group"), &subgid, "/etc/group", "/etc/subgid")?;
    }
    Ok(ranges)
}

/// Refuses the default range when an account (field 3 of `accounts`) or a subordinate range of
/// another user overlaps it.
fn check_unowned(
    range: &[(u64, u64)],
    accounts: &str,
    sub: &str,
    acc_file: &str,
    sub_file: &str,
) -> Result<(), String> {
    let (start, count) = range[0];
    let overlaps = |s: u64, c: u64| s < start + count && start < s + c;
    let clash = |what: String| {
        Err(format!(
            "the default id range for root's containers ({start}..{}) is taken by {what}: give root a free range \
             of {CONTAINER_IDS} ids in /etc/subuid and /etc/subgid",
            start + count - 1
        ))
    };
    for line in accounts.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if let Some(id) = f.get(2).and_then(|s| s.parse::<u64>().ok())
            && overlaps(id, 1)
        {
            return clash(format!("{} in {acc_file}", f[0]));
        }
    }
    for line in sub.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let f: Vec<&str> = line.trim().split(':').collect();
        if let [name, s, c] = f[..]
            && let (Ok(s), Ok(c)) = (s.parse::<u64>(), c.parse::<u64>())
            && overlaps(s, c)
        {
            return clash(format!("{name}'s range in {sub_file}"));
        }
    }
    Ok(())
}

/// Whether this process is in the host's (initial) user namespace: its uid map is the identity over
/// every id.
pub(super) fn in_initial_userns() -> bool {
    fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
}

/// Step 1 and 2 of the module doc, in the helper (host root, single-threaded, working directory = the
/// scratch dir): returns the spec with every host directory replaced by its idmapped view under
/// `idmap/`; the caller is then root of the container's user namespace.
pub(super) fn enter(spec: RunSpec, ranges: &IdRanges) -> Result<RunSpec, StepError> {
    let userns = make_userns(ranges).map_err(StepError::at("create the container's user namespace"))?;
    // SAFETY: single-threaded helper.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .map_err(StepError::at("unshare mount namespace"))?;
    rustix::mount::mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)
        .map_err(StepError::at("make / private"))?;
    fs::create_dir("idmap").map_err(StepError::at("create idmap"))?;
    let mut n = 0;
    let mut attach = |source: &Path, recursive: bool, required: bool| -> Result<PathBuf, StepError> {
        let at = PathBuf::from(format!("idmap/{n}"));
        n += 1;
        let what = format!("idmapped mount of {}", source.display());
        let mount = match idmapped_clone(source, &userns, recursive) {
            Ok(m) => m,
            // A bind source on a filesystem without idmapped mounts is bound as is: the command sees
            // its owners as nobody, as a rootless container sees host files.
            Err(_) if !required => plain_clone(source, recursive).map_err(StepError::at(&what))?,
            Err(e) => {
                return Err(StepError(format!(
                    "{what}: {e} (as root, kolla-oci needs its store on a filesystem with idmapped mounts: ext4, xfs, btrfs, tmpfs)"
                )));
            }
        };
        if source.is_dir() { fs::create_dir(&at) } else { fs::write(&at, b"") }
            .map_err(StepError::at(format_args!("create {}", at.display())))?;
        rustix::mount::move_mount(&mount, "", CWD, &at, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
            .map_err(StepError::at(format_args!("attach {what}")))?;
        Ok(at)
    };
    let mut out = spec.clone();
    out.lowerdirs = spec.lowerdirs.iter().map(|l| attach(l, false, true)).collect::<Result<_, _>>()?;
    // overlayfs wants the upper and work dirs on one mount: the view of their common parent.
    let common = common_ancestor(&spec.upperdir, &spec.workdir);
    let rw = attach(&common, false, true)?;
    let under = |p: &Path| rw.join(p.strip_prefix(&common).unwrap_or(Path::new("")));
    (out.upperdir, out.workdir) = (under(&spec.upperdir), under(&spec.workdir));
    for (b, orig) in out.binds.iter_mut().zip(&spec.binds) {
        b.source = attach(&orig.source, true, false)?;
    }
    // Container root must be able to create the shim and the /etc files here.
    let (uid, gid) = ranges.root();
    rustix::fs::chown(".", Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid)))
        .map_err(StepError::at("chown the scratch dir to the container's root"))?;
    rustix::thread::move_into_link_name_space(userns.as_fd(), Some(rustix::thread::LinkNameSpaceType::User))
        .map_err(StepError::at("enter the container's user namespace"))?;
    become_root()?;
    Ok(out)
}

/// The closest directory that holds both `a` and `b` (both absolute and canonical).
fn common_ancestor(a: &Path, b: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for (x, y) in a.components().zip(b.components()) {
        if x != y {
            break;
        }
        out.push(x.as_os_str());
    }
    if out.as_os_str().is_empty() { PathBuf::from(Component::RootDir.as_os_str()) } else { out }
}

/// After `setns`: our ids are host root's, which the namespace does not map; take its root's. That
/// change of credentials clears the parent-death signal: armed again (and checked, as in
/// `child_setup`) so that we still die with the caller.
fn become_root() -> Result<(), StepError> {
    let parent = rustix::process::getppid();
    rustix::thread::set_thread_groups(&[]).map_err(StepError::at("setgroups in the container's namespace"))?;
    let (gid, uid) = (rustix::process::Gid::ROOT, rustix::process::Uid::ROOT);
    rustix::thread::set_thread_res_gid(gid, gid, gid)
        .map_err(StepError::at("setgid 0 in the container's namespace"))?;
    rustix::thread::set_thread_res_uid(uid, uid, uid)
        .map_err(StepError::at("setuid 0 in the container's namespace"))?;
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(StepError::at("set parent-death signal"))?;
    if rustix::process::getppid() != parent {
        return Err(StepError("the caller exited".into()));
    }
    Ok(())
}

/// A new user namespace mapped with `ranges`, as an fd: a forked child unshares it and waits while we
/// write its maps (setgroups stays allowed: we write them as host root) and open it.
fn make_userns(ranges: &IdRanges) -> io::Result<OwnedFd> {
    let (ready_r, ready_w) = super::pipe()?;
    let (done_r, done_w) = super::pipe()?;
    // SAFETY: single-threaded process; the child only makes async-signal-safe calls.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        drop((ready_r, done_w));
        // SAFETY: async-signal-safe syscalls only, then `_exit`.
        unsafe {
            // 0, or the errno (as one byte) of a failed unshare.
            let status: u8 = if libc::unshare(libc::CLONE_NEWUSER) == 0 { 0 } else { *libc::__errno_location() as u8 };
            libc::write(ready_w.as_raw_fd(), (&raw const status).cast(), 1);
            let mut b = 0u8;
            libc::read(done_r.as_raw_fd(), (&raw mut b).cast(), 1);
            libc::_exit(0);
        }
    }
    drop((ready_w, done_r));
    let result = (|| {
        let mut b = [0u8; 1];
        match rustix::io::read(&ready_r, &mut b)? {
            1 if b[0] == 0 => {}
            1 => return Err(io::Error::from_raw_os_error(i32::from(b[0]))),
            _ => return Err(io::Error::other("the child died before unsharing")),
        }
        let map = |r: &[(u64, u64)]| {
            let mut inside = 0;
            let mut out = String::new();
            for &(start, count) in r {
                out.push_str(&format!("{inside} {start} {count}\n"));
                inside += count;
            }
            out
        };
        fs::write(format!("/proc/{pid}/uid_map"), map(&ranges.uids))?;
        fs::write(format!("/proc/{pid}/gid_map"), map(&ranges.gids))?;
        let ns = fs::File::open(format!("/proc/{pid}/ns/user"))?;
        Ok(OwnedFd::from(ns))
    })();
    drop(done_w);
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    result
}

/// `open_tree(OPEN_TREE_CLONE)` of `path`, idmapped with `userns`.
fn idmapped_clone(path: &Path, userns: &OwnedFd, recursive: bool) -> io::Result<OwnedFd> {
    let fd = plain_clone(path, recursive)?;
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    super::mounts::mount_setattr(&fd, recursive, &attr)?;
    Ok(fd)
}

fn plain_clone(path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    Ok(rustix::mount::open_tree(CWD, path, flags)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_range_is_refused_when_someone_owns_part_of_it() {
        let range = [(DEFAULT_ROOT_RANGE_START, CONTAINER_IDS)];
        let passwd = "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert!(check_unowned(&range, passwd, "alice:100000:65536\n", "p", "s").is_ok());
        let odd = format!("{passwd}odd:x:{}:1::/:/bin/sh\n", DEFAULT_ROOT_RANGE_START + 5);
        let err = check_unowned(&range, &odd, "", "/etc/passwd", "s").unwrap_err();
        assert!(err.contains("odd in /etc/passwd"), "{err}");
        let sub = format!("bob:{}:65536\n", DEFAULT_ROOT_RANGE_START - 10);
        let err = check_unowned(&range, passwd, &sub, "p", "/etc/subuid").unwrap_err();
        assert!(err.contains("bob's range in /etc/subuid"), "{err}");
    }

    #[test]
    fn common_ancestor_of_upper_and_work() {
        assert_eq!(
            common_ancestor(Path::new("/s/tmp/run-1/upper"), Path::new("/s/tmp/run-1/work")),
            PathBuf::from("/s/tmp/run-1")
        );
        assert_eq!(common_ancestor(Path::new("/a/x"), Path::new("/b/y")), PathBuf::from("/"));
    }
}
