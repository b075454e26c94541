//! One worker's view of one cluster's endpoints, and the read-modify-write helpers that
//! keep it in step with shared data.
//!
//! The view is a cache: the shared index and records are the truth. It is rebuilt from
//! them on each tick; between ticks, the worker's own changes (picks, completions) are
//! applied to it at once, so a worker never acts on information older than what it did
//! itself.

use crate::cost::Load;
use crate::fx_map::FxMap;
use crate::index::ClusterIndex;
use crate::metrics::{decision_metric_name, EndpointMetricIds, MetricKind, Metrics};
use crate::record::EndpointRecord;
use crate::store::{index_key, record_key, SharedStore, StoreError, CAS_RETRIES};
use crate::Nanos;
use std::rc::Rc;

/// Why a read-modify-write did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateError {
    /// No record for this endpoint (cleared, reused by another endpoint, or unreadable).
    Missing,
    /// Other workers won the race `CAS_RETRIES` times in a row, or the host refused.
    Contended,
}

/// Reads the record under `key`, checks that it belongs to `addr`, applies `change` and
/// writes it back with compare-and-swap, retrying when another worker got there first.
pub fn update_record(
    store: &dyn SharedStore,
    key: &str,
    addr: &str,
    change: &dyn Fn(&mut EndpointRecord),
) -> Result<EndpointRecord, UpdateError> {
    update_record_owned(store, key, addr.to_string(), change, &mut Vec::new()).map_err(|(e, _)| e)
}

/// [`update_record`] for the per-request path: takes the address by value and gives it
/// back on failure, and encodes into `scratch`, so it allocates nothing of its own.
pub fn update_record_owned(
    store: &dyn SharedStore,
    key: &str,
    mut addr: String,
    change: &dyn Fn(&mut EndpointRecord),
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
        change(&mut record);
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
pub fn update_index<R>(
    store: &dyn SharedStore,
    key: &str,
    change: &mut dyn FnMut(&mut ClusterIndex) -> Option<R>,
) -> Result<(Option<R>, ClusterIndex), UpdateError> {
    for _ in 0..CAS_RETRIES {
        let (mut index, cas) = match store.get(key) {
            Some((bytes, cas)) => (ClusterIndex::decode(&bytes).unwrap_or_default(), cas),
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

/// One completed request, kept by the worker until its record is next written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// Request headers to first response byte, in nanoseconds.
    pub latency_ns: f64,
    /// A failure that counts against the endpoint (see `outcome.rs`).
    pub failed: bool,
    /// Not a success (counted in the record's `failures`).
    pub unsuccessful: bool,
    pub now: Nanos,
}

impl Observation {
    /// Applies this observation to a record.
    pub fn apply(&self, r: &mut EndpointRecord, decay_ns: f64, failure_decay_ns: f64) {
        r.latency.observe(self.latency_ns, self.now, decay_ns);
        r.failure.record(self.failed, self.now, failure_decay_ns);
        r.last_seen = r.last_seen.max(self.now);
        r.requests = r.requests.saturating_add(1);
        r.failures = r.failures.saturating_add(u64::from(self.unsuccessful));
    }
}

/// Observations a worker keeps per endpoint before it writes them to shared data outside
/// the tick. At 250 ms ticks this is reached only above ~250 requests/s per endpoint and
/// worker; it bounds both the memory and how stale the other workers' view can get.
pub const MAX_UNFLUSHED_OBSERVATIONS: usize = 64;

/// One endpoint as this worker sees it.
#[derive(Debug)]
pub struct EndpointView {
    /// The endpoint's `IP:port` (its record's `addr`), shared with the picks that name it.
    pub addr: Rc<str>,
    pub slot: u16,
    pub key: String,
    /// The record as last read or written by this worker.
    pub record: EndpointRecord,
    /// Picks minus completions of this worker not yet written to the shared record.
    pub unflushed_pending: i64,
    /// Completions already applied to `record` but not yet to the shared record.
    pub unflushed: Vec<Observation>,
    /// Times this worker named the endpoint, to check every `CHECK_EVERY`th pick.
    pub picks: u32,
    pub unflushed_requests: u64,
    pub unflushed_failures: u64,
    pub metric_ids: EndpointMetricIds,
    /// Last gauge values set, to skip redundant hostcalls.
    pub last_gauges: Option<(u64, u64)>,
}

impl EndpointView {
    /// A view of `record`, with nothing unflushed.
    pub fn new(
        slot: u16,
        key: String,
        record: EndpointRecord,
        metric_ids: EndpointMetricIds,
    ) -> Self {
        Self {
            addr: Rc::from(record.addr.as_str()),
            slot,
            key,
            record,
            unflushed_pending: 0,
            unflushed: Vec::new(),
            picks: 0,
            unflushed_requests: 0,
            unflushed_failures: 0,
            metric_ids,
            last_gauges: None,
        }
    }

    /// Whether the shared record lacks changes this worker made.
    pub fn has_unflushed_changes(&self) -> bool {
        self.unflushed_pending != 0 || !self.unflushed.is_empty()
    }

    /// Writes this worker's unflushed pending changes and observations to the shared
    /// record (one compare-and-swap, retried), and takes the merged record as its own.
    pub fn flush(
        &mut self,
        store: &dyn SharedStore,
        decay_ns: f64,
        failure_decay_ns: f64,
        scratch: &mut Vec<u8>,
    ) -> Result<(), UpdateError> {
        let delta = self.unflushed_pending;
        let observations = &self.unflushed;
        let change = |r: &mut EndpointRecord| {
            r.pending = add_pending(r.pending, delta);
            for o in observations {
                o.apply(r, decay_ns, failure_decay_ns);
            }
        };
        let addr = std::mem::take(&mut self.record.addr);
        match update_record_owned(store, &self.key, addr, &change, scratch) {
            Ok(record) => {
                self.record = record;
                self.unflushed_pending = 0;
                self.unflushed.clear();
                Ok(())
            }
            Err((error, addr)) => {
                if !addr.is_empty() {
                    self.record.addr = addr;
                }
                Err(error)
            }
        }
    }

    /// Pending as this worker knows it: the shared count plus its own unflushed changes.
    pub fn pending(&self) -> u32 {
        (i64::from(self.record.pending) + self.unflushed_pending).clamp(0, i64::from(u32::MAX))
            as u32
    }

    pub fn load_at(&self, now: Nanos, decay_ns: f64, failure_decay_ns: f64) -> Load {
        Load {
            latency_ns: self.record.latency.estimate_at(now, decay_ns),
            pending: self.pending(),
            failure: self.record.failure.at(now, failure_decay_ns),
        }
    }
}

/// Counters of the balancer's decisions for one cluster, flushed to metrics on tick.
#[derive(Debug, Default)]
pub struct DecisionCounters {
    pub overrides: u64,
    pub explores: u64,
    pub too_few: u64,
    ids: Option<[Option<u32>; 3]>,
}

impl DecisionCounters {
    pub fn flush(&mut self, metrics: &mut dyn Metrics, cluster: &str) {
        let ids = *self.ids.get_or_insert_with(|| {
            ["override", "explore", "too_few"]
                .map(|d| metrics.define(MetricKind::Counter, &decision_metric_name(cluster, d)))
        });
        for (id, count) in
            ids.into_iter()
                .zip([&mut self.overrides, &mut self.explores, &mut self.too_few])
        {
            if let (Some(id), 1..) = (id, *count) {
                metrics.increment(id, *count);
            }
            *count = 0;
        }
    }
}

/// One worker's view of one cluster.
#[derive(Debug)]
pub struct ClusterView {
    pub name: String,
    pub index_key: String,
    pub endpoints: Vec<EndpointView>,
    by_addr: FxMap<String, usize>,
    /// Index entries whose record was missing at the last sync (removed at the next).
    missing: Vec<String>,
    pub decisions: DecisionCounters,
}

impl ClusterView {
    pub fn new(prefix: &str, cluster: &str) -> Self {
        Self {
            name: cluster.into(),
            index_key: index_key(prefix, cluster),
            endpoints: Vec::new(),
            by_addr: FxMap::default(),
            missing: Vec::new(),
            decisions: DecisionCounters::default(),
        }
    }

    pub fn position(&self, addr: &str) -> Option<usize> {
        self.by_addr.get(addr).copied()
    }

    pub fn push(&mut self, endpoint: EndpointView) {
        self.by_addr
            .insert(endpoint.record.addr.clone(), self.endpoints.len());
        self.endpoints.push(endpoint);
    }

    pub fn remove(&mut self, addr: &str) -> Option<EndpointView> {
        let i = self.by_addr.remove(addr)?;
        let removed = self.endpoints.swap_remove(i);
        if let Some(moved) = self.endpoints.get(i) {
            self.by_addr.insert(moved.record.addr.clone(), i);
        }
        Some(removed)
    }

    /// Brings the view in step with shared data: reloads the index, writes this worker's
    /// unflushed pending changes and observations (taking the merged record back),
    /// re-reads every other record, and drops entries whose record has been missing for
    /// two syncs in a row. Cost grows with the number of endpoints; it runs on the tick,
    /// never per request.
    pub fn sync(
        &mut self,
        store: &dyn SharedStore,
        metrics: &mut dyn Metrics,
        prefix: &str,
        decays: (f64, f64),
        scratch: &mut Vec<u8>,
    ) {
        let (decay_ns, failure_decay_ns) = decays;
        let index = store
            .get(&self.index_key)
            .and_then(|(bytes, _)| ClusterIndex::decode(&bytes).ok())
            .unwrap_or_default();
        let mut old: FxMap<String, EndpointView> =
            FxMap::with_capacity_and_hasher(self.endpoints.len(), Default::default());
        for e in self.endpoints.drain(..) {
            old.insert(e.record.addr.clone(), e);
        }
        self.by_addr.clear();
        let previously_missing = std::mem::take(&mut self.missing);
        let mut stale = Vec::new();
        for (slot, addr) in &index.entries {
            let key = record_key(prefix, &self.name, *slot);
            let kept = old.remove(addr.as_str()).filter(|e| e.slot == *slot);
            let record = match kept {
                Some(mut e) if e.has_unflushed_changes() => e
                    .flush(store, decay_ns, failure_decay_ns, scratch)
                    .ok()
                    .map(|()| e),
                Some(mut e) => read_record(store, &key, addr).map(|record| {
                    e.record = record;
                    e
                }),
                None => read_record(store, &key, addr).map(|record| {
                    EndpointView::new(
                        *slot,
                        key,
                        record,
                        EndpointMetricIds::define(metrics, &self.name, addr),
                    )
                }),
            };
            let Some(view) = record else {
                if previously_missing.contains(addr) {
                    stale.push(addr.clone());
                } else {
                    self.missing.push(addr.clone());
                }
                continue;
            };
            self.push(view);
        }
        if !stale.is_empty() {
            let _ = update_index(store, &self.index_key, &mut |ix| {
                let removed = stale.iter().filter(|a| ix.remove(a).is_some()).count();
                (removed > 0).then_some(())
            });
        }
    }
}

/// `pending + delta`, clamped to `0..=u32::MAX`.
pub fn add_pending(pending: u32, delta: i64) -> u32 {
    (i64::from(pending) + delta).clamp(0, i64::from(u32::MAX)) as u32
}
