//! The balancer of one Envoy worker: P2C over Peak-EWMA costs, learning endpoints from
//! what Envoy actually used, sharing what it learns with the other workers.
//!
//! * `pick` runs on request headers. It touches no shared data (after a cluster's first
//!   request): two random endpoints from the cached view, two costs, one comparison.
//! * `complete` runs when the request is done. One compare-and-swap on the record of the
//!   endpoint Envoy used: its latency sample, outcome, and this worker's pending changes.
//! * `tick` runs every `refreshInterval`: re-reads the index and records, writes
//!   unflushed pending counts, expires endpoints not seen for `endpointTtl`, and flushes
//!   counters and gauges to metrics.

use crate::cluster_view::{
    read_record, update_index, update_record, ClusterView, EndpointView, Observation, UpdateError,
    MAX_UNFLUSHED_OBSERVATIONS,
};
use crate::config::Config;
use crate::cost::cost;
use crate::fx_map::FxMap;
use crate::metrics::{EndpointMetricIds, Metrics};
use crate::outcome::Outcome;
use crate::p2c::{cheaper, pick_two};
use crate::record::EndpointRecord;
use crate::rng::SplitMix64;
use crate::store::{record_key, SharedStore};
use crate::Nanos;
use std::rc::Rc;

/// Clusters a worker keeps state for; requests to further clusters use the fallback.
pub const MAX_CLUSTERS: usize = 256;

/// The first and then every `CHECK_EVERY`th pick of an endpoint (per worker) asks the
/// host to check which endpoint Envoy really used (`upstream.address`, a dear property
/// read). An endpoint that left the cluster is served by Envoy's fallback policy without
/// error, so it is noticed within this many picks; the checks in between are skipped.
/// Failed requests and fallback decisions are always checked by the host.
pub const CHECK_EVERY: u32 = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send to this `IP:port` (the value of the override header). Shared with the view,
    /// so a pick allocates nothing.
    Override(Rc<str>),
    /// Let the cluster's fallback policy choose.
    Fallback(FallbackReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackReason {
    /// Fewer than two endpoints known: discovery mode.
    TooFewEndpoints,
    /// The exploration budget: lets new endpoints be discovered.
    Exploring,
    /// More than `MAX_CLUSTERS` clusters seen by this worker.
    TooManyClusters,
}

/// What Envoy did with a request, as the host read it on completion.
#[derive(Clone, Copy, Debug)]
pub struct Completion<'a> {
    pub cluster: &'a str,
    /// The endpoint the filter put in the override header, if any.
    pub chosen: Option<&'a str>,
    /// `upstream.address`: the endpoint Envoy actually used, if any.
    pub actual: Option<&'a str>,
    /// Request headers to response headers (or to completion when no response came).
    pub latency: Nanos,
    pub outcome: Outcome,
    pub now: Nanos,
}

/// What a completion changed, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompletionEffect {
    pub learned: Option<String>,
    pub forgot: Option<String>,
}

pub struct Balancer {
    config: Config,
    prefix: String,
    rng: SplitMix64,
    clusters: ClusterViews,
    decay_ns: f64,
    failure_decay_ns: f64,
    failure_penalty_ns: f64,
    /// Reused encode buffer for record writes.
    scratch: Vec<u8>,
    /// Whether the last `Override` should be checked against `upstream.address`.
    check_last_pick: bool,
}

impl Balancer {
    /// `prefix` namespaces shared-data keys (the plugin name); `seed` the worker's RNG.
    pub fn new(config: Config, prefix: &str, seed: u64) -> Self {
        Self {
            decay_ns: config.decay as f64,
            failure_decay_ns: config.failure_decay as f64,
            failure_penalty_ns: config.failure_penalty as f64,
            config,
            prefix: prefix.into(),
            rng: SplitMix64::new(seed),
            clusters: ClusterViews::default(),
            scratch: Vec::with_capacity(crate::record::MAX_RECORD_LEN),
            check_last_pick: false,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This worker's view of a cluster, if it has one (for tests and metrics).
    pub fn view(&self, cluster: &str) -> Option<&ClusterView> {
        self.clusters.get(cluster)
    }

    /// Whether the completion of the last `Override` should say which endpoint Envoy
    /// really used (see [`CHECK_EVERY`]). Without it, the outcome is credited to the
    /// endpoint named.
    pub fn check_last_pick(&self) -> bool {
        self.check_last_pick
    }

    /// Chooses the endpoint for a new request to `cluster`.
    pub fn pick(
        &mut self,
        store: &dyn SharedStore,
        metrics: &mut dyn Metrics,
        cluster: &str,
        now: Nanos,
    ) -> Decision {
        let (decay, failure_decay, penalty) = (
            self.decay_ns,
            self.failure_decay_ns,
            self.failure_penalty_ns,
        );
        let explore_ratio = self.config.explore_ratio;
        self.check_last_pick = false;
        let Some(view) = self
            .clusters
            .get_or_create(&self.prefix, store, metrics, cluster)
        else {
            return Decision::Fallback(FallbackReason::TooManyClusters);
        };
        let n = view.endpoints.len();
        if n < 2 {
            view.decisions.too_few += 1;
            return Decision::Fallback(FallbackReason::TooFewEndpoints);
        }
        let rng = &mut self.rng;
        if explore_ratio > 0.0 && rng.unit() < explore_ratio {
            view.decisions.explores += 1;
            return Decision::Fallback(FallbackReason::Exploring);
        }
        let Some((a, b)) = pick_two(n, rng) else {
            return Decision::Fallback(FallbackReason::TooFewEndpoints);
        };
        let cost_of = |e: &EndpointView| cost(e.load_at(now, decay, failure_decay), penalty);
        let (ca, cb) = (cost_of(&view.endpoints[a]), cost_of(&view.endpoints[b]));
        let chosen = cheaper((a, ca), (b, cb));
        log::debug!(
            "pick cluster={} candidates=[{} cost={:.3}ms, {} cost={:.3}ms] chosen={}",
            view.name,
            view.endpoints[a].record.addr,
            ca / 1e6,
            view.endpoints[b].record.addr,
            cb / 1e6,
            view.endpoints[chosen].record.addr
        );
        view.decisions.overrides += 1;
        let endpoint = &mut view.endpoints[chosen];
        endpoint.unflushed_pending += 1;
        self.check_last_pick = endpoint.picks % CHECK_EVERY == 0;
        endpoint.picks = endpoint.picks.wrapping_add(1);
        Decision::Override(Rc::clone(&endpoint.addr))
    }

    /// Records what happened to a request.
    pub fn complete(
        &mut self,
        store: &dyn SharedStore,
        metrics: &mut dyn Metrics,
        c: &Completion<'_>,
    ) -> CompletionEffect {
        let mut effect = CompletionEffect::default();
        let (decay, failure_decay) = (self.decay_ns, self.failure_decay_ns);
        let default_rtt = self.config.default_rtt as f64;
        let max_endpoints = self.config.max_endpoints;
        let prefix = &self.prefix;
        let scratch = &mut self.scratch;
        let Some(view) = self
            .clusters
            .get_or_create(prefix, store, metrics, c.cluster)
        else {
            return effect;
        };

        // The pick's pending increment is undone whatever happened.
        let chosen_position = c.chosen.and_then(|chosen| view.position(chosen));
        if let Some(e) = chosen_position.and_then(|i| view.endpoints.get_mut(i)) {
            e.unflushed_pending -= 1;
        }
        // Envoy used another endpoint than the one we named: ours has left the cluster.
        let mut forgot_chosen = false;
        if let (Some(chosen), Some(actual)) = (c.chosen, c.actual) {
            if chosen != actual {
                forgot_chosen = true;
                forget(store, metrics, view, prefix, chosen);
                log::info!(
                    "endpoint {chosen} left cluster {} (Envoy used {actual}); forgotten",
                    view.name
                );
                effect.forgot = Some(chosen.into());
            }
        }
        let Some(target) = c.actual.or(c.chosen) else {
            return effect;
        };

        let observation = Observation {
            latency_ns: c.latency as f64,
            failed: c.outcome.is_endpoint_failure(),
            unsuccessful: !c.outcome.is_success(),
            now: c.now,
        };
        let apply = |r: &mut EndpointRecord| observation.apply(r, decay, failure_decay);
        // Usually the endpoint named, found above (one lookup per completion); forgetting
        // it moved others, so then look again.
        let position = if c.chosen.is_none() || forgot_chosen {
            view.position(target)
        } else {
            chosen_position
        };
        // A known endpoint: the observation counts in this worker's view at once and goes
        // to shared data with the next flush (the tick, or a full buffer).
        let updated = match position.and_then(|i| view.endpoints.get_mut(i)) {
            Some(e) => {
                apply(&mut e.record);
                e.unflushed.push(observation);
                if e.unflushed.len() < MAX_UNFLUSHED_OBSERVATIONS {
                    true
                } else {
                    match e.flush(store, decay, failure_decay, scratch) {
                        Ok(()) => true,
                        Err(UpdateError::Contended) => {
                            // Shared data keeps refusing: the observations still count
                            // here; stop holding more than a few buffers' worth.
                            if e.unflushed.len() >= 4 * MAX_UNFLUSHED_OBSERVATIONS {
                                e.unflushed.clear();
                            }
                            true
                        }
                        Err(UpdateError::Missing) => {
                            view.remove(target);
                            false
                        }
                    }
                }
            }
            None => false,
        };
        if !updated {
            let initial = if c.latency > 0 {
                observation.latency_ns
            } else {
                default_rtt
            };
            if learn(
                store,
                metrics,
                view,
                prefix,
                target,
                initial,
                c.now,
                max_endpoints,
                &apply,
            ) {
                log::info!("learned endpoint {target} in cluster {}", view.name);
                effect.learned = Some(target.into());
            }
        }
        let position = if updated {
            position
        } else {
            view.position(target)
        };
        if let Some(e) = position.and_then(|i| view.endpoints.get_mut(i)) {
            e.unflushed_requests += 1;
            e.unflushed_failures += u64::from(observation.unsuccessful);
            if let Some(id) = e.metric_ids.latency {
                metrics.record(id, c.latency / 1_000);
            }
        }
        effect
    }

    /// Periodic work: sync every cluster view with shared data, expire endpoints not seen
    /// for `endpointTtl`, flush counters and gauges.
    pub fn tick(&mut self, store: &dyn SharedStore, metrics: &mut dyn Metrics, now: Nanos) {
        let (decay, ttl, prefix) = (self.decay_ns, self.config.endpoint_ttl, &self.prefix);
        let decays = (decay, self.failure_decay_ns);
        let scratch = &mut self.scratch;
        for view in &mut self.clusters.views {
            view.sync(store, metrics, prefix, decays, scratch);
            let expired: Vec<String> = view
                .endpoints
                .iter()
                .filter(|e| now.saturating_sub(e.record.last_seen) > ttl)
                .map(|e| e.record.addr.clone())
                .collect();
            for addr in expired {
                log::info!(
                    "endpoint {addr} in cluster {} not seen for {}s; expired",
                    view.name,
                    ttl / 1_000_000_000
                );
                forget(store, metrics, view, prefix, &addr);
            }
            for e in &mut view.endpoints {
                flush_endpoint_metrics(metrics, e, now, decay);
            }
            view.decisions.flush(metrics, &view.name);
        }
    }
}

/// This worker's views of the clusters it has seen, at most [`MAX_CLUSTERS`]; a view,
/// once made, lives as long as the worker (its position never changes).
#[derive(Default)]
struct ClusterViews {
    views: Vec<ClusterView>,
    by_name: FxMap<String, usize>,
    /// The view used last: most requests go to the cluster the previous one went to, and
    /// comparing its name is cheaper than hashing.
    last: usize,
}

impl ClusterViews {
    fn get(&self, cluster: &str) -> Option<&ClusterView> {
        self.views.get(*self.by_name.get(cluster)?)
    }

    /// The view of `cluster`, created (and synced from shared data) on first sight.
    fn get_or_create(
        &mut self,
        prefix: &str,
        store: &dyn SharedStore,
        metrics: &mut dyn Metrics,
        cluster: &str,
    ) -> Option<&mut ClusterView> {
        let last_matches = self.views.get(self.last).is_some_and(|v| v.name == cluster);
        if !last_matches {
            self.last = match self.by_name.get(cluster) {
                Some(&i) => i,
                None if self.views.len() >= MAX_CLUSTERS => return None,
                None => {
                    let mut view = ClusterView::new(prefix, cluster);
                    // A new view has nothing of its own to write: the decays are not used.
                    view.sync(store, metrics, prefix, (0.0, 0.0), &mut Vec::new());
                    self.by_name.insert(cluster.to_owned(), self.views.len());
                    self.views.push(view);
                    self.views.len() - 1
                }
            };
        }
        self.views.get_mut(self.last)
    }
}

fn flush_endpoint_metrics(metrics: &mut dyn Metrics, e: &mut EndpointView, now: Nanos, decay: f64) {
    let ids = e.metric_ids;
    if let (Some(id), 1..) = (ids.requests, e.unflushed_requests) {
        metrics.increment(id, e.unflushed_requests);
    }
    if let (Some(id), 1..) = (ids.failures, e.unflushed_failures) {
        metrics.increment(id, e.unflushed_failures);
    }
    e.unflushed_requests = 0;
    e.unflushed_failures = 0;
    let gauges = (
        (e.record.latency.estimate_at(now, decay) / 1_000.0) as u64,
        u64::from(e.pending()),
    );
    if e.last_gauges != Some(gauges) {
        if let Some(id) = ids.ewma {
            metrics.record(id, gauges.0);
        }
        if let Some(id) = ids.pending {
            metrics.record(id, gauges.1);
        }
        e.last_gauges = Some(gauges);
    }
}

/// Removes `addr` from the shared index and clears its record (if it is still ours),
/// and from this worker's view.
fn forget(
    store: &dyn SharedStore,
    metrics: &mut dyn Metrics,
    view: &mut ClusterView,
    prefix: &str,
    addr: &str,
) {
    // The slot is the one the index gave: this view may still hold `addr` on an older
    // slot (another worker forgot and re-learned it since this view's last sync), and
    // clearing only that one would leave the live record, and its pending count, behind.
    if let Ok((Some(slot), _)) = update_index(store, &view.index_key, &mut |ix| ix.remove(addr)) {
        let key = record_key(prefix, &view.name, slot);
        if let Some((bytes, cas)) = store.get(&key) {
            if EndpointRecord::decode(&bytes).is_ok_and(|r| r.addr == addr) {
                let _ = store.set(&key, &[], cas);
            }
        }
    }
    drop_from_view(metrics, view, addr);
}

/// Removes `addr` from this worker's view only, zeroing its gauges so a forgotten
/// endpoint does not look busy forever.
fn drop_from_view(metrics: &mut dyn Metrics, view: &mut ClusterView, addr: &str) {
    if let Some(e) = view.remove(addr) {
        for id in [e.metric_ids.ewma, e.metric_ids.pending]
            .into_iter()
            .flatten()
        {
            metrics.record(id, 0);
        }
    }
}

/// Adds `addr` to the shared index and creates (or joins) its record with `apply`
/// applied. Returns false when the index is full or shared data refused.
#[allow(clippy::too_many_arguments)]
fn learn(
    store: &dyn SharedStore,
    metrics: &mut dyn Metrics,
    view: &mut ClusterView,
    prefix: &str,
    addr: &str,
    initial_latency: f64,
    now: Nanos,
    max_endpoints: u16,
    apply: &dyn Fn(&mut EndpointRecord),
) -> bool {
    let Ok((_, index)) = update_index(store, &view.index_key, &mut |ix| {
        if ix.slot_of(addr).is_some() {
            None
        } else {
            ix.insert(addr, max_endpoints).map(|_| ())
        }
    }) else {
        return false;
    };
    let Some(slot) = index.slot_of(addr) else {
        return false;
    };
    let key = record_key(prefix, &view.name, slot);
    let record = match update_record(store, &key, addr, apply) {
        Ok(record) => record,
        Err(_) => {
            let mut record = EndpointRecord::new(addr, initial_latency, now);
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
    if let Some(stale) = view
        .endpoints
        .iter()
        .find(|e| e.slot == slot)
        .map(|e| e.record.addr.clone())
    {
        drop_from_view(metrics, view, &stale);
    }
    let metric_ids = EndpointMetricIds::define(metrics, &view.name, addr);
    view.push(EndpointView::new(slot, key, record, metric_ids));
    true
}
