//! Layers are compressed in the background while the next steps run (`src/builder/background.rs`): a
//! compression that fails must still fail the image, clearly, and leave no image behind.
//!
//! The failure is real, not injected: the store lives on a 24 MiB tmpfs (in a private mount namespace),
//! a RUN writes 14 MB of random bytes — its upper dir fits, and hashing its tar needs no space — and the
//! blob the background thread then writes does not.

mod support {
    pub mod busybox;
}

use std::fs;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kolla-oci");

#[test]
fn a_failed_background_compression_fails_the_image_clearly() {
    let tmp = tempfile::Builder::new().prefix("kolla-oci-bg-").tempdir_in("/tmp").unwrap();
    let ctx = tmp.path().join("ctx");
    fs::create_dir(&ctx).unwrap();
    support::busybox::write_busybox_context(&ctx);
    fs::write(
        ctx.join("Dockerfile"),
        "FROM bb-base:1\nRUN head -c 14000000 /dev/urandom > /big\nRUN echo after > /after\nCMD [\"/bin/sh\"]\n",
    )
    .unwrap();
    let store = tmp.path().join("state");
    fs::create_dir(&store).unwrap();
    // One shell in its own mount namespace: the tmpfs is gone when it exits.
    let script = r#"set -u
mount -t tmpfs -o size=24m kolla-oci-test "$STORE" || exit 90
"$BIN" build-file -f "$CTX/Dockerfile.base" "$CTX" -t bb-base:1 >/dev/null || exit 91
"$BIN" build-file "$CTX" -t bg:1
echo "exit=$?" >&2
"$BIN" images >&2
"#;
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("BIN", BIN)
        .env("CTX", &ctx)
        .env("STORE", &store)
        .env("KOLLA_OCI_STORE", &store)
        .output()
        .expect("unshare (util-linux) runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "setup failed (needs root for the tmpfs mount): {stderr}");
    assert!(stderr.contains("exit=1"), "the build must fail: {stderr}");
    assert!(
        stderr.contains("Dockerfile:2:") && stderr.contains("No space left on device"),
        "the error names the RUN's file:line and the cause: {stderr}"
    );
    let listing = stderr.split("TAG ").nth(1).unwrap_or_default();
    assert!(listing.contains("bb-base:1") && !listing.contains("bg:1"), "no image is tagged: {stderr}");
}
