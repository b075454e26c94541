//! One worker's view of one cluster's endpoints, and the membership changes it makes
//! to shared data: learning an endpoint, forgetting one, dropping one from the view.
//!
//! The view is a cache: the shared index and records are the truth. It is rebuilt from
//! them on each tick; between ticks, the worker's own changes (picks, completions) are
//! applied to it at once, so a worker never acts on information older than what it did
//! itself.

use crate::cas::{read_record, update_index, update_record, update_record_owned, UpdateError};
use crate::choice::{shortlist, Candidate, Contender};
use crate::cost::{cost, Load};
use crate::failure_score::probe_interval;
use crate::fx_map::FxMap;
use crate::index::ClusterIndex;
use crate::metrics::{
    decision_metric_name, status_metric_name, EndpointMetricIds, MetricKind, Metrics, StatusLabel,
};
use crate::observation::Observation;
use crate::record::EndpointRecord;
use crate::rng::SplitMix64;
use crate::store::{index_key, record_key, SharedStore};
use crate::tuning::Tuning;
use crate::Nanos;
use std::rc::Rc;

/// Random draws [`ClusterView::next_unsampled`] makes before it counts the untried.
pub const UNSAMPLED_TRIES: usize = 4;

/// Observations a worker keeps per endpoint before it writes them to shared data outside
/// the tick. At 250 ms ticks this is reached only above ~250 requests/s per endpoint and
/// worker; it bounds both the memory and how stale the other workers' view can get.
pub const MAX_UNFLUSHED_OBSERVATIONS: usize = 64;

/// One endpoint's failures with one `grpc_status`, and its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusCount {
    pub status: StatusLabel,
    pub id: Option<u32>,
    pub unflushed: u64,
}

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
    /// The failures by `grpc_status`, each counter defined when its status is first seen
    /// (at most 20: [`StatusLabel`]).
    pub failures_by_status: Vec<StatusCount>,
    pub metric_ids: EndpointMetricIds,
    /// Last gauge values set, to skip redundant hostcalls.
    pub last_gauges: Option<(u64, u64, u64)>,
    /// Envoy's balancers would use it (admin membership; always, when learned).
    pub usable: bool,
    /// Its load-balancing weight (admin membership; 1 when learned): cost is divided by it.
    pub weight: u32,
    /// On the shortlist picks draw from (see `choice.rs`); set on the tick.
    pub shortlisted: bool,
    /// Calls this worker named it for that have not ended.
    pub in_flight: u32,
    /// While `in_flight > 0`: since when the oldest of them has at least been waiting,
    /// the later of this worker's last completion and the start of the first call after
    /// it (see [`Self::stalled_ns`]).
    pub waiting_since: Nanos,
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
            failures_by_status: Vec::new(),
            metric_ids,
            last_gauges: None,
            usable: true,
            weight: 1,
            shortlisted: true,
            in_flight: 0,
            waiting_since: 0,
        }
    }

    /// A call this worker named the endpoint for has started at `now`.
    pub fn call_started(&mut self, now: Nanos) {
        if self.in_flight == 0 {
            self.waiting_since = now;
        }
        self.in_flight = self.in_flight.saturating_add(1);
    }

    /// A call this worker named the endpoint for has ended at `now`, whoever ended it.
    pub fn call_ended(&mut self, now: Nanos) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.waiting_since = self.waiting_since.max(now);
    }

    /// How long this worker's oldest call in flight to the endpoint has at least been
    /// waiting at `now`: a lower bound on the endpoint's latency that needs no answer.
    /// Every call in flight at the last completion is still in flight (none ended
    /// since), so the oldest has waited at least since then, or since the first call
    /// after it when none was left. 0 with nothing in flight; at most `cap_ns` (the
    /// failure penalty: a call waiting that long costs what a failure does, and a
    /// completion the host never reported cannot make an endpoint dearer than that).
    ///
    /// Without it, an endpoint that stops answering keeps its last estimate, which
    /// decays toward 0 while its calls wait, and only its pending count holds it back:
    /// a backend that accepted calls and never answered got 15 to 64 of 1,600 calls
    /// before its first timed out (5 s); Peak-EWMA learns nothing until an answer comes.
    ///
    /// A pick's time is the worker's last clock reading (no clock read per pick), so a
    /// call to an endpoint idle on this worker may be stamped up to a tick (250 ms)
    /// early, and the bound is that much too high until the call ends; calls to busy
    /// endpoints take their bound from the last completion, read fresh.
    pub fn stalled_ns(&self, now: Nanos, cap_ns: f64) -> f64 {
        if self.in_flight == 0 {
            return 0.0;
        }
        (now.saturating_sub(self.waiting_since) as f64).min(cap_ns)
    }

    /// Counts one failure that ended with `status`, defining its counter on first sight.
    pub fn count_failure(&mut self, metrics: &mut dyn Metrics, cluster: &str, status: StatusLabel) {
        self.unflushed_failures += 1;
        if let Some(c) = self
            .failures_by_status
            .iter_mut()
            .find(|c| c.status == status)
        {
            c.unflushed += 1;
            return;
        }
        let id = metrics.define(
            MetricKind::Counter,
            &status_metric_name(cluster, &self.addr, status),
        );
        self.failures_by_status.push(StatusCount {
            status,
            id,
            unflushed: 1,
        });
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
        self.flush_if(store, tuning, scratch, &|_| true)
    }

    /// [`Self::flush`], only if the shared record, as read before the write, passes
    /// `check` ([`UpdateError::Declined`] otherwise; nothing is written).
    pub fn flush_if(
        &mut self,
        store: &dyn SharedStore,
        tuning: &Tuning,
        scratch: &mut Vec<u8>,
        check: &dyn Fn(&EndpointRecord) -> bool,
    ) -> Result<(), UpdateError> {
        let delta = self.unflushed_pending;
        let observations = &self.unflushed;
        let change = |r: &mut EndpointRecord| {
            if !check(r) {
                return false;
            }
            r.pending = add_pending(r.pending, delta);
            for o in observations {
                o.apply(r, tuning);
            }
            true
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

    /// The load cost is computed from: the latency estimate (or the time this worker's
    /// oldest call has been waiting, if longer), the pending count and the failure score.
    pub fn load_at(&self, now: Nanos, tuning: &Tuning) -> Load {
        let estimate = self.record.latency.estimate_at(now, tuning.decay_ns);
        Load {
            latency_ns: estimate.max(self.stalled_ns(now, tuning.failure_penalty_ns)),
            pending: self.pending(),
            failure: self.record.failure.at(now, tuning.failure_decay_ns),
        }
    }

    /// The cost P2C compares: [`cost`] of the load, over the endpoint's weight.
    pub fn cost_at(&self, now: Nanos, tuning: &Tuning) -> f64 {
        let c = cost(self.load_at(now, tuning), tuning.failure_penalty_ns);
        if self.weight > 1 {
            c / f64::from(self.weight)
        } else {
            c
        }
    }

    /// What the shortlist compares: the latency estimate or failure penalty, whichever
    /// is larger, over the weight, without the pending term.
    pub fn idle_cost_at(&self, now: Nanos, tuning: &Tuning) -> f64 {
        self.contender_at(now, tuning).idle_cost
    }

    /// Both costs a pair is decided on, from one reading of the load.
    pub fn contender_at(&self, now: Nanos, tuning: &Tuning) -> Contender {
        let load = self.load_at(now, tuning);
        let weight = f64::from(self.weight.max(1));
        Contender {
            cost: cost(load, tuning.failure_penalty_ns) / weight,
            idle_cost: cost(Load { pending: 0, ..load }, tuning.failure_penalty_ns) / weight,
        }
    }

    /// When this endpoint, off the shortlist, is next due a probe: its last outcome plus
    /// the probe interval of the probes that found it bad in a row.
    pub fn probe_due_at(&self) -> Nanos {
        let last = self.record.latency.stamp().max(self.record.failure.stamp());
        last.saturating_add(probe_interval(self.record.failure.failed_probes()))
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
    /// Positions of the endpoints Envoy would use.
    pub usable: Vec<usize>,
    /// Positions of the usable endpoints on the shortlist: the pairs are drawn from these.
    pub shortlist: Vec<usize>,
    /// The shortlist's idle-cost threshold at the last tick (`f64::MAX` before one): a
    /// probe that comes back under it brings its endpoint back.
    pub threshold: f64,
    /// Usable endpoints off the shortlist with nothing in flight, by when each is due a
    /// probe, the earliest last; rebuilt on the tick.
    pub probes: Vec<(Nanos, Rc<str>)>,
    /// Usable endpoints that never completed a request (members the admin interface
    /// reported), as of the last rebuild: while there are any, picks look for one.
    pub unsampled: usize,
    /// Where the membership came from at the last tick.
    pub source: Source,
    /// Discovery bursts, in learned mode (see [`Discovery`]).
    pub discovery: Discovery,
    /// No exploring pick before this (see `balancer::EXPLORE_SPACING`).
    pub next_explore_at: Nanos,
    /// The membership gauges, defined on the first tick.
    pub metric_ids: Option<crate::metrics::ClusterMetricIds>,
}

/// Where a view's membership comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Learned from `upstream.address` of completed requests.
    Learned,
    /// Envoy's admin interface, read at this time.
    Admin { fetched_at: Nanos },
}

/// Discovery in learned mode. Envoy's round robin fallback, per worker, visits the
/// cluster's hosts in turn, so a run of consecutive fallback picks that ends at the first
/// host seen twice has seen every host. A view starts with such a burst (all calls left
/// to the fallback until a completion repeats an endpoint, or `maxEndpoints` calls),
/// and repeats it after growing intervals while bursts find nothing new.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Fallback picks left in the current burst; 0: no burst.
    pub left: u32,
    /// Endpoints the current burst's completions named.
    pub seen: crate::fx_map::FxSet<String>,
    /// Whether the current burst found an endpoint the view did not know.
    found_new: bool,
    /// Fallback picks whose completion has not come back yet (so that a burst does not
    /// run far ahead of what it learns).
    in_flight: u32,
    /// When the next burst starts.
    pub next_at: Nanos,
    /// Bursts in a row that found nothing new (each doubles the wait).
    fruitless: u32,
}

/// The wait before the next burst; doubled after each fruitless one, up to 64×
/// (16 minutes).
pub const DISCOVERY_INTERVAL: Nanos = 15_000_000_000;

impl Discovery {
    /// A burst of at most `max` fallback picks, starting now.
    pub fn start(max: u16) -> Self {
        Self {
            left: u32::from(max),
            ..Self::default()
        }
    }

    /// Whether the next pick belongs to a burst (starting one if it is time); counts it.
    /// A burst runs at most `known + 2` picks ahead of its completions: enough to go
    /// round a cluster it knows, and to find a few more at a time.
    pub fn take(&mut self, max: u16, known: usize, now: Nanos) -> bool {
        if self.left == 0 && self.next_at > 0 && now >= self.next_at {
            self.left = u32::from(max);
            self.seen.clear();
            self.found_new = false;
        }
        let ahead = u32::try_from(known).unwrap_or(u32::MAX).saturating_add(2);
        if self.left == 0 || self.in_flight >= ahead {
            return false;
        }
        self.in_flight = self.in_flight.saturating_add(1);
        self.left -= 1;
        if self.left == 0 {
            self.end(now);
        }
        true
    }

    /// A fallback pick's completion named `addr`; `known` says whether the view knew it
    /// before. The burst ends at the first repeat: the fallback has been round.
    pub fn saw(&mut self, addr: &str, known: bool, now: Nanos) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.left == 0 {
            return;
        }
        self.found_new |= !known;
        if !self.seen.insert(addr.to_owned()) {
            self.end(now);
        }
    }

    fn end(&mut self, now: Nanos) {
        self.fruitless = if self.found_new {
            0
        } else {
            self.fruitless.saturating_add(1)
        };
        self.left = 0;
        self.seen.clear();
        self.next_at = now.saturating_add(DISCOVERY_INTERVAL << self.fruitless.min(6));
    }
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
            usable: Vec::new(),
            shortlist: Vec::new(),
            threshold: f64::MAX,
            probes: Vec::new(),
            unsampled: 0,
            source: Source::Learned,
            discovery: Discovery::start(max_slots),
            next_explore_at: 0,
            metric_ids: None,
        }
    }

    /// Rebuilds the list of usable positions (after any change of the endpoints).
    pub fn rebuild_usable(&mut self) {
        self.usable.clear();
        self.usable.extend(
            self.endpoints
                .iter()
                .enumerate()
                .filter(|(_, e)| e.usable)
                .map(|(i, _)| i),
        );
        self.shortlist.clear();
        let endpoints = &self.endpoints;
        self.shortlist.extend(
            self.usable
                .iter()
                .copied()
                .filter(|&i| endpoints.get(i).is_some_and(|e| e.shortlisted)),
        );
        if self.shortlist.len() < self.usable.len().min(2) {
            // Not measured since the membership changed: all of them until the tick.
            self.shortlist.clone_from(&self.usable);
        }
        self.unsampled = self.count_unsampled();
    }

    /// Rebuilds the shortlist from the usable endpoints' idle costs at `now`, and the
    /// probes due to the endpoints off it (see `choice.rs`). Runs on the tick: its cost
    /// grows with the number of endpoints, the picks' does not.
    pub fn refresh_shortlist(&mut self, now: Nanos, tuning: &Tuning) {
        let candidates: Vec<Candidate> = self
            .usable
            .iter()
            .filter_map(|&i| self.endpoints.get(i))
            .map(|e| Candidate {
                idle_cost: e.idle_cost_at(now, tuning),
                // An endpoint that never had a sample is tried by the unsampled rule.
                held_out: e.record.failure.failed_probes() > 0 && e.record.requests > 0,
            })
            .collect();
        let mut keep = Vec::with_capacity(candidates.len());
        self.threshold = shortlist(&candidates, &mut keep);
        for e in &mut self.endpoints {
            e.shortlisted = false;
        }
        self.probes.clear();
        for (&i, &kept) in self.usable.iter().zip(&keep) {
            let Some(e) = self.endpoints.get_mut(i) else {
                continue;
            };
            e.shortlisted = kept;
            if !kept && e.pending() == 0 {
                self.probes.push((e.probe_due_at(), Rc::clone(&e.addr)));
            }
        }
        // Earliest last, so that a pick pops it.
        self.probes.sort_unstable_by_key(|p| std::cmp::Reverse(p.0));
        self.rebuild_usable();
    }

    /// The endpoint off the shortlist whose probe is due at `now`, claimed in shared
    /// data (its shared pending count goes from 0 to 1 in one compare-and-swap, so that
    /// one worker of the Envoy probes it, not each); its position. At most one claim is
    /// tried per pick, so a pick's work stays bounded.
    pub fn take_due_probe(
        &mut self,
        store: &dyn SharedStore,
        tuning: &Tuning,
        now: Nanos,
        scratch: &mut Vec<u8>,
    ) -> Option<usize> {
        let &(due, _) = self.probes.last()?;
        if now < due {
            return None;
        }
        let (_, addr) = self.probes.pop()?;
        let position = self.position(&addr)?;
        let e = self.endpoints.get_mut(position)?;
        if e.shortlisted || e.unflushed_pending != 0 {
            return None;
        }
        e.unflushed_pending = 1;
        match e.flush_if(store, tuning, scratch, &|r| r.pending == 0) {
            Ok(()) => Some(position),
            Err(_) => {
                e.unflushed_pending = 0;
                None
            }
        }
    }

    /// Usable endpoints that never completed a request.
    fn count_unsampled(&self) -> usize {
        self.usable
            .iter()
            .filter_map(|&i| self.endpoints.get(i))
            .filter(|e| e.record.requests == 0)
            .count()
    }

    /// A usable endpoint that never completed a request and has nothing in flight that
    /// this worker knows of (its own calls, the others' as of the last tick: a member
    /// that never answers gets one call, not one per tick), drawn uniformly from all
    /// such (workers, which see each other's first calls only on the tick, seldom try
    /// the same one): it gets the next call, as Finagle gives an endpoint without
    /// history its first call, one at a time. Every member is then tried within about
    /// as many calls as there are members, whatever the rate.
    ///
    /// Uniform matters where calls are rare: at 2 calls/s a proxy spends its first
    /// 25 s on 50 members' first calls, and the first untried member after a random
    /// place favours those behind a run of tried ones (`make simulate`'s low-rate, 500
    /// proxies over 50 endpoints: the largest deviation from a fair share 16 %, 7 % drawn
    /// uniformly).
    /// [`UNSAMPLED_TRIES`] random draws find one while many are untried; a count and a
    /// second pass find the j-th of the few left.
    pub fn next_unsampled(&mut self, rng: &mut SplitMix64) -> Option<usize> {
        if self.unsampled == 0 {
            return None;
        }
        let untried = |v: &Self, i: usize| {
            v.usable
                .get(i)
                .and_then(|&p| v.endpoints.get(p).map(|e| (p, e)))
                .filter(|(_, e)| e.record.requests == 0 && e.pending() == 0)
                .map(|(p, _)| p)
        };
        let n = self.usable.len();
        for _ in 0..UNSAMPLED_TRIES {
            if let Some(p) = untried(self, rng.below(n)) {
                return Some(p);
            }
        }
        let left = (0..n).filter(|&i| untried(self, i).is_some()).count();
        if left == 0 {
            // All of them have a call in flight: recount, so that sampled ones stop the look.
            self.unsampled = self.count_unsampled();
            return None;
        }
        let j = rng.below(left);
        (0..n).filter_map(|i| untried(self, i)).nth(j)
    }

    /// Takes the membership Envoy's admin interface gave, if fresh (read at most
    /// `max_age` ago): members that left are forgotten, usable members not known yet are
    /// learned with a fair estimate (the median of the usable endpoints' estimates), and
    /// each endpoint's usability and weight follow Envoy's. Without fresh members the
    /// view is learned: every endpoint is usable, weights are 1.
    pub fn apply_members(
        &mut self,
        store: &dyn SharedStore,
        metrics: &mut dyn Metrics,
        members: Option<&crate::membership::Members>,
        tuning: &Tuning,
        now: Nanos,
        max_age: Nanos,
    ) {
        let fresh = members.filter(|m| now.saturating_sub(m.fetched_at) <= max_age);
        let Some(members) = fresh else {
            self.source = Source::Learned;
            for e in &mut self.endpoints {
                e.usable = true;
                e.weight = 1;
            }
            self.rebuild_usable();
            return;
        };
        self.source = Source::Admin {
            fetched_at: members.fetched_at,
        };
        self.discovery.left = 0;
        let all: crate::fx_map::FxSet<&str> =
            members.members.iter().map(|m| m.addr.as_str()).collect();
        let gone: Vec<String> = self
            .endpoints
            .iter()
            .filter(|e| !all.contains(e.record.addr.as_str()))
            .map(|e| e.record.addr.clone())
            .collect();
        for addr in gone {
            log::info!(
                "endpoint {addr} is no longer a member of cluster {}; forgotten",
                self.name
            );
            self.forget(store, metrics, &addr);
        }
        let usable: crate::fx_map::FxMap<&str, u32> = members
            .usable()
            .map(|m| (m.addr.as_str(), m.weight))
            .collect();
        let missing: Vec<&str> = members
            .usable()
            .map(|m| m.addr.as_str())
            .filter(|a| self.position(a).is_none())
            .collect();
        if !missing.is_empty() {
            let fair = self.fair_estimate(now, tuning);
            let added = self.learn_members(store, metrics, &missing, fair, now);
            if added > 0 {
                log::info!(
                    "{added} member(s) of cluster {} added, e.g. {}",
                    self.name,
                    missing.first().copied().unwrap_or_default()
                );
            }
        }
        for e in &mut self.endpoints {
            match usable.get(e.record.addr.as_str()) {
                Some(&weight) => {
                    e.usable = true;
                    e.weight = weight;
                }
                None => {
                    e.usable = false;
                    e.weight = 1;
                }
            }
        }
        self.rebuild_usable();
    }

    /// The median of the usable endpoints' estimates at `now`, or the default RTT when
    /// none is known: what an endpoint without a sample starts at, so that it is
    /// neither starved (a dear default against fast peers) nor flooded (a zero).
    fn fair_estimate(&self, now: Nanos, tuning: &Tuning) -> f64 {
        let mut estimates: Vec<f64> = self
            .endpoints
            .iter()
            .filter(|e| e.usable && e.record.requests > 0)
            .map(|e| e.record.latency.estimate_at(now, tuning.decay_ns))
            .filter(|x| x.is_finite())
            .collect();
        if estimates.is_empty() {
            return tuning.default_rtt_ns;
        }
        estimates.sort_by(f64::total_cmp);
        estimates
            .get(estimates.len() / 2)
            .copied()
            .unwrap_or(tuning.default_rtt_ns)
    }

    pub fn position(&self, addr: &str) -> Option<usize> {
        self.by_addr.get(addr).copied()
    }

    fn push(&mut self, endpoint: EndpointView) {
        self.by_addr
            .insert(endpoint.record.addr.clone(), self.endpoints.len());
        if endpoint.usable {
            self.usable.push(self.endpoints.len());
            if endpoint.shortlisted {
                self.shortlist.push(self.endpoints.len());
            }
        }
        self.endpoints.push(endpoint);
    }

    /// Removes `addr` from this view only (its record stays in shared data).
    pub fn remove(&mut self, addr: &str) -> Option<EndpointView> {
        let i = self.by_addr.remove(addr)?;
        let removed = self.endpoints.swap_remove(i);
        if let Some(moved) = self.endpoints.get(i) {
            self.by_addr.insert(moved.record.addr.clone(), i);
        }
        self.rebuild_usable();
        Some(removed)
    }

    /// Removes `addr` from this view, zeroing its gauges so that a forgotten endpoint
    /// does not look busy forever.
    pub fn drop_endpoint(&mut self, metrics: &mut dyn Metrics, addr: &str) {
        if let Some(e) = self.remove(addr) {
            for id in [e.metric_ids.ewma, e.metric_ids.pending, e.metric_ids.usable]
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
        let initial = match first.latency {
            crate::observation::Latency::Sample(ns) if ns > 0.0 => ns,
            _ => tuning.default_rtt_ns,
        };
        let apply = |r: &mut EndpointRecord| first.apply(r, tuning);
        self.add(store, metrics, addr, initial, first.now, &apply)
    }

    fn add(
        &mut self,
        store: &dyn SharedStore,
        metrics: &mut dyn Metrics,
        addr: &str,
        initial_ns: f64,
        now: Nanos,
        apply: &dyn Fn(&mut EndpointRecord),
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
        let stale = self
            .endpoints
            .iter()
            .find(|e| e.slot == slot)
            .map(|e| e.record.addr.clone());
        self.adopt(store, metrics, addr, slot, stale, initial_ns, now, apply)
    }

    /// Adds the members Envoy reported that the view lacks, with no sample yet (records
    /// another worker made are taken as they are; new ones start at `estimate_ns`): one
    /// index update for all of them, so that a cluster of a thousand costs a thousand
    /// record writes, not a thousand rewrites of the index. Returns how many were added.
    pub fn learn_members(
        &mut self,
        store: &dyn SharedStore,
        metrics: &mut dyn Metrics,
        addrs: &[&str],
        estimate_ns: f64,
        now: Nanos,
    ) -> usize {
        let max_slots = self.max_slots;
        let Ok((_, index)) = update_index(store, &self.index_key, max_slots, &mut |ix| {
            (ix.insert_all(addrs.iter().copied(), max_slots) > 0).then_some(())
        }) else {
            return 0;
        };
        let slots: FxMap<&str, u16> = index
            .entries
            .iter()
            .map(|(slot, a)| (a.as_str(), *slot))
            .collect();
        let mut held: FxMap<u16, String> = self
            .endpoints
            .iter()
            .map(|e| (e.slot, e.record.addr.clone()))
            .collect();
        let touch = |r: &mut EndpointRecord| r.last_seen = r.last_seen.max(now);
        let mut added = 0;
        for &addr in addrs {
            let Some(&slot) = slots.get(addr) else {
                continue;
            };
            if self.position(addr).is_some() {
                continue;
            }
            let stale = held.remove(&slot);
            if self.adopt(store, metrics, addr, slot, stale, estimate_ns, now, &touch) {
                held.insert(slot, addr.to_owned());
                added += 1;
            }
        }
        added
    }

    /// Takes `addr`, which the index places on `slot`, into the view: its record as
    /// shared data has it (`apply` applied), or a new one from `initial_ns`. `stale` is
    /// the endpoint this view still holds on `slot`, if any.
    #[allow(clippy::too_many_arguments)]
    fn adopt(
        &mut self,
        store: &dyn SharedStore,
        metrics: &mut dyn Metrics,
        addr: &str,
        slot: u16,
        stale: Option<String>,
        initial_ns: f64,
        now: Nanos,
        apply: &dyn Fn(&mut EndpointRecord),
    ) -> bool {
        let key = record_key(&self.prefix, &self.name, slot);
        let record = match update_record(store, &key, addr, apply) {
            Ok(record) => record,
            Err(_) => {
                let mut record = EndpointRecord::new(addr, initial_ns, now);
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
        if let Some(stale) = stale {
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
        self.usable.clear();
        self.shortlist.clear();
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
        self.rebuild_usable();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::store::MemoryStore;

    struct NoMetrics;
    impl Metrics for NoMetrics {
        fn define(&mut self, _: MetricKind, _: &str) -> Option<u32> {
            None
        }
        fn increment(&mut self, _: u32, _: u64) {}
        fn record(&mut self, _: u32, _: u64) {}
    }

    #[test]
    fn an_untried_member_is_drawn_uniformly_not_the_first_after_a_random_place() {
        let store = MemoryStore::default();
        let tuning = Tuning::from(&Config::default());
        let mut view = ClusterView::new("t", "c", 64);
        let addrs: Vec<String> = (1..=10).map(|i| format!("10.0.0.{i}:80")).collect();
        let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        assert_eq!(
            view.learn_members(&store, &mut NoMetrics, &refs, 1e6, 0),
            10
        );
        view.apply_members(&store, &mut NoMetrics, None, &tuning, 0, 0);
        assert_eq!(view.usable.len(), 10);
        // Only the members at usable positions 1 and 2 are untried. The first untried
        // after a random place is position 1 from nine places of ten.
        let untried = [view.usable[1], view.usable[2]];
        for &p in &view.usable {
            if !untried.contains(&p) {
                view.endpoints[p].record.requests = 1;
            }
        }
        view.unsampled = 2;
        let mut rng = SplitMix64::new(5);
        let mut got = [0u32; 2];
        for _ in 0..2_000 {
            let p = view.next_unsampled(&mut rng).unwrap_or(usize::MAX);
            let k = untried.iter().position(|&u| u == p);
            assert!(k.is_some(), "drew {p}, not an untried member");
            got[k.unwrap_or(0)] += 1;
        }
        assert!(got.iter().all(|&g| (900..=1_100).contains(&g)), "{got:?}");
    }

    const MS: Nanos = 1_000_000;

    fn endpoint_at(latency_ms: f64) -> EndpointView {
        let record = EndpointRecord::new("10.0.0.1:80", latency_ms * 1e6, 0);
        EndpointView::new(0, "k".into(), record, EndpointMetricIds::default())
    }

    #[test]
    fn a_call_in_flight_bounds_the_latency_from_below_until_one_ends() {
        let e = &mut endpoint_at(1.0);
        assert_eq!(e.stalled_ns(5 * MS, 1e9), 0.0);
        e.call_started(10 * MS);
        e.call_started(12 * MS);
        // The first has waited 30 ms.
        assert_eq!(e.stalled_ns(40 * MS, 1e9), 30e6);
        // One ends at 40 ms: the other, in flight then, has waited at least since.
        e.call_ended(40 * MS);
        assert_eq!(e.stalled_ns(45 * MS, 1e9), 5e6);
        e.call_ended(50 * MS);
        assert_eq!(e.stalled_ns(900 * MS, 1e9), 0.0);
        // A call after a quiet spell waits from its own start.
        e.call_started(1_000 * MS);
        assert_eq!(e.stalled_ns(1_003 * MS, 1e9), 3e6);
        // At most the cap, and never negative when the clock goes back.
        assert_eq!(e.stalled_ns(9_000 * MS, 1e9), 1e9);
        assert_eq!(e.stalled_ns(0, 1e9), 0.0);
        // More ends than starts (a completion of a call named before a restart): none
        // in flight, no bound.
        e.call_ended(1_010 * MS);
        e.call_ended(1_020 * MS);
        assert_eq!(e.in_flight, 0);
        assert_eq!(e.stalled_ns(2_000 * MS, 1e9), 0.0);
    }

    #[test]
    fn an_endpoint_whose_call_waits_costs_at_least_the_wait_and_its_estimate_is_untouched() {
        let tuning = Tuning::from(&Config::default());
        let e = &mut endpoint_at(1.0);
        e.unflushed_pending = 1;
        e.call_started(0);
        // 1 ms estimate, one pending: 2 ms at once; after 100 ms waiting, 200 ms.
        assert_eq!(e.cost_at(0, &tuning), 2e6);
        assert_eq!(e.cost_at(100 * MS, &tuning), 200e6);
        assert_eq!(e.idle_cost_at(100 * MS, &tuning), 100e6);
        // Capped at the failure penalty (1 s by default).
        assert_eq!(e.idle_cost_at(60_000 * MS, &tuning), 1e9);
        // The Peak-EWMA estimate itself (the gauge, the shared record) is not changed.
        assert!(e.record.latency.estimate_at(100 * MS, tuning.decay_ns) < 1e6);
    }
}
