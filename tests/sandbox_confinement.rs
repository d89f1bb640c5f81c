//! A RUN step (and `kolla-oci run`) is contained as `docker build` contains it, whether kolla-oci runs
//! as root or rootless: a user namespace of its own (root's containers too), Docker's capability set
//! and seccomp profile, masked kernel files, read-only volumes that stay so, no fd of the caller —
//! and the layers it makes are the same bytes as before any of this (pinned) and as a rootless build.

mod support {
    pub mod busybox;
    pub mod cli;
    pub mod rootless;
}

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::cli::ok;

const BIN: &str = env!("CARGO_BIN_EXE_kolla-oci");

/// Docker's default capabilities (`CapEff` of a container's root).
const DOCKER_CAPS: &str = "00000000a80425fb";

/// The RUN of [`PINNED_DOCKERFILE`], built by kolla-oci before RUN steps got a user namespace as root
/// (main dd6db4f, as root, `SOURCE_DATE_EPOCH=1700000000`): layers must keep these bytes.
const PINNED_RUN_DIFF_ID: &str = "sha256:ec75e10d6092a5fe5006a967bbdfa76f8535aadf1db67a9568c49900980d0a7c";
const PINNED_DOCKERFILE: &str = "FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\n\
    RUN mkdir -p /srv/a && echo x > /srv/a/f && chown -R 42400:42400 /srv && ln -s /srv/a/f /srv/link && \
    rm /etc/gone && rm -r /olddir && mkdir /olddir && touch /olddir/new && chmod 4755 /srv/a/f && mknod /srv/fifo p\n";

/// A world-readable temp dir (the rootless part runs as another user) with the busybox context.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let (tmp, dir) = support::busybox::shared_context("kolla-oci-conf-");
        let ctx = dir.join("ctx");
        // Modes independent of the test's umask: the pinned layer holds the dirs the RUN changes.
        for (p, mode) in [("", 0o755), ("bin", 0o755), ("etc", 0o755), ("olddir", 0o755), ("tmp", 0o1777)] {
            fs::set_permissions(ctx.join("rootfs").join(p), fs::Permissions::from_mode(mode)).unwrap();
        }
        for f in ["etc/passwd", "etc/group", "etc/gone", "olddir/f"] {
            fs::set_permissions(ctx.join("rootfs").join(f), fs::Permissions::from_mode(0o644)).unwrap();
        }
        fs::write(ctx.join("Dockerfile.pinned"), PINNED_DOCKERFILE).unwrap();
        Fixture { _tmp: tmp, dir }
    }

    fn ctx(&self) -> String {
        self.dir.join("ctx").to_string_lossy().into_owned()
    }

    /// `kolla-oci ARGS` as root with a store under the fixture.
    fn kolla(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("KOLLA_OCI_STORE", self.dir.join("store"))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap()
    }

    /// Builds `FROM scratch` + the busybox root as `bb:1`.
    fn base(&self) {
        let ctx = self.ctx();
        ok(self.kolla(&["build-file", "-f", &format!("{ctx}/Dockerfile.base"), &ctx, "-t", "bb:1"]));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `rootfs.diff_ids` of `image` in the OCI layout `layout`, read with skopeo.
fn diff_ids(layout: &Path, image: &str) -> Vec<String> {
    let out = Command::new("skopeo")
        .args(["inspect", "--config", &format!("oci:{}:{image}", layout.display())])
        .output()
        .expect("skopeo (tests/setup.sh installs it)");
    assert!(out.status.success(), "skopeo inspect: {}", text(&out.stderr));
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    config["rootfs"]["diff_ids"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect()
}

#[test]
fn as_root_a_run_step_gets_a_user_namespace_dockers_capabilities_and_seccomp() {
    assert!(rustix::process::geteuid().is_root(), "this test checks the root path (CI runs the suite as root)");
    let f = Fixture::new();
    f.base();
    // A host secret the caller's fd 7 leads to, and an fd a RUN step must not inherit.
    let secret = f.dir.join("secret");
    fs::create_dir(&secret).unwrap();
    fs::write(secret.join("key"), "host secret\n").unwrap();
    fs::set_permissions(secret.join("key"), fs::Permissions::from_mode(0o600)).unwrap();
    // Each probe prints its own error, so that a refusal is told apart from a missing command.
    let probe = [
        "busybox grep CapEff /proc/self/status",
        "busybox cat /proc/self/uid_map",
        "busybox mknod /blk b 8 0 && echo mknod-ok || echo mknod-refused",
        "busybox mount -t tmpfs t /mnt && echo mount-ok || echo mount-refused",
        "busybox unshare -U true && echo unshare-ok || echo unshare-refused",
        "busybox head -c1 /proc/kcore && echo kcore-ok || echo kcore-refused",
        "busybox cat /proc/keys /proc/timer_list | busybox grep -q . && echo keys-ok || echo keys-refused",
        "busybox cat /proc/self/fd/7/key && echo fd-ok || echo fd-refused",
        "echo 1 > /proc/sys/kernel/domainname && echo procsys-ok || echo procsys-refused",
    ]
    .join("; ");
    let df = format!("FROM bb:1\nRUN busybox mkdir -p /mnt; ( {probe} ) > /probe 2>&1\n");
    fs::write(f.dir.join("ctx/Dockerfile.probe"), df).unwrap();
    let ctx = f.ctx();
    let build = Command::new("bash")
        .arg("-c")
        .arg(format!("exec 7<{}; exec {BIN} build-file -f {ctx}/Dockerfile.probe {ctx} -t probe:1", secret.display()))
        .env("KOLLA_OCI_STORE", f.dir.join("store"))
        .output()
        .unwrap();
    ok(build);
    let probe = text(&ok(f.kolla(&["run", "probe:1", "--", "busybox", "cat", "/probe"])).stdout);
    assert!(probe.contains(&format!("CapEff:\t{DOCKER_CAPS}")), "not Docker's capabilities:\n{probe}");
    let map: Vec<&str> = probe.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(map[0], "0", "{probe}");
    assert_ne!(map[1], "0", "container root is host root:\n{probe}");
    assert_eq!(map[2], "65536", "{probe}");
    for what in ["mknod", "mount", "unshare", "kcore", "keys", "fd", "procsys"] {
        assert!(probe.contains(&format!("{what}-refused")), "{what} was not refused:\n{probe}");
    }
    // Refused by the kernel, not for want of a program.
    for why in [
        "mknod: /blk: Operation not permitted",
        "mount: permission denied",
        "unshare(0x10000000): Operation not permitted",
    ] {
        assert!(probe.contains(why), "expected {why:?}:\n{probe}");
    }
    assert!(!probe.contains("host secret"), "{probe}");
    // The RUN layer holds what the command did, with the container's ids.
    assert!(!f.dir.join("store/layers").read_dir().unwrap().any(|e| e.unwrap().path().join("blk").exists()));
}

#[test]
fn read_only_volumes_stay_read_only_and_setuid_works_as_root() {
    let f = Fixture::new();
    f.base();
    let vol = f.dir.join("vol");
    fs::create_dir(&vol).unwrap();
    fs::write(vol.join("file"), "original\n").unwrap();
    let rw = f.dir.join("rw");
    fs::create_dir(&rw).unwrap();
    let attack = "busybox mount -o remount,rw /ro; busybox mount -o remount,rw,bind /ro; echo pwned > /ro/file; \
                  echo written > /rw/new; busybox ls -ln /ro/file; busybox grep CapEff /proc/self/status";
    let out = f.kolla(&[
        "run",
        "-v",
        &format!("{}:/ro:ro", vol.display()),
        "-v",
        &format!("{}:/rw", rw.display()),
        "bb:1",
        "--",
        "sh",
        "-c",
        attack,
    ]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(fs::read_to_string(vol.join("file")).unwrap(), "original\n", "the :ro volume was written:\n{all}");
    // A writable volume is written with the host's ids (idmapped: container root is root there).
    let new = fs::metadata(rw.join("new")).unwrap();
    assert_eq!((new.uid(), new.gid()), (0, 0), "{all}");
    assert!(all.contains(" 0        0 "), "the volume's files show their owner (root), not nobody:\n{all}");

    // A setuid-root program run by a non-root USER gets root, bounded by Docker's set (no_new_privs off),
    // as `sudo` in kolla_start needs.
    let src = f.dir.join("euid.c");
    fs::write(
        &src,
        "#include <stdio.h>\n#include <unistd.h>\nint main(void){ printf(\"euid=%d\\n\", (int)geteuid()); \
         FILE *s = fopen(\"/proc/self/status\", \"r\"); char l[256]; \
         while (fgets(l, sizeof l, s)) if (l[0]=='C' && l[3]=='E') fputs(l, stdout); return 0; }\n",
    )
    .unwrap();
    let bin = f.dir.join("ctx/rootfs/bin/euid");
    let cc = Command::new("cc").args(["-static", "-O2", "-o"]).arg(&bin).arg(&src).output().expect("cc");
    assert!(cc.status.success(), "cc -static: {}", text(&cc.stderr));
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o4755)).unwrap();
    let ctx = f.ctx();
    fs::write(f.dir.join("ctx/Dockerfile.suid"), "FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nUSER kolla\n").unwrap();
    ok(f.kolla(&["build-file", "-f", &format!("{ctx}/Dockerfile.suid"), &ctx, "-t", "suid:1"]));
    let out = text(&ok(f.kolla(&["run", "suid:1", "--", "sh", "-c", "busybox id -u; euid"])).stdout);
    assert_eq!(out, format!("42400\neuid=0\nCapEff:\t{DOCKER_CAPS}\n"));
}

#[test]
fn root_rootless_and_earlier_builds_make_the_same_layers() {
    let f = Fixture::new();
    let ctx = f.ctx();
    ok(f.kolla(&["build-file", "-f", &format!("{ctx}/Dockerfile.pinned"), &ctx, "-t", "pin:1"]));
    let as_root = diff_ids(&f.dir.join("store/oci"), "pin:1");
    assert_eq!(as_root.len(), 2);
    assert_eq!(as_root[1], PINNED_RUN_DIFF_ID, "the RUN layer's bytes changed");

    let user = support::rootless::rootless_user();
    let bin = f.dir.join("kolla-oci");
    support::rootless::copy_binary(&bin);
    let state = f.dir.join("store-user");
    fs::create_dir(&state).unwrap();
    let own = Command::new("chown").arg(format!("{user}:{user}")).arg(&state).status().unwrap();
    assert!(own.success());
    let vars = [format!("KOLLA_OCI_STORE={}", state.display()), "SOURCE_DATE_EPOCH=1700000000".into()];
    let out = support::rootless::as_user(user, &vars, &bin)
        .args(["build-file", "-f", &format!("{ctx}/Dockerfile.pinned"), &ctx, "-t", "pin:1"])
        .output()
        .unwrap();
    ok(out);
    assert_eq!(diff_ids(&state.join("oci"), "pin:1"), as_root);
}

#[test]
fn rootless_read_only_volumes_stay_read_only() {
    let f = Fixture::new();
    let user = support::rootless::rootless_user();
    let bin = f.dir.join("kolla-oci");
    support::rootless::copy_binary(&bin);
    let state = f.dir.join("store-user");
    let vol = f.dir.join("vol");
    fs::create_dir(&state).unwrap();
    fs::create_dir(&vol).unwrap();
    fs::write(vol.join("file"), "original\n").unwrap();
    for p in [&state, &vol, &vol.join("file")] {
        assert!(Command::new("chown").arg(format!("{user}:{user}")).arg(p).status().unwrap().success());
    }
    let vars = [format!("KOLLA_OCI_STORE={}", state.display())];
    let ctx = f.ctx();
    ok(support::rootless::as_user(user, &vars, &bin)
        .args(["build-file", "-f", &format!("{ctx}/Dockerfile.base"), &ctx, "-t", "bb:1"])
        .output()
        .unwrap());
    let attack = "busybox mount -o remount,rw /ro; busybox mount -o remount,rw,bind /ro; echo pwned > /ro/file; \
                  busybox unshare -U true && echo unshare-ok; busybox grep CapEff /proc/self/status";
    let out = support::rootless::as_user(user, &vars, &bin)
        .args(["run", "-v", &format!("{}:/ro:ro", vol.display()), "bb:1", "--", "sh", "-c", attack])
        .output()
        .unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(fs::read_to_string(vol.join("file")).unwrap(), "original\n", "the :ro volume was written:\n{all}");
    assert!(all.contains(&format!("CapEff:\t{DOCKER_CAPS}")), "{all}");
    assert!(!all.contains("unshare-ok"), "{all}");
}
