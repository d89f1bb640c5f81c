//! Docker's default seccomp profile, for every command the sandbox runs (RUN steps and `kolla-oci run`).
//!
//! Why: a RUN step runs code nobody reviewed (a `setup.py` of any package an image installs). The user
//! namespace already makes its root powerless on the host; the filter takes away the kernel surface that
//! containers never need and that most container escapes went through — `mount`, new namespaces
//! (`unshare`, `clone` with namespace flags), `keyctl`, `bpf`, `perf_event_open`, kernel modules,
//! `ptrace` of other containers' processes is left allowed as Docker does (kernel ≥ 4.8 checks it).
//!
//! What: the allow-list of moby's `profiles/seccomp/default.json` for a container with Docker's default
//! capabilities (the rules it adds only for `CAP_SYS_ADMIN`, `CAP_SYS_MODULE`, … are left out, as
//! Docker leaves them out), restricted to the syscalls of this machine's architecture: every other
//! syscall fails with `EPERM`; `clone3` fails with `ENOSYS` so that glibc falls back to `clone`, whose
//! namespace flags are then refused. Two differences from Docker, both stricter: a syscall of another
//! ABI (32-bit `int 0x80` on x86_64) kills the process instead of being filtered by the 32-bit table,
//! and x32 syscalls are refused.
//!
//! How: the BPF is compiled by `seccompiler` (firecracker's, maintained, pure Rust) and installed with
//! `seccomp(2)` directly — *not* with `seccompiler::apply_filter`, which also sets `no_new_privs`:
//! kolla's `kolla_start` runs `sudo`, which needs setuid to work, as it does under Docker. Without
//! `no_new_privs` the kernel requires `CAP_SYS_ADMIN` in the caller's user namespace to install a
//! filter, which the command's process has until it drops to the image's user.

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// Syscalls Docker's profile allows unconditionally, on every architecture kolla-oci builds for.
macro_rules! syscalls {
    ($($name:ident)*) => { &[$(libc::$name),*] };
}

const ALLOWED: &[libc::c_long] = syscalls!(
    SYS_accept SYS_accept4 SYS_adjtimex SYS_bind SYS_brk SYS_capget SYS_capset SYS_chdir SYS_chroot
    SYS_clock_adjtime SYS_clock_getres SYS_clock_gettime SYS_clock_nanosleep SYS_close SYS_close_range
    SYS_connect SYS_copy_file_range SYS_dup SYS_dup3 SYS_epoll_create1 SYS_epoll_ctl SYS_epoll_pwait
    SYS_epoll_pwait2 SYS_eventfd2 SYS_execve SYS_execveat SYS_exit SYS_exit_group SYS_faccessat
    SYS_faccessat2 SYS_fadvise64 SYS_fallocate SYS_fanotify_mark SYS_fchdir SYS_fchmod SYS_fchmodat
    SYS_fchown SYS_fchownat SYS_fcntl SYS_fdatasync SYS_fgetxattr SYS_flistxattr SYS_flock SYS_fremovexattr
    SYS_fsetxattr SYS_fstat SYS_fstatfs SYS_fsync SYS_ftruncate SYS_futex SYS_futex_waitv SYS_getcpu
    SYS_getcwd SYS_getdents64 SYS_getegid SYS_geteuid SYS_getgid SYS_getgroups SYS_getitimer
    SYS_getpeername SYS_getpgid SYS_getpid SYS_getppid SYS_getpriority SYS_getrandom SYS_getresgid
    SYS_getresuid SYS_getrlimit SYS_get_robust_list SYS_getrusage SYS_getsid SYS_getsockname
    SYS_getsockopt SYS_gettid SYS_gettimeofday SYS_getuid SYS_getxattr SYS_inotify_add_watch
    SYS_inotify_init1 SYS_inotify_rm_watch SYS_io_cancel SYS_ioctl SYS_io_destroy SYS_io_getevents
    SYS_ioprio_get SYS_ioprio_set SYS_io_setup SYS_io_submit SYS_io_uring_enter
    SYS_io_uring_register SYS_io_uring_setup SYS_kill SYS_landlock_add_rule SYS_landlock_create_ruleset
    SYS_landlock_restrict_self SYS_lgetxattr SYS_linkat SYS_listen SYS_listxattr SYS_llistxattr
    SYS_lremovexattr SYS_lseek SYS_lsetxattr SYS_madvise SYS_membarrier SYS_memfd_create SYS_memfd_secret
    SYS_mincore SYS_mkdirat SYS_mknodat SYS_mlock SYS_mlock2 SYS_mlockall SYS_mmap SYS_mprotect
    SYS_mq_getsetattr SYS_mq_notify SYS_mq_open SYS_mq_timedreceive SYS_mq_timedsend SYS_mq_unlink
    SYS_mremap SYS_msgctl SYS_msgget SYS_msgrcv SYS_msgsnd SYS_msync SYS_munlock SYS_munlockall SYS_munmap
    SYS_name_to_handle_at SYS_nanosleep SYS_newfstatat SYS_openat SYS_openat2 SYS_pidfd_open
    SYS_pidfd_send_signal SYS_pipe2 SYS_pkey_alloc SYS_pkey_free SYS_pkey_mprotect SYS_ppoll SYS_prctl
    SYS_pread64 SYS_preadv SYS_preadv2 SYS_prlimit64 SYS_process_mrelease SYS_process_vm_readv
    SYS_process_vm_writev SYS_pselect6 SYS_ptrace SYS_pwrite64 SYS_pwritev SYS_pwritev2 SYS_read
    SYS_readahead SYS_readlinkat SYS_readv SYS_recvfrom SYS_recvmmsg SYS_recvmsg SYS_remap_file_pages
    SYS_removexattr SYS_renameat SYS_renameat2 SYS_restart_syscall SYS_rseq SYS_rt_sigaction
    SYS_rt_sigpending SYS_rt_sigprocmask SYS_rt_sigqueueinfo SYS_rt_sigreturn SYS_rt_sigsuspend
    SYS_rt_sigtimedwait SYS_rt_tgsigqueueinfo SYS_sched_getaffinity SYS_sched_getattr SYS_sched_getparam
    SYS_sched_get_priority_max SYS_sched_get_priority_min SYS_sched_getscheduler SYS_sched_rr_get_interval
    SYS_sched_setaffinity SYS_sched_setattr SYS_sched_setparam SYS_sched_setscheduler SYS_sched_yield
    SYS_seccomp SYS_semctl SYS_semget SYS_semop SYS_semtimedop SYS_sendfile SYS_sendmmsg SYS_sendmsg
    SYS_sendto SYS_setfsgid SYS_setfsuid SYS_setgid SYS_setgroups SYS_setitimer SYS_setpgid SYS_setpriority
    SYS_setregid SYS_setresgid SYS_setresuid SYS_setreuid SYS_setrlimit SYS_set_robust_list SYS_setsid
    SYS_setsockopt SYS_set_tid_address SYS_setuid SYS_setxattr SYS_shmat SYS_shmctl SYS_shmdt SYS_shmget
    SYS_shutdown SYS_sigaltstack SYS_signalfd4 SYS_socketpair SYS_splice SYS_statfs SYS_statx SYS_symlinkat
    SYS_sync SYS_sync_file_range SYS_syncfs SYS_sysinfo SYS_tee SYS_tgkill SYS_timer_create
    SYS_timer_delete SYS_timer_getoverrun SYS_timer_gettime SYS_timer_settime SYS_timerfd_create
    SYS_timerfd_gettime SYS_timerfd_settime SYS_times SYS_tkill SYS_truncate SYS_umask SYS_uname
    SYS_unlinkat SYS_utimensat SYS_vmsplice SYS_wait4 SYS_waitid SYS_write SYS_writev
);

/// The legacy syscalls x86_64 still has (aarch64 only has their `*at` forms), and `arch_prctl` and
/// `modify_ldt`, which Docker allows on x86.
#[cfg(target_arch = "x86_64")]
const ALLOWED_ARCH: &[libc::c_long] = syscalls!(
    SYS_access SYS_alarm SYS_chmod SYS_chown SYS_creat SYS_dup2 SYS_epoll_create SYS_epoll_ctl_old
    SYS_epoll_wait SYS_epoll_wait_old SYS_eventfd SYS_fork SYS_futimesat SYS_getdents SYS_getpgrp
    SYS_get_thread_area SYS_inotify_init SYS_lchown SYS_link SYS_lstat SYS_mkdir SYS_mknod SYS_open
    SYS_pause SYS_pipe SYS_poll SYS_readlink SYS_rename SYS_rmdir SYS_select SYS_set_thread_area
    SYS_signalfd SYS_stat SYS_symlink SYS_time SYS_unlink SYS_utime SYS_utimes SYS_vfork
    SYS_arch_prctl SYS_modify_ldt
);

/// `io_pgetevents`, which the libc crate does not name.
#[cfg(target_arch = "x86_64")]
const SYS_IO_PGETEVENTS: libc::c_long = 333;
#[cfg(target_arch = "aarch64")]
const SYS_IO_PGETEVENTS: libc::c_long = 292;
#[cfg(target_arch = "aarch64")]
const ALLOWED_ARCH: &[libc::c_long] = &[];

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

/// `personality(2)` values Docker allows: `PER_LINUX`, `UNAME26`, `PER_LINUX32`, `PER_LINUX32|UNAME26`,
/// and `0xffffffff` (a query).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// `AF_VSOCK`: Docker refuses sockets of this family (the host's hypervisor sockets).
const AF_VSOCK: u64 = 40;

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
/// CLONE_NEWNET`: `clone` is allowed only without any of them.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// The compiled filters, in the order they are to be installed (see [`install`]).
pub(super) struct Profile {
    filters: Vec<BpfProgram>,
}

fn bad(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("seccomp profile ({what}): {e}"))
}

impl Profile {
    /// Compiles Docker's default profile (in the helper, before forking: the command's process only
    /// installs it).
    pub(super) fn docker_default() -> io::Result<Profile> {
        let cond = |arg, op, value| SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value);
        let rule = |conds: Vec<SeccompCondition>| SeccompRule::new(conds);
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
            ALLOWED.iter().chain(ALLOWED_ARCH).chain(&[SYS_IO_PGETEVENTS]).map(|&nr| (nr, Vec::new())).collect();
        // Allowed with arguments only; `SeccompRule`s of one syscall are alternatives.
        let personality = PERSONALITIES
            .iter()
            .map(|&p| cond(0, SeccompCmpOp::Eq, p).and_then(|c| rule(vec![c])))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("personality", e))?;
        let socket = cond(0, SeccompCmpOp::Ne, AF_VSOCK).and_then(|c| rule(vec![c])).map_err(|e| bad("socket", e))?;
        // The flags are the first argument of clone on x86_64 and aarch64 (s390 is the exception).
        let clone = cond(0, SeccompCmpOp::MaskedEq(CLONE_NAMESPACE_FLAGS), 0)
            .and_then(|c| rule(vec![c]))
            .map_err(|e| bad("clone", e))?;
        rules.insert(libc::SYS_personality, personality);
        rules.insert(libc::SYS_socket, vec![socket]);
        rules.insert(libc::SYS_clone, vec![clone]);
        let allow_list =
            SeccompFilter::new(rules, SeccompAction::Errno(libc::EPERM as u32), SeccompAction::Allow, ARCH)
                .and_then(BpfProgram::try_from)
                .map_err(|e| bad("allow-list", e))?;
        // A filter installed later decides between two ERRNO verdicts: clone3 gets ENOSYS, not EPERM.
        let clone3 = [(libc::SYS_clone3, Vec::new())].into_iter().collect();
        let clone3 = SeccompFilter::new(clone3, SeccompAction::Allow, SeccompAction::Errno(libc::ENOSYS as u32), ARCH)
            .and_then(BpfProgram::try_from)
            .map_err(|e| bad("clone3", e))?;
        Ok(Profile { filters: vec![allow_list, clone3] })
    }

    /// Installs the filters on the calling thread (single-threaded process: the command's, just before
    /// `execve`). Needs `CAP_SYS_ADMIN` in the current user namespace, since `no_new_privs` stays off.
    pub(super) fn install(&self) -> io::Result<()> {
        for prog in &self.filters {
            let fprog = libc::sock_fprog {
                len: u16::try_from(prog.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
                // `seccompiler::sock_filter` is `#[repr(C)]` with the kernel's layout, as libc's is.
                filter: prog.as_ptr().cast::<libc::sock_filter>().cast_mut(),
            };
            // SAFETY: a valid program that outlives the call; the kernel copies it.
            let r = unsafe {
                libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog as *const libc::sock_fprog)
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_compiles_and_keeps_namespaces_mount_and_keyctl_out() {
        let p = Profile::docker_default().unwrap();
        assert_eq!(p.filters.len(), 2);
        let allowed: Vec<_> = ALLOWED.iter().chain(ALLOWED_ARCH).collect();
        for refused in [
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_open_tree,
            libc::SYS_move_mount,
            libc::SYS_fsopen,
            libc::SYS_pivot_root,
            libc::SYS_reboot,
            libc::SYS_swapon,
            libc::SYS_kexec_load,
            libc::SYS_sethostname,
            libc::SYS_userfaultfd,
        ] {
            assert!(!allowed.contains(&&refused), "syscall {refused} must not be allowed");
        }
        let mut sorted = allowed.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), allowed.len(), "a syscall is listed twice");
    }
}
