//! Serde for maps with struct keys as a sequence of `[key, value]` pairs.
//!
//! JSON object keys must be strings, but the detector keys its state by [`crate::SeriesKey`]; a
//! sequence of pairs keeps the snapshot lossless (no string encoding of keys that may themselves
//! contain `/`) and, from a `BTreeMap`, in a deterministic order.

use std::collections::BTreeMap;

use serde::de::Deserialize;
use serde::ser::{SerializeSeq, Serializer};
use serde::Deserializer;

pub fn serialize<K, V, S>(map: &BTreeMap<K, V>, serializer: S) -> Result<S::Ok, S::Error>
where
    K: serde::Serialize,
    V: serde::Serialize,
    S: Serializer,
{
    let mut seq = serializer.serialize_seq(Some(map.len()))?;
    for pair in map {
        seq.serialize_element(&pair)?;
    }
    seq.end()
}

pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
where
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
    D: Deserializer<'de>,
{
    let pairs: Vec<(K, V)> = Vec::deserialize(deserializer)?;
    Ok(pairs.into_iter().collect())
}
