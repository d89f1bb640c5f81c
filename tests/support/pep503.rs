//! PEP 503 name normalization, as pip compares distribution names: runs of `-`, `_` and `.` become one
//! `-`, letters lower case. Written here independently of kolla-oci's own purl code, so that the SBOM
//! tests compare against pip's rule rather than against ours.

/// The normalized form of a Python distribution name.
pub fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}
