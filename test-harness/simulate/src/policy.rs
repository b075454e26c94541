//! How a proxy picks an endpoint: the interface every simulated policy implements, and
//! the reference policies that need nothing but arithmetic — Envoy's `round_robin` and
//! `least_request`, `jsq` (the physical best) and a model of Envoy's contrib `peak_ewma`.
//! The filter itself ([`crate::filter`]) and tower's balancer ([`crate::tower_p2c`]) are
//! the real code.

use ewma_balancer::rng::SplitMix64;

use crate::station::Station;
use crate::Nanos;

/// Where a call enters the mesh: a proxy (one Envoy, or one Linkerd proxy) and, for
/// Envoy, one of its worker threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub proxy: usize,
    pub worker: usize,
}

pub type Outcome<T> = Result<T, String>;

/// A load-balancing policy over the whole mesh (every proxy's state).
pub trait Policy {
    /// The key in `summary.json` and the tables.
    fn key(&self) -> &'static str;
    /// Runs what falls due up to `now` (timers, ticks, aggregation).
    fn advance(&mut self, _now: Nanos) -> Outcome<()> {
        Ok(())
    }
    /// The endpoint for `call`, arriving at `origin` at `now`. `stations` is the whole
    /// world: only `jsq` may look at it.
    fn pick(
        &mut self,
        call: u64,
        origin: Origin,
        now: Nanos,
        stations: &[Station],
    ) -> Outcome<usize>;
    /// `call`'s response arrived at `now` (unary: its first byte is its end).
    fn complete(&mut self, call: u64, origin: Origin, endpoint: usize, now: Nanos) -> Outcome<()>;
    /// Wasm instructions per call and per tick, for the policies that run the filter.
    fn fuel(&self) -> Option<FuelUse> {
        None
    }
}

/// What the filter's VMs spent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FuelUse {
    pub per_request: f64,
    pub ticks_per_request: f64,
}

/// Envoy's round robin: each worker walks the endpoints from a random start.
pub struct RoundRobin {
    next: Vec<usize>,
    workers: usize,
    endpoints: usize,
}

impl RoundRobin {
    pub fn new(proxies: usize, workers: usize, endpoints: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        Self {
            next: (0..proxies * workers)
                .map(|_| rng.below(endpoints))
                .collect(),
            workers,
            endpoints,
        }
    }
}

impl Policy for RoundRobin {
    fn key(&self) -> &'static str {
        "round_robin"
    }

    fn pick(&mut self, _: u64, o: Origin, _: Nanos, _: &[Station]) -> Outcome<usize> {
        let slot = &mut self.next[o.proxy * self.workers + o.worker];
        let pick = *slot % self.endpoints;
        *slot = (pick + 1) % self.endpoints;
        Ok(pick)
    }

    fn complete(&mut self, _: u64, _: Origin, _: usize, _: Nanos) -> Outcome<()> {
        Ok(())
    }
}

/// Envoy's least request with its default `choice_count` 2: two random hosts (drawn
/// with replacement, as Envoy draws them), the one with fewer active requests wins, the
/// first on a tie. Active requests are per host and so per Envoy, across its workers.
pub struct LeastRequest {
    active: Vec<Vec<u32>>,
    rng: SplitMix64,
}

impl LeastRequest {
    pub fn new(proxies: usize, endpoints: usize, seed: u64) -> Self {
        Self {
            active: vec![vec![0; endpoints]; proxies],
            rng: SplitMix64::new(seed),
        }
    }
}

impl Policy for LeastRequest {
    fn key(&self) -> &'static str {
        "least_request"
    }

    fn pick(&mut self, _: u64, o: Origin, _: Nanos, _: &[Station]) -> Outcome<usize> {
        let active = &mut self.active[o.proxy];
        let a = self.rng.below(active.len());
        let b = self.rng.below(active.len());
        let pick = if active[b] < active[a] { b } else { a };
        active[pick] += 1;
        Ok(pick)
    }

    fn complete(&mut self, _: u64, o: Origin, endpoint: usize, _: Nanos) -> Outcome<()> {
        let n = &mut self.active[o.proxy][endpoint];
        *n = n.saturating_sub(1);
        Ok(())
    }
}

/// Join the shortest queue with global knowledge: every call goes where, counting the
/// calls already waiting and in service everywhere, its expected latency is lowest
/// (random among equals). No proxy can do this; it is the physical best a greedy router
/// achieves.
pub struct Jsq {
    rng: SplitMix64,
}

impl Jsq {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix64::new(seed),
        }
    }
}

impl Policy for Jsq {
    fn key(&self) -> &'static str {
        "jsq"
    }

    fn pick(&mut self, _: u64, _: Origin, _: Nanos, stations: &[Station]) -> Outcome<usize> {
        let (mut best, mut best_cost, mut ties) = (0, f64::INFINITY, 0u32);
        for (i, s) in stations.iter().enumerate() {
            let cost = s.expected_latency();
            if cost < best_cost {
                (best, best_cost, ties) = (i, cost, 1);
            } else if cost == best_cost {
                // Reservoir sampling over the ties.
                ties += 1;
                if self.rng.below(ties as usize) == 0 {
                    best = i;
                }
            }
        }
        Ok(best)
    }

    fn complete(&mut self, _: u64, _: Origin, _: usize, _: Nanos) -> Outcome<()> {
        Ok(())
    }
}

/// A model of Envoy's contrib `peak_ewma` (Envoy ≥ 1.37, Istio ≥ 1.29 sidecars) from
/// its documentation and source: each sample is the time to first byte truncated to
/// whole milliseconds, and samples ≤ 0 are dropped; workers buffer samples and the main
/// thread folds them into a plain time-weighted EWMA (no peak step; decay 10 s; a
/// host's first sample replaces the 10 ms default) every 100 ms; cost
/// `rtt × (active + 1)` with the Envoy-wide active requests; P2C over two distinct
/// random hosts, the cheaper wins, a tie at random; no failure handling.
pub struct ContribPeakEwma {
    proxies: Vec<ContribProxy>,
    sent: std::collections::HashMap<u64, Nanos>,
    next_aggregation: Nanos,
    rng: SplitMix64,
}

struct ContribProxy {
    rtt_ms: Vec<f64>,
    sampled_at: Vec<Option<Nanos>>,
    active: Vec<u32>,
    /// Samples the workers recorded since the last aggregation: (endpoint, ms, at).
    buffer: Vec<(usize, f64, Nanos)>,
}

impl ContribPeakEwma {
    pub const DEFAULT_RTT_MS: f64 = 10.0;
    pub const DECAY: Nanos = 10_000_000_000;
    pub const AGGREGATION: Nanos = 100_000_000;

    pub fn new(proxies: usize, endpoints: usize, seed: u64) -> Self {
        Self {
            proxies: (0..proxies)
                .map(|_| ContribProxy {
                    rtt_ms: vec![Self::DEFAULT_RTT_MS; endpoints],
                    sampled_at: vec![None; endpoints],
                    active: vec![0; endpoints],
                    buffer: Vec::new(),
                })
                .collect(),
            sent: std::collections::HashMap::new(),
            next_aggregation: Self::AGGREGATION,
            rng: SplitMix64::new(seed),
        }
    }

    /// The cost P2C compares for `endpoint` in `proxy`.
    pub fn cost(&self, proxy: usize, endpoint: usize) -> f64 {
        let p = &self.proxies[proxy];
        p.rtt_ms[endpoint] * f64::from(p.active[endpoint] + 1)
    }

    fn aggregate(&mut self) {
        for p in &mut self.proxies {
            for (e, ms, at) in p.buffer.drain(..) {
                p.rtt_ms[e] = match p.sampled_at[e] {
                    None => ms,
                    Some(last) => {
                        let w = (-(at.saturating_sub(last) as f64) / Self::DECAY as f64).exp();
                        p.rtt_ms[e] * w + ms * (1.0 - w)
                    }
                };
                p.sampled_at[e] = Some(at);
            }
        }
    }
}

impl Policy for ContribPeakEwma {
    fn key(&self) -> &'static str {
        "contrib_peak_ewma"
    }

    fn advance(&mut self, now: Nanos) -> Outcome<()> {
        while self.next_aggregation <= now {
            self.aggregate();
            self.next_aggregation += Self::AGGREGATION;
        }
        Ok(())
    }

    fn pick(&mut self, call: u64, o: Origin, now: Nanos, _: &[Station]) -> Outcome<usize> {
        let n = self.proxies[o.proxy].active.len();
        let a = self.rng.below(n);
        let b = (a + 1 + self.rng.below(n.saturating_sub(1).max(1))) % n.max(1);
        let (ca, cb) = (self.cost(o.proxy, a), self.cost(o.proxy, b));
        let pick = if ca < cb || (ca == cb && self.rng.below(2) == 0) {
            a
        } else {
            b
        };
        self.proxies[o.proxy].active[pick] += 1;
        self.sent.insert(call, now);
        Ok(pick)
    }

    fn complete(&mut self, call: u64, o: Origin, endpoint: usize, now: Nanos) -> Outcome<()> {
        let p = &mut self.proxies[o.proxy];
        p.active[endpoint] = p.active[endpoint].saturating_sub(1);
        if let Some(sent) = self.sent.remove(&call) {
            let ms = (now.saturating_sub(sent) / 1_000_000) as f64;
            if ms > 0.0 {
                p.buffer.push((endpoint, ms, now));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::station::StationSpec;

    use crate::mesh::MS;
    const O: Origin = Origin {
        proxy: 0,
        worker: 0,
    };

    fn stations(n: usize) -> Vec<Station> {
        (0..n)
            .map(|i| Station::new(StationSpec::new(format!("10.0.0.{i}:80"), 1, 10 * MS), 1))
            .collect()
    }

    #[test]
    fn round_robin_walks_each_worker_from_its_own_start() {
        let mut rr = RoundRobin::new(1, 2, 3, 5);
        let w0: Vec<usize> = (0..4).map(|i| rr.pick(i, O, 0, &[]).unwrap()).collect();
        assert_eq!(w0[1], (w0[0] + 1) % 3);
        assert_eq!(w0[3], w0[0]);
        let w1 = Origin {
            proxy: 0,
            worker: 1,
        };
        let first = rr.pick(9, w1, 0, &[]).unwrap();
        assert_eq!(rr.pick(10, w1, 0, &[]).unwrap(), (first + 1) % 3);
    }

    #[test]
    fn least_request_avoids_the_endpoint_with_calls_outstanding() {
        let mut lr = LeastRequest::new(1, 2, 3);
        // Endpoint 0 holds many calls: only a draw of (0, 0), one in four, picks it.
        lr.active[0][0] = 50;
        let mut to_zero = 0;
        for i in 0..400 {
            let pick = lr.pick(i, O, 0, &[]).unwrap();
            to_zero += usize::from(pick == 0);
            lr.complete(i, O, pick, 0).unwrap();
        }
        assert!((70..130).contains(&to_zero), "{to_zero}");
        assert_eq!(lr.active[0], [50, 0]);
    }

    #[test]
    fn jsq_joins_the_station_with_the_lowest_expected_latency() {
        let mut s = stations(3);
        s[0].arrive(1, 0);
        s[2].arrive(2, 0);
        s[2].arrive(3, 0);
        let mut jsq = Jsq::new(1);
        // 0: one in service (10 ms more for a newcomer), 1: empty, 2: one waiting.
        assert_eq!(jsq.pick(4, O, 0, &s).unwrap(), 1);
        s[1].arrive(4, 0);
        s[1].arrive(5, 0);
        assert_eq!(jsq.pick(6, O, 0, &s).unwrap(), 0);
    }

    #[test]
    fn contrib_samples_are_whole_milliseconds_folded_every_100_ms() {
        let mut c = ContribPeakEwma::new(1, 2, 1);
        // Both endpoints start at the 10 ms default.
        assert_eq!(c.cost(0, 0), 10.0);
        let e = c.pick(1, O, 0, &[]).unwrap();
        assert_eq!(c.cost(0, e), 20.0);
        // 40.9 ms: a sample of 40 ms, invisible until the next aggregation.
        c.complete(1, O, e, 40_900_000).unwrap();
        assert_eq!(c.cost(0, e), 10.0);
        c.advance(100 * MS).unwrap();
        assert_eq!(c.cost(0, e), 40.0);
        // A sub-millisecond answer is no sample at all.
        let e2 = c.pick(2, O, 200 * MS, &[]).unwrap();
        c.complete(2, O, e2, 200 * MS + 900_000).unwrap();
        c.advance(300 * MS).unwrap();
        assert_eq!(c.proxies[0].sampled_at[e2].is_some(), e2 == e);
    }

    #[test]
    fn contrib_ewma_is_plain_with_a_ten_second_decay() {
        let mut c = ContribPeakEwma::new(1, 2, 1);
        c.proxies[0].buffer = vec![(0, 10.0, 0), (0, 110.0, 10_000 * MS)];
        c.aggregate();
        // One decay time later the new sample has weight 1 - e^-1: no peak step.
        let expected = 10.0 * (-1f64).exp() + 110.0 * (1.0 - (-1f64).exp());
        assert!((c.cost(0, 0) - expected).abs() < 1e-9, "{}", c.cost(0, 0));
        assert!((c.cost(0, 0) - 73.212).abs() < 1e-3);
    }
}
