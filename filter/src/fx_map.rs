//! The filter's hash maps: hashbrown with FxHash instead of hashbrown's default foldhash.
//!
//! foldhash folds a 64 × 64 → 128-bit product, which wasm32 has no instruction for: the
//! compiler calls a software multiply. FxHash needs one 64-bit multiply per word; the
//! switch took the request path from 9,699 to 9,083 Wasm instructions (`fuel` binary,
//! 3 endpoints, three lookups per request then), about 200 per lookup. It is not DoS-resistant, and need not be: the keys are cluster names from
//! Envoy's route table and endpoint addresses Envoy itself connected to, never text a
//! client chooses, and both maps are bounded (`MAX_CLUSTERS`, `maxEndpoints`).

/// A hashbrown map with FxHash.
pub type FxMap<K, V> = hashbrown::HashMap<K, V, rustc_hash::FxBuildHasher>;

/// A hashbrown set with FxHash.
pub type FxSet<K> = hashbrown::HashSet<K, rustc_hash::FxBuildHasher>;
