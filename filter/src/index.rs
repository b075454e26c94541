//! The per-cluster index: which endpoint lives in which record slot.
//!
//! Records are keyed by slot number, not by address, so the set of shared-data keys is
//! bounded by `maxEndpoints` per cluster however many distinct endpoints churn through
//! (Envoy's shared data has no delete: a key, once written, stays). The index is small,
//! changes only when an endpoint is learned, forgotten or expires; workers re-read it on
//! each tick.

use crate::fx_map::FxSet;
use crate::record::{CodecError, Reader, MAX_ADDR_LEN};

const MAGIC: u8 = b'I';
/// 2 dropped the unused generation counter.
const VERSION: u8 = 2;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterIndex {
    /// (slot, address), in insertion order; slots and addresses are each distinct.
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
        let mut used = vec![false; usize::from(max)];
        for (slot, _) in &self.entries {
            if let Some(u) = used.get_mut(usize::from(*slot)) {
                *u = true;
            }
        }
        let slot = (0..max).find(|&s| !used.get(usize::from(s)).copied().unwrap_or(true))?;
        self.entries.push((slot, addr.into()));
        Some(slot)
    }

    /// Adds each of `addrs` not present yet, in the lowest free slots below `max`, in one
    /// pass (linear in the index and the batch, where one `insert` per address would be
    /// quadratic): how a worker takes the hundreds of members Envoy reports at once.
    /// Returns how many were added; those that find no slot are left out.
    pub fn insert_all<'a>(&mut self, addrs: impl IntoIterator<Item = &'a str>, max: u16) -> usize {
        let mut present: FxSet<&str> = self.entries.iter().map(|(_, a)| a.as_str()).collect();
        let mut used = vec![false; usize::from(max)];
        for (slot, _) in &self.entries {
            if let Some(u) = used.get_mut(usize::from(*slot)) {
                *u = true;
            }
        }
        let mut free = (0..max).filter(|&s| !used.get(usize::from(s)).copied().unwrap_or(true));
        let mut added = Vec::new();
        for addr in addrs {
            if addr.is_empty() || addr.len() > MAX_ADDR_LEN || !present.insert(addr) {
                continue;
            }
            let Some(slot) = free.next() else { break };
            added.push((slot, addr.to_owned()));
        }
        drop(present);
        let n = added.len();
        self.entries.extend(added);
        n
    }

    /// Removes `addr`; returns its slot if it was present.
    pub fn remove(&mut self, addr: &str) -> Option<u16> {
        let pos = self.entries.iter().position(|(_, a)| a == addr)?;
        let (slot, _) = self.entries.remove(pos);
        Some(slot)
    }

    pub fn encode(&self) -> Vec<u8> {
        // `insert` keeps both bounds (at most 65,535 slots, addresses of at most
        // MAX_ADDR_LEN bytes); an index built otherwise is cut to them rather than
        // written with a count or length that wrapped.
        let entries = self
            .entries
            .iter()
            .filter(|(_, addr)| addr.len() <= MAX_ADDR_LEN)
            .take(usize::from(u16::MAX));
        let count = entries.clone().count();
        let mut out = Vec::with_capacity(4 + count * 20);
        out.extend_from_slice(&[MAGIC, VERSION]);
        out.extend_from_slice(&u16::try_from(count).unwrap_or(u16::MAX).to_le_bytes());
        for (slot, addr) in entries {
            out.extend_from_slice(&slot.to_le_bytes());
            out.push(u8::try_from(addr.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(addr.as_bytes());
        }
        out
    }

    /// Decodes an index whose slots must all be below `max_slots` (the cluster's
    /// `maxEndpoints`). A slot or address that appears twice, or a slot out of range, is
    /// `Corrupt`: no worker writes such an index, so it was damaged, and trusting it
    /// could put two endpoints on one record.
    pub fn decode(bytes: &[u8], max_slots: u16) -> Result<Self, CodecError> {
        let mut r = Reader::after_header(bytes, MAGIC, VERSION)?;
        let count = r.u16()?;
        let capacity = usize::from(count).min(r.0.len() / 3);
        let mut entries: Vec<(u16, String)> = Vec::with_capacity(capacity);
        let mut seen: FxSet<&str> = FxSet::with_capacity_and_hasher(capacity, Default::default());
        let mut slots_taken = vec![false; usize::from(max_slots)];
        for _ in 0..count {
            let slot = r.u16()?;
            let addr = r.addr()?;
            match slots_taken.get_mut(usize::from(slot)) {
                Some(taken @ false) if seen.insert(addr) => *taken = true,
                _ => return Err(CodecError::Corrupt),
            }
            entries.push((slot, addr.to_string()));
        }
        r.finish()?;
        Ok(Self { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_all_fills_the_lowest_free_slots_once_each_within_the_bound() {
        let mut ix = ClusterIndex::default();
        ix.insert("a:1", 8);
        ix.insert("b:1", 8);
        ix.insert("c:1", 8);
        ix.remove("b:1");
        let long = "x".repeat(MAX_ADDR_LEN + 1);
        let added = ix.insert_all(["a:1", "d:1", "d:1", "", &long, "e:1", "f:1"], 4);
        assert_eq!(added, 2);
        assert_eq!(
            ix.entries,
            [
                (0, "a:1".to_owned()),
                (2, "c:1".to_owned()),
                (1, "d:1".to_owned()),
                (3, "e:1".to_owned())
            ]
        );
        assert_eq!(ix.insert_all(["g:1"], 4), 0, "full");
    }

    #[test]
    fn insert_takes_the_lowest_free_slot_and_reuses_freed_ones() {
        let mut ix = ClusterIndex::default();
        assert_eq!(ix.insert("a:1", 4), Some(0));
        assert_eq!(ix.insert("b:1", 4), Some(1));
        assert_eq!(ix.insert("c:1", 4), Some(2));
        assert_eq!(ix.remove("b:1"), Some(1));
        assert_eq!(ix.insert("d:1", 4), Some(1));
        assert_eq!(ix.insert("a:1", 4), Some(0), "already present");
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
        assert_eq!(ClusterIndex::decode(&bytes, 8), Ok(ix));
        for n in 0..bytes.len() {
            assert!(ClusterIndex::decode(&bytes[..n], 8).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn a_huge_claimed_count_does_not_allocate_or_panic() {
        let mut bytes = vec![b'I', 2];
        bytes.extend_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(
            ClusterIndex::decode(&bytes, u16::MAX),
            Err(CodecError::Truncated)
        );
    }

    fn encoded(entries: &[(u16, &str)]) -> Vec<u8> {
        ClusterIndex {
            entries: entries.iter().map(|(s, a)| (*s, a.to_string())).collect(),
        }
        .encode()
    }

    #[test]
    fn duplicate_slots_or_addresses_are_corrupt() {
        let twice_slot = encoded(&[(0, "a:1"), (0, "b:1")]);
        assert_eq!(
            ClusterIndex::decode(&twice_slot, 8),
            Err(CodecError::Corrupt)
        );
        let twice_addr = encoded(&[(0, "a:1"), (1, "a:1")]);
        assert_eq!(
            ClusterIndex::decode(&twice_addr, 8),
            Err(CodecError::Corrupt)
        );
    }

    #[test]
    fn slots_at_or_above_the_bound_are_corrupt() {
        let bytes = encoded(&[(0, "a:1"), (8, "b:1")]);
        assert_eq!(ClusterIndex::decode(&bytes, 8), Err(CodecError::Corrupt));
        assert!(ClusterIndex::decode(&bytes, 9).is_ok());
    }

    #[test]
    fn an_index_too_big_to_count_in_16_bits_is_cut_not_wrapped() {
        let ix = ClusterIndex {
            entries: (0..=u16::MAX as u32)
                .map(|i| {
                    (
                        (i % 65_536) as u16,
                        format!("10.{}.{}.1:1", i / 256, i % 256),
                    )
                })
                .collect(),
        };
        assert_eq!(ix.entries.len(), 65_536);
        let decoded = ClusterIndex::decode(&ix.encode(), u16::MAX);
        assert_eq!(decoded.map(|d| d.entries.len()), Ok(65_535));
    }

    #[test]
    fn an_older_version_is_refused() {
        let mut bytes = encoded(&[(0, "a:1")]);
        bytes[1] = 1;
        assert_eq!(
            ClusterIndex::decode(&bytes, 8),
            Err(CodecError::UnsupportedVersion(1))
        );
    }
}
