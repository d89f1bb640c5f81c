//! HTTP plumbing under the registry client, reusable by any download: timeouts that catch a stalled
//! transfer without capping its size, retry pacing, and the rules for where credentials and requests may go.
//!
//! Credentials follow only the registry's own origin (scheme, host and port), as go-containerregistry does:
//! an upload session or a redirect on another host gets no `Authorization` header. And a registry must not
//! steer us into the networks around us: an absolute `Location` or a redirect to *another* host that is, or
//! resolves to, a loopback, private or link-local address is refused unless the user allowed that host
//! (`--allow-private-host`, e.g. the registry's own S3 storage on a private network).

use std::io::Read;
use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

pub use crate::http::{Timeouts, http_client, is_timeout};
use reqwest::Url;
use reqwest::blocking::Response;
use reqwest::header::{self, HeaderMap};

/// Bounds of the exponential backoff between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry; it doubles with every attempt.
    pub initial: Duration,
    /// The longest wait (before jitter).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { initial: Duration::from_millis(250), max: Duration::from_secs(8) }
    }
}

impl Backoff {
    /// The wait before retry number `attempt + 1`: `initial · 2^attempt`, at most `max`, plus up to 50 %
    /// random jitter so that parallel workers do not retry in lockstep.
    pub fn wait(&self, attempt: u32) -> Duration {
        use std::hash::BuildHasher as _;
        let base = self.initial.saturating_mul(1 << attempt.min(16)).min(self.max);
        // RandomState is freshly keyed per call: a cheap source of jitter without a rand dependency.
        let r = std::collections::hash_map::RandomState::new().hash_one(attempt) % 1000;
        base + base.mul_f64(r as f64 / 2000.0)
    }
}

/// Whether a request may be sent again after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Connection errors, timeouts, 5xx and 429 are retried with backoff (the request is idempotent).
    Transient,
    /// Sent once: the caller restarts the whole operation itself (a streamed upload into a session).
    Never,
}

/// Longest `Retry-After` we honour.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// `Retry-After: <seconds>` (HTTP-date forms fall back to our own backoff), capped.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = header_str(headers, header::RETRY_AFTER.as_str())?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Connection-level failures worth another attempt; not a refused connection (nothing listens there:
/// trying again only delays the message).
pub(crate) fn transient(e: &reqwest::Error) -> bool {
    (e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()) && !refused(e)
}

/// Whether the connection was refused (nothing listens at the address).
pub(crate) fn refused(e: &reqwest::Error) -> bool {
    causes(e).any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

/// `e` and its causes, outermost first.
fn causes<'a>(e: &'a (dyn std::error::Error + 'static)) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |c| c.source())
}

/// A transport error in one line: where it went (scheme, host, port) and its innermost cause, said once
/// (`Connection refused (os error 111)`, `invalid peer certificate: UnknownIssuer`), rather than reqwest's
/// chain of wrappers. A certificate problem comes with podman's ways out.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let inner = causes(e).last().map(|c| c.to_string()).unwrap_or_default();
    let what = if e.is_timeout() && !inner.to_lowercase().contains("timed out") {
        format!("timed out: {inner}")
    } else {
        inner
    };
    let Some(url) = e.url() else { return what };
    let mut out = format!("{}: {what}", origin_text(url));
    if what.contains("certificate") || what.contains("UnknownIssuer") {
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (h, _) => h.unwrap_or_default().to_string(),
        };
        out.push_str(&format!(
            " (a registry with a private CA: --cert-dir DIR, or its ca.crt in /etc/containers/certs.d/{host}/; \
             --tls-verify=false skips the check)"
        ));
    }
    out
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Read at most `max` bytes of a body; more is an error (a registry must not make us buffer a blob).
pub(crate) fn read_limited(resp: Response, max: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    resp.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::other(format!("answer larger than {max} bytes")));
    }
    Ok(out)
}

/// `CODE: message; CODE: message` from the OCI error envelope, else the start of the body.
pub(crate) fn error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(env) = serde_json::from_slice::<Envelope>(body)
        && !env.errors.is_empty()
    {
        return env
            .errors
            .iter()
            .map(|e| match (&e.code, &e.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => "unknown error".into(),
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None if text.is_empty() => "(empty body)".into(),
        None => text.to_string(),
    }
}

/// `scheme://host:port` of a URL: what error messages show of a foreign URL (never its path or query,
/// which may carry upload state or signed tokens).
pub(crate) fn origin_text(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{}://{h}:{p}", url.scheme()),
        (Some(h), None) => format!("{}://{h}", url.scheme()),
        _ => url.scheme().to_string(),
    }
}

/// Where the registry (or a download's server) may send us: its own origin, and the hosts the user
/// allowed on private networks.
#[derive(Debug, Clone)]
pub(crate) struct Destinations {
    registry: Url,
    allowed_private: Vec<String>,
    /// Who sends us there, for messages: "the registry", "the server".
    peer: &'static str,
}

impl Destinations {
    /// The rules for a registry at `registry` (its API base URL).
    pub(crate) fn new(registry: &Url, allowed_private: &[String]) -> Destinations {
        Destinations { registry: registry.clone(), allowed_private: allowed_private.to_vec(), peer: "the registry" }
    }

    /// The rules for a download from `url` (a kolla source): its redirects may not lead to a loopback,
    /// private or link-local host other than its own, as the registry's may not.
    pub(crate) fn for_download(url: &Url, allowed_private: &[String]) -> Destinations {
        Destinations { registry: url.clone(), allowed_private: allowed_private.to_vec(), peer: "the server" }
    }

    /// Whether `url` is the registry's own origin, the only one that gets our credentials.
    pub(crate) fn is_registry(&self, url: &Url) -> bool {
        url.origin() == self.registry.origin()
    }

    /// Refuse `url` when it is another host than the registry's and that host is, or resolves to, a
    /// loopback, private or link-local address the user did not allow. `Err` says why.
    ///
    /// The check resolves the name once; a name that resolves differently a moment later (DNS
    /// rebinding) is not caught here.
    pub(crate) fn check(&self, url: &Url) -> Result<(), String> {
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Err(format!("{} has no host", origin_text(url)));
        };
        if self.registry.host_str() == Some(host) && self.registry.port_or_known_default() == Some(port) {
            return Ok(());
        }
        let authority = format!("{host}:{port}");
        if self.allowed_private.iter().any(|a| *a == authority || *a == host) {
            return Ok(());
        }
        let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
        let addrs: Vec<IpAddr> = match literal {
            Some(ip) => vec![ip],
            // A name that does not resolve cannot reach anything; the request itself reports that.
            None => (host, port).to_socket_addrs().map(|a| a.map(|s| s.ip()).collect()).unwrap_or_default(),
        };
        match addrs.into_iter().find(|ip| is_internal(*ip)) {
            Some(ip) => Err(format!(
                "{} sent us to {} ({ip}), a loopback or private address that is not its own; \
                 refused (allow it with --allow-private-host {authority})",
                self.peer,
                origin_text(url)
            )),
            None => Ok(()),
        }
    }

    /// A redirect policy that follows at most 10 redirects and only to allowed destinations. reqwest
    /// itself drops `Authorization` when a redirect leaves the origin.
    pub(crate) fn redirect_policy(&self) -> reqwest::redirect::Policy {
        let rules = self.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                return attempt.error("more than 10 redirects");
            }
            match rules.check(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(reason) => attempt.error(reason),
            }
        })
    }
}

/// Loopback, private (RFC 1918, unique local), link-local (incl. cloud metadata 169.254.169.254),
/// shared (100.64/10) and unspecified addresses: the networks a remote registry has no business reaching.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal(IpAddr::V4(v4)),
            None => v6.is_loopback() || v6.is_unspecified() || v6.is_unique_local() || v6.is_unicast_link_local(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn envelope() {
        let body = br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":"x"},{"code":"DENIED"}]}"#;
        assert_eq!(error_detail(body), "BLOB_UNKNOWN: blob unknown to registry; DENIED");
        assert_eq!(error_detail(b"  oops \n"), "oops");
        assert_eq!(error_detail(b""), "(empty body)");
        assert_eq!(error_detail(&[b'x'; 300]).chars().count(), 201);
    }

    #[test]
    fn backoff_grows_within_its_bounds() {
        let b = Backoff::default();
        for a in 0..40 {
            let w = b.wait(a);
            let base = (Duration::from_millis(250) * (1 << a.min(16))).min(Duration::from_secs(8));
            assert!(w >= base && w <= base + base / 2, "{a}: {w:?}");
        }
        let fast = Backoff { initial: Duration::from_millis(10), max: Duration::from_millis(40) };
        assert!(fast.wait(0) < Duration::from_millis(16));
        assert!(fast.wait(9) >= Duration::from_millis(40) && fast.wait(9) <= Duration::from_millis(60));
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("99999"));
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "151.101.2.132", "2a04:4e42::644", "::ffff:1.1.1.1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn destinations() {
        let reg = Url::parse("http://127.0.0.1:5000/").unwrap();
        let d = Destinations::new(&reg, &[]);
        let u = |s: &str| Url::parse(s).unwrap();
        // The registry itself: credentials and requests.
        assert!(d.is_registry(&u("http://127.0.0.1:5000/v2/x/blobs/uploads/1?_state=a")));
        assert!(d.check(&u("http://127.0.0.1:5000/v2/")).is_ok());
        // Same host, other port or scheme: no credentials.
        assert!(!d.is_registry(&u("http://127.0.0.1:5001/v2/")));
        assert!(!d.is_registry(&u("https://127.0.0.1:5000/v2/")));
        // Another loopback port, localhost, metadata, a private literal: refused, naming the host.
        for bad in
            ["http://127.0.0.1:5001/up", "http://localhost:5000/up", "http://169.254.169.254/", "http://[::1]:80/"]
        {
            let err = d.check(&u(bad)).unwrap_err();
            assert!(err.contains("refused") && err.contains("--allow-private-host"), "{bad}: {err}");
        }
        // A public address: followed (without credentials).
        assert!(d.check(&u("https://151.101.2.132/blob")).is_ok());
        // Allowed by the user, as host:port or host.
        let d = Destinations::new(&reg, &["127.0.0.1:5001".into(), "localhost".into()]);
        assert!(d.check(&u("http://127.0.0.1:5001/up")).is_ok());
        assert!(d.check(&u("http://localhost:9/up")).is_ok());
        assert!(d.check(&u("http://127.0.0.1:5002/up")).is_err());
    }
}
