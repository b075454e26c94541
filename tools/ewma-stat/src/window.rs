//! What each endpoint did between two scrapes: rates and success from counter
//! deltas, percentiles from histogram bucket deltas, gauges as of the second.

use std::time::Duration;

use serde::Serialize;

use super::{
    histogram::Buckets,
    snapshot::{EndpointSeries, Snapshot},
};

/// One row of `ewma-stat`; the object shape of `-o json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointStat {
    pub cluster: String,
    pub endpoint: String,
    /// Share of the window's requests that succeeded (0..=1); `None` without requests.
    pub success_rate: Option<f64>,
    /// Completed requests per second over the window.
    pub rps: f64,
    /// Latency percentiles of the window, ms; `None` without samples.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// The filter's Peak-EWMA latency estimate at the end of the window, ms.
    pub ewma_ms: Option<f64>,
    /// Requests in flight at the end of the window.
    pub pending: Option<u64>,
    /// This endpoint's share of its cluster's requests in the window (0..=1);
    /// `None` if the cluster had none.
    pub share: Option<f64>,
    /// `ok`; `unusable` when Envoy's balancers would not use it (unhealthy, ejected,
    /// draining: the filter names it no more); `unsampled` when it never completed a
    /// request (a member the admin interface reported, not tried yet).
    pub state: &'static str,
}

/// The rows for every endpoint of `after`, sorted by cluster and endpoint, over
/// `elapsed` (the time between the two scrapes).
///
/// An endpoint that served nothing in the window and whose gauges the filter
/// zeroed has been forgotten by the filter (it left the cluster or expired);
/// Envoy keeps its series forever, so it is left out.
pub fn endpoint_stats(before: &Snapshot, after: &Snapshot, elapsed: Duration) -> Vec<EndpointStat> {
    let seconds = elapsed.as_secs_f64();
    let mut rows: Vec<(EndpointStat, f64)> = Vec::new();
    for (key, now) in &after.endpoints {
        let Some(requests_now) = now.requests else {
            continue;
        };
        let then = before.endpoints.get(key).cloned().unwrap_or_default();
        let requests = counter_delta(then.requests, requests_now);
        let failures = now
            .failures
            .map_or(0.0, |failures| counter_delta(then.failures, failures));
        if requests == 0.0 && forgotten(now) {
            continue;
        }
        let latency = now
            .latency_us
            .as_ref()
            .map(|buckets| buckets.since(then.latency_us.as_ref().unwrap_or(&Buckets::default())));
        let percentile_ms = |q| latency.as_ref()?.quantile(q).map(|us| us / 1_000.0);
        let stat = EndpointStat {
            cluster: key.cluster.clone(),
            endpoint: key.endpoint.clone(),
            success_rate: (requests > 0.0).then(|| (1.0 - failures / requests).clamp(0.0, 1.0)),
            rps: if seconds > 0.0 {
                requests / seconds
            } else {
                0.0
            },
            latency_p50_ms: percentile_ms(0.50),
            latency_p95_ms: percentile_ms(0.95),
            latency_p99_ms: percentile_ms(0.99),
            ewma_ms: now.ewma_us.map(|us| us / 1_000.0),
            pending: now.pending.map(|p| p.max(0.0).round() as u64),
            share: None,
            state: if now.usable == Some(0.0) {
                "unusable"
            } else if requests_now == 0.0 {
                "unsampled"
            } else {
                "ok"
            },
        };
        rows.push((stat, requests));
    }
    let mut stats: Vec<EndpointStat> = rows
        .iter()
        .map(|(stat, requests)| {
            let cluster_total: f64 = rows
                .iter()
                .filter(|(other, _)| other.cluster == stat.cluster)
                .map(|(_, r)| r)
                .sum();
            EndpointStat {
                share: (cluster_total > 0.0).then(|| requests / cluster_total),
                ..stat.clone()
            }
        })
        .collect();
    stats.sort_by(|a, b| {
        (a.cluster.as_str(), endpoint_order(&a.endpoint))
            .cmp(&(b.cluster.as_str(), endpoint_order(&b.endpoint)))
    });
    stats
}

/// Increase of a counter; a counter that went down was reset (Envoy restarted),
/// so all of its current value is new.
fn counter_delta(then: Option<f64>, now: f64) -> f64 {
    match then {
        Some(then) if now >= then => now - then,
        _ => now,
    }
}

fn forgotten(series: &EndpointSeries) -> bool {
    series.ewma_us == Some(0.0)
        && series.pending.is_none_or(|p| p == 0.0)
        && series.usable.is_none_or(|u| u == 0.0)
}

/// Sorts `IP:port` endpoints by address (so `:9000` comes before `:50051`),
/// then anything else by name.
fn endpoint_order(endpoint: &str) -> (bool, Option<std::net::SocketAddr>, &str) {
    let addr = endpoint.parse().ok();
    (addr.is_none(), addr, endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = include_str!("testdata/before.prom");
    const AFTER: &str = include_str!("testdata/after.prom");

    fn fixture_window() -> Vec<EndpointStat> {
        let before = Snapshot::parse(BEFORE).unwrap();
        let after = Snapshot::parse(AFTER).unwrap();
        endpoint_stats(&before, &after, Duration::from_secs(6))
    }

    fn close(actual: Option<f64>, expected: f64) -> bool {
        actual.is_some_and(|a| (a - expected).abs() < 1e-9)
    }

    /// Two real scrapes, 6 s apart, of an Envoy running `ewma.yaml` under steady
    /// load: 51051 healthy, 51052 failing 5 % of calls with UNAVAILABLE, 51053
    /// 40 ms slow. Expected values computed separately from the fixture.
    #[test]
    fn a_real_window_gives_rates_success_shares_and_percentiles() {
        let rows = fixture_window();
        let endpoints: Vec<&str> = rows.iter().map(|r| r.endpoint.as_str()).collect();
        assert_eq!(
            endpoints,
            ["127.0.0.1:51051", "127.0.0.1:51052", "127.0.0.1:51053"]
        );
        assert!(rows.iter().all(|r| r.cluster == "greeter"));

        let [fast, failing, slow] = [&rows[0], &rows[1], &rows[2]];
        assert_eq!(fast.rps, 409.0);
        assert_eq!(fast.success_rate, Some(1.0));
        assert!(close(fast.share, 2454.0 / 3779.0));
        assert!(close(fast.latency_p50_ms, 0.306_635_802_469_135_8));
        assert!(close(fast.latency_p95_ms, 0.878_113_553_113_553));
        assert!(close(fast.latency_p99_ms, 1.535));
        assert_eq!(fast.ewma_ms, Some(16.815));
        assert_eq!(fast.pending, Some(2));

        assert!(close(failing.success_rate, 216.0 / 230.0));
        assert!(close(Some(failing.rps), 230.0 / 6.0));
        assert!(close(failing.share, 230.0 / 3779.0));

        assert_eq!(slow.rps, 182.5);
        assert_eq!(slow.latency_p50_ms, Some(37.5));
        assert!(close(slow.latency_p95_ms, 48.75));
        assert!(close(slow.latency_p99_ms, 49.75));
        assert_eq!(slow.ewma_ms, Some(42.705));
        assert_eq!(slow.pending, Some(6));
    }

    #[test]
    fn shares_of_a_cluster_add_up_to_one() {
        let total: f64 = fixture_window().iter().filter_map(|r| r.share).sum();
        assert!((total - 1.0).abs() < 1e-12, "{total}");
    }

    #[test]
    fn no_traffic_in_the_window_means_no_success_latency_or_share() {
        let after = Snapshot::parse(AFTER).unwrap();
        let rows = endpoint_stats(&after, &after, Duration::from_secs(6));
        assert_eq!(rows.len(), 3);
        for row in rows {
            assert_eq!(row.rps, 0.0);
            assert_eq!(row.success_rate, None);
            assert_eq!(row.latency_p50_ms, None);
            assert_eq!(row.share, None);
            assert!(row.ewma_ms.is_some());
        }
    }

    #[test]
    fn an_endpoint_new_in_the_window_counts_from_zero() {
        let after = Snapshot::parse(AFTER).unwrap();
        let rows = endpoint_stats(&Snapshot::default(), &after, Duration::from_secs(10));
        assert!(close(Some(rows[2].rps), 247.9));
        assert!(close(rows[2].latency_p50_ms, 25.0 + 25.0 * 969.0 / 1896.0));
    }

    #[test]
    fn a_counter_that_went_down_was_reset() {
        assert_eq!(counter_delta(Some(100.0), 30.0), 30.0);
        assert_eq!(counter_delta(Some(100.0), 130.0), 30.0);
        assert_eq!(counter_delta(None, 7.0), 7.0);
    }

    #[test]
    fn forgotten_endpoints_are_left_out_but_idle_ones_stay() {
        let text = |ewma: u32| {
            format!(
                "ewma_balancer_requests_total{{cluster_name=\"c\",endpoint=\"10.0.0.1:80\"}} 5\n\
                 ewma_balancer_ewma_us{{cluster_name=\"c\",endpoint=\"10.0.0.1:80\"}} {ewma}\n\
                 ewma_balancer_pending{{cluster_name=\"c\",endpoint=\"10.0.0.1:80\"}} 0\n"
            )
        };
        let gone = Snapshot::parse(&text(0)).unwrap();
        assert_eq!(endpoint_stats(&gone, &gone, Duration::from_secs(1)), []);
        let idle = Snapshot::parse(&text(1200)).unwrap();
        let rows = endpoint_stats(&idle, &idle, Duration::from_secs(1));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].ewma_ms, Some(1.2));
    }

    #[test]
    fn endpoints_sort_by_address_then_name() {
        let mut endpoints = [
            "10.0.0.1:50051",
            "pod-b",
            "10.0.0.1:9000",
            "10.0.0.10:80",
            "pod-a",
        ];
        endpoints.sort_by_key(|e| endpoint_order(e));
        assert_eq!(
            endpoints,
            [
                "10.0.0.1:9000",
                "10.0.0.1:50051",
                "10.0.0.10:80",
                "pod-a",
                "pod-b"
            ]
        );
    }
}
