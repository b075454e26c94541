//! The four meshes `make simulate` runs, and the policies compared in each.

use proxy_wasm_host::WasmHost;

use crate::filter::Filter;
use crate::mesh::{Mesh, MS, SEC};
use crate::policy::{ContribPeakEwma, Jsq, LeastRequest, Outcome, Policy, RoundRobin};
use crate::station::StationSpec;
use crate::tower_p2c::TowerPeakEwma;

/// Policy keys, in the order they run and are shown.
pub const POLICIES: [&str; 6] = [
    "round_robin",
    "least_request",
    "jsq",
    "tower_peak_ewma",
    "contrib_peak_ewma",
    "ewma",
];

/// Every endpoint: 4 calls at once, 10 ms of work on average (exponential).
const SLOTS: u32 = 4;
const SERVICE: u64 = 10 * MS;

fn addr(i: usize) -> String {
    format!("10.2.{}.{}:8080", i / 250, i % 250 + 1)
}

fn stations(n: usize) -> Vec<StationSpec> {
    (0..n)
        .map(|i| StationSpec::new(addr(i), SLOTS, SERVICE))
        .collect()
}

/// A scenario: its key, one line on it, and its mesh.
pub struct Scenario {
    pub key: &'static str,
    pub description: &'static str,
    pub mesh: Mesh,
    /// The endpoint paused in each window, for `herd`: (endpoint, from, to).
    pub pauses: Vec<(usize, u64, u64)>,
}

/// Offered load per proxy for `utilisation` of the stations' throughput.
fn rate_for(stations: &[StationSpec], proxies: usize, utilisation: f64) -> f64 {
    let capacity: f64 = stations.iter().map(StationSpec::throughput).sum();
    capacity * utilisation / proxies as f64
}

/// `heterogeneous`: 100 proxies × 2 workers over 50 endpoints at 70 % utilisation,
/// every third endpoint at half speed.
pub fn heterogeneous() -> Scenario {
    let mut s = stations(50);
    for (i, st) in s.iter_mut().enumerate() {
        if i % 3 == 0 {
            st.slowdown = 2.0;
        }
    }
    let rate = rate_for(&s, 100, 0.7);
    Scenario {
        key: "heterogeneous",
        description: "100 proxies x 2 workers, 50 endpoints (17 at half speed), 70 % busy",
        mesh: Mesh {
            proxies: 100,
            workers: 2,
            stations: s,
            rate_per_proxy: rate,
            warm_up: 3 * SEC,
            measure: 10 * SEC,
            window: 100 * MS,
            seed: 11,
        },
        pauses: Vec::new(),
    }
}

/// `herd`: 100 proxies over 10 endpoints at 70 %; every 2 s another endpoint pauses
/// for 200 ms (a GC).
pub fn herd() -> Scenario {
    let mut s = stations(10);
    let warm_up = 3 * SEC;
    let mut pauses = Vec::new();
    for (i, st) in s.iter_mut().enumerate() {
        let from = warm_up + SEC + i as u64 * 2 * SEC;
        st.pauses = vec![(from, from + 200 * MS)];
        pauses.push((i, from, from + 200 * MS));
    }
    let rate = rate_for(&s, 100, 0.7);
    Scenario {
        key: "herd",
        description: "100 proxies x 2 workers, 10 endpoints, 70 % busy; each in turn pauses 200 ms, one every 2 s",
        mesh: Mesh {
            proxies: 100,
            workers: 2,
            stations: s,
            rate_per_proxy: rate,
            warm_up,
            measure: 21 * SEC,
            window: 100 * MS,
            seed: 12,
        },
        pauses,
    }
}

/// `low-rate`: 500 proxies × 2 workers at 2 calls/s each over 50 endpoints.
pub fn low_rate() -> Scenario {
    Scenario {
        key: "low-rate",
        description: "500 proxies x 2 workers at 2 calls/s each, 50 equal endpoints",
        mesh: Mesh {
            proxies: 500,
            workers: 2,
            stations: stations(50),
            rate_per_proxy: 2.0,
            warm_up: 5 * SEC,
            measure: 25 * SEC,
            window: SEC,
            seed: 13,
        },
        pauses: Vec::new(),
    }
}

/// `scale`: 200 proxies × 2 workers at 100 calls/s each over 1,000 endpoints.
pub fn scale() -> Scenario {
    Scenario {
        key: "scale",
        description: "200 proxies x 2 workers at 100 calls/s each, 1,000 equal endpoints",
        mesh: Mesh {
            proxies: 200,
            workers: 2,
            stations: stations(1000),
            rate_per_proxy: 100.0,
            warm_up: 2 * SEC,
            measure: 3 * SEC,
            window: SEC,
            seed: 14,
        },
        pauses: Vec::new(),
    }
}

pub fn all() -> Vec<Scenario> {
    vec![heterogeneous(), herd(), low_rate(), scale()]
}

/// A fresh policy for `mesh` by its key (`ewma` runs the filter `host` compiled).
pub fn policy(key: &str, mesh: &Mesh, host: &WasmHost) -> Outcome<Box<dyn Policy>> {
    let (p, w, e, seed) = (mesh.proxies, mesh.workers, mesh.stations.len(), mesh.seed);
    Ok(match key {
        "round_robin" => Box::new(RoundRobin::new(p, w, e, seed)),
        "least_request" => Box::new(LeastRequest::new(p, e, seed)),
        "jsq" => Box::new(Jsq::new(seed)),
        "tower_peak_ewma" => Box::new(TowerPeakEwma::new(p, e, seed)?),
        "contrib_peak_ewma" => Box::new(ContribPeakEwma::new(p, e, seed)),
        "ewma" => Box::new(Filter::new(host, p, w, &mesh.addrs(), mesh.warm_up, seed)?),
        other => return Err(format!("no policy {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meshes_offer_what_their_descriptions_say() {
        let h = heterogeneous();
        assert_eq!(
            h.mesh.stations.iter().filter(|s| s.slowdown == 2.0).count(),
            17
        );
        assert!((h.mesh.utilisation() - 0.7).abs() < 1e-9);
        // 33 × 400 + 17 × 200 calls/s.
        assert!((h.mesh.rate_per_proxy * 100.0 - 0.7 * 16_600.0).abs() < 1e-6);
        assert!((herd().mesh.utilisation() - 0.7).abs() < 1e-9);
        assert_eq!(herd().pauses.len(), 10);
        assert!(herd()
            .pauses
            .iter()
            .all(|&(_, from, to)| to - from == 200 * MS && to < herd().mesh.end()));
        assert_eq!(low_rate().mesh.proxies * 2, 1000);
        assert_eq!(scale().mesh.stations.len(), 1000);
    }
}
