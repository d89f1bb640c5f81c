//! The sandbox as an unprivileged user: `kolla-oci` enters a user namespace mapped with the user's
//! subordinate ids, so ids chowned inside (42400) land on the host as `subuid_start + 42399`.
//!
//! Run as root (the machine and CI), the test creates the user `kolla-oci-test` (and its /etc/subuid and
//! /etc/subgid entries) when missing and runs the `kolla-oci` binary as that user with `setpriv`. Run as
//! an ordinary user, it runs the binary as that user, which then needs its own subordinate ids.

#[path = "support/sandbox.rs"]
mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use kolla_oci::sandbox::{RunSpec, SELFTEST_ENV};
use support::{expect, listing};

const TEST_USER: &str = "kolla-oci-test";

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The first `(start, count)` range of `user` in an /etc/subuid-format file.
fn first_range(file: &str, user: &str, uid: u32) -> Option<(u32, u32)> {
    let content = fs::read_to_string(file).unwrap_or_default();
    content.lines().find_map(|l| {
        let f: Vec<&str> = l.trim().split(':').collect();
        let [name, start, count] = f[..] else { return None };
        if name != user && name != uid.to_string() {
            return None;
        }
        Some((start.parse().ok()?, count.parse().ok()?))
    })
}

/// `(uid, gid, subuid start, subgid start)` of the unprivileged user the test runs as.
fn unprivileged_user() -> (u32, u32, u32, u32) {
    let root = rustix::process::geteuid().is_root();
    let name = if root {
        if Command::new("id").arg(TEST_USER).output().is_ok_and(|o| !o.status.success()) {
            sh("useradd", &["--create-home", "--shell", "/bin/sh", TEST_USER]);
        }
        TEST_USER.to_owned()
    } else {
        sh("id", &["-un"]).trim().to_owned()
    };
    let uid: u32 = sh("id", &["-u", &name]).trim().parse().unwrap();
    let gid: u32 = sh("id", &["-g", &name]).trim().parse().unwrap();
    let mut ranges = [0u32; 2];
    for (slot, file) in ranges.iter_mut().zip(["/etc/subuid", "/etc/subgid"]) {
        if first_range(file, &name, uid).is_none() {
            assert!(root, "{name} has no entry in {file}: add one (e.g. `{name}:100000:65536`)");
            let mut content = fs::read_to_string(file).unwrap_or_default();
            if !content.is_empty() && !content.ends_with('\n') {
                content.push('\n');
            }
            content.push_str(&format!("{name}:200000:65536\n"));
            fs::write(file, content).unwrap();
        }
        let (start, count) = first_range(file, &name, uid).unwrap();
        assert!(count >= 42401, "{file}: the range of {name} is too small to map 42400");
        *slot = start;
    }
    (uid, gid, ranges[0], ranges[1])
}

/// Runs `spec` as the unprivileged user through `kolla-oci`'s self-test entry.
fn run_as(uid: u32, gid: u32, dir: &Path, name: &str, spec: &RunSpec) -> (i32, String, String) {
    let spec_path = dir.join(format!("{name}.json"));
    fs::write(&spec_path, serde_json::to_vec(spec).unwrap()).unwrap();
    let exe = dir.join("kolla-oci");
    let mut cmd = if rustix::process::geteuid().is_root() {
        let mut c = Command::new("setpriv");
        c.args([&format!("--reuid={uid}"), &format!("--regid={gid}"), "--clear-groups", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").env("HOME", dir).env(SELFTEST_ENV, &spec_path);
    let out = cmd.output().expect("running kolla-oci as the unprivileged user");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

#[test]
fn rootless_run_maps_ids_through_the_subordinate_range() {
    let (uid, gid, subuid, subgid) = unprivileged_user();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::busybox_rootfs(&d.join("lower"));
    fs::create_dir_all(d.join("lower/data")).unwrap();
    fs::write(d.join("lower/data/delete"), "x\n").unwrap();
    fs::create_dir_all(d.join("lower/olddir")).unwrap();
    fs::write(d.join("lower/olddir/a"), "a\n").unwrap();
    for sub in ["upper1", "work1", "upper2", "work2"] {
        fs::create_dir(d.join(sub)).unwrap();
    }
    fs::copy(support::kolla_oci(), d.join("kolla-oci")).unwrap();
    if rustix::process::geteuid().is_root() {
        sh("chown", &["-R", &format!("{uid}:{gid}"), d.to_str().unwrap()]);
    }

    // As root of the namespace: ids 0 and 42400 map to the user and to its subordinate range.
    let spec1 = RunSpec {
        lowerdirs: vec![d.join("lower")],
        upperdir: d.join("upper1"),
        workdir: d.join("work1"),
        argv: [
            "sh",
            "-c",
            "id -u; echo new > /data/new; rm /data/delete; rm -r /olddir; mkdir /olddir; \
                touch /owned; chown 42400:42400 /owned; mkdir -m 777 /shared",
        ]
        .map(String::from)
        .to_vec(),
        env: vec!["PATH=/bin".into()],
        ..RunSpec::default()
    };
    let (code, out, err) = run_as(uid, gid, d, "spec1", &spec1);
    assert_eq!((code, out.as_str()), (0, "0\n"), "stderr: {err}");
    let (u, g) = (format!("{uid}:{gid}"), format!("{}:{}", subuid + 42399, subgid + 42399));
    assert_eq!(
        listing(&d.join("upper1")),
        expect(&[
            ("data", &format!("d 755 {u}")),
            ("data/delete", &format!("c {u} whiteout")),
            ("data/new", &format!("f 644 {u} \"new\\n\"")),
            ("olddir", &format!("d 755 {u} opaque")),
            ("owned", &format!("f 644 {g} \"\"")),
            ("shared", &format!("d 777 {u}")),
        ])
    );

    // The first run's upper dir as a layer, and USER kolla (42400) on top of it.
    let spec2 = RunSpec {
        lowerdirs: vec![d.join("upper1"), d.join("lower")],
        upperdir: d.join("upper2"),
        workdir: d.join("work2"),
        argv: ["sh", "-c", "id -u; cat /data/new; test -e /data/delete || echo deleted; touch /shared/by-kolla"]
            .map(String::from)
            .to_vec(),
        env: vec!["PATH=/bin".into()],
        user: "kolla".into(),
        ..RunSpec::default()
    };
    let (code, out, err) = run_as(uid, gid, d, "spec2", &spec2);
    assert_eq!((code, out.as_str()), (0, "42400\nnew\ndeleted\n"), "stderr: {err}");
    let by_kolla = fs::metadata(d.join("upper2/shared/by-kolla")).unwrap();
    assert_eq!((by_kolla.uid(), by_kolla.gid()), (subuid + 42399, subgid + 42399));
}
