//! Sequences of pick / complete / tick on two workers' `Balancer`s sharing one in-memory
//! store (Envoy's shared data with its CAS semantics), over several clusters and a small
//! pool of endpoints, with a clock that moves forward, backward and jumps, latencies from
//! 0 to `u64::MAX`, every outcome, and now and then garbage written into shared data (as a
//! module of another version might leave it).
//!
//! Invariants, checked after every operation:
//! * nothing panics;
//! * an `Override` names an endpoint that the worker's view knows, and the view had at
//!   least two endpoints;
//! * every view's pending counts stay below the picks ever made; unless garbage was
//!   written into the cluster's shared data, its lookup table agrees with its list (no
//!   address twice) and it holds at most `maxEndpoints` endpoints;
//! * shared data stays bounded: per cluster at most `maxEndpoints` record keys (slots
//!   below `maxEndpoints`) plus one index key, and keys only for clusters that completed
//!   a request;
//! * unless garbage was written into a cluster's shared data: the index decodes, has
//!   distinct slots and addresses within bounds; each record decodes, fits
//!   `MAX_RECORD_LEN`, carries a sane estimate and failure score, and its shared pending
//!   count plus the workers' not yet flushed pick/completion deltas never exceeds the
//!   requests actually in flight to that endpoint (so pending neither leaks nor wraps).

#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arbitrary::Arbitrary;
use ewma_balancer::balancer::{Balancer, Completion, Decision, Pick};
use ewma_balancer::facts::FixedFacts;
use ewma_balancer::observation::Timing;
use ewma_balancer::config::Config;
use ewma_balancer::index::ClusterIndex;
use ewma_balancer::metrics::{MetricKind, Metrics};
use ewma_balancer::outcome::Outcome;
use ewma_balancer::record::{EndpointRecord, MAX_ADDR_LEN, MAX_RECORD_LEN};
use ewma_balancer::store::{index_key, record_key, MemoryStore, SharedStore, StoreError};
use ewma_balancer::Nanos;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

const PREFIX: &str = "fz";
const MS: Nanos = 1_000_000;

/// Endpoints Envoy may report in `upstream.address`: IPv4, IPv6, the longest address a
/// record keeps, one byte longer (refused), and an empty one.
const POOL: [&str; 8] = [
    "10.0.0.1:8080",
    "10.0.0.2:8080",
    "10.0.0.3:8080",
    "[2001:db8::17]:50051",
    "10.0.0.4:8080",
    "1234567890123456789012345678901234567890123456789012345678901234",
    "12345678901234567890123456789012345678901234567890123456789012345",
    "",
];

#[derive(Arbitrary, Debug)]
struct Input {
    setup: Setup,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
struct Setup {
    max_endpoints: u8,
    explore_percent: u8,
    ttl_secs: u8,
    decay_ms: u16,
    failure_decay_ms: u16,
    start: Nanos,
    seeds: [u64; 2],
    /// The host refuses every metric definition.
    metrics_refused: bool,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ClusterName {
    Greeter,
    Other,
    /// A name with the key separator in it.
    Piped,
    /// One of 300 clusters: more than a worker keeps state for.
    Many(u16),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Pick {
        worker: bool,
        cluster: ClusterName,
    },
    /// Completes one of the worker's requests in flight (chosen by index).
    Complete {
        worker: bool,
        request: u8,
        actual: Actual,
        latency: Latency,
        outcome: Kind,
    },
    Tick {
        worker: bool,
    },
    Time(Step),
    /// Garbage where a record (slot) or the index (`None`) of a cluster is.
    Corrupt {
        cluster: ClusterName,
        slot: Option<u8>,
        bytes: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
enum Actual {
    /// Envoy used the endpoint the filter named (or, without one, the pool's first).
    AsChosen,
    Pool(u8),
    /// Envoy retried: the runner-up the filter named second served it after
    /// `attempts` attempts (1: the winner was skipped, not being in the cluster).
    RunnerUp { attempts: u8 },
    /// No upstream: a local reply or a reset before connecting.
    None,
}

#[derive(Arbitrary, Debug)]
enum Latency {
    Zero,
    Micros(u16),
    Millis(u16),
    Raw(u64),
    Max,
}

#[derive(Arbitrary, Debug)]
enum Kind {
    Success,
    RequestError,
    EndpointFailure,
    Abandoned { whole: bool },
    NotSent,
}

#[derive(Arbitrary, Debug)]
enum Step {
    ForwardMs(u16),
    BackwardMs(u32),
    Jump(Nanos),
}

impl ClusterName {
    fn name(self) -> String {
        match self {
            Self::Greeter => "greeter".into(),
            Self::Other => "outbound|50051||other.ns.svc.cluster.local".into(),
            Self::Piped => "a|0".into(),
            Self::Many(n) => format!("c{}", n % 300),
        }
    }
}

/// Metrics as Envoy keeps them; checks that only defined ids are used.
struct CheckedMetrics {
    defined: u32,
    refused: bool,
}

impl Metrics for CheckedMetrics {
    fn define(&mut self, _kind: MetricKind, name: &str) -> Option<u32> {
        assert!(!name.is_empty());
        if self.refused {
            return None;
        }
        self.defined += 1;
        Some(self.defined - 1)
    }

    fn increment(&mut self, id: u32, _delta: u64) {
        assert!(id < self.defined, "increment of undefined metric {id}");
    }

    fn record(&mut self, id: u32, _value: u64) {
        assert!(id < self.defined, "record of undefined metric {id}");
    }
}

/// Envoy's shared data (`MemoryStore`), remembering which keys were ever written: a
/// cleared key still counts, since shared data has no delete.
#[derive(Default)]
struct KeyedStore {
    inner: MemoryStore,
    keys: RefCell<BTreeSet<String>>,
}

impl SharedStore for KeyedStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        let result = self.inner.set(key, value, cas);
        if result.is_ok() {
            self.keys.borrow_mut().insert(key.to_string());
        }
        result
    }
}

struct Worker {
    balancer: Balancer,
    metrics: CheckedMetrics,
    /// Requests picked and not completed yet: (cluster, endpoint named).
    in_flight: Vec<(String, Option<Pick>)>,
}

struct World {
    store: KeyedStore,
    workers: [Worker; 2],
    config: Config,
    now: Nanos,
    /// Every pick ever made, per cluster (an upper bound for any pending count).
    picks: BTreeMap<String, u64>,
    /// Clusters that completed a request (only completions write shared data).
    written: BTreeSet<String>,
    /// Clusters whose shared data got garbage.
    corrupted: BTreeSet<String>,
}

fuzz_target!(|input: Input| {
    let s = &input.setup;
    let config = Config {
        max_endpoints: 2 + u16::from(s.max_endpoints % 7),
        explore_ratio: f64::from(s.explore_percent % 51) / 100.0,
        endpoint_ttl: (1 + Nanos::from(s.ttl_secs % 60)) * 1_000 * MS,
        decay: (100 + Nanos::from(s.decay_ms)) * MS,
        failure_decay: (10 + Nanos::from(s.failure_decay_ms)) * MS,
        ..Config::default()
    };
    let worker = |seed| Worker {
        balancer: Balancer::new(config.clone(), PREFIX, seed),
        metrics: CheckedMetrics {
            defined: 0,
            refused: s.metrics_refused,
        },
        in_flight: Vec::new(),
    };
    let mut world = World {
        store: KeyedStore::default(),
        workers: [worker(s.seeds[0]), worker(s.seeds[1])],
        config: config.clone(),
        now: s.start,
        picks: BTreeMap::new(),
        written: BTreeSet::new(),
        corrupted: BTreeSet::new(),
    };
    // `FUZZ_TRACE=1 cargo fuzz run -s none balancer_ops <artifact>` prints every step.
    let trace = std::env::var_os("FUZZ_TRACE").is_some();
    for (i, op) in input.ops.iter().take(2_000).enumerate() {
        world.apply(op);
        if trace {
            world.trace(i, op);
        }
        world.check();
    }
});

impl World {
    fn apply(&mut self, op: &Op) {
        let now = self.now;
        match op {
            Op::Pick { worker, cluster } => {
                let cluster = cluster.name();
                let w = &mut self.workers[usize::from(*worker)];
                let decision = w.balancer.pick(&self.store, &mut w.metrics, &cluster, now);
                *self.picks.entry(cluster.clone()).or_default() += 1;
                let chosen = match decision {
                    Decision::Override(pick) => {
                        let addr = &pick.addr;
                        let view = w.balancer.view(&cluster).expect("a view for an override");
                        assert!(
                            view.position(&addr).is_some(),
                            "override {addr:?} unknown to the view of {cluster:?}"
                        );
                        assert!(view.endpoints.len() >= 2, "override with < 2 endpoints");
                        assert!(!addr.is_empty() && addr.len() <= MAX_ADDR_LEN, "{addr:?}");
                        Some(pick)
                    }
                    Decision::Fallback(_) => None,
                };
                w.in_flight.push((cluster, chosen));
            }
            Op::Complete {
                worker,
                request,
                actual,
                latency,
                outcome,
            } => {
                let w = &mut self.workers[usize::from(*worker)];
                if w.in_flight.is_empty() {
                    return;
                }
                let i = usize::from(*request) % w.in_flight.len();
                let (cluster, chosen) = w.in_flight.swap_remove(i);
                let chosen_addr = chosen.as_ref().map(|p| p.addr.to_string());
                let runner_up = chosen
                    .as_ref()
                    .and_then(|p| p.runner_up.as_deref().map(str::to_owned));
                let mut attempts = 1;
                let actual = match actual {
                    Actual::AsChosen => Some(chosen_addr.as_deref().unwrap_or(POOL[0])),
                    Actual::Pool(i) => Some(POOL[usize::from(*i) % POOL.len()]),
                    Actual::RunnerUp { attempts: n } => {
                        attempts = u64::from(*n);
                        Some(runner_up.as_deref().unwrap_or(POOL[0]))
                    }
                    Actual::None => None,
                };
                let latency = match latency {
                    Latency::Zero => 0,
                    Latency::Micros(us) => Nanos::from(*us) * 1_000,
                    Latency::Millis(ms) => Nanos::from(*ms) * MS,
                    Latency::Raw(ns) => *ns,
                    Latency::Max => Nanos::MAX,
                };
                let (outcome, whole) = match outcome {
                    Kind::Success => (Outcome::Success, true),
                    Kind::RequestError => (Outcome::RequestError, true),
                    Kind::EndpointFailure => (Outcome::EndpointFailure, true),
                    Kind::Abandoned { whole } => (Outcome::Abandoned, *whole),
                    Kind::NotSent => (Outcome::NotSent, true),
                };
                let started = now.saturating_sub(latency);
                let answered = outcome != Outcome::Abandoned;
                let effect = w.balancer.complete(
                    &self.store,
                    &mut w.metrics,
                    &mut FixedFacts {
                        attempts: actual.map(|_| attempts),
                        ..FixedFacts::of(outcome, actual)
                    },
                    &Completion {
                        cluster: &cluster,
                        pick: chosen.as_ref(),
                        grpc: true,
                        timing: Timing {
                            started,
                            request_done: whole.then_some(started),
                            first_response: answered.then_some(now),
                            finished: now,
                        },
                    },
                );
                assert_eq!(effect.outcome, outcome);
                // The endpoint learned is the one Envoy used if the balancer asked (it
                // does not for an unverified pick's success), else the one named.
                if let Some(learned) = effect.learned.as_deref() {
                    assert!(
                        Some(learned) == actual || Some(learned) == chosen_addr.as_deref(),
                        "learned {learned:?}, named {chosen_addr:?}, Envoy used {actual:?}"
                    );
                }
                self.written.insert(cluster);
            }
            Op::Tick { worker } => {
                let w = &mut self.workers[usize::from(*worker)];
                w.balancer.tick(&self.store, &mut w.metrics, now);
            }
            Op::Time(step) => {
                self.now = match step {
                    Step::ForwardMs(ms) => now.saturating_add(Nanos::from(*ms) * MS),
                    Step::BackwardMs(ms) => now.saturating_sub(Nanos::from(*ms) * MS),
                    Step::Jump(t) => *t,
                }
            }
            Op::Corrupt {
                cluster,
                slot,
                bytes,
            } => {
                let cluster = cluster.name();
                if !self.written.contains(&cluster) {
                    return;
                }
                let key = match slot {
                    Some(slot) => {
                        let slot = u16::from(*slot) % self.config.max_endpoints;
                        record_key(PREFIX, &cluster, slot)
                    }
                    None => index_key(PREFIX, &cluster),
                };
                let _ = self.store.set(&key, bytes, 0);
                self.corrupted.insert(cluster);
            }
        }
    }

    fn trace(&self, step: usize, op: &Op) {
        eprintln!("--- {step}: {op:?} now={}", self.now);
        for cluster in &self.written {
            if let Some((bytes, _)) = self.store.get(&index_key(PREFIX, cluster)) {
                eprintln!("  {cluster:?} index {:?}", ClusterIndex::decode(&bytes, u16::MAX));
            }
            for slot in 0..self.config.max_endpoints {
                if let Some((bytes, _)) = self.store.get(&record_key(PREFIX, cluster, slot)) {
                    let r = EndpointRecord::decode(&bytes);
                    eprintln!(
                        "  {cluster:?} slot {slot}: {:?}",
                        r.map(|r| (r.addr, r.pending))
                    );
                }
            }
            for (n, w) in self.workers.iter().enumerate() {
                if let Some(v) = w.balancer.view(cluster) {
                    let e: Vec<_> = v
                        .endpoints
                        .iter()
                        .map(|e| {
                            (
                                &e.record.addr,
                                &e.key,
                                e.record.pending,
                                e.unflushed_pending,
                            )
                        })
                        .collect();
                    eprintln!("  {cluster:?} worker {n}: {e:?}");
                }
                let flying: Vec<_> = w.in_flight.iter().filter(|(c, _)| c == cluster).collect();
                eprintln!("  {cluster:?} worker {n} in flight: {flying:?}");
            }
        }
    }

    fn check(&self) {
        let max = self.config.max_endpoints;
        for w in &self.workers {
            self.check_views(w, max);
        }
        let keys = self.store_keys();
        let mut per_cluster: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for key in &keys {
            let rest = key
                .strip_prefix(PREFIX)
                .and_then(|k| k.strip_prefix('|'))
                .unwrap_or_else(|| panic!("key {key:?} without the prefix"));
            if let Some(what) = rest.strip_prefix("membership|") {
                // The registry of balanced clusters (written when a worker first
                // balances one) and the fetcher's lease; nothing here fetches members.
                assert!(
                    what == "clusters" || what == "lease",
                    "membership key {key:?}"
                );
                continue;
            }
            let (cluster, last) = rest.rsplit_once('|').expect("cluster|slot");
            assert!(
                self.written.contains(cluster),
                "key {key:?} for a cluster that completed nothing"
            );
            if last != "index" {
                let slot: u16 = last.parse().expect("numeric slot");
                assert!(slot < max, "slot {slot} >= maxEndpoints {max}");
            }
            per_cluster.entry(cluster).or_default().push(last);
        }
        for (cluster, lasts) in &per_cluster {
            assert!(
                lasts.len() <= usize::from(max) + 1,
                "{cluster:?} holds {} keys",
                lasts.len()
            );
            if !self.corrupted.contains(*cluster) {
                self.check_shared_cluster(cluster);
            }
        }
    }

    fn check_views(&self, w: &Worker, max: u16) {
        for cluster in &self.written {
            let Some(view) = w.balancer.view(cluster) else {
                continue;
            };
            // Garbage in the index (a lost index, duplicate entries) can make a view
            // hold more than `maxEndpoints` endpoints or one address twice until the
            // next tick rebuilds it; only shared data's bounds are promised then.
            let clean = !self.corrupted.contains(cluster);
            if clean {
                assert!(view.endpoints.len() <= usize::from(max), "view too large");
            }
            let picks = self.picks.get(cluster).copied().unwrap_or(0);
            for (i, e) in view.endpoints.iter().enumerate() {
                if clean {
                    assert_eq!(view.position(&e.record.addr), Some(i), "lookup table");
                }
                assert!(
                    u64::from(e.pending()) <= picks,
                    "{cluster:?} {:?}: pending {} but only {picks} picks ever",
                    e.record.addr,
                    e.pending()
                );
            }
        }
    }

    fn store_keys(&self) -> Vec<String> {
        let keys: Vec<String> = self.store.keys.borrow().iter().cloned().collect();
        assert_eq!(keys.len(), self.store.inner.len(), "keys written vs held");
        keys
    }

    fn check_shared_cluster(&self, cluster: &str) {
        let index = match self.store.get(&index_key(PREFIX, cluster)) {
            Some((bytes, _)) => ClusterIndex::decode(&bytes, self.config.max_endpoints).expect("index decodes"),
            None => ClusterIndex::default(),
        };
        let max = self.config.max_endpoints;
        assert!(index.entries.len() <= usize::from(max), "index too large");
        let mut in_flight: BTreeMap<&str, u64> = BTreeMap::new();
        for w in &self.workers {
            for (c, chosen) in &w.in_flight {
                if c == cluster {
                    if let Some(pick) = chosen {
                        *in_flight.entry(&*pick.addr).or_default() += 1;
                    }
                }
            }
        }
        for (i, (slot, addr)) in index.entries.iter().enumerate() {
            assert!(*slot < max, "index slot {slot}");
            assert!(!addr.is_empty() && addr.len() <= MAX_ADDR_LEN, "{addr:?}");
            for (other_slot, other_addr) in &index.entries[..i] {
                assert!(slot != other_slot && addr != other_addr, "{index:?}");
            }
        }
        for slot in 0..max {
            let Some((bytes, _)) = self.store.get(&record_key(PREFIX, cluster, slot)) else {
                continue;
            };
            assert!(
                bytes.len() <= MAX_RECORD_LEN,
                "record of {} bytes",
                bytes.len()
            );
            let r = EndpointRecord::decode(&bytes).expect("record decodes");
            let est = r.latency.raw_ns();
            assert!(est.is_finite() && est >= 0.0, "estimate {est}");
            let f = r.failure.raw();
            assert!((0.0..=1.0).contains(&f), "failure score {f}");
            // Workers hold pick/completion deltas until they flush: count what the shared
            // record will say once they have, as far as it is still theirs to flush.
            let key = record_key(PREFIX, cluster, slot);
            let unflushed: i64 = self
                .workers
                .iter()
                .filter_map(|w| w.balancer.view(cluster))
                .filter_map(|v| v.position(&r.addr).map(|i| &v.endpoints[i]))
                .filter(|e| e.key == key)
                .map(|e| e.unflushed_pending)
                .sum();
            let projected = i64::from(r.pending) + unflushed;
            let flying = in_flight.get(r.addr.as_str()).copied().unwrap_or(0);
            assert!(
                projected <= flying as i64,
                "{cluster:?} {:?}: shared pending {} + unflushed {unflushed} but {flying} requests in flight",
                r.addr,
                r.pending
            );
        }
    }
}
