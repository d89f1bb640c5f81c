//! A tiny real root filesystem for builder tests: Debian's static busybox, a passwd/group with Kolla's
//! uid 42400, and a Dockerfile that builds it `FROM scratch`.

#![allow(dead_code)] // each test binary uses a different part of this helper

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

/// Write a busybox rootfs under `ctx/rootfs` and `ctx/Dockerfile.base` (`FROM scratch` + `COPY rootfs/ /`).
pub fn write_busybox_context(ctx: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(busybox.exists(), "/bin/busybox is missing: install Debian's busybox-static (tests/setup.sh does)");
    let root = ctx.join("rootfs");
    for d in ["bin", "etc", "olddir", "tmp"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy(busybox, root.join("bin/busybox")).unwrap();
    symlink("busybox", root.join("bin/sh")).unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nkolla:x:42400:42400::/var/lib/kolla:/bin/sh\n")
        .unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\nkolla:x:42400:\n").unwrap();
    fs::write(root.join("etc/gone"), "deleted by a later layer\n").unwrap();
    fs::write(root.join("olddir/f"), "old\n").unwrap();
    fs::write(ctx.join("Dockerfile.base"), "FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\n").unwrap();
}

/// A temp dir under /tmp that every user can read (rootless tests run `kolla-oci` as another user),
/// named `<prefix>…`, with the busybox context of [`write_busybox_context`] in `ctx/`.
pub fn shared_context(prefix: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").unwrap();
    let dir = tmp.path().to_path_buf();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(dir.join("ctx")).unwrap();
    write_busybox_context(&dir.join("ctx"));
    (tmp, dir)
}
