//! Test support for the sandbox: a busybox root filesystem (Debian's busybox-static), run fixtures
//! (lowerdir + fresh upper/work dirs) and an exact listing of an overlay upper dir.
#![allow(dead_code)] // each test file uses a different part of this helper

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use kolla_oci::sandbox::{self, RunSpec};

pub const BUSYBOX: &str = "/bin/busybox";

/// The `kolla-oci` binary of this build: it calls `early_init`, so it serves as the sandbox helper.
pub fn kolla_oci() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kolla-oci"))
}

/// Makes `sandbox::run` use the `kolla-oci` binary as its helper (the test binary is not one).
pub fn init() {
    sandbox::set_helper_exe(kolla_oci());
}

/// A busybox root in `dir`: `bin/busybox` + one symlink per applet, `/etc/passwd` with root and
/// `kolla` (42400), `/etc/group` with `kolla` (42400) and `extra` (42401, member kolla), `/tmp` 1777.
pub fn busybox_rootfs(dir: &Path) {
    assert!(Path::new(BUSYBOX).exists(), "{BUSYBOX} is missing: apt-get install busybox-static");
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().expect("busybox --list");
    assert!(list.status.success(), "busybox --list failed");
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
        }
    }
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nkolla:x:42400:42400::/var/lib/kolla:/bin/sh\n")
        .unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\nkolla:x:42400:\nextra:x:42401:kolla\n").unwrap();
    fs::create_dir_all(dir.join("tmp")).unwrap();
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    for d in ["", "bin", "etc"] {
        fs::set_permissions(dir.join(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// One run's directories under a temp dir: `lower/` (a busybox root), `upper/`, `work/`.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        busybox_rootfs(&dir.path().join("lower"));
        let f = Fixture { dir };
        fs::create_dir(f.upper()).unwrap();
        fs::create_dir(f.work()).unwrap();
        f
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn lower(&self) -> PathBuf {
        self.path().join("lower")
    }

    pub fn upper(&self) -> PathBuf {
        self.path().join("upper")
    }

    pub fn work(&self) -> PathBuf {
        self.path().join("work")
    }

    /// `sh -c script` as root over the busybox root, `PATH=/bin`.
    pub fn spec(&self, script: &str) -> RunSpec {
        RunSpec {
            lowerdirs: vec![self.lower()],
            upperdir: self.upper(),
            workdir: self.work(),
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["PATH=/bin".into()],
            ..RunSpec::default()
        }
    }
}

/// Runs `spec`, returning the exit code and the output.
pub fn run(spec: &RunSpec) -> (i32, String) {
    let mut out = Vec::new();
    let code = sandbox::run(spec, &mut out).unwrap_or_else(|e| panic!("sandbox::run failed: {e}"));
    (code, String::from_utf8_lossy(&out).into_owned())
}

/// Every entry under `root` (relative path → description), e.g. `d 755 0:0 opaque`,
/// `f 644 42400:42400 "text"`, `l -> /target`, `c 0:0 whiteout`. Regular files show `n2` when they
/// have 2 links. Ignores times and `user.overlay.*` xattrs other than `opaque`.
pub fn listing(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap();
        let p = entry.path();
        let m = fs::symlink_metadata(p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let owner = format!("{}:{}", m.uid(), m.gid());
        let mode = m.mode() & 0o7777;
        let ft = m.file_type();
        let desc = if ft.is_dir() {
            let opaque = xattr::get(p, "user.overlay.opaque").unwrap().is_some_and(|v| v == b"y");
            format!("d {mode:o} {owner}{}", if opaque { " opaque" } else { "" })
        } else if ft.is_symlink() {
            format!("l -> {}", fs::read_link(p).unwrap().display())
        } else if ft.is_char_device() {
            let rdev = m.rdev();
            let kind = if rdev == 0 { "whiteout".to_owned() } else { format!("dev {rdev}") };
            format!("c {owner} {kind}")
        } else if ft.is_file() {
            let links = if m.nlink() > 1 { format!(" n{}", m.nlink()) } else { String::new() };
            let text = String::from_utf8_lossy(&fs::read(p).unwrap()).into_owned();
            format!("f {mode:o} {owner}{links} {text:?}")
        } else {
            format!("? {:?}", ft)
        };
        out.insert(rel, desc);
    }
    out
}

/// Builds a `BTreeMap` from `(path, description)` pairs, for comparing with [`listing`].
pub fn expect(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}
