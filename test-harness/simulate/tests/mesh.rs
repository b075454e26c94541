//! The built filter in a small mesh (build it first with `make wasm`): it moves load off
//! half-speed endpoints that round robin keeps loading, and a run is deterministic.

#![allow(clippy::unwrap_used)]

use proxy_wasm_host::filter_host;
use simulate::mesh::{run, Measured, Mesh, MS, SEC};
use simulate::report::quantile_ms;
use simulate::scenarios::policy;
use simulate::station::StationSpec;

fn mesh() -> Mesh {
    let stations = (0..6)
        .map(|i| {
            let mut s = StationSpec::new(format!("10.3.0.{}:8080", i + 1), 2, 10 * MS);
            if i >= 4 {
                s.slowdown = 3.0;
            }
            s
        })
        .collect::<Vec<_>>();
    // 4 × 200 + 2 × 66.7 calls/s of capacity; 4 proxies × 120 calls/s is 51 % of it.
    Mesh {
        proxies: 4,
        workers: 2,
        stations,
        rate_per_proxy: 120.0,
        warm_up: 2 * SEC,
        measure: 4 * SEC,
        window: 100 * MS,
        seed: 5,
    }
}

fn measure(key: &str) -> Measured {
    let m = mesh();
    let host = filter_host().unwrap();
    let mut p = policy(key, &m, &host).unwrap();
    run(&m, p.as_mut()).unwrap()
}

fn slow_share(r: &Measured) -> f64 {
    let total: u64 = r.served.iter().sum();
    (r.served[4] + r.served[5]) as f64 / total as f64
}

#[test]
fn the_filter_moves_load_off_half_speed_endpoints_and_cuts_the_tail() {
    let rr = measure("round_robin");
    let ewma = measure("ewma");
    // Round robin gives the two slow endpoints a third of the calls (their capacity
    // share is 14 %): they saturate.
    assert!(
        (slow_share(&rr) - 1.0 / 3.0).abs() < 0.03,
        "{}",
        slow_share(&rr)
    );
    assert!(slow_share(&ewma) < 0.2, "{}", slow_share(&ewma));
    let (p99_rr, p99_ewma) = (
        quantile_ms(&rr.latencies, 0.99),
        quantile_ms(&ewma.latencies, 0.99),
    );
    assert!(
        p99_ewma < p99_rr / 2.0,
        "ewma {p99_ewma} ms, round robin {p99_rr} ms"
    );
    assert_eq!(ewma.unanswered, 0);
    let fuel = ewma.fuel.unwrap();
    assert!(
        fuel.per_request > 1000.0 && fuel.per_request < 50_000.0,
        "{fuel:?}"
    );
}

#[test]
fn a_run_is_deterministic() {
    let (a, b) = (measure("ewma"), measure("ewma"));
    assert_eq!(a.served, b.served);
    assert_eq!(a.latencies, b.latencies);
    let (a, b) = (measure("tower_peak_ewma"), measure("tower_peak_ewma"));
    assert_eq!(a.served, b.served);
}
