//! Package URLs (purl spec): the identifier SBOM consumers (scanners, CVE feeds) match packages by.
//!
//! Every component is percent-encoded except the unreserved characters `A-Za-z0-9.-_~`, so a Debian
//! version with an epoch or a `+` (`1:2.3+dfsg`) stays one unambiguous component (`1%3A2.3%2Bdfsg`).

use std::fmt::Write as _;

/// Percent-encode `s`, keeping the unreserved characters and those in `keep`.
fn encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `pkg:<type>/<namespace>/<name>@<version>?<qualifiers>`; qualifiers are sorted by key (the spec's
/// canonical form) and those with an empty value are left out.
fn purl(typ: &str, namespace: Option<&str>, name: &str, version: &str, qualifiers: &[(&str, &str)]) -> String {
    let mut out = format!("pkg:{typ}/");
    if let Some(ns) = namespace {
        out.push_str(&encode(ns, b""));
        out.push('/');
    }
    out.push_str(&encode(name, b""));
    out.push('@');
    out.push_str(&encode(version, b""));
    let mut q: Vec<&(&str, &str)> = qualifiers.iter().filter(|(_, v)| !v.is_empty()).collect();
    q.sort();
    for (i, (k, v)) in q.into_iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&encode(v, b"/"));
    }
    out
}

/// `pkg:deb/<vendor>/<name>@<version>?arch=<arch>&distro=<vendor>-<VERSION_ID>` (`distro` left out when
/// the image does not say which release it is).
pub fn deb(vendor: &str, name: &str, version: &str, arch: &str, distro: Option<&str>) -> String {
    purl("deb", Some(&vendor.to_ascii_lowercase()), name, version, &[("arch", arch), ("distro", distro.unwrap_or(""))])
}

/// The purl spec's PyPI name form: lower case, `_` written as `-` (`PyYAML` → `pyyaml`,
/// `typing_extensions` → `typing-extensions`).
pub fn pypi_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// `pkg:pypi/<normalized name>@<version>`.
pub fn pypi(name: &str, version: &str) -> String {
    purl("pypi", None, &pypi_name(name), version, &[])
}

/// `pkg:oci/<name>@sha256%3A<hex>?repository_url=<repository>&tag=<tag>` for an image named
/// `[registry/]path/name[:tag]` in the store.
pub fn oci(image: &str, digest: &str) -> String {
    let (repository, tag) = split_tag(image);
    let name = repository.rsplit('/').next().unwrap_or(repository).to_ascii_lowercase();
    purl("oci", None, &name, digest, &[("repository_url", repository), ("tag", tag)])
}

/// `repo[:tag]` → (`repo`, `tag`); a `:` in a registry host's port is not a tag.
fn split_tag(image: &str) -> (&str, &str) {
    let image = image.split('@').next().unwrap_or(image);
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_purls_encode_epochs_and_plus() {
        assert_eq!(
            deb("debian", "libc6", "2.36-9+deb12u4", "amd64", Some("debian-12")),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
        );
        assert_eq!(deb("Debian", "perl", "1:5.36", "all", None), "pkg:deb/debian/perl@1%3A5.36?arch=all");
    }

    #[test]
    fn pypi_names_are_normalized() {
        assert_eq!(pypi("PyYAML", "6.0.1"), "pkg:pypi/pyyaml@6.0.1");
        assert_eq!(pypi("typing_extensions", "4.12.2"), "pkg:pypi/typing-extensions@4.12.2");
        assert_eq!(pypi("oslo.config", "9.4.0"), "pkg:pypi/oslo.config@9.4.0");
    }

    #[test]
    fn oci_purls_carry_repository_and_tag() {
        let d = "sha256:0123abcd";
        assert_eq!(
            oci("localhost:5000/kolla/Keystone:2026.2", d),
            "pkg:oci/keystone@sha256%3A0123abcd?repository_url=localhost%3A5000/kolla/Keystone&tag=2026.2"
        );
        assert_eq!(
            oci("localhost:5000/base", d),
            "pkg:oci/base@sha256%3A0123abcd?repository_url=localhost%3A5000/base"
        );
    }
}
