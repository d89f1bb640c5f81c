//! Running the kolla-oci binary in tests.

use std::process::Output;

/// `out`, after asserting that the command succeeded; the message has its status, stdout and stderr.
pub fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "kolla-oci failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
