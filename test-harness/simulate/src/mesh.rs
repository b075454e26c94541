//! A mesh run: `proxies` proxies send open-loop (Poisson) calls through one policy to
//! shared stations; every event happens at a simulated time and nothing sleeps. The run
//! records each measured call's latency, each endpoint's calls, and per window each
//! endpoint's calls and mean queue (calls waiting or in service).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use ewma_balancer::rng::SplitMix64;

use crate::policy::{FuelUse, Origin, Outcome, Policy};
use crate::station::{Station, StationSpec};
use crate::Nanos;

pub const MS: Nanos = 1_000_000;
pub const SEC: Nanos = 1_000 * MS;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Mesh {
    pub proxies: usize,
    /// Envoy workers per proxy (VMs sharing one shared-data store).
    pub workers: usize,
    pub stations: Vec<StationSpec>,
    /// Calls per second each proxy sends, Poisson arrivals.
    pub rate_per_proxy: f64,
    /// Calls sent before `warm_up` are not measured.
    pub warm_up: Nanos,
    pub measure: Nanos,
    /// Length of the windows of the time series.
    pub window: Nanos,
    pub seed: u64,
}

impl Mesh {
    pub fn end(&self) -> Nanos {
        self.warm_up + self.measure
    }

    pub fn addrs(&self) -> Vec<String> {
        self.stations.iter().map(|s| s.addr.clone()).collect()
    }

    /// Offered load over the stations' total throughput.
    pub fn utilisation(&self) -> f64 {
        let capacity: f64 = self.stations.iter().map(StationSpec::throughput).sum();
        self.rate_per_proxy * self.proxies as f64 / capacity
    }

    /// Each station's share of the total throughput.
    pub fn capacity_shares(&self) -> Vec<f64> {
        let total: f64 = self.stations.iter().map(StationSpec::throughput).sum();
        self.stations
            .iter()
            .map(|s| s.throughput() / total)
            .collect()
    }
}

/// What a run measured.
pub struct Measured {
    /// Latency of each call sent in the measured period, sorted.
    pub latencies: Vec<Nanos>,
    /// Calls each endpoint got in the measured period.
    pub served: Vec<u64>,
    /// Per window (from 0), calls each endpoint got.
    pub window_calls: Vec<Vec<u32>>,
    /// Per window, each endpoint's mean number of calls waiting or in service.
    pub window_queue: Vec<Vec<f64>>,
    pub fuel: Option<FuelUse>,
    /// Calls still unanswered when the run stopped (a queue that never drained).
    pub unanswered: u64,
}

#[derive(Clone, Copy)]
struct Call {
    origin: Origin,
    sent: Nanos,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A call answered by endpoint `.0`: call `.1`.
    Done(usize, u64),
    Arrival(usize),
}

/// Integrates each endpoint's queue length over the windows.
struct Occupancy {
    window: Nanos,
    last: Vec<Nanos>,
    area: Vec<Vec<f64>>,
}

impl Occupancy {
    fn record(&mut self, endpoint: usize, n: usize, until: Nanos) {
        let endpoints = self.last.len();
        let mut t = self.last[endpoint];
        while t < until {
            let w = (t / self.window) as usize;
            let end = ((w as Nanos + 1) * self.window).min(until);
            if self.area.len() <= w {
                self.area.resize(w + 1, vec![0.0; endpoints]);
            }
            self.area[w][endpoint] += n as f64 * (end - t) as f64;
            t = end;
        }
        self.last[endpoint] = until;
    }
}

/// How long after the last arrival a run waits for the queues to drain.
const DRAIN: Nanos = 60 * SEC;

/// Runs `mesh` under `policy`.
pub fn run(mesh: &Mesh, policy: &mut dyn Policy) -> Outcome<Measured> {
    let mut rng = SplitMix64::new(mesh.seed);
    let mut stations: Vec<Station> = mesh
        .stations
        .iter()
        .enumerate()
        .map(|(i, s)| Station::new(s.clone(), mesh.seed ^ (i as u64 + 1) << 20))
        .collect();
    let n = stations.len();
    let mut events: BinaryHeap<Reverse<(Nanos, Event)>> = BinaryHeap::new();
    let mean_gap = 1e9 / mesh.rate_per_proxy;
    let gap = |rng: &mut SplitMix64| (-(1.0 - rng.unit()).ln() * mean_gap).max(1.0) as Nanos;
    for p in 0..mesh.proxies {
        events.push(Reverse((gap(&mut rng), Event::Arrival(p))));
    }
    let end = mesh.end();
    let mut calls: Vec<Call> = Vec::new();
    let mut answered = 0u64;
    let mut latencies = Vec::new();
    let mut served = vec![0u64; n];
    let mut window_calls: Vec<Vec<u32>> = Vec::new();
    let mut occupancy = Occupancy {
        window: mesh.window,
        last: vec![0; n],
        area: Vec::new(),
    };
    while let Some(Reverse((t, event))) = events.pop() {
        if t > end + DRAIN {
            break;
        }
        policy.advance(t)?;
        match event {
            Event::Arrival(proxy) => {
                if t < end {
                    events.push(Reverse((t + gap(&mut rng), Event::Arrival(proxy))));
                }
                let origin = Origin {
                    proxy,
                    worker: rng.below(mesh.workers),
                };
                let id = calls.len() as u64;
                let endpoint = policy.pick(id, origin, t, &stations)?;
                if endpoint >= n {
                    return Err(format!(
                        "{} picked endpoint {endpoint} of {n}",
                        policy.key()
                    ));
                }
                calls.push(Call { origin, sent: t });
                let w = (t / mesh.window) as usize;
                if window_calls.len() <= w {
                    window_calls.resize(w + 1, vec![0; n]);
                }
                window_calls[w][endpoint] += 1;
                if t >= mesh.warm_up && t < end {
                    served[endpoint] += 1;
                }
                let station = &mut stations[endpoint];
                occupancy.record(endpoint, station.in_system(), t);
                if let Some(done) = station.arrive(id, t) {
                    events.push(Reverse((done, Event::Done(endpoint, id))));
                }
            }
            Event::Done(endpoint, id) => {
                let call = calls[id as usize];
                answered += 1;
                policy.complete(id, call.origin, endpoint, t)?;
                if call.sent >= mesh.warm_up && call.sent < end {
                    latencies.push(t - call.sent);
                }
                let station = &mut stations[endpoint];
                occupancy.record(endpoint, station.in_system(), t);
                if let Some((next, done)) = station.depart(t) {
                    events.push(Reverse((done, Event::Done(endpoint, next))));
                }
            }
        }
    }
    for (e, s) in stations.iter().enumerate() {
        occupancy.record(e, s.in_system(), end);
    }
    latencies.sort_unstable();
    let window = mesh.window as f64;
    Ok(Measured {
        latencies,
        served,
        window_calls,
        window_queue: occupancy
            .area
            .into_iter()
            .map(|w| w.into_iter().map(|a| a / window).collect())
            .collect(),
        fuel: policy.fuel(),
        unanswered: calls.len() as u64 - answered,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::policy::{Jsq, RoundRobin};

    fn mesh(stations: Vec<StationSpec>, rate: f64) -> Mesh {
        Mesh {
            proxies: 4,
            workers: 2,
            stations,
            rate_per_proxy: rate,
            warm_up: SEC,
            measure: 10 * SEC,
            window: 100 * MS,
            seed: 1,
        }
    }

    fn equal(n: usize) -> Vec<StationSpec> {
        (0..n)
            .map(|i| StationSpec::new(format!("10.0.0.{i}:80"), 1, 10 * MS))
            .collect()
    }

    #[test]
    fn round_robin_at_low_load_sees_the_bare_service_time() {
        // 4 proxies × 5 calls/s over 4 stations of 100 calls/s: 5 % busy.
        let m = mesh(equal(4), 5.0);
        assert!((m.utilisation() - 0.05).abs() < 1e-12);
        let r = run(&m, &mut RoundRobin::new(4, 2, 4, 1)).unwrap();
        let median = r.latencies[r.latencies.len() / 2] as f64 / MS as f64;
        // The median of an exponential of mean 10 ms is 6.9 ms; little queueing at 5 %.
        assert!((6.0..8.5).contains(&median), "{median}");
        assert_eq!(r.unanswered, 0);
        assert_eq!(r.served.iter().sum::<u64>(), r.latencies.len() as u64);
    }

    #[test]
    fn queues_are_measured_per_window() {
        // 90 % busy: Little's law, mean queue = rate × mean latency.
        let m = mesh(equal(2), 45.0);
        let r = run(&m, &mut Jsq::new(1)).unwrap();
        let windows = &r.window_queue[10..110];
        let mean_queue: f64 =
            windows.iter().map(|w| w[0] + w[1]).sum::<f64>() / windows.len() as f64;
        let mean_latency =
            r.latencies.iter().sum::<Nanos>() as f64 / r.latencies.len() as f64 / 1e9;
        let little = 180.0 * mean_latency;
        assert!(
            (mean_queue - little).abs() / little < 0.1,
            "{mean_queue} vs {little}"
        );
        let calls: u32 = r.window_calls[10..110].iter().flatten().sum();
        assert!((calls as f64 - 1800.0).abs() < 150.0, "{calls}");
    }
}
