//! The host's shared key-value store as the core sees it, and the keys we use in it.
//!
//! Envoy's shared data is process-wide (per VM id), guarded by one mutex, with a
//! compare-and-swap token per key and no delete. The core reads and writes it only
//! through [`SharedStore`], so its logic runs natively against [`MemoryStore`] in tests
//! and against proxy-wasm hostcalls in Envoy (`host/`).

use std::cell::RefCell;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// Someone else wrote the key since we read it.
    CasMismatch,
    /// The host refused for another reason.
    Failed,
}

pub trait SharedStore {
    /// The value under `key` and its CAS token; `None` when absent or empty (a cleared
    /// record: the store has no delete).
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value` if the key's token is still `cas` (0: unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError>;
}

/// How often a read-modify-write is retried when another worker wins the race.
pub const CAS_RETRIES: usize = 16;

/// Key of a cluster's index.
pub fn index_key(prefix: &str, cluster: &str) -> String {
    format!("{prefix}|{cluster}|index")
}

/// Key of the record in `slot` of a cluster.
pub fn record_key(prefix: &str, cluster: &str, slot: u16) -> String {
    format!("{prefix}|{cluster}|{slot}")
}

/// An in-memory store with Envoy's semantics (token per key, bumped on each write,
/// mismatch on a stale token, 0 writes unconditionally). Used by native tests and fuzzing.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: RefCell<BTreeMap<String, (Vec<u8>, u32)>>,
}

impl MemoryStore {
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total bytes of keys and values, the figure that must stay bounded.
    pub fn bytes(&self) -> usize {
        self.entries
            .borrow()
            .iter()
            .map(|(k, (v, _))| k.len() + v.len())
            .sum()
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let entries = self.entries.borrow();
        let (value, cas) = entries.get(key)?;
        (!value.is_empty()).then(|| (value.clone(), *cas))
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        let mut entries = self.entries.borrow_mut();
        let entry = entries.entry(key.to_string()).or_insert((Vec::new(), 0));
        if cas != 0 && cas != entry.1 {
            return Err(StoreError::CasMismatch);
        }
        entry.0 = value.to_vec();
        entry.1 = entry.1.wrapping_add(1).max(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_token_is_a_mismatch_and_fresh_one_wins() {
        let s = MemoryStore::default();
        assert_eq!(s.set("k", b"a", 0), Ok(()));
        let (_, t1) = s.get("k").unwrap_or_default();
        assert_eq!(s.set("k", b"b", t1), Ok(()));
        assert_eq!(s.set("k", b"c", t1), Err(StoreError::CasMismatch));
        assert_eq!(s.get("k").map(|(v, _)| v), Some(b"b".to_vec()));
    }

    #[test]
    fn empty_value_reads_as_absent_but_the_key_stays() {
        let s = MemoryStore::default();
        assert_eq!(s.set("k", b"a", 0), Ok(()));
        assert_eq!(s.set("k", b"", 0), Ok(()));
        assert_eq!(s.get("k"), None);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn keys_separate_prefix_cluster_and_slot() {
        assert_eq!(index_key("ewma", "greeter"), "ewma|greeter|index");
        assert_eq!(record_key("ewma", "greeter", 7), "ewma|greeter|7");
    }
}
