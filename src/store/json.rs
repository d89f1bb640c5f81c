//! Canonical JSON: how every document the store writes is serialized (sorted keys, compact), so that
//! equal content always has an equal digest.

use serde::Serialize;

use super::Result;

/// Serialize `v` with every object's keys sorted (by bytes) and no whitespace.
///
/// The keys are sorted here explicitly rather than trusting `serde_json::Map` order, which becomes
/// insertion order when any crate in the build enables serde_json's `preserve_order`.
///
/// # Panics
/// If `v` cannot be represented as JSON (a map with non-string keys); none of the store's types can fail.
pub fn canonical_json<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    try_canonical_json(v).expect("value is representable as JSON")
}

/// [`canonical_json`] that reports serialization errors instead of panicking.
pub fn try_canonical_json<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(v)?;
    let mut out = Vec::with_capacity(256);
    write_canonical(&value, &mut out)?;
    Ok(out)
}

pub(super) fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k)?;
                out.push(b':');
                write_canonical(val, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}
