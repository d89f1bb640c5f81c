//! The unprivileged user rootless tests run `kolla-oci` as (CI runs the suite as root).
#![allow(dead_code)] // each test binary uses a different part of this helper

use std::fs;
use std::process::Command;

/// The user, created with `/etc/subuid` and `/etc/subgid` entries when missing. Needs root.
pub fn rootless_user() -> &'static str {
    const USER: &str = "kolla-oci-test";
    assert_eq!(rustix::process::geteuid().as_raw(), 0, "this test sets up its user as root (CI runs as root)");
    if !Command::new("id").arg(USER).output().unwrap().status.success() {
        let st = Command::new("useradd").args(["-m", "-s", "/bin/sh", USER]).status().unwrap();
        assert!(st.success() || Command::new("id").arg(USER).output().unwrap().status.success());
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = fs::read_to_string(file).unwrap_or_default();
        if !text.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
            let mut f = fs::OpenOptions::new().append(true).create(true).open(file).unwrap();
            std::io::Write::write_all(&mut f, format!("{USER}:300000:65536\n").as_bytes()).unwrap();
        }
    }
    USER
}

/// `runuser -u USER -- env VARS… PROGRAM`: the start of a command run as the rootless user.
pub fn as_user(user: &str, vars: &[String], program: &std::path::Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", user, "--", "env"]).args(vars).arg(program);
    c
}

/// Copies the kolla-oci binary to `to`, where the rootless user can run it. With `cp`: a write fd of
/// the test process would be inherited by whatever other tests fork meanwhile, and running the copy
/// would then fail with "Text file busy".
pub fn copy_binary(to: &std::path::Path) {
    let st = Command::new("cp").arg(env!("CARGO_BIN_EXE_kolla-oci")).arg(to).status().unwrap();
    assert!(st.success(), "cp of the kolla-oci binary failed");
}
