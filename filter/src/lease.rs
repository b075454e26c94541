//! A lease in shared data, so that one worker per Envoy process does a job (fetching the
//! membership from the admin interface) and another takes over when it stops renewing
//! (its VM crashed, or was replaced by a configuration update).
//!
//! The lease names its holder (a random id per worker VM) and when it expires. A worker
//! that holds it renews it on each tick; a worker that finds it expired takes it with a
//! compare-and-swap, so two cannot both take it from the same expired state. A clock
//! that goes backwards only delays a takeover.

use crate::record::{CodecError, Reader};
use crate::store::{SharedStore, StoreError, CAS_RETRIES};
use crate::Nanos;

const MAGIC: u8 = b'L';
const VERSION: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub holder: u64,
    pub expires: Nanos,
}

impl Lease {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(18);
        out.extend_from_slice(&[MAGIC, VERSION]);
        out.extend_from_slice(&self.holder.to_le_bytes());
        out.extend_from_slice(&self.expires.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::after_header(bytes, MAGIC, VERSION)?;
        let lease = Self {
            holder: r.u64()?,
            expires: r.u64()?,
        };
        r.finish()?;
        Ok(lease)
    }
}

/// Holds (takes or renews) the lease under `key` for `me` until `now + ttl`, if it is
/// free, expired or already `me`'s. Returns whether `me` holds it now. An unreadable
/// lease counts as expired.
pub fn hold(store: &dyn SharedStore, key: &str, me: u64, now: Nanos, ttl: Nanos) -> bool {
    for _ in 0..CAS_RETRIES {
        let (current, cas) = match store.get(key) {
            Some((bytes, cas)) => (Lease::decode(&bytes).ok(), cas),
            None => (None, 0),
        };
        if let Some(lease) = current {
            if lease.holder != me && lease.expires > now {
                return false;
            }
        }
        let renewed = Lease {
            holder: me,
            expires: now.saturating_add(ttl),
        };
        match store.set(key, &renewed.encode(), cas) {
            Ok(()) => return true,
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Failed) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const SEC: Nanos = 1_000_000_000;

    #[test]
    fn the_first_worker_takes_it_and_the_others_wait_until_it_expires() {
        let store = MemoryStore::default();
        assert!(hold(&store, "l", 1, 10 * SEC, 3 * SEC));
        assert!(!hold(&store, "l", 2, 11 * SEC, 3 * SEC));
        assert!(hold(&store, "l", 1, 12 * SEC, 3 * SEC), "the holder renews");
        assert!(
            !hold(&store, "l", 2, 14 * SEC, 3 * SEC),
            "renewed until 15 s"
        );
        assert!(
            hold(&store, "l", 2, 15 * SEC, 3 * SEC),
            "expired: taken over"
        );
        assert!(
            !hold(&store, "l", 1, 16 * SEC, 3 * SEC),
            "the old holder lost it"
        );
    }

    #[test]
    fn garbage_under_the_key_counts_as_expired() {
        let store = MemoryStore::default();
        assert_eq!(store.set("l", b"junk", 0), Ok(()));
        assert!(hold(&store, "l", 5, SEC, SEC));
        let (bytes, _) = store.get("l").unwrap_or_default();
        assert_eq!(
            Lease::decode(&bytes),
            Ok(Lease {
                holder: 5,
                expires: 2 * SEC
            })
        );
    }

    #[test]
    fn a_clock_going_backwards_only_delays_a_takeover() {
        let store = MemoryStore::default();
        assert!(hold(&store, "l", 1, 100 * SEC, 3 * SEC));
        assert!(!hold(&store, "l", 2, 50 * SEC, 3 * SEC));
        assert!(hold(&store, "l", 2, 103 * SEC, 3 * SEC));
    }
}
