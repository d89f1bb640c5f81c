//! What every HTTP client of kolla-oci shares — the registry client and source downloads: the TLS
//! provider, the user agent, and timeouts that catch a stalled transfer without capping its size.

use std::sync::Once;
use std::time::Duration;

/// `User-Agent` of every request we send.
const USER_AGENT: &str = concat!("kolla-oci/", env!("CARGO_PKG_VERSION"));

/// Install rustls' ring provider as the process default, once. `reqwest` is built with
/// `rustls-no-provider` (ring builds much faster than aws-lc), so a client built before this runs
/// would fail its first TLS handshake.
fn install_tls_provider() {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        // Err only means another part of the program installed a provider first, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// How long a connection may take to open, and how long a transfer may go without receiving a byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening a TCP (and TLS) connection.
    pub connect: Duration,
    /// Waiting for an answer, and then for each next piece of its body. A download of any size works as
    /// long as bytes keep coming; a peer that sends headers and then nothing fails after this long.
    pub stall: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts { connect: Duration::from_secs(30), stall: Duration::from_secs(60) }
    }
}

/// A blocking HTTP client builder with our user agent, rustls on ring, and `timeouts` applied.
///
/// reqwest's blocking `timeout` bounds each wait (for the answer's headers, then each read of the body),
/// not the whole transfer: that is exactly a stalled-transfer timeout. A request that sets its own
/// `RequestBuilder::timeout` gets a total deadline instead (uploads do, scaled by their size). A read that
/// times out fails with an error [`is_timeout`] recognizes.
pub fn http_client(timeouts: &Timeouts) -> reqwest::blocking::ClientBuilder {
    install_tls_provider();
    reqwest::blocking::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.stall)
        .tcp_keepalive(Duration::from_secs(30))
}

/// Whether an I/O error from reading a response body is a timeout (the transfer stalled).
pub fn is_timeout(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref().and_then(|inner| inner.downcast_ref::<reqwest::Error>()).is_some_and(reqwest::Error::is_timeout)
}
