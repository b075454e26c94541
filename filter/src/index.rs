//! The per-cluster index: which endpoint lives in which record slot.
//!
//! Records are keyed by slot number, not by address, so the set of shared-data keys is
//! bounded by `maxEndpoints` per cluster however many distinct endpoints churn through
//! (Envoy's shared data has no delete: a key, once written, stays). The index is small,
//! changes only when an endpoint is learned, forgotten or expires, and carries a
//! generation that workers compare on each tick to know when to reload.

use crate::record::{CodecError, Reader, MAX_ADDR_LEN};

const MAGIC: u8 = b'I';
const VERSION: u8 = 1;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterIndex {
    /// Bumped on every change.
    pub generation: u64,
    /// (slot, address), in insertion order.
    pub entries: Vec<(u16, String)>,
}

impl ClusterIndex {
    pub fn slot_of(&self, addr: &str) -> Option<u16> {
        self.entries
            .iter()
            .find(|(_, a)| a == addr)
            .map(|(s, _)| *s)
    }

    /// Adds `addr` in the lowest free slot below `max`; returns the slot, or `None` when
    /// the index is full or the address is unusable.
    pub fn insert(&mut self, addr: &str, max: u16) -> Option<u16> {
        if let Some(slot) = self.slot_of(addr) {
            return Some(slot);
        }
        if addr.is_empty() || addr.len() > MAX_ADDR_LEN {
            return None;
        }
        let slot = (0..max).find(|s| self.entries.iter().all(|(t, _)| t != s))?;
        self.entries.push((slot, addr.into()));
        self.generation = self.generation.wrapping_add(1);
        Some(slot)
    }

    /// Removes `addr`; returns its slot if it was present.
    pub fn remove(&mut self, addr: &str) -> Option<u16> {
        let pos = self.entries.iter().position(|(_, a)| a == addr)?;
        let (slot, _) = self.entries.remove(pos);
        self.generation = self.generation.wrapping_add(1);
        Some(slot)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.entries.len() * 20);
        out.extend_from_slice(&[MAGIC, VERSION]);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u16).to_le_bytes());
        for (slot, addr) in &self.entries {
            out.extend_from_slice(&slot.to_le_bytes());
            out.push(addr.len() as u8);
            out.extend_from_slice(addr.as_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader(bytes);
        if r.take(1)? != [MAGIC] {
            return Err(CodecError::BadMagic);
        }
        let version = r.take(1)?[0];
        if version != VERSION {
            return Err(CodecError::UnsupportedVersion(version));
        }
        let generation = r.u64()?;
        let count = r.u16()?;
        let mut entries = Vec::with_capacity(usize::from(count).min(r.0.len() / 3));
        for _ in 0..count {
            let slot = r.u16()?;
            let len = usize::from(r.take(1)?[0]);
            if len > MAX_ADDR_LEN {
                return Err(CodecError::BadAddress);
            }
            let addr = std::str::from_utf8(r.take(len)?).map_err(|_| CodecError::BadAddress)?;
            entries.push((slot, addr.to_string()));
        }
        if !r.0.is_empty() {
            return Err(CodecError::TrailingBytes);
        }
        Ok(Self {
            generation,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_takes_the_lowest_free_slot_and_reuses_freed_ones() {
        let mut ix = ClusterIndex::default();
        assert_eq!(ix.insert("a:1", 4), Some(0));
        assert_eq!(ix.insert("b:1", 4), Some(1));
        assert_eq!(ix.insert("c:1", 4), Some(2));
        assert_eq!(ix.remove("b:1"), Some(1));
        assert_eq!(ix.insert("d:1", 4), Some(1));
        assert_eq!(ix.insert("a:1", 4), Some(0), "already present");
        assert_eq!(ix.generation, 5);
    }

    #[test]
    fn a_full_index_refuses_new_endpoints() {
        let mut ix = ClusterIndex::default();
        assert_eq!(ix.insert("a:1", 2), Some(0));
        assert_eq!(ix.insert("b:1", 2), Some(1));
        assert_eq!(ix.insert("c:1", 2), None);
        assert_eq!(ix.entries.len(), 2);
    }

    #[test]
    fn overlong_or_empty_addresses_are_refused() {
        let mut ix = ClusterIndex::default();
        assert_eq!(ix.insert("", 4), None);
        assert_eq!(ix.insert(&"9".repeat(65), 4), None);
    }

    #[test]
    fn round_trips_and_rejects_truncation() {
        let mut ix = ClusterIndex::default();
        ix.insert("127.0.0.1:50051", 8);
        ix.insert("[::1]:50052", 8);
        let bytes = ix.encode();
        assert_eq!(ClusterIndex::decode(&bytes), Ok(ix));
        for n in 0..bytes.len() {
            assert!(ClusterIndex::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn a_huge_claimed_count_does_not_allocate_or_panic() {
        let mut bytes = vec![b'I', 1];
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(ClusterIndex::decode(&bytes), Err(CodecError::Truncated));
    }
}
