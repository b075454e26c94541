//! The Grafana dashboard and the alert rules, evaluated by a real Prometheus (Debian's
//! `prometheus` package, `make prometheus`) scraping a real Envoy running the filter,
//! against what the client saw: three greeters, 50052 failing 10 % of its calls with
//! UNAVAILABLE, 50053 40 ms slow, under a steady open-loop load.
//!
//! Every PromQL expression of `dashboards/ewma-balancer.json` is run through
//! `/api/v1/query` with the dashboard's variables substituted as Grafana would (All for
//! namespace and pod, whose labels a loopback scrape lacks), and must return series
//! with the labels its legend names and values consistent with the client: RPS within
//! 10 %, shares summing to 1, the slow backend's p99 above the others', the failures by
//! gRPC status where the failing greeter is. A panel this test has no check for fails
//! it. The alert rules of `dashboards/alerts.yaml` are loaded into the same Prometheus:
//! each must evaluate without error, and exactly two are active: the failing endpoint's
//! success rate and the slow endpoint's EWMA.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use common::{dynamic_copy, envoy, merged, ms, open_load, scale, three_greeters, wasm_path};
use e2e::{
    eventually, fixed_ports_lock, greeter_server, prometheus_bins, repo_root, EnvoyOptions,
    EnvoyProcess, Greeter, PrometheusOptions, PrometheusProcess, Sample,
};

const FAST: &str = "127.0.0.1:50051";
const FAILING: &str = "127.0.0.1:50052";
const SLOW: &str = "127.0.0.1:50053";
const SLOW_BY: Duration = Duration::from_millis(40);
const FAIL_RATE: f64 = 0.10;
const QPS: f64 = 200.0;
/// Load before the measured window: the filter learns, Prometheus gathers samples.
const WARM_UP: Duration = Duration::from_secs(8);
/// What `$__rate_interval` becomes, and the window compared with the client's intervals.
/// Longer than Envoy's 5 s stats flush, so every latency histogram moves inside it.
const WINDOW_SECS: u64 = 12;
const LOAD: Duration = Duration::from_secs(26);

/// The dashboard's targets: (panel type, panel title, refId, expr, legendFormat).
fn dashboard_targets() -> Vec<(String, String, String, String, String)> {
    let path = repo_root().join("dashboards/ewma-balancer.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut targets = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let s = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
            targets.push((
                s(&panel["type"]),
                s(&panel["title"]),
                s(&target["refId"]),
                s(&target["expr"]),
                s(&target["legendFormat"]),
            ));
        }
    }
    targets
}

/// The dashboard's template variables: (name, label_values definition).
fn dashboard_variables() -> Vec<(String, String)> {
    let path = repo_root().join("dashboards/ewma-balancer.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_owned(),
                v["definition"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `expr` with the variables as Grafana substitutes them, `pod` set to `pod`.
fn substitute(expr: &str, pod: &str) -> String {
    expr.replace("$__rate_interval", &format!("{WINDOW_SECS}s"))
        .replace("$namespace", ".*")
        .replace("$pod", pod)
        .replace("$cluster_name", ".*")
}

/// The label names a legend like `{{cluster_name}} {{endpoint}} usable` uses.
fn legend_labels(legend: &str) -> BTreeSet<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|part| part.split_once("}}"))
        .map(|(label, _)| label.trim().to_owned())
        .collect()
}

fn by_endpoint(samples: &[Sample]) -> BTreeMap<String, f64> {
    samples
        .iter()
        .map(|s| (s.label("endpoint").to_owned(), s.value))
        .collect()
}

fn one(samples: &[Sample]) -> f64 {
    assert_eq!(samples.len(), 1, "one series per cluster: {samples:?}");
    samples[0].value
}

fn skip_without_prometheus() -> bool {
    match prometheus_bins() {
        Ok(_) => false,
        Err(why) => {
            eprintln!(
                "\n\n*** SKIPPED e2e_prometheus: {why}. The dashboard's PromQL and the alert \
                 rules were NOT evaluated. ***\n\n"
            );
            true
        }
    }
}

fn within(actual: f64, expected: f64, relative: f64) -> bool {
    (actual - expected).abs() <= relative * expected.abs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_and_alert_rule_agrees_with_the_client() {
    if skip_without_prometheus() {
        return;
    }
    let _ports = fixed_ports_lock();
    let _greeters: Vec<_> = [
        Greeter::on(50051),
        Greeter::on(50052)
            .fail_rate(FAIL_RATE)
            .fail_code("UNAVAILABLE"),
        Greeter::on(50053).delay(SLOW_BY),
    ]
    .into_iter()
    .map(|g| g.spawn(greeter_server()).unwrap())
    .collect();
    let _envoy = envoy("ewma.yaml", "prometheus-ewma");
    let prometheus = PrometheusProcess::start(
        &PrometheusOptions::envoy("prometheus-e2e")
            .rule_file(repo_root().join("dashboards/alerts.yaml")),
    )
    .unwrap();

    let started = Instant::now();
    let load = open_load(QPS, LOAD, Duration::from_secs(1), &[]);
    tokio::time::sleep(WARM_UP + Duration::from_secs(WINDOW_SECS) + Duration::from_millis(1500))
        .await;
    // Every query is evaluated at one instant, a scrape behind now, so that they all see
    // the same window; the client's intervals [from, to) cover the same seconds.
    let at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - 1.0;
    let to = (started.elapsed().as_secs_f64() - 1.0).round() as usize;
    let from = to - WINDOW_SECS as usize;
    assert!(prometheus.targets_up().unwrap(), "Envoy's scrape is down");

    let query = |expr: &str| {
        prometheus
            .query_at(expr, at)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let mut results = BTreeMap::new();
    for (kind, title, ref_id, expr, legend) in dashboard_targets() {
        let promql = substitute(&expr, ".*");
        let samples = query(&promql);
        assert!(
            !samples.is_empty(),
            "{kind} panel `{title}` ({ref_id}) returns nothing: {promql}"
        );
        let wanted = legend_labels(&legend);
        for s in &samples {
            let got: BTreeSet<String> = s.labels.keys().cloned().collect();
            assert_eq!(got, wanted, "labels of `{title}` ({ref_id}): {s:?}");
            assert_eq!(s.label("cluster_name"), "greeter", "`{title}`: {s:?}");
            if wanted.contains("endpoint") {
                assert!(
                    [FAST, FAILING, SLOW].contains(&s.label("endpoint")),
                    "`{title}`: {s:?}"
                );
            }
            assert!(s.value.is_finite(), "`{title}` ({ref_id}): {s:?}");
        }
        // The namespace and pod variables reach every expression: a pod that does not
        // exist leaves nothing.
        let none = query(&substitute(&expr, "no-such-pod"));
        assert!(
            none.is_empty(),
            "`{title}` ({ref_id}) ignores $pod: {none:?}"
        );
        results.insert((kind, title, ref_id), samples);
    }
    for (name, definition) in dashboard_variables() {
        let (selector, label) = definition
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
            .and_then(|d| d.rsplit_once(", "))
            .unwrap_or_else(|| panic!("variable {name}: {definition}"));
        let values = prometheus
            .label_values(&substitute(selector, ".*"), label)
            .unwrap();
        let expected: &[&str] = if name == "cluster_name" {
            &["greeter"]
        } else {
            // A loopback scrape has no namespace or pod label; All (.*) matches it.
            &[]
        };
        assert_eq!(values, expected, "variable {name}");
    }

    let rules = prometheus.api("/api/v1/rules").unwrap();
    let alerts = prometheus.api("/api/v1/alerts").unwrap();
    let (intervals, whole) = load.await.unwrap();
    let client = merged(&intervals, from, to);
    let client_rps = client.total() as f64 / WINDOW_SECS as f64;
    assert!(
        within(client_rps, QPS, 0.05),
        "the client fell behind: {client_rps} calls/s"
    );
    println!(
        "client: {client_rps:.1} calls/s in [{from} s, {to} s), success {:.4}, backends {:?}; whole run {} calls",
        client.success_rate().unwrap(),
        client.per_backend(),
        whole.total()
    );

    let get = |kind: &str, title: &str, ref_id: &str| -> &Vec<Sample> {
        &results[&(kind.to_owned(), title.to_owned(), ref_id.to_owned())]
    };
    let shares = by_endpoint(get("timeseries", "Share of the cluster's requests", "A"));
    let rps = by_endpoint(get("timeseries", "Requests per second", "A"));
    let success = by_endpoint(get("timeseries", "Success rate", "A"));
    let p99 = by_endpoint(get("timeseries", "Latency p99", "A"));
    for ((kind, title, ref_id), samples) in &results {
        let values = by_endpoint(samples);
        println!("{kind} `{title}` {ref_id}: {samples:?}");
        match (kind.as_str(), title.as_str(), ref_id.as_str()) {
            ("stat", "Requests per second", "A") => assert!(
                within(one(samples), client_rps, 0.10),
                "{} calls/s, the client {client_rps}",
                one(samples)
            ),
            ("timeseries", "Requests per second", "A") => {
                assert_eq!(values.len(), 3, "{values:?}");
                let sum: f64 = values.values().sum();
                assert!(
                    within(sum, client_rps, 0.10),
                    "{sum} calls/s, the client {client_rps}"
                );
            }
            ("stat", "Success rate", "A") => {
                let client_success = client.success_rate().unwrap();
                assert!(
                    (one(samples) - client_success).abs() < 0.01,
                    "{} against the client's {client_success}",
                    one(samples)
                );
                assert!(one(samples) < 1.0, "no failure counted");
            }
            ("timeseries", "Success rate", "A") => {
                assert_eq!(values[FAST], 1.0);
                assert_eq!(values[SLOW], 1.0);
                assert!(
                    values[FAILING] < 0.97 && values[FAILING] > 0.7,
                    "{values:?}"
                );
            }
            ("stat", "Share to the slowest endpoint", "A") => {
                assert_eq!(samples.len(), 1, "{samples:?}");
                assert_eq!(samples[0].label("endpoint"), SLOW);
                assert!(samples[0].value < 0.2, "{samples:?}");
                assert!((samples[0].value - shares[SLOW]).abs() < 1e-9);
            }
            ("stat", "Fallback ratio", "A") => {
                assert!(one(samples) < 0.05, "{samples:?}");
            }
            ("stat", "Membership source", "A") => assert_eq!(one(samples), 1.0),
            ("stat", "Membership age", "A") => {
                assert!(one(samples) < 3000.0, "{samples:?}");
            }
            ("timeseries", "Latency p50" | "Latency p95" | "Latency p99", "A") => {
                assert_eq!(values.len(), 3, "{values:?}");
                // In the delay's bucket (25-50 ms) or above, the others far below it.
                assert!(values[SLOW] > 25.0, "{title}: {values:?}");
                for fast in [FAST, FAILING] {
                    assert!(values[fast] < ms(SLOW_BY) / 4.0, "{title}: {values:?}");
                }
            }
            ("timeseries", "Peak-EWMA latency estimate", "A") => {
                // In ms. The slow endpoint gets only probes and its estimate decays
                // toward 0 between them; a fast one's jumps to any latency peak (one of
                // 4 ms was seen): no order between them holds at every instant.
                assert_eq!(values.len(), 3, "{values:?}");
                assert!(
                    values.values().all(|&v| v > 0.0 && v < 2.0 * ms(SLOW_BY)),
                    "{values:?}"
                );
            }
            ("timeseries", "Pending requests", "A") => {
                assert_eq!(values.len(), 3, "{values:?}");
                assert!(values.values().all(|&v| (0.0..64.0).contains(&v)));
            }
            ("timeseries", "Share of the cluster's requests", "A") => {
                assert_eq!(values.len(), 3, "{values:?}");
                let sum: f64 = values.values().sum();
                assert!((sum - 1.0).abs() < 1e-9, "shares sum to {sum}");
                let good = client.good().max(1) as f64;
                for (endpoint, share) in &values {
                    let seen = client.per_backend().get(endpoint).copied().unwrap_or(0) as f64;
                    assert!(
                        (share - seen / good).abs() < 0.05,
                        "{endpoint}: {share} against the client's {}",
                        seen / good
                    );
                }
                assert!(values[SLOW] < 0.2, "{values:?}");
            }
            ("timeseries", "Decisions", "A") => {
                let decisions: BTreeMap<&str, f64> = samples
                    .iter()
                    .map(|s| (s.label("decision"), s.value))
                    .collect();
                for d in decisions.keys() {
                    assert!(
                        ["override", "probe", "explore", "too_few"].contains(d),
                        "{d}"
                    );
                }
                let sum: f64 = decisions.values().sum();
                assert!(within(sum, client_rps, 0.10), "{decisions:?}");
                assert!(decisions["override"] > 0.9 * sum, "{decisions:?}");
            }
            ("timeseries", "Failures by gRPC status", "A") => {
                assert_eq!(samples.len(), 1, "{samples:?}");
                assert_eq!(samples[0].label("endpoint"), FAILING);
                assert_eq!(samples[0].label("grpc_status"), "14");
                // The failing greeter's failed calls per second, as the success rate
                // and requests panels give them.
                let failed = rps[FAILING] * (1.0 - success[FAILING]);
                assert!(
                    within(samples[0].value, failed, 0.10),
                    "{samples:?} against {failed}"
                );
                let client_failed =
                    client.failures_by_code().values().sum::<u64>() as f64 / WINDOW_SECS as f64;
                assert!(
                    (samples[0].value - client_failed).abs() <= 0.5 * client_failed + 0.5,
                    "{samples:?} against the client's {client_failed}/s"
                );
            }
            ("timeseries", "Endpoints usable / known", "A" | "B") => {
                assert_eq!(one(samples), 3.0);
            }
            other => panic!("no check for the dashboard's {other:?}: add one here"),
        }
    }
    assert!(p99[SLOW] > p99[FAST] && p99[SLOW] > p99[FAILING], "{p99:?}");

    // The alert rules: every one evaluated without error; the failing endpoint's success
    // rate and the slow endpoint's EWMA are active (pending: the rules wait minutes
    // before firing), nothing else.
    let mut names = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            names.push(rule["name"].as_str().unwrap().to_owned());
            assert_eq!(rule["health"], "ok", "{rule}");
            assert!(rule["lastEvaluation"].as_str().is_some(), "{rule}");
        }
    }
    assert_eq!(names.len(), 6, "{names:?}");
    // EwmaBalancerMetricsAbsent joins Envoy's own counter to the filter's through
    // label_replace: with the filter's requests hidden, it finds this proxy's cluster.
    let absent = rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "EwmaBalancerMetricsAbsent")
        .unwrap()["query"]
        .as_str()
        .unwrap()
        .to_owned();
    let hidden = absent.replace(
        "rate(ewma_balancer_requests_total[5m])",
        r#"rate(ewma_balancer_requests_total{cluster_name="hidden"}[5m])"#,
    );
    assert_ne!(hidden, absent, "{absent}");
    let found = prometheus.query_at(&hidden, at).unwrap();
    assert_eq!(found.len(), 1, "{hidden}: {found:?}");
    assert_eq!(found[0].label("cluster_name"), "greeter");
    // Calls per second over 5 minutes, of which the load ran a few seconds.
    assert!(
        found[0].value > 0.1 && found[0].value < 1.1 * client_rps,
        "{found:?}"
    );
    let mut active: Vec<(String, String)> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap().to_owned(),
                a["labels"]["endpoint"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    active.sort();
    let expected = [
        ("EwmaBalancerEndpointEwmaFarAboveMedian", SLOW),
        ("EwmaBalancerEndpointSuccessRateLow", FAILING),
    ]
    .map(|(a, e)| (a.to_owned(), e.to_owned()));
    assert_eq!(active, expected, "{alerts}");
}

/// An endpoint removed from the cluster is forgotten: the filter sets its usable, EWMA
/// and pending gauges to 0 (Envoy keeps the stats). The dashboard's gauge panels and the
/// EWMA alert leave it out; the live endpoints stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_endpoints_zeroed_gauges_leave_the_dashboard() {
    if skip_without_prometheus() {
        return;
    }
    let _ports = fixed_ports_lock();
    let dir = dynamic_copy("prometheus-forget");
    let _greeters = three_greeters(Duration::ZERO);
    wasm_path();
    let _envoy = EnvoyProcess::start(
        dir.join("envoy.yaml"),
        EnvoyOptions::named("prometheus-forget").concurrency(2),
    )
    .unwrap();
    let prometheus = PrometheusProcess::start(
        &PrometheusOptions::envoy("prometheus-forget")
            .rule_file(repo_root().join("dashboards/alerts.yaml")),
    )
    .unwrap();
    let load = open_load(100.0, Duration::from_secs(12), Duration::from_secs(1), &[]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    scale(&dir, "50051,50052");

    let forgotten = format!(r#"{{cluster_name="greeter", endpoint="{SLOW}"}}"#);
    let zeroed = format!(
        "ewma_balancer_usable{forgotten} + ewma_balancer_ewma_us{forgotten} + ewma_balancer_pending{forgotten}"
    );
    eventually(Duration::from_secs(8), || {
        let samples = prometheus.query(&zeroed)?;
        match samples.as_slice() {
            [s] if s.value == 0.0 => Ok(()),
            other => Err(format!("{SLOW}'s gauges: {other:?}")),
        }
    })
    .unwrap();
    for (_, title, ref_id, expr, _) in dashboard_targets() {
        if !["Peak-EWMA latency estimate", "Pending requests"].contains(&title.as_str()) {
            continue;
        }
        let samples = prometheus.query(&substitute(&expr, ".*")).unwrap();
        let endpoints: Vec<&str> = samples.iter().map(|s| s.label("endpoint")).collect();
        assert_eq!(endpoints.len(), 2, "`{title}` ({ref_id}): {samples:?}");
        assert!(
            endpoints.contains(&FAST) && endpoints.contains(&FAILING),
            "`{title}` ({ref_id}): {samples:?}"
        );
    }
    let (_, tally) = load.await.unwrap();
    assert_eq!(tally.total(), tally.good(), "calls failed: {tally:?}");
}
