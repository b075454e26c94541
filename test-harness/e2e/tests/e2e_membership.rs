//! Membership and health from Envoy's admin interface, on the dynamic Envoy
//! (envoy-configs/dynamic, 2 workers) with real greeters: what Envoy's own balancers
//! would skip, the filter skips too, within one refresh (membershipRefresh, 1 s); what
//! joins is served at once, even at 5 calls/s; an admin cluster that cannot answer
//! leaves the filter in learned mode with no failed call. Each test runs on its own
//! copy of the config directory, holds the fixed-ports lock and stops what it started.

#![allow(clippy::unwrap_used, clippy::panic, clippy::await_holding_lock)]

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use e2e::{eventually, fixed_ports_lock, EnvoyOptions, EnvoyProcess, Greeter, GreeterProcess};
use loadgen::open::Tally;

const STEP: Duration = Duration::from_millis(100);
const THIRD: &str = "127.0.0.1:50053";
const FOURTH: &str = "127.0.0.1:50054";

fn greeters(ports: std::ops::RangeInclusive<u16>) -> Vec<GreeterProcess> {
    ports
        .map(|p| Greeter::on(p).spawn(greeter_server()).unwrap())
        .collect()
}

/// Sets the plugin configuration (JSON) in the copy's listener.
fn set_plugin_config(dir: &Path, json: &str) {
    let lds = dir.join("lds.yaml");
    let text = fs::read_to_string(&lds).unwrap();
    assert!(
        text.contains(r#"value: "{}""#),
        "the plugin configuration line moved"
    );
    fs::write(
        &lds,
        text.replace(r#"value: "{}""#, &format!("value: '{json}'")),
    )
    .unwrap();
}

fn start(dir: &Path, name: &str) -> EnvoyProcess {
    wasm_path();
    EnvoyProcess::start(
        dir.join("envoy.yaml"),
        EnvoyOptions::named(name).concurrency(2),
    )
    .unwrap()
}

/// Seconds from the start of the load to the end of interval `i`.
fn at(i: usize) -> f64 {
    (i + 1) as f64 * STEP.as_secs_f64()
}

fn served(t: &Tally, backend: &str) -> u64 {
    t.per_backend().get(backend).copied().unwrap_or(0)
}

/// The end of the last interval in which `backend` served a call, in seconds from the
/// start of the load.
fn last_served(intervals: &[Tally], backend: &str) -> Option<f64> {
    intervals
        .iter()
        .rposition(|t| served(t, backend) > 0)
        .map(at)
}

/// The end of the first interval ending after `from` seconds in which `backend`
/// served a call.
fn first_served_after(intervals: &[Tally], backend: &str, from: f64) -> Option<f64> {
    (0..intervals.len())
        .filter(|&i| at(i) > from)
        .find(|&i| served(&intervals[i], backend) > 0)
        .map(at)
}

/// `backend`'s share of the calls in the intervals ending in `from..=to` seconds.
fn share_between(intervals: &[Tally], backend: &str, from: f64, to: f64) -> f64 {
    let mut all = Tally::new();
    for (i, t) in intervals.iter().enumerate() {
        if at(i) > from && at(i) <= to {
            all.merge(t);
        }
    }
    served(&all, backend) as f64 / all.total().max(1) as f64
}

/// Waits until the admin interface shows `flag` in `backend`'s health flags
/// (`/clusters` text: `greeter::IP:port::health_flags::/failed_outlier_check`).
fn wait_for_health_flag(envoy: &EnvoyProcess, backend: &str, flag: &str, within: Duration) {
    let line = format!("greeter::{backend}::health_flags::");
    eventually(within, || {
        let text = envoy.admin_get("/clusters")?;
        match text.lines().find(|l| l.starts_with(&line)) {
            Some(l) if l.contains(flag) => Ok(()),
            other => Err(format!("{backend}: {other:?}, waiting for {flag}")),
        }
    })
    .unwrap();
}

/// Warm-up calls until each of `backends` served some in the last batch (at most 10
/// batches): a test that shows an endpoint is left out must first see it used.
async fn warm_until_each_serves(backends: &[&str]) {
    for _ in 0..10 {
        let report = calls(200, 4, &[]).await;
        if backends.iter().all(|b| share(&report, b) > 0.0) {
            return;
        }
    }
    panic!("warm-up: not all of {backends:?} served");
}

/// The filter's `ewma_balancer_usable` gauge of `backend` (1: it picks among it).
fn usable_gauge(envoy: &EnvoyProcess, backend: &str) -> Option<u64> {
    filter_counter_by_endpoint(envoy, "ewma_balancer_usable")
        .get(backend)
        .copied()
}

/// Waits until the filter's `ewma_balancer_usable` gauge of `backend` reads 0; returns
/// how long that took.
fn wait_until_unusable(envoy: &EnvoyProcess, backend: &str, within: Duration) -> Duration {
    let since = Instant::now();
    eventually(within, || match usable_gauge(envoy, backend) {
        Some(0) => Ok(()),
        other => Err(format!("{backend}: usable gauge {other:?}")),
    })
    .unwrap();
    since.elapsed()
}

fn membership_log_lines(envoy: &EnvoyProcess) -> Vec<String> {
    envoy
        .log_contents()
        .lines()
        .filter(|l| l.contains("wasm log ewma-balancer: membership from"))
        .map(str::to_owned)
        .collect()
}

/// EDS marks a backend UNHEALTHY while it keeps answering: Envoy's round robin stops
/// using it, and so does the filter, within 2 s (override_host alone would not).
#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_marked_unhealthy_while_alive_gets_no_call_within_two_seconds() {
    let _ports = fixed_ports_lock();
    let dir = dynamic_copy("unhealthy");
    let _greeters = greeters(50051..=50054);
    scale(&dir, "50051,50052,50053,50054");
    let envoy = start(&dir, "membership-unhealthy");
    warm_until_each_serves(&[THIRD, FOURTH]).await;

    let started = Instant::now();
    let load = open_load(200.0, Duration::from_secs(7), STEP, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        usable_gauge(&envoy, FOURTH),
        Some(1),
        "usable before marking"
    );
    scale(&dir, "50051,50052,50053,50054:UNHEALTHY");
    let marked = started.elapsed().as_secs_f64();
    let took = wait_until_unusable(&envoy, FOURTH, Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(took)).await;
    let upstream_then = upstream_requests(&envoy).get(FOURTH).copied();
    let (intervals, tally) = load.await.unwrap();
    let upstream_end = upstream_requests(&envoy).get(FOURTH).copied();

    let before = share_between(&intervals, FOURTH, 0.5, marked);
    let last = last_served(&intervals, FOURTH);
    println!("per backend {:?}", tally.per_backend());
    println!(
        "{FOURTH} marked UNHEALTHY at {marked:.2} s: unusable to the filter {took:?} later; \
         share before {:.1}%, last call at {last:?} s; \
         upstream requests 2.5 s after marking {upstream_then:?}, at the end {upstream_end:?}; \
         {} calls, {} failed",
        100.0 * before,
        tally.total(),
        tally.failed()
    );
    assert!(
        last.is_none_or(|l| l <= marked + 2.0),
        "{FOURTH} served until {last:?} s, marked at {marked} s"
    );
    assert_eq!(upstream_then, upstream_end, "Envoy still sent it calls");
    assert_eq!(tally.failed(), 0, "{:?}", tally.failures_by_code());
}

/// At 5 calls/s, three endpoints added to the endpoints file are each served within 4 s
/// (learned membership at this rate served 4 of 50 in 30 s and never a joining one).
#[tokio::test(flavor = "multi_thread")]
async fn endpoints_added_at_five_calls_a_second_are_each_served_within_four_seconds() {
    let _ports = fixed_ports_lock();
    let dir = dynamic_copy("join");
    let _greeters = greeters(50051..=50056);
    let envoy = start(&dir, "membership-join");
    calls(15, 1, &[]).await;

    let started = Instant::now();
    let load = open_load(5.0, Duration::from_secs(9), STEP, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    scale(&dir, "50051,50052,50053,50054,50055,50056");
    let added = started.elapsed().as_secs_f64();
    let (intervals, tally) = load.await.unwrap();
    drop(envoy);

    let joined = ["127.0.0.1:50054", "127.0.0.1:50055", "127.0.0.1:50056"];
    let firsts: Vec<_> = joined
        .iter()
        .map(|b| first_served_after(&intervals, b, added).map(|t| t - added))
        .collect();
    println!(
        "added at {added:.2} s; first calls after {firsts:?} s; {} calls, {} failed, per backend {:?}",
        tally.total(),
        tally.failed(),
        tally.per_backend()
    );
    for (backend, first) in joined.iter().zip(&firsts) {
        let first = first.unwrap_or_else(|| panic!("{backend} never served"));
        assert!(
            first <= 4.0,
            "{backend} first served {first} s after joining"
        );
    }
    assert_eq!(tally.failed(), 0, "{:?}", tally.failures_by_code());
}

/// A backend ejected by outlier detection (consecutive 5xx; gRPC UNAVAILABLE counts)
/// and healed at once stays out for the ejection (30 s): the filter, which would come
/// back to a recovered backend within a second on its own, names it no more after the
/// next refresh.
#[tokio::test(flavor = "multi_thread")]
async fn a_backend_ejected_by_outlier_detection_is_not_named_after_one_refresh() {
    let _ports = fixed_ports_lock();
    let dir = dynamic_copy("outlier");
    // Eject at the second consecutive failure: the filter itself avoids a failing
    // backend after its first failure, so five would take many probes.
    let cds = dir.join("cds.yaml");
    let text = fs::read_to_string(&cds).unwrap();
    assert!(
        text.contains("consecutive_5xx: 5"),
        "outlier_detection moved"
    );
    fs::write(
        &cds,
        text.replace("consecutive_5xx: 5", "consecutive_5xx: 2"),
    )
    .unwrap();
    let mut backends = greeters(50051..=50052);
    backends.push(
        Greeter::on(50053)
            .fail_rate(1.0)
            .spawn(greeter_server())
            .unwrap(),
    );
    let envoy = start(&dir, "membership-outlier");

    let started = Instant::now();
    let load = open_load(200.0, Duration::from_secs(9), STEP, &[]);
    wait_for_health_flag(
        &envoy,
        THIRD,
        "failed_outlier_check",
        Duration::from_secs(6),
    );
    backends[2].heal().unwrap();
    let ejected = started.elapsed().as_secs_f64();
    let (intervals, tally) = load.await.unwrap();
    let last = last_served(&intervals, THIRD);
    let named_after = share_between(&intervals, THIRD, ejected + 1.5, 9.0);
    println!(
        "{THIRD} ejected (seen) at {ejected:.2} s and healed; last call at {last:?} s, \
         share from one refresh on {:.2}%; {} calls, failures {:?}",
        100.0 * named_after,
        tally.total(),
        tally.failures_by_code()
    );
    assert_eq!(named_after, 0.0, "named while ejected");
    assert!(
        last.is_none_or(|l| l <= ejected + 1.5),
        "{THIRD} served at {last:?} s, ejected at {ejected} s"
    );
}

/// An active health check fails on one backend (its health-check port closes) while the
/// backend keeps answering: it stops being named within one refresh of Envoy marking it.
#[tokio::test(flavor = "multi_thread")]
async fn a_backend_failing_active_health_checks_is_not_named_after_one_refresh() {
    let _ports = fixed_ports_lock();
    let dir = dynamic_copy("health-check");
    // A TCP health check every 250 ms (also before any traffic: no_traffic_interval),
    // against a port of the test's own for the third backend (the endpoint's
    // health_check_config), the backends' own ports for the others.
    let cds = dir.join("cds.yaml");
    let text = fs::read_to_string(&cds).unwrap();
    let checks = "  connect_timeout: 1s\n  health_checks:\n  - timeout: 1s\n    interval: 0.25s\n    \
                  no_traffic_interval: 0.25s\n    unhealthy_threshold: 1\n    healthy_threshold: 1\n    tcp_health_check: {}\n";
    fs::write(&cds, text.replacen("  connect_timeout: 1s\n", checks, 1)).unwrap();
    let hc_port = 50058;
    let endpoints = fs::read_to_string(dir.join("endpoints/greeter.yaml"))
        .unwrap()
        .replace(
            "port_value: 50053 } } } }",
            &format!(
                "port_value: 50053 }} }}, health_check_config: {{ port_value: {hc_port} }} }} }}"
            ),
        );
    assert!(endpoints.contains("health_check_config"), "{endpoints}");
    replace_file(&dir.join("endpoints/greeter.yaml"), &endpoints);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", hc_port))
        .await
        .unwrap();
    let accepting = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let _greeters = greeters(50051..=50053);
    let envoy = start(&dir, "membership-health-check");
    warm_until_each_serves(&[THIRD]).await;

    let started = Instant::now();
    let load = open_load(200.0, Duration::from_secs(7), STEP, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(usable_gauge(&envoy, THIRD), Some(1), "usable before");
    accepting.abort();
    let _ = accepting.await; // the listener is closed with the task
    wait_for_health_flag(&envoy, THIRD, "failed_active_hc", Duration::from_secs(3));
    let failed = started.elapsed().as_secs_f64();
    let took = wait_until_unusable(&envoy, THIRD, Duration::from_millis(1500));
    let (intervals, tally) = load.await.unwrap();
    let before = share_between(&intervals, THIRD, 0.5, 2.0);
    let last = last_served(&intervals, THIRD);
    println!(
        "{THIRD}: share before {:.1}%, health check failing (seen) at {failed:.2} s, unusable to the \
         filter {took:?} later, last call at {last:?} s; \
         {} calls, {} failed",
        100.0 * before,
        tally.total(),
        tally.failed()
    );
    assert!(
        last.is_none_or(|l| l <= failed + 1.5),
        "{THIRD} served at {last:?} s, failing its health check from {failed} s"
    );
    assert_eq!(tally.failed(), 0, "{:?}", tally.failures_by_code());
}

/// `adminCluster` names a cluster whose endpoint refuses connections: the filter
/// balances on learned membership, no call fails, and it says so in one log line.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_cluster_on_a_closed_port_leaves_learned_mode_with_no_failed_call() {
    let _ports = fixed_ports_lock();
    let dir = dynamic_copy("closed-admin");
    let envoy_yaml = dir.join("envoy.yaml");
    let text = fs::read_to_string(&envoy_yaml).unwrap();
    let closed = "  - name: closed_admin\n    type: STATIC\n    connect_timeout: 1s\n    \
                  load_assignment:\n      cluster_name: closed_admin\n      endpoints:\n      \
                  - lb_endpoints:\n        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 9 } } }\n";
    fs::write(
        &envoy_yaml,
        text.replacen("  clusters:\n", &format!("  clusters:\n{closed}"), 1),
    )
    .unwrap();
    set_plugin_config(&dir, r#"{"adminCluster":"closed_admin"}"#);
    let _greeters = three_greeters(Duration::from_millis(0));
    let envoy = start(&dir, "membership-closed-admin");

    let load = open_load(100.0, Duration::from_secs(6), STEP, &[]);
    let (_, tally) = load.await.unwrap();
    let lines = membership_log_lines(&envoy);
    let admin_gauge = envoy
        .admin_get("/stats?filter=ewma_balancer_membership_admin")
        .unwrap();
    println!(
        "{} calls, {} failed, per backend {:?}; membership log lines {lines:#?}; {admin_gauge}",
        tally.total(),
        tally.failed(),
        tally.per_backend()
    );
    assert_eq!(tally.failed(), 0, "{:?}", tally.failures_by_code());
    assert_eq!(tally.per_backend().len(), 3, "{:?}", tally.per_backend());
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("closed_admin"), "{}", lines[0]);
    assert!(
        admin_gauge.lines().any(|l| l.ends_with(": 0")) && !admin_gauge.contains(": 1"),
        "{admin_gauge}"
    );
}

/// `adminCluster` names a cluster Envoy does not have: one warning, learned mode, every
/// call served.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_cluster_that_does_not_exist_gives_one_warning_and_learned_mode() {
    let _ports = fixed_ports_lock();
    let dir = dynamic_copy("missing-admin");
    set_plugin_config(&dir, r#"{"adminCluster":"no_such_cluster"}"#);
    let _greeters = three_greeters(Duration::from_millis(0));
    let envoy = start(&dir, "membership-missing-admin");
    let (_, tally) = open_load(100.0, Duration::from_secs(4), STEP, &[])
        .await
        .unwrap();
    let lines: Vec<String> = envoy
        .log_contents()
        .lines()
        .filter(|l| l.contains("wasm log ewma-balancer: admin cluster"))
        .map(str::to_owned)
        .collect();
    println!(
        "{} calls, {} failed, per backend {:?}; {lines:#?}",
        tally.total(),
        tally.failed(),
        tally.per_backend()
    );
    assert_eq!(tally.failed(), 0, "{:?}", tally.failures_by_code());
    assert_eq!(tally.per_backend().len(), 3, "{:?}", tally.per_backend());
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("no_such_cluster"), "{}", lines[0]);
}
