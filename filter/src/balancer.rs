//! The balancer of one Envoy worker: P2C over Peak-EWMA costs, learning endpoints from
//! what Envoy actually used, sharing what it learns with the other workers.
//!
//! * `pick` runs on request headers. It touches no shared data (after a cluster's first
//!   request, and but for a probe's claim): two random endpoints from the cached
//!   shortlist, two costs, one soft comparison (`choice.rs`); the winner and the other
//!   are named, in that order, for Envoy's first attempt and its retry. A member never
//!   tried, or an endpoint off the shortlist whose probe is due, takes the call first.
//! * `complete` runs when the request is done. It judges whose doing the end was
//!   (`outcome.rs`), asking the host only for the facts it needs, and applies what that
//!   teaches to the endpoint's view; the shared record gets it with the next flush.
//! * `tick` runs every `refreshInterval`: re-reads the index and records, writes
//!   unflushed pending counts and observations, expires endpoints not seen for
//!   `endpointTtl`, and flushes counters and gauges to metrics.

use crate::cas::UpdateError;
use crate::choice::first_wins;
use crate::cluster_view::{ClusterView, EndpointView, Source, MAX_UNFLUSHED_OBSERVATIONS};
use crate::config::Config;
use crate::facts::CompletionFacts;
use crate::fetcher::{read_members, register, registry_key, FetchRequest, Fetcher};
use crate::fx_map::FxMap;
use crate::metrics::{ClusterMetricIds, MetricKind, Metrics, StatusLabel, CLUSTERS_OVER_LIMIT};
use crate::observation::{Latency, Observation, Timing};
use crate::outcome::Outcome;
use crate::p2c::pick_two;
use crate::rng::SplitMix64;
use crate::store::SharedStore;
use crate::tuning::Tuning;
use crate::Nanos;
use std::rc::Rc;

/// Clusters a worker keeps state for; requests to further clusters are left to the
/// cluster's fallback policy, counted in `ewma_balancer_clusters_over_limit_total`, and
/// the first of them is logged. Each cluster costs a worker a view (about 200 bytes plus
/// its endpoints) and shared data one index key.
pub const MAX_CLUSTERS: usize = 256;

/// Every `CHECK_EVERY`th pick of an endpoint (per worker) is verified: the host is
/// asked which endpoint Envoy really used (`upstream.address`, a dear property read).
/// An endpoint that left the cluster is served by Envoy's fallback policy without
/// error, so it is noticed within this many picks; the checks in between are skipped.
/// Failed requests, probes, fallback decisions and every pick of an endpoint whose
/// failure score is not zero (it failed within its last 30 successes) are always
/// verified: Envoy's retries turn a failing endpoint's calls into successes served by
/// another, and crediting seven in eight of them to it as its own halved its score each
/// time (two failing backends of three were named together for 40 of 800 calls on a
/// real Envoy with Istio's default retries).
pub const CHECK_EVERY: u32 = 8;

/// The least time between two exploring picks of one worker in one cluster (learned
/// membership): `exploreRatio` of the calls, but never more than one a second, so that
/// the fallback's blind choice sends an endpoint known to be slow or failing at most
/// one call a second per worker, whatever the rate (at 3,000 calls/s, 1 % was 30).
pub const EXPLORE_SPACING: Nanos = 1_000_000_000;

/// An endpoint the balancer chose for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pick {
    /// The `IP:port` to name in the override header; shared with the view, so a pick
    /// allocates nothing.
    pub addr: Rc<str>,
    /// The endpoint named after it, which Envoy's `override_host` tries when it retries
    /// the request: the other of the pair (never the same endpoint, never one off the
    /// shortlist).
    pub runner_up: Option<Rc<str>>,
    /// Whether the completion should ask which endpoint Envoy really used.
    pub verify: bool,
    /// The call probes an endpoint off the shortlist (see `choice.rs`).
    pub probe: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send to this endpoint (the value of the override header).
    Override(Pick),
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

/// A completed request, as the host tracked it.
#[derive(Clone, Copy, Debug)]
pub struct Completion<'a> {
    pub cluster: &'a str,
    /// What the balancer chose, if it chose (not for a fallback).
    pub pick: Option<&'a Pick>,
    /// The request was gRPC.
    pub grpc: bool,
    pub timing: Timing,
}

/// What a completion changed, for logs and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletionEffect {
    pub outcome: Outcome,
    pub learned: Option<String>,
    pub forgot: Option<String>,
}

pub struct Balancer {
    config: Config,
    tuning: Tuning,
    rng: SplitMix64,
    clusters: ClusterViews,
    /// Reused encode buffer for record writes.
    scratch: Vec<u8>,
    /// Membership from Envoy's admin interface.
    fetcher: Fetcher,
    /// Requests to clusters beyond `MAX_CLUSTERS` since the last tick.
    over_limit: u64,
    over_limit_logged: bool,
    over_limit_id: Option<Option<u32>>,
}

impl Balancer {
    /// `prefix` namespaces shared-data keys (the plugin name); `seed` the worker's RNG.
    pub fn new(config: Config, prefix: &str, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let me = rng.next_u64();
        Self {
            tuning: Tuning::from(&config),
            fetcher: Fetcher::new(
                config.admin_cluster.clone(),
                config.membership_refresh,
                prefix,
                me,
            ),
            rng,
            clusters: ClusterViews {
                prefix: prefix.into(),
                max_endpoints: config.max_endpoints,
                register: config.admin_cluster.is_some(),
                max_age: config.membership_max_age,
                ..ClusterViews::default()
            },
            config,
            scratch: Vec::with_capacity(crate::record::MAX_RECORD_LEN),
            over_limit: 0,
            over_limit_logged: false,
            over_limit_id: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This worker's view of a cluster, if it has one (for tests and metrics).
    pub fn view(&self, cluster: &str) -> Option<&ClusterView> {
        self.clusters.get(cluster)
    }

    /// Chooses the endpoint for a new request to `cluster`.
    pub fn pick(
        &mut self,
        store: &dyn SharedStore,
        metrics: &mut dyn Metrics,
        cluster: &str,
        now: Nanos,
    ) -> Decision {
        let tuning = self.tuning;
        let explore_ratio = self.config.explore_ratio;
        let max_endpoints = self.config.max_endpoints;
        let Some(view) = self
            .clusters
            .get_or_create(store, metrics, &tuning, cluster, now)
        else {
            self.over_limit += 1;
            if !self.over_limit_logged {
                self.over_limit_logged = true;
                log::warn!(
                    "cluster {cluster} not balanced: this worker already balances {MAX_CLUSTERS} clusters (the limit); further clusters use their fallback policy"
                );
            }
            return Decision::Fallback(FallbackReason::TooManyClusters);
        };
        let rng = &mut self.rng;
        let admin = matches!(view.source, Source::Admin { .. });
        let n = view.usable.len();
        if n == 0 || (n == 1 && !admin) {
            view.decisions.too_few += 1;
            return Decision::Fallback(FallbackReason::TooFewEndpoints);
        }
        if !admin {
            // Learned membership: bursts of fallback picks discover the cluster, and a
            // small budget keeps exploring at random.
            let discovering = view
                .discovery
                .take(max_endpoints, view.endpoints.len(), now);
            let exploring = !discovering
                && explore_ratio > 0.0
                && now >= view.next_explore_at
                && rng.unit() < explore_ratio;
            if exploring {
                view.next_explore_at = now.saturating_add(EXPLORE_SPACING);
            }
            if discovering || exploring {
                view.decisions.explores += 1;
                return Decision::Fallback(FallbackReason::Exploring);
            }
        }
        // The better of a pair from the shortlist gets the call, unless a member never
        // tried is waiting (it gets it), or an endpoint off the shortlist is due a
        // probe. The pair is drawn in every case: its winner is the runner-up Envoy
        // retries on.
        let m = view.shortlist.len();
        let pair = match pick_two(m, rng) {
            Some((i, j)) => view.shortlist.get(i).zip(view.shortlist.get(j)),
            // One usable member (admin membership): it is the one.
            None => view.shortlist.first().map(|only| (only, only)),
        };
        let (Some((&a, &b)), true) = (pair, m >= n.min(2)) else {
            // Never so: the shortlist keeps two when there are two.
            view.decisions.too_few += 1;
            return Decision::Fallback(FallbackReason::TooFewEndpoints);
        };
        let (Some(first), Some(second)) = (view.endpoints.get(a), view.endpoints.get(b)) else {
            view.decisions.too_few += 1;
            return Decision::Fallback(FallbackReason::TooFewEndpoints);
        };
        let (ca, cb) = (
            first.contender_at(now, &tuning),
            second.contender_at(now, &tuning),
        );
        let (winner, loser) = if first_wins(ca, cb, rng.unit()) {
            (a, b)
        } else {
            (b, a)
        };
        let (special, probe) = match view.next_unsampled(rng) {
            Some(first) => (Some(first), false),
            None => {
                let due = view.take_due_probe(store, &tuning, now, &mut self.scratch);
                (due, due.is_some())
            }
        };
        let (chosen, runner_up) = match special {
            Some(s) => (s, winner),
            None => (winner, loser),
        };
        let addr_of = |i: usize| {
            view.endpoints
                .get(i)
                .map_or("?", |e| e.record.addr.as_str())
        };
        log::debug!(
            "pick cluster={} pair=[{} cost={:.3}ms, {} cost={:.3}ms] chosen={} runner_up={} probe={probe}",
            view.name,
            addr_of(a),
            ca.cost / 1e6,
            addr_of(b),
            cb.cost / 1e6,
            addr_of(chosen),
            addr_of(runner_up),
        );
        let runner_up = (runner_up != chosen)
            .then(|| view.endpoints.get(runner_up))
            .flatten()
            .map(|e| Rc::clone(&e.addr));
        let Some(endpoint) = view.endpoints.get_mut(chosen) else {
            return Decision::Fallback(FallbackReason::TooFewEndpoints);
        };
        if probe {
            view.decisions.probes += 1;
        } else {
            view.decisions.overrides += 1;
            // A probe's pending count is already in shared data (its claim).
            endpoint.unflushed_pending += 1;
        }
        endpoint.call_started(now);
        // An endpoint that failed lately has every pick checked: a success may be
        // Envoy's retry on another endpoint, which is a failed attempt of this one.
        let verify = special.is_some()
            || endpoint.record.failure.raw() > 0.0
            || endpoint.picks % CHECK_EVERY == CHECK_EVERY - 1;
        endpoint.picks = endpoint.picks.wrapping_add(1);
        Decision::Override(Pick {
            addr: Rc::clone(&endpoint.addr),
            runner_up,
            verify,
            probe,
        })
    }

    /// Records what happened to a request, reading from `facts` only what it needs.
    pub fn complete(
        &mut self,
        store: &dyn SharedStore,
        metrics: &mut dyn Metrics,
        facts: &mut dyn CompletionFacts,
        c: &Completion<'_>,
    ) -> CompletionEffect {
        let elapsed = c.timing.finished.saturating_sub(c.timing.started);
        let outcome = Outcome::judge(facts, c.grpc, elapsed, &self.config.failure_grpc_codes);
        let mut effect = CompletionEffect {
            outcome,
            learned: None,
            forgot: None,
        };
        let tuning = self.tuning;
        let Some(view) =
            self.clusters
                .get_or_create(store, metrics, &tuning, c.cluster, c.timing.now())
        else {
            return effect;
        };
        let chosen = c.pick.map(|p| &*p.addr);
        let mut position = settle_pending(view, chosen, c.timing.now());
        let actual = if must_verify(c.pick, outcome) {
            facts.upstream_address()
        } else {
            None
        };
        let mut served_by_named = true;
        let mut retried = false;
        if let (Some(chosen), Some(actual)) = (chosen, actual.as_deref()) {
            if chosen != actual {
                served_by_named = false;
                // Another endpoint served it: Envoy retried (the one named first failed
                // its attempt), or it skipped the one named first (not in the cluster).
                let admin = matches!(view.source, Source::Admin { .. });
                retried = facts.attempts().map_or(admin, |n| n >= 2);
                if retried {
                    let probe = c.pick.filter(|p| p.probe).map(|_| view.threshold);
                    if let Some(e) = position.and_then(|i| view.endpoints.get_mut(i)) {
                        e.observe(Observation::failed_attempt(c.timing.now(), probe), &tuning);
                        e.unflushed_requests += 1;
                        e.count_failure(metrics, &view.name, StatusLabel::Retried);
                        if let FlushResult::Gone =
                            flush_if_full(e, store, &tuning, &mut self.scratch)
                        {
                            view.remove(chosen);
                        }
                    }
                    log::debug!(
                        "cluster {}: {chosen} failed its attempt, {actual} served the retry",
                        view.name
                    );
                } else if !admin {
                    // Envoy used another endpoint than the one named: ours has left the
                    // cluster. (With the membership from Envoy, its next answer says.)
                    view.forget(store, metrics, chosen);
                    log::info!(
                        "endpoint {chosen} left cluster {} (Envoy used {actual}); forgotten",
                        view.name
                    );
                    effect.forgot = Some(chosen.into());
                }
                position = None;
            }
        }
        let Some(target) = actual.as_deref().or(chosen) else {
            return effect;
        };
        // One endpoint lookup per completion: `position` is the named endpoint's, unless
        // Envoy is known to have used another (or nothing was named).
        if actual.is_some() && actual.as_deref() != chosen {
            position = view.position(target);
        }
        if c.pick.is_none() && actual.is_some() {
            view.discovery
                .saw(target, position.is_some(), c.timing.finished);
        }
        // A probe teaches about the probed endpoint only if it served the call.
        let probe = c
            .pick
            .filter(|p| p.probe && served_by_named)
            .map(|_| view.threshold);
        if let Some(mut observation) = Observation::of(outcome, &c.timing, probe) {
            if retried {
                // The call's time includes the failed attempt and Envoy's back-off: it
                // is not the latency of the endpoint that served the retry.
                observation.latency = Latency::AtLeast(0.0);
            }
            let known = position.and_then(|i| view.endpoints.get_mut(i)).map(|e| {
                e.observe(observation, &tuning);
                flush_if_full(e, store, &tuning, &mut self.scratch)
            });
            match known {
                Some(FlushResult::Kept) => {}
                Some(FlushResult::Gone) => {
                    view.remove(target);
                    position = None;
                }
                None => {}
            }
            if position.is_none() && outcome.is_the_endpoints() {
                if view.learn(store, metrics, target, &observation, &tuning) {
                    log::info!("learned endpoint {target} in cluster {}", view.name);
                    effect.learned = Some(target.into());
                }
                position = view.position(target);
            }
        }
        if outcome != Outcome::NotSent {
            if let Some(e) = position.and_then(|i| view.endpoints.get_mut(i)) {
                e.unflushed_requests += 1;
                if outcome.counts_as_unsuccessful() {
                    let status = if c.grpc { facts.grpc_status() } else { None };
                    e.count_failure(metrics, &view.name, StatusLabel::of(status));
                }
                if let (Some(id), true, false) =
                    (e.metric_ids.latency, outcome.is_the_endpoints(), retried)
                {
                    metrics.record(id, c.timing.latency() / 1_000);
                }
            }
        }
        effect
    }

    /// Periodic work: sync every cluster view with shared data, take the membership
    /// Envoy's admin interface gave (or, without it, expire endpoints not seen for
    /// `endpointTtl`), flush counters and gauges. Returns the admin request to send, when
    /// this worker holds the lease and a fetch is due.
    pub fn tick(
        &mut self,
        store: &dyn SharedStore,
        metrics: &mut dyn Metrics,
        now: Nanos,
    ) -> Option<FetchRequest> {
        let tuning = self.tuning;
        let ttl = self.config.endpoint_ttl;
        let max_age = self.config.membership_max_age;
        let admin = self.fetcher.enabled();
        let scratch = &mut self.scratch;
        let prefix = &self.clusters.prefix;
        for view in &mut self.clusters.views {
            view.sync(store, metrics, &tuning, scratch);
            let members = if admin {
                read_members(store, prefix, &view.name)
            } else {
                None
            };
            view.apply_members(store, metrics, members.as_ref(), &tuning, now, max_age);
            if view.source == Source::Learned {
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
                    view.forget(store, metrics, &addr);
                }
            }
            view.refresh_shortlist(now, &tuning);
            for e in &mut view.endpoints {
                flush_endpoint_metrics(metrics, e, now, &tuning);
            }
            view.decisions.flush(metrics, &view.name);
            let ids = *view
                .metric_ids
                .get_or_insert_with(|| ClusterMetricIds::define(metrics, &view.name));
            let age = match view.source {
                Source::Admin { fetched_at } => Some(now.saturating_sub(fetched_at) / 1_000_000),
                Source::Learned => None,
            };
            ids.record(metrics, view.endpoints.len(), view.usable.len(), age);
        }
        if self.over_limit > 0 {
            let id = *self
                .over_limit_id
                .get_or_insert_with(|| metrics.define(MetricKind::Counter, CLUSTERS_OVER_LIMIT));
            if let Some(id) = id {
                metrics.increment(id, self.over_limit);
            }
            self.over_limit = 0;
        }
        self.fetcher.due(store, now)
    }

    /// The host could not send the admin request (the cluster does not exist).
    pub fn membership_cannot_send(&mut self) {
        self.fetcher.cannot_send();
    }

    /// The admin interface's answer (`status` `None`: none came) of `body_size` bytes,
    /// `body` (empty when the host did not read an answer over the bound).
    pub fn membership_answer(
        &mut self,
        store: &dyn SharedStore,
        status: Option<u32>,
        body_size: usize,
        body: &[u8],
        now: Nanos,
    ) {
        let max = usize::from(self.config.max_endpoints);
        if body_size > crate::membership::MAX_ANSWER_BYTES {
            self.fetcher
                .refused(crate::membership::AnswerError::TooLarge(body_size), now);
        } else {
            self.fetcher.answered(store, status, body, max, now);
        }
    }

    /// How the membership fetch stands (for tests and logs).
    pub fn membership_state(&self) -> &crate::fetcher::FetchState {
        self.fetcher.state()
    }
}

/// The pick's pending increment is undone whatever happened, and its call ended at
/// `now`; returns the position of the endpoint named, if this view has it.
fn settle_pending(view: &mut ClusterView, chosen: Option<&str>, now: Nanos) -> Option<usize> {
    let position = chosen.and_then(|chosen| view.position(chosen));
    if let Some(e) = position.and_then(|i| view.endpoints.get_mut(i)) {
        e.unflushed_pending -= 1;
        e.call_ended(now);
    }
    position
}

/// Whether to ask the host which endpoint Envoy used: for a fallback decision whose
/// endpoint answered (the filter learns from it), for a pick the balancer asked to
/// verify, and for a failure or error (the endpoint named may be gone, and the outcome
/// must be credited to the one that produced it). A success of an unverified pick is
/// credited to the endpoint named; a request the client gave up on, or that never
/// reached an endpoint, needs no answer.
fn must_verify(pick: Option<&Pick>, outcome: Outcome) -> bool {
    match pick {
        None => outcome.is_the_endpoints(),
        Some(p) => p.verify || matches!(outcome, Outcome::EndpointFailure | Outcome::RequestError),
    }
}

enum FlushResult {
    /// The observation counts (written, or kept for the next write).
    Kept,
    /// The endpoint's record is gone from shared data.
    Gone,
}

/// Writes the endpoint's observations to shared data once the buffer is full.
fn flush_if_full(
    e: &mut EndpointView,
    store: &dyn SharedStore,
    tuning: &Tuning,
    scratch: &mut Vec<u8>,
) -> FlushResult {
    if e.unflushed.len() < MAX_UNFLUSHED_OBSERVATIONS {
        return FlushResult::Kept;
    }
    match e.flush(store, tuning, scratch) {
        Ok(()) => FlushResult::Kept,
        Err(UpdateError::Contended | UpdateError::Declined) => {
            // Shared data keeps refusing: the observations still count here; stop
            // holding more than a few buffers' worth.
            if e.unflushed.len() >= 4 * MAX_UNFLUSHED_OBSERVATIONS {
                e.unflushed.clear();
            }
            FlushResult::Kept
        }
        Err(UpdateError::Missing) => FlushResult::Gone,
    }
}

/// This worker's views of the clusters it has seen, at most [`MAX_CLUSTERS`]; a view,
/// once made, lives as long as the worker (its position never changes).
#[derive(Default)]
struct ClusterViews {
    /// Shared-data keys' prefix (the plugin name).
    prefix: String,
    /// Slots per cluster index (`maxEndpoints`).
    max_endpoints: u16,
    /// Whether new clusters go into the registry the membership fetch reads (and new
    /// views take the members in it at once).
    register: bool,
    /// `membershipMaxAge`.
    max_age: Nanos,
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
        store: &dyn SharedStore,
        metrics: &mut dyn Metrics,
        tuning: &Tuning,
        cluster: &str,
        now: Nanos,
    ) -> Option<&mut ClusterView> {
        let last_matches = self.views.get(self.last).is_some_and(|v| v.name == cluster);
        if !last_matches {
            self.last = match self.by_name.get(cluster) {
                Some(&i) => i,
                None if self.views.len() >= MAX_CLUSTERS => return None,
                None => {
                    // A worker's first request to a cluster (a new connection on a
                    // worker that had none) starts from what the others know: the
                    // records, the membership, and the shortlist they make.
                    let mut view = ClusterView::new(&self.prefix, cluster, self.max_endpoints);
                    view.sync(store, metrics, tuning, &mut Vec::new());
                    if self.register {
                        let members = read_members(store, &self.prefix, cluster);
                        view.apply_members(
                            store,
                            metrics,
                            members.as_ref(),
                            tuning,
                            now,
                            self.max_age,
                        );
                    }
                    view.refresh_shortlist(now, tuning);
                    // The worker fetching membership asks for every registered cluster.
                    if self.register {
                        let _ = register(store, &registry_key(&self.prefix), cluster, MAX_CLUSTERS);
                    }
                    self.by_name.insert(cluster.to_owned(), self.views.len());
                    self.views.push(view);
                    self.views.len() - 1
                }
            };
        }
        self.views.get_mut(self.last)
    }
}

fn flush_endpoint_metrics(
    metrics: &mut dyn Metrics,
    e: &mut EndpointView,
    now: Nanos,
    tuning: &Tuning,
) {
    let ids = e.metric_ids;
    if let (Some(id), 1..) = (ids.requests, e.unflushed_requests) {
        metrics.increment(id, e.unflushed_requests);
    }
    if let (Some(id), 1..) = (ids.failures, e.unflushed_failures) {
        metrics.increment(id, e.unflushed_failures);
    }
    for c in &mut e.failures_by_status {
        if let (Some(id), 1..) = (c.id, c.unflushed) {
            metrics.increment(id, c.unflushed);
        }
        c.unflushed = 0;
    }
    e.unflushed_requests = 0;
    e.unflushed_failures = 0;
    // Microseconds of a finite, non-negative estimate: the float-to-int cast saturates.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ewma_us = (e.record.latency.estimate_at(now, tuning.decay_ns) / 1_000.0) as u64;
    let gauges = (ewma_us, u64::from(e.pending()), u64::from(e.usable));
    if e.last_gauges != Some(gauges) {
        for (id, value) in [
            (ids.ewma, gauges.0),
            (ids.pending, gauges.1),
            (ids.usable, gauges.2),
        ] {
            if let Some(id) = id {
                metrics.record(id, value);
            }
        }
        e.last_gauges = Some(gauges);
    }
}
