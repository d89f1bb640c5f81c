//! kolla-oci: build Kolla-style OpenStack image sets as OCI images, with no daemon and no root.
//!
//! Data flows one way: `config` → `template` → `graph` → `sources` and `dockerfile` → `builder` (using
//! `sandbox` and the `layers` crate) → `store` → `registry`; `attest` describes what an image holds and
//! how it was made.

pub mod attest;
pub mod builder;
pub mod config;
pub mod dockerfile;
pub mod graph;
pub mod http;
pub mod platform;
pub mod redact;
pub mod registry;
pub mod sandbox;
pub mod shard;
pub mod sources;
pub mod store;
pub mod template;

/// `error: cause: cause…`, for errors shown inside another error's message: the layer engine keeps the OS
/// error as a `source`, not in its own message, and a wrapper that prints only `{error}` would drop it.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out = format!("{out}: {s}");
        cur = s.source();
    }
    out
}
