//! Image references (`debian:bookworm`, `host:5000/ns/name:tag`, `name@sha256:…`), normalized the way
//! Docker does it, so that the same image always gets the same name in the store and on the wire.

use std::fmt;
use std::str::FromStr;

use layers::Digest;

use super::RegistryError;

/// The registry Docker Hub references normalize to (as written in references and the store).
pub const DOCKER_HUB: &str = "docker.io";
/// The host actually serving Docker Hub's distribution API.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Longest repository path the distribution spec allows.
const MAX_NAME_LEN: usize = 255;
/// Longest tag the distribution spec allows.
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalized image reference.
///
/// `Display` prints the fully qualified form (`docker.io/library/debian:bookworm`), which is also the
/// name a pulled image gets in the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parse and normalize a reference; without tag and digest the tag is `latest`.
    pub fn parse(s: &str) -> Result<Reference, RegistryError> {
        let bad =
            |reason: &str| RegistryError::InvalidReference { reference: s.to_string(), reason: reason.to_string() };
        if s.is_empty() {
            return Err(bad("empty reference"));
        }
        let (rest, digest) = match s.rsplit_once('@') {
            Some((rest, d)) => {
                let digest = parse_digest(d).map_err(|r| bad(&r))?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to host:port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&rest[..i], Some(rest[i + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag {
            validate_tag(t).map_err(|r| bad(&r))?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if is_domain(first) => (first.to_string(), path.to_string()),
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        validate_domain(&registry).map_err(|r| bad(&r))?;
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        validate_repository(&repository).map_err(|r| bad(&r))?;
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t,
        };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// Build a reference from its parts (validated as `parse` would).
    pub fn from_parts(registry: &str, repository: &str, tag: &str) -> Result<Reference, RegistryError> {
        Reference::parse(&format!("{registry}/{repository}:{tag}"))
    }

    /// The registry as written in references: `docker.io`, `quay.io`, `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) serving the distribution API: `registry-1.docker.io` for Docker Hub.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB { DOCKER_HUB_API } else { &self.registry }
    }

    /// The repository path inside the registry: `library/debian`, `kolla/nova-api`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (always set when no digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The pinned manifest digest, if the reference has `@sha256:…`.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What goes after `/manifests/` in API URLs: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, RegistryError> {
        Reference::from_parts(&self.registry, &self.repository, tag)
    }

    /// True for loopback registries (`localhost`, `127.0.0.0/8`, `[::1]`), which are spoken to over plain http.
    pub fn is_loopback(&self) -> bool {
        host_is_loopback(&self.registry)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// True when `host[:port]` names the local machine: `localhost`, `127.x.y.z`, `[::1]` or `::1`.
pub fn host_is_loopback(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if host_port.matches(':').count() > 1 {
        host_port // bare IPv6 without port
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Docker's rule: the first path component is a registry when it has a `.` or `:`, or is `localhost`.
fn is_domain(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost" || first.starts_with('[')
}

fn parse_digest(d: &str) -> Result<Digest, String> {
    let hex =
        d.strip_prefix("sha256:").ok_or_else(|| format!("unsupported digest {d:?} (only sha256 is supported)"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!("digest {d:?} is not sha256: followed by 64 lowercase hex digits"));
    }
    d.parse::<Digest>().map_err(|e| format!("invalid digest {d:?}: {e}"))
}

fn validate_tag(t: &str) -> Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= MAX_TAG_LEN
        && t.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid tag {t:?} (1-{MAX_TAG_LEN} of [A-Za-z0-9_.-], not starting with '.' or '-')"))
    }
}

fn validate_domain(d: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| format!("unterminated IPv6 host {d:?}"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 host {d:?}"));
        }
        (None, after.strip_prefix(':'))
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(h) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !h.split('.').all(label_ok) {
            return Err(format!("invalid registry host {h:?}"));
        }
    }
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return Err(format!("invalid registry port {p:?}"));
    }
    Ok(())
}

/// Path components: lowercase alphanumerics separated by one `.`, one or two `_`, or any number of `-`.
fn validate_repository(r: &str) -> Result<(), String> {
    if r.len() > MAX_NAME_LEN {
        return Err(format!("repository name longer than {MAX_NAME_LEN} characters"));
    }
    for comp in r.split('/') {
        if !component_ok(comp) {
            return Err(format!(
                "invalid repository path component {comp:?} in {r:?} (lowercase letters, digits and \
                 single separators '.', '_', '__' or '-' between them)"
            ));
        }
    }
    Ok(())
}

fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let dashes = sep.bytes().all(|x| x == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_normalization() {
        let r = p("debian:bookworm");
        assert_eq!(r.to_string(), "docker.io/library/debian:bookworm");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.repository(), "library/debian");
        assert_eq!(r.tag(), Some("bookworm"));
        assert_eq!(p("debian").to_string(), "docker.io/library/debian:latest");
        assert_eq!(p("kolla/nova-api").to_string(), "docker.io/kolla/nova-api:latest");
        assert_eq!(p("docker.io/debian:12").to_string(), "docker.io/library/debian:12");
        assert_eq!(p("index.docker.io/library/debian").to_string(), "docker.io/library/debian:latest");
        assert!(!p("debian").is_loopback());
    }

    #[test]
    fn hosts_and_ports() {
        let r = p("quay.io/openstack.kolla/nova-api:2024.1-ubuntu");
        assert_eq!(r.registry(), "quay.io");
        assert_eq!(r.api_host(), "quay.io");
        assert_eq!(r.repository(), "openstack.kolla/nova-api");
        let r = p("127.0.0.1:5000/kolla/base:master");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "kolla/base");
        assert_eq!(r.tag(), Some("master"));
        assert!(r.is_loopback());
        let r = p("localhost/foo");
        assert_eq!(r.registry(), "localhost");
        assert_eq!(r.repository(), "foo");
        assert!(r.is_loopback());
        assert!(p("localhost:5000/a/b/c:t").is_loopback());
        assert!(p("[::1]:5000/a").is_loopback());
        assert_eq!(p("[::1]:5000/a").registry(), "[::1]:5000");
        assert!(p("127.3.4.5:80/a").is_loopback());
        assert!(!p("registry.example.com:5000/a").is_loopback());
        // A name with a port but no tag: the ':' belongs to the host.
        let r = p("myhost:5000/x");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.registry(), "myhost:5000");
    }

    #[test]
    fn digests() {
        let r = p(&format!("debian@{D}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().map(|d| d.to_string()).as_deref(), Some(D));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/debian@{D}"));
        let r = p(&format!("h.io/a:t@{D}"));
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.to_string(), format!("h.io/a:t@{D}"));
        assert_eq!(p("h.io/a:t").manifest_reference(), "t");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Debian",
            "debian:",
            "debian:-x",
            "a//b",
            "a/b/",
            "/a",
            "a..b",
            "a___b",
            "debian@sha256:1234",
            "debian@md5:0123456789abcdef0123456789abcdef",
            "debian@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
            "host:99999/a",
            "ho_st.io/a",
            "a:b:c",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let e = Reference::parse("debian@sha256:12").unwrap_err().to_string();
        assert!(e.contains("debian@sha256:12") && e.contains("64"), "{e}");
        let long = "a".repeat(256);
        assert!(Reference::parse(&long).is_err());
        assert!(Reference::parse(&format!("a:{}", "t".repeat(129))).is_err());
    }

    #[test]
    fn separators() {
        for ok in ["a-b", "a--b", "a_b", "a__b", "a.b", "a0/b-c_d.e"] {
            assert!(Reference::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(p("h.io/a").with_tag("v2").unwrap().to_string(), "h.io/a:v2");
    }
}
