//! Membership in the wasmtime host: the built filter reading the members and their
//! health from a simulated admin interface (`/clusters?format=json` answered by the
//! scenario), and, without one, learning them from traffic. Deterministic (fake clock);
//! build the module first with `make wasm`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use proxy_wasm_host::scenario::{Endpoint, Nanos, Run, Scenario};
use proxy_wasm_host::{filter_host, WasmHost};

const MS: Nanos = 1_000_000;
const SEC: Nanos = 1_000 * MS;
const ADMIN: &str = "prometheus_stats";

fn host() -> WasmHost {
    filter_host().unwrap()
}

fn addr(i: usize) -> String {
    format!("10.1.{}.{}:8080", i / 250, i % 250 + 1)
}

/// `n` equal endpoints of 5 ms, `rate` calls/s over 2 workers for `seconds`.
fn scenario(endpoints: Vec<Endpoint>, rate: u64, seconds: u64, admin: bool) -> Scenario {
    let mut s = Scenario::new(endpoints);
    s.workers = 2;
    s.interval = Duration::from_nanos(SEC / rate);
    s.requests = usize::try_from(rate * seconds).unwrap();
    s.admin_cluster = admin.then(|| ADMIN.to_owned());
    s
}

fn equal(n: usize) -> Vec<Endpoint> {
    (0..n)
        .map(|i| Endpoint::new(addr(i), Duration::from_millis(5)))
        .collect()
}

/// When each endpoint served its first call (scenario ns).
fn first_served(run: &Run) -> BTreeMap<String, Nanos> {
    let mut first = BTreeMap::new();
    for r in &run.requests {
        if let Some(e) = &r.endpoint {
            first.entry(e.clone()).or_insert(r.at);
        }
    }
    first
}

fn logs_with(run: &Run, needle: &str) -> usize {
    run.vms
        .iter()
        .flat_map(|vm| vm.logs())
        .filter(|l| l.message.contains(needle))
        .count()
}

/// Admin membership at 50 calls/s over 50 endpoints: every endpoint served within 2 s
/// (learned membership used to reach 16 of 50 in 30 s).
#[test]
fn with_admin_membership_every_endpoint_is_served_within_two_seconds() {
    let run = scenario(equal(50), 50, 10, true).run(&host()).unwrap();
    let first = first_served(&run);
    let last = first.values().max().copied().unwrap_or(Nanos::MAX);
    println!(
        "admin: {} of 50 served, the last first at {} ms",
        first.len(),
        last / MS
    );
    assert_eq!(first.len(), 50, "served: {first:?}");
    assert!(
        last <= 2 * SEC,
        "the last endpoint was first served at {} ms",
        last / MS
    );
    assert!(
        run.admin_calls >= 8,
        "{} admin calls in 10 s",
        run.admin_calls
    );
    assert_eq!(
        logs_with(&run, "membership from Envoy's admin interface"),
        1,
        "one line, by the lease holder"
    );
}

/// An endpoint EDS marks UNHEALTHY at 5 s while it keeps answering is named no more
/// once the next refresh (1 s) has been read; one that leaves the cluster likewise.
#[test]
fn an_endpoint_marked_unhealthy_or_gone_is_named_zero_times_after_the_next_refresh() {
    let mut endpoints = equal(4);
    endpoints[3] = Endpoint::new(addr(3), Duration::from_millis(5)).health_fn(|t| {
        if t >= 5 * SEC {
            "UNHEALTHY"
        } else {
            "HEALTHY"
        }
    });
    endpoints[2] =
        Endpoint::new(addr(2), Duration::from_millis(5)).leaves_at(Duration::from_secs(5));
    let run = scenario(endpoints, 200, 10, true).run(&host()).unwrap();
    let named_after = |who: &str| {
        run.requests
            .iter()
            .filter(|r| r.at >= 6_500 * MS && r.chosen.as_deref() == Some(who))
            .count()
    };
    let (unhealthy, gone) = (named_after(&addr(3)), named_after(&addr(2)));
    println!("named after the refresh: unhealthy {unhealthy}, gone {gone}");
    assert_eq!(unhealthy, 0);
    assert_eq!(gone, 0);
    let before = run
        .requests
        .iter()
        .filter(|r| r.at < 5 * SEC && r.endpoint.as_deref() == Some(addr(3).as_str()))
        .count();
    assert!(before > 100, "it served before: {before}");
}

/// Outlier ejection and a failing active health check, as the admin interface reports
/// them, make an endpoint unusable too.
#[test]
fn ejected_or_failing_health_checks_make_an_endpoint_unusable() {
    for flag in ["failed_outlier_check", "failed_active_health_check"] {
        let mut endpoints = equal(3);
        endpoints[0] = Endpoint::new(addr(0), Duration::from_millis(5)).health_fn(move |t| {
            if t >= 3 * SEC {
                flag
            } else {
                "HEALTHY"
            }
        });
        let run = scenario(endpoints, 200, 6, true).run(&host()).unwrap();
        let named = run
            .requests
            .iter()
            .filter(|r| r.at >= 4_500 * MS && r.chosen.as_deref() == Some(addr(0).as_str()))
            .count();
        assert_eq!(named, 0, "{flag}");
    }
}

/// A new member is served within 2 s of joining and has half its fair share within 10 s.
#[test]
fn a_joining_endpoint_is_served_at_once_and_reaches_half_its_share_within_ten_seconds() {
    let mut endpoints = equal(10);
    endpoints
        .push(Endpoint::new(addr(10), Duration::from_millis(5)).joins_at(Duration::from_secs(10)));
    let run = scenario(endpoints, 50, 25, true).run(&host()).unwrap();
    let first = first_served(&run)
        .get(&addr(10))
        .copied()
        .unwrap_or(Nanos::MAX);
    assert!(first <= 12 * SEC, "first served at {} ms", first / MS);
    let share = |from: Nanos, to: Nanos| {
        let window: Vec<_> = run
            .requests
            .iter()
            .filter(|r| r.at >= from && r.at < to)
            .collect();
        window
            .iter()
            .filter(|r| r.endpoint.as_deref() == Some(addr(10).as_str()))
            .count() as f64
            / window.len().max(1) as f64
    };
    let (fair, got) = (1.0 / 11.0, share(18 * SEC, 20 * SEC));
    println!(
        "joined at 10 s: first call at {} ms, share in 18-20 s {:.1} % (fair {:.1} %)",
        first / MS,
        got * 100.0,
        fair * 100.0
    );
    assert!(got >= 0.5 * fair, "share {got}");
}

/// Without an admin cluster (the simulated Envoy has none), one warning and learned
/// membership: at 5 calls/s over 50 endpoints, discovery bursts serve all within 60 s.
#[test]
fn learned_membership_discovers_fifty_endpoints_at_five_calls_per_second_within_a_minute() {
    let run = scenario(equal(50), 5, 90, false).run(&host()).unwrap();
    let first = first_served(&run);
    let last = first.values().max().copied().unwrap_or(Nanos::MAX);
    println!(
        "learned: {} of 50 served, the last first at {} ms",
        first.len(),
        last / MS
    );
    assert_eq!(
        logs_with(&run, "cannot be reached"),
        1,
        "one warning per process"
    );
    assert_eq!(first.len(), 50);
    assert!(
        last <= 60 * SEC,
        "the last endpoint was first served at {} s",
        last / SEC
    );
}
