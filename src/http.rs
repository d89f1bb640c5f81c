//! What every HTTP client of kolla-oci shares: the TLS provider and the user agent. The registry
//! client and source downloads build their own `reqwest` clients (their timeouts differ), but both
//! need rustls to have a crypto provider before the first client is built.

use std::sync::Once;

/// `User-Agent` of every request we send.
pub const USER_AGENT: &str = concat!("kolla-oci/", env!("CARGO_PKG_VERSION"));

/// Install rustls' ring provider as the process default, once. `reqwest` is built with
/// `rustls-no-provider` (ring builds much faster than aws-lc), so a client built before this runs
/// would fail its first TLS handshake.
pub fn install_tls_provider() {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        // Err only means another part of the program installed a provider first, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
