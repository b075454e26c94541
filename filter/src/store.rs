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

/// Envoy's shared data, as proxy-wasm's C++ host keeps it: one map per process, a CAS
/// token per key from one process-wide counter (never 0); a write with `cas == 0` is
/// unconditional, a write to a key that does not exist yet succeeds whatever its token,
/// and a write with a stale token to an existing key is a mismatch; there is no delete.
/// The one fake of it: native tests and the fuzzer use it through [`MemoryStore`], the
/// wasmtime proxy-wasm host (test-harness `proxy-wasm-host`) behind its ABI.
#[derive(Debug, Default)]
pub struct SharedData {
    entries: BTreeMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

impl SharedData {
    /// The value under `key` and its token (an empty value too: Envoy returns it).
    pub fn get(&self, key: &str) -> Option<(&[u8], u32)> {
        self.entries.get(key).map(|(v, cas)| (v.as_slice(), *cas))
    }

    pub fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        if let Some((_, current)) = self.entries.get(key) {
            if cas != 0 && cas != *current {
                return Err(StoreError::CasMismatch);
            }
        }
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        self.entries
            .insert(key.to_string(), (value.to_vec(), self.next_cas));
        Ok(())
    }

    /// Every key and its value, for assertions.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.entries
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes of keys and values, the figure that must stay bounded.
    pub fn bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(k, (v, _))| k.len() + v.len())
            .sum()
    }
}

/// [`SharedData`] as the core reads it (an empty value reads as absent, as in the
/// host adapter), for native tests and fuzzing.
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: RefCell<SharedData>,
}

impl MemoryStore {
    pub fn len(&self) -> usize {
        self.data.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total bytes of keys and values, the figure that must stay bounded.
    pub fn bytes(&self) -> usize {
        self.data.borrow().bytes()
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let data = self.data.borrow();
        let (value, cas) = data.get(key)?;
        (!value.is_empty()).then(|| (value.to_vec(), cas))
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        self.data.borrow_mut().set(key, value, cas)
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
    fn a_missing_key_accepts_any_token_as_in_envoy() {
        let mut d = SharedData::default();
        assert_eq!(d.set("new", b"x", 12345), Ok(()));
        let (_, t) = d.get("new").unwrap_or_default();
        assert_eq!(d.set("new", b"y", t + 1), Err(StoreError::CasMismatch));
        assert_eq!(d.set("other", b"z", 0), Ok(()));
        let (_, t2) = d.get("other").unwrap_or_default();
        assert!(t2 > t, "tokens come from one counter");
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
