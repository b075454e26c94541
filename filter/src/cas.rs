//! Read-modify-write of shared data: decode, change, encode, compare-and-swap, retried
//! when another worker wrote first. The records and the index are only ever changed
//! through these.

use crate::index::ClusterIndex;
use crate::record::EndpointRecord;
use crate::store::{SharedStore, StoreError, CAS_RETRIES};

/// Why a read-modify-write did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateError {
    /// No record for this endpoint (cleared, reused by another endpoint, or unreadable).
    Missing,
    /// Other workers won the race `CAS_RETRIES` times in a row, or the host refused.
    Contended,
    /// The change declined the record as read (nothing was written).
    Declined,
}

/// Reads the record under `key`, checks that it belongs to `addr`, applies `change` and
/// writes it back with compare-and-swap, retrying when another worker got there first.
pub fn update_record(
    store: &dyn SharedStore,
    key: &str,
    addr: &str,
    change: &dyn Fn(&mut EndpointRecord),
) -> Result<EndpointRecord, UpdateError> {
    let change = |r: &mut EndpointRecord| {
        change(r);
        true
    };
    update_record_owned(store, key, addr.to_string(), &change, &mut Vec::new()).map_err(|(e, _)| e)
}

/// [`update_record`] for the per-request path: takes the address by value and gives it
/// back on failure, and encodes into `scratch`, so it allocates nothing of its own.
/// `change` returns `false` to decline the record as read: nothing is written.
pub fn update_record_owned(
    store: &dyn SharedStore,
    key: &str,
    mut addr: String,
    change: &dyn Fn(&mut EndpointRecord) -> bool,
    scratch: &mut Vec<u8>,
) -> Result<EndpointRecord, (UpdateError, String)> {
    for _ in 0..CAS_RETRIES {
        let Some((bytes, cas)) = store.get(key) else {
            return Err((UpdateError::Missing, addr));
        };
        let mut record = match EndpointRecord::decode_owned(&bytes, addr) {
            Ok(record) => record,
            Err(_) => return Err((UpdateError::Missing, String::new())),
        };
        if !change(&mut record) {
            return Err((UpdateError::Declined, record.addr));
        }
        record.encode_into(scratch);
        match store.set(key, scratch, cas) {
            Ok(()) => return Ok(record),
            Err(StoreError::CasMismatch) => addr = record.addr,
            Err(StoreError::Failed) => return Err((UpdateError::Contended, record.addr)),
        }
    }
    Err((UpdateError::Contended, addr))
}

/// Reads the index (empty if absent or unreadable), lets `change` edit it and writes it
/// back if `change` returned `Some`. Returns `change`'s result and the index as written.
///
/// An index that does not decode (corrupt, or written by another version) is treated as
/// empty and replaced by the next write.
pub fn update_index<R>(
    store: &dyn SharedStore,
    key: &str,
    max_slots: u16,
    change: &mut dyn FnMut(&mut ClusterIndex) -> Option<R>,
) -> Result<(Option<R>, ClusterIndex), UpdateError> {
    for _ in 0..CAS_RETRIES {
        let (mut index, cas) = match store.get(key) {
            Some((bytes, cas)) => (
                ClusterIndex::decode(&bytes, max_slots).unwrap_or_default(),
                cas,
            ),
            None => (ClusterIndex::default(), 0),
        };
        let Some(result) = change(&mut index) else {
            return Ok((None, index));
        };
        match store.set(key, &index.encode(), cas) {
            Ok(()) => return Ok((Some(result), index)),
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Failed) => return Err(UpdateError::Contended),
        }
    }
    Err(UpdateError::Contended)
}

/// Reads and decodes the record of `addr` under `key`.
pub fn read_record(store: &dyn SharedStore, key: &str, addr: &str) -> Option<EndpointRecord> {
    let (bytes, _) = store.get(key)?;
    EndpointRecord::decode(&bytes)
        .ok()
        .filter(|r| r.addr == addr)
}
