//! A real distribution in the sandbox: `FROM debian:bookworm` with no registry is bootstrapped from the
//! Debian archive (mmdebstrap), and `apt-get install` works inside a RUN; `kolla-oci run` then runs the
//! installed program.

use std::fs;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kolla-oci");

#[test]
fn apt_get_install_works_in_the_sandbox_on_a_bootstrapped_debian() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    fs::create_dir(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM debian:bookworm\n\
         ENV DEBIAN_FRONTEND=noninteractive\n\
         RUN apt-get update && apt-get install -y --no-install-recommends hello && rm -rf /var/lib/apt/lists/*\n\
         CMD [\"hello\"]\n",
    )
    .unwrap();
    let kolla = |args: &[&str]| {
        let out = Command::new(BIN).args(args).env("KOLLA_OCI_STORE", tmp.path().join("state")).output().unwrap();
        assert!(
            out.status.success(),
            "kolla-oci {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    kolla(&["build-file", ctx.to_str().unwrap(), "-t", "hello:1"]);
    assert_eq!(kolla(&["run", "hello:1"]).trim(), "Hello, world!");
    let listing = kolla(&["images"]);
    assert!(listing.contains("debian:bookworm") && listing.contains("hello:1"), "{listing}");
    // The bootstrapped root image is cached in the store: a second build starts from it.
    kolla(&["build-file", ctx.to_str().unwrap(), "-t", "hello:2"]);
}
