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
pub mod registry;
pub mod sandbox;
pub mod shard;
pub mod sources;
pub mod store;
pub mod template;
