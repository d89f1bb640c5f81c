//! The container's root filesystem, built in PID 1's own mount namespace.
//!
//! * **overlayfs via the new mount API** (`fsopen` + one `fsconfig("lowerdir+")` per layer, Linux ≥ 6.8)
//!   rather than one `mount(2)` option string: that string is limited to a page (about 40 layers of
//!   long paths) and cannot carry `:` or `,` in paths. Each path goes in as a string when it fits
//!   `fsconfig`'s 256-byte limit, else as an `O_PATH` fd (Linux ≥ 6.13). `userxattr` makes the upper dir
//!   use the `user.overlay.*` format and works in a user namespace (it also rules out `redirect_dir` and
//!   `metacopy`, whose upper dirs would not be self-contained layers).
//! * **A "shim" top layer** from the scratch dir supplies the mount points `/dev`, `/proc`, `/sys` and
//!   `/etc/{resolv.conf,hosts,hostname}`, so nothing is created in the merged dir and the upper dir
//!   holds only the command's own changes. The shim's directories copy the owner, mode and times of the
//!   image's (the top layer's metadata is what the merged dir shows and what a copy-up takes).
//! * Host files and devices are cloned as detached mounts (`open_tree(OPEN_TREE_CLONE)`) while the host
//!   root is still visible, made read-only with `mount_setattr`, then attached after `pivot_root`, where
//!   every target path resolves inside the new root (a symlink in the image cannot point at the host).

use std::fs::{self, File, Metadata};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags,
    UnmountFlags,
};

use super::RunSpec;
use super::helper::StepError;
use super::network::{self, NetworkMode};

/// Mount points under `/` that the shim supplies.
const MOUNT_DIRS: [&str; 3] = ["dev", "proc", "sys"];
/// Host-derived files bound read-only over `/etc/<name>` (never captured into the layer).
const ETC_FILES: [&str; 3] = ["resolv.conf", "hosts", "hostname"];
/// Host devices bound into the container's tmpfs `/dev` (mknod is not allowed in a user namespace).
const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// Kernel interfaces hidden as runc hides them for Docker (moby `oci/defaults.go`): files get
/// `/dev/null` bound over them, directories an empty read-only tmpfs.
const MASKED: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// Kernel interfaces made read-only, as runc does for Docker.
const READ_ONLY: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Host-side scratch directory of one run: the overlay's mount point, the shim layer and the
/// generated /etc files. Filled by the helper before forking PID 1; the caller of `run` owns (and
/// removes) the directory, so that it goes even when the helper is killed.
pub(super) struct Scratch {
    dir: PathBuf,
    /// `false` when the image's `/etc` is not a directory: then the /etc files are left alone.
    etc_files: bool,
}

impl Scratch {
    /// Fills the empty directory `dir`.
    pub(super) fn prepare(spec: &RunSpec, dir: PathBuf) -> Result<Scratch, StepError> {
        let scratch = Scratch { dir, etc_files: false };
        for d in [scratch.root(), scratch.shim(), scratch.files()] {
            make_dir(&d, 0o755)?;
        }
        for name in MOUNT_DIRS {
            let p = scratch.shim().join(name);
            make_dir(&p, 0o755)?;
            copy_dir_meta(&p, image_entry(&spec.lowerdirs, name).as_ref())?;
        }
        let etc = image_entry(&spec.lowerdirs, "etc");
        let etc_files = etc.as_ref().is_none_or(Metadata::is_dir);
        if etc_files {
            let p = scratch.shim().join("etc");
            make_dir(&p, 0o755)?;
            for f in ETC_FILES {
                write_file(&p.join(f), b"")?;
            }
            copy_dir_meta(&p, etc.as_ref())?;
        }
        let files = scratch.files();
        let mut resolv = host_file("/etc/resolv.conf")?;
        if spec.network == NetworkMode::Private {
            resolv = network::private_resolv_conf(&resolv);
        }
        write_file(&files.join("resolv.conf"), resolv.as_bytes())?;
        let mut hosts = host_file("/etc/hosts")?;
        let hostname = if spec.hostname.is_empty() {
            host_file("/etc/hostname")?
        } else {
            if !hosts.is_empty() && !hosts.ends_with('\n') {
                hosts.push('\n');
            }
            hosts.push_str(&format!("127.0.1.1\t{}\n", spec.hostname));
            format!("{}\n", spec.hostname)
        };
        write_file(&files.join("hosts"), hosts.as_bytes())?;
        write_file(&files.join("hostname"), hostname.as_bytes())?;
        Ok(Scratch { etc_files, ..scratch })
    }

    /// The overlay's mount point.
    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The top lowerdir that supplies the mount points.
    fn shim(&self) -> PathBuf {
        self.dir.join("shim")
    }

    /// The generated `/etc` files.
    fn files(&self) -> PathBuf {
        self.dir.join("files")
    }
}

fn make_dir(p: &Path, mode: u32) -> Result<(), StepError> {
    fs::create_dir(p)
        .and_then(|()| fs::set_permissions(p, fs::Permissions::from_mode(mode)))
        .map_err(StepError::at(format_args!("create {}", p.display())))
}

fn write_file(p: &Path, content: &[u8]) -> Result<(), StepError> {
    fs::write(p, content)
        .and_then(|()| fs::set_permissions(p, fs::Permissions::from_mode(0o644)))
        .map_err(StepError::at(format_args!("write {}", p.display())))
}

fn host_file(p: &str) -> Result<String, StepError> {
    match fs::read(p) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(StepError::at(format_args!("read host {p}"))(e)),
    }
}

/// What the image has at `/<name>`: the entry of the topmost layer that has one, `None` when no layer
/// has it or the topmost one whites it out.
fn image_entry(lowerdirs: &[PathBuf], name: &str) -> Option<Metadata> {
    for lower in lowerdirs {
        let p = lower.join(name);
        let Ok(m) = fs::symlink_metadata(&p) else { continue };
        let char_whiteout = m.file_type().is_char_device() && m.rdev() == 0;
        let xattr_whiteout =
            m.is_file() && m.len() == 0 && xattr::get(&p, "user.overlay.whiteout").ok().flatten().is_some();
        return (!char_whiteout && !xattr_whiteout).then_some(m);
    }
    None
}

/// Gives a shim dir the image's owner, mode and times (its own xattrs, e.g. opaque, are not copied:
/// an opaque shim dir would hide the image's contents).
fn copy_dir_meta(p: &Path, image: Option<&Metadata>) -> Result<(), StepError> {
    let Some(m) = image.filter(|m| m.is_dir()) else { return Ok(()) };
    let what = format!("copy image metadata to {}", p.display());
    let at = || StepError::at(&what);
    // Ownership may be unmappable (a single-id user namespace): the merged dir then shows our own.
    let _ = std::os::unix::fs::lchown(p, Some(m.uid()), Some(m.gid()));
    fs::set_permissions(p, fs::Permissions::from_mode(m.mode() & 0o7777)).map_err(at())?;
    let atime = filetime::FileTime::from_last_access_time(m);
    let mtime = filetime::FileTime::from_last_modification_time(m);
    filetime::set_file_times(p, atime, mtime).map_err(at())
}

/// Builds the root and switches to it (runs in PID 1, in its own mount namespace).
pub(super) fn setup_root(spec: &RunSpec, scratch: &Scratch) -> Result<(), StepError> {
    rustix::mount::mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)
        .map_err(StepError::at("make / private"))?;
    let root = scratch.root();
    let overlay = mount_overlay(spec, &scratch.shim())?;
    attach(&overlay, &root, MoveMountFlags::empty()).map_err(StepError::at("attach overlay"))?;
    // Mounting proc needs a fully visible proc in the namespace: do it while the host's is there.
    let nosuid_nodev_noexec = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    rustix::mount::mount("proc", root.join("proc"), "proc", nosuid_nodev_noexec, None)
        .map_err(StepError::at("mount /proc"))?;

    let mut devs = Vec::new();
    for name in DEV_NODES {
        let host = Path::new("/dev").join(name);
        if name == "tty" && !host.exists() {
            continue;
        }
        devs.push((name, clone_tree(&host, false, false)?));
    }
    let sys = clone_tree(Path::new("/sys"), true, true)?;
    let mut etc = Vec::new();
    if scratch.etc_files {
        for f in ETC_FILES {
            etc.push((f, clone_tree(&scratch.files().join(f), false, true)?));
        }
    }
    let mut binds = Vec::new();
    for b in &spec.binds {
        let dir = b.source.is_dir();
        binds.push((b, dir, clone_tree(&b.source, true, b.readonly)?));
    }

    rustix::process::chdir(&root).map_err(StepError::at("chdir to the new root"))?;
    rustix::process::pivot_root(".", ".").map_err(StepError::at("pivot_root"))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(StepError::at("detach the host root"))?;
    rustix::process::chdir("/").map_err(StepError::at("chdir /"))?;

    mount_dev(devs)?;
    attach(&sys, Path::new("/sys"), MoveMountFlags::empty()).map_err(StepError::at("mount /sys"))?;
    mask_kernel_interfaces()?;
    for (f, fd) in etc {
        let target = Path::new("/etc").join(f);
        attach(&fd, &target, MoveMountFlags::empty())
            .map_err(StepError::at(format_args!("mount {}", target.display())))?;
    }
    for (b, dir, fd) in binds {
        let what = format!("bind {} to {}", b.source.display(), b.target);
        mount_point(Path::new(&b.target), dir).map_err(StepError::at(&what))?;
        attach(&fd, Path::new(&b.target), MoveMountFlags::MOVE_MOUNT_T_SYMLINKS).map_err(StepError::at(&what))?;
    }
    Ok(())
}

/// overlayfs with `shim` on top of the image layers, as a detached mount.
fn mount_overlay(spec: &RunSpec, shim: &Path) -> Result<OwnedFd, StepError> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(StepError::at("mount overlay: fsopen"))?;
    let fail =
        |what: &dyn std::fmt::Display, e: Errno| StepError(format!("mount overlay: {what}: {e}{}", kernel_log(&fs)));
    let layers = std::iter::once(shim).chain(spec.lowerdirs.iter().map(PathBuf::as_path));
    let dirs = layers
        .map(|l| ("lowerdir+", l))
        .chain([("upperdir", spec.upperdir.as_path()), ("workdir", spec.workdir.as_path())]);
    for (key, path) in dirs {
        config_path(&fs, key, path).map_err(|e| fail(&format_args!("{key}={}", path.display()), e))?;
    }
    rustix::mount::fsconfig_set_flag(&fs, "userxattr").map_err(|e| fail(&"userxattr", e))?;
    for key in ["index", "metacopy"] {
        rustix::mount::fsconfig_set_string(&fs, key, "off").map_err(|e| fail(&format_args!("{key}=off"), e))?;
    }
    rustix::mount::fsconfig_create(&fs).map_err(|e| fail(&"create", e))?;
    rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()).map_err(|e| fail(&"fsmount", e))
}

/// `fsconfig` strings are limited to 256 bytes; longer paths go in as `O_PATH` fds.
fn config_path(fs: &OwnedFd, key: &str, path: &Path) -> Result<(), Errno> {
    if path.as_os_str().len() < 256 {
        return rustix::mount::fsconfig_set_string(fs, key, path);
    }
    let dir = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::mount::fsconfig_set_fd(fs, key, &dir)
}

/// The messages the kernel logged on an fs context (e.g. which layer it could not use).
fn kernel_log(fs: &OwnedFd) -> String {
    let mut out = String::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = rustix::io::read(fs, &mut buf) {
        if n == 0 {
            break;
        }
        out.push_str(if out.is_empty() { " (kernel: " } else { "; " });
        out.push_str(String::from_utf8_lossy(&buf[..n]).trim());
    }
    if !out.is_empty() {
        out.push(')');
    }
    out
}

/// A detached copy of the mount at `path` (with its submounts when `recursive`).
fn clone_tree(path: &Path, recursive: bool, readonly: bool) -> Result<OwnedFd, StepError> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let fd = rustix::mount::open_tree(CWD, path, flags)
        .map_err(StepError::at(format_args!("clone mount {}", path.display())))?;
    if readonly {
        set_readonly(&fd, recursive).map_err(StepError::at(format_args!("make {} read-only", path.display())))?;
    }
    Ok(fd)
}

/// `mount_setattr(MOUNT_ATTR_RDONLY)`: unlike a bind remount it leaves the locked flags (nosuid,
/// nodev, ...) of mounts inherited from the host alone, so it works in a user namespace.
fn set_readonly(fd: &OwnedFd, recursive: bool) -> io::Result<()> {
    let attr = libc::mount_attr { attr_set: libc::MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
    mount_setattr(fd, recursive, &attr)
}

/// `mount_setattr(2)` on a mount fd (rustix has no wrapper for it).
pub(super) fn mount_setattr(fd: &OwnedFd, recursive: bool, attr: &libc::mount_attr) -> io::Result<()> {
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: valid fd, NUL-terminated empty path, a properly sized `mount_attr`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            attr as *const libc::mount_attr,
            size_of::<libc::mount_attr>(),
        )
    };
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn attach(mount: &impl AsFd, target: &Path, flags: MoveMountFlags) -> Result<(), Errno> {
    rustix::mount::move_mount(mount, "", CWD, target, flags | MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
}

/// A tmpfs `/dev` with the host's harmless devices, a private devpts and `/dev/shm`.
fn mount_dev(devs: Vec<(&str, OwnedFd)>) -> Result<(), StepError> {
    let tmpfs = |target: &str, flags, data: &std::ffi::CStr| {
        rustix::mount::mount("tmpfs", target, "tmpfs", flags, data)
            .map_err(StepError::at(format_args!("mount {target}")))
    };
    tmpfs("/dev", MountFlags::NOSUID | MountFlags::NOEXEC, c"mode=755,size=65536k")?;
    for (name, fd) in devs {
        let target = Path::new("/dev").join(name);
        write_file(&target, b"")?;
        attach(&fd, &target, MoveMountFlags::empty())
            .map_err(StepError::at(format_args!("mount {}", target.display())))?;
    }
    make_dir(Path::new("/dev/pts"), 0o755)?;
    let flags = MountFlags::NOSUID | MountFlags::NOEXEC;
    rustix::mount::mount("devpts", "/dev/pts", "devpts", flags, c"newinstance,ptmxmode=0666,mode=0620")
        .map_err(StepError::at("mount /dev/pts"))?;
    make_dir(Path::new("/dev/shm"), 0o1777)?;
    tmpfs("/dev/shm", MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC, c"mode=1777,size=65536k")?;
    let links = [
        ("pts/ptmx", "/dev/ptmx"),
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
    ];
    for (to, link) in links {
        symlink(to, link).map_err(StepError::at(format_args!("symlink {link}")))?;
    }
    Ok(())
}

/// [`MASKED`] and [`READ_ONLY`], where this kernel has them.
fn mask_kernel_interfaces() -> Result<(), StepError> {
    for path in MASKED {
        let what = format!("mask {path}");
        let what = || StepError::at::<Errno>(&what);
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StepError::at(format_args!("mask {path}"))(e)),
            Ok(m) if m.is_dir() => {
                rustix::mount::mount("tmpfs", path, "tmpfs", MountFlags::RDONLY, c"size=0").map_err(what())?
            }
            Ok(_) => {
                attach(&clone_tree(Path::new("/dev/null"), false, false)?, Path::new(path), MoveMountFlags::empty())
                    .map_err(what())?
            }
        }
    }
    for path in READ_ONLY {
        if fs::symlink_metadata(path).is_err() {
            continue;
        }
        let ro = clone_tree(Path::new(path), true, true)?;
        attach(&ro, Path::new(path), MoveMountFlags::empty())
            .map_err(StepError::at(format_args!("make {path} read-only")))?;
    }
    Ok(())
}

/// Creates a bind mount's target inside the new root when missing (a dir or an empty file, like the
/// source).
fn mount_point(target: &Path, dir: bool) -> io::Result<()> {
    match fs::metadata(target) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    if dir {
        return fs::create_dir_all(target);
    }
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    File::create(target).map(drop)
}
