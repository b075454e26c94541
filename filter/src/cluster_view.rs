//! One worker's view of one cluster's endpoints, and the membership changes it makes
//! to shared data: learning an endpoint, forgetting one, dropping one from the view.
//!
//! The view is a cache: the shared index and records are the truth. It is rebuilt from
//! them on each tick; between ticks, the worker's own changes (picks, completions) are
//! applied to it at once, so a worker never acts on information older than what it did
//! itself.

use crate::cas::{read_record, update_index, update_record, update_record_owned, UpdateError};
use crate::cost::{cost, Load};
use crate::fx_map::FxMap;
use crate::index::ClusterIndex;
use crate::metrics::{decision_metric_name, EndpointMetricIds, MetricKind, Metrics};
use crate::observation::Observation;
use crate::record::EndpointRecord;
use crate::store::{index_key, record_key, SharedStore};
use crate::tuning::Tuning;
use crate::Nanos;
use std::rc::Rc;

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

    /// Applies an observation to this worker's view at once, and keeps it for the next
    /// write to shared data.
    pub fn observe(&mut self, observation: Observation, tuning: &Tuning) {
        observation.apply(&mut self.record, tuning);
        self.unflushed.push(observation);
    }

    /// Writes this worker's unflushed pending changes and observations to the shared
    /// record (one compare-and-swap, retried), and takes the merged record as its own.
    pub fn flush(
        &mut self,
        store: &dyn SharedStore,
        tuning: &Tuning,
        scratch: &mut Vec<u8>,
    ) -> Result<(), UpdateError> {
        let delta = self.unflushed_pending;
        let observations = &self.unflushed;
        let change = |r: &mut EndpointRecord| {
            r.pending = add_pending(r.pending, delta);
            for o in observations {
                o.apply(r, tuning);
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
        u32::try_from((i64::from(self.record.pending) + self.unflushed_pending).max(0))
            .unwrap_or(u32::MAX)
    }

    pub fn load_at(&self, now: Nanos, tuning: &Tuning) -> Load {
        Load {
            latency_ns: self.record.latency.estimate_at(now, tuning.decay_ns),
            pending: self.pending(),
            failure: self.record.failure.at(now, tuning.failure_decay_ns),
        }
    }

    pub fn cost_at(&self, now: Nanos, tuning: &Tuning) -> f64 {
        cost(self.load_at(now, tuning), tuning.failure_penalty_ns)
    }

    /// Whether this endpoint should get the next call as a probe (see
    /// `failure_score.rs`): its failure score, not its latency, is what keeps it out,
    /// nothing is in flight to it that this worker knows of, and it has been quiet for
    /// the probe interval.
    pub fn probe_due(&self, now: Nanos, tuning: &Tuning) -> bool {
        let load = self.load_at(now, tuning);
        self.record.failure.probe_due(now)
            && load.pending == 0
            && load.failure * tuning.failure_penalty_ns > load.latency_ns
    }
}

/// Counters of the balancer's decisions for one cluster, flushed to metrics on tick.
#[derive(Debug, Default)]
pub struct DecisionCounters {
    pub overrides: u64,
    pub probes: u64,
    pub explores: u64,
    pub too_few: u64,
    ids: Option<[Option<u32>; 4]>,
}

/// The `decision` label of each counter, in the order of [`DecisionCounters`]' fields.
pub const DECISIONS: [&str; 4] = ["override", "probe", "explore", "too_few"];

impl DecisionCounters {
    pub fn flush(&mut self, metrics: &mut dyn Metrics, cluster: &str) {
        let ids = *self.ids.get_or_insert_with(|| {
            DECISIONS
                .map(|d| metrics.define(MetricKind::Counter, &decision_metric_name(cluster, d)))
        });
        let counts = [
            &mut self.overrides,
            &mut self.probes,
            &mut self.explores,
            &mut self.too_few,
        ];
        for (id, count) in ids.into_iter().zip(counts) {
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
    prefix: String,
    pub index_key: String,
    /// The cluster's `maxEndpoints`: slots of the index are below it.
    max_slots: u16,
    pub endpoints: Vec<EndpointView>,
    by_addr: FxMap<String, usize>,
    /// Index entries whose record was missing at the last sync (removed at the next).
    missing: Vec<String>,
    pub decisions: DecisionCounters,
}

impl ClusterView {
    /// An empty view of `cluster`, its keys under `prefix`; call [`Self::sync`] to fill it.
    pub fn new(prefix: &str, cluster: &str, max_slots: u16) -> Self {
        Self {
            name: cluster.into(),
            prefix: prefix.into(),
            index_key: index_key(prefix, cluster),
            max_slots,
            endpoints: Vec::new(),
            by_addr: FxMap::default(),
            missing: Vec::new(),
            decisions: DecisionCounters::default(),
        }
    }

    pub fn position(&self, addr: &str) -> Option<usize> {
        self.by_addr.get(addr).copied()
    }

    fn push(&mut self, endpoint: EndpointView) {
        self.by_addr
            .insert(endpoint.record.addr.clone(), self.endpoints.len());
        self.endpoints.push(endpoint);
    }

    /// Removes `addr` from this view only (its record stays in shared data).
    pub fn remove(&mut self, addr: &str) -> Option<EndpointView> {
        let i = self.by_addr.remove(addr)?;
        let removed = self.endpoints.swap_remove(i);
        if let Some(moved) = self.endpoints.get(i) {
            self.by_addr.insert(moved.record.addr.clone(), i);
        }
        Some(removed)
    }

    /// Removes `addr` from this view, zeroing its gauges so that a forgotten endpoint
    /// does not look busy forever.
    pub fn drop_endpoint(&mut self, metrics: &mut dyn Metrics, addr: &str) {
        if let Some(e) = self.remove(addr) {
            for id in [e.metric_ids.ewma, e.metric_ids.pending]
                .into_iter()
                .flatten()
            {
                metrics.record(id, 0);
            }
        }
    }

    /// Removes `addr` from the shared index and clears its record (if it is still
    /// `addr`'s), and drops it from this view.
    pub fn forget(&mut self, store: &dyn SharedStore, metrics: &mut dyn Metrics, addr: &str) {
        // The slot is the one the index gave: this view may still hold `addr` on an older
        // slot (another worker forgot and re-learned it since this view's last sync), and
        // clearing only that one would leave the live record, and its pending count, behind.
        let removed = update_index(store, &self.index_key, self.max_slots, &mut |ix| {
            ix.remove(addr)
        });
        if let Ok((Some(slot), _)) = removed {
            let key = record_key(&self.prefix, &self.name, slot);
            if let Some((bytes, cas)) = store.get(&key) {
                if EndpointRecord::decode(&bytes).is_ok_and(|r| r.addr == addr) {
                    let _ = store.set(&key, &[], cas);
                }
            }
        }
        self.drop_endpoint(metrics, addr);
    }

    /// Adds `addr` to the shared index and creates (or joins) its record with
    /// `first` applied; a new record starts from `first`'s own sample (or the default
    /// RTT). Returns false when the index is full or shared data refused.
    pub fn learn(
        &mut self,
        store: &dyn SharedStore,
        metrics: &mut dyn Metrics,
        addr: &str,
        first: &Observation,
        tuning: &Tuning,
    ) -> bool {
        let max_slots = self.max_slots;
        let Ok((_, index)) = update_index(store, &self.index_key, max_slots, &mut |ix| {
            if ix.slot_of(addr).is_some() {
                None
            } else {
                ix.insert(addr, max_slots).map(|_| ())
            }
        }) else {
            return false;
        };
        let Some(slot) = index.slot_of(addr) else {
            return false;
        };
        let key = record_key(&self.prefix, &self.name, slot);
        let apply = |r: &mut EndpointRecord| first.apply(r, tuning);
        let record = match update_record(store, &key, addr, &apply) {
            Ok(record) => record,
            Err(_) => {
                let initial = match first.latency {
                    crate::observation::Latency::Sample(ns) if ns > 0.0 => ns,
                    _ => tuning.default_rtt_ns,
                };
                let mut record = EndpointRecord::new(addr, initial, first.now);
                apply(&mut record);
                let cas = store.get(&key).map_or(0, |(_, cas)| cas);
                if store.set(&key, &record.encode(), cas).is_err() {
                    match read_record(store, &key, addr) {
                        Some(r) => r,
                        None => return false,
                    }
                } else {
                    record
                }
            }
        };
        // Another worker may have forgotten the endpoint this view still holds on `slot` and
        // given the slot to `addr`: that endpoint's record is gone, so drop it here too (one
        // endpoint per slot keeps the view within `maxEndpoints` between ticks).
        if let Some(stale) = self
            .endpoints
            .iter()
            .find(|e| e.slot == slot)
            .map(|e| e.record.addr.clone())
        {
            self.drop_endpoint(metrics, &stale);
        }
        let metric_ids = EndpointMetricIds::define(metrics, &self.name, addr);
        self.push(EndpointView::new(slot, key, record, metric_ids));
        true
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
        tuning: &Tuning,
        scratch: &mut Vec<u8>,
    ) {
        let index = store
            .get(&self.index_key)
            .and_then(|(bytes, _)| ClusterIndex::decode(&bytes, self.max_slots).ok())
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
            let key = record_key(&self.prefix, &self.name, *slot);
            let kept = old.remove(addr.as_str()).filter(|e| e.slot == *slot);
            let record = match kept {
                Some(mut e) if e.has_unflushed_changes() => {
                    e.flush(store, tuning, scratch).ok().map(|()| e)
                }
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
            let _ = update_index(store, &self.index_key, self.max_slots, &mut |ix| {
                let removed = stale.iter().filter(|a| ix.remove(a).is_some()).count();
                (removed > 0).then_some(())
            });
        }
    }
}

/// `pending + delta`, clamped to `0..=u32::MAX`.
pub fn add_pending(pending: u32, delta: i64) -> u32 {
    u32::try_from((i64::from(pending) + delta).max(0)).unwrap_or(u32::MAX)
}
