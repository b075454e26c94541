//! The benchmark's `tower_peak_ewma` path: open-loop load balanced in the client by
//! tower's p2c over PeakEwma (one connection per greeter, no Envoy), against real
//! greeters. It spreads calls over the equal greeters and leaves a slow one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::{fixed_ports_lock, greeter_server, Greeter, GreeterProcess, BACKEND_PORTS};
use loadgen::open::{run_loadgen, LoadgenSpec, Target};

/// Open loop at `qps` for `duration` through the tower balancer over `greeters`.
async fn balanced_load(
    greeters: &[GreeterProcess],
    qps: f64,
    duration: Duration,
) -> loadgen::open::LoadgenReport {
    let target = Target::TowerPeakEwma(greeters.iter().map(GreeterProcess::uri).collect());
    run_loadgen(&LoadgenSpec::open(target, qps, duration), |_| {})
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_peak_ewma_spreads_over_equal_greeters_and_leaves_a_slow_one() {
    let _ports = fixed_ports_lock();
    let mut greeters: Vec<GreeterProcess> = BACKEND_PORTS
        .iter()
        .map(|&port| Greeter::on(port).spawn(greeter_server()).unwrap())
        .collect();

    let equal = balanced_load(&greeters, 300.0, Duration::from_millis(1_500)).await;
    let summary = &equal.summary;
    assert_eq!(summary.success_rate, 1.0, "{summary}");
    assert_eq!(summary.connections, 3, "one connection per greeter");
    assert!(
        summary.target.starts_with("tower p2c PeakEwma ["),
        "{summary}"
    );
    for greeter in &greeters {
        let share = share_of(summary, &greeter.backend());
        assert!(
            share > 0.1,
            "{} got {share} of the calls:\n{summary}",
            greeter.backend()
        );
    }

    let slow = greeters.last_mut().unwrap();
    let slow_backend = slow.backend();
    slow.restart_with(|g| g.delay(Duration::from_millis(40)))
        .unwrap();
    let skewed = balanced_load(&greeters, 300.0, Duration::from_secs(2)).await;
    let summary = &skewed.summary;
    assert_eq!(summary.success_rate, 1.0, "{summary}");
    let slow_share = share_of(summary, &slow_backend);
    assert!(
        slow_share < 0.05,
        "the slow greeter got {slow_share} of the calls:\n{summary}"
    );
    for greeter in &greeters[..2] {
        let share = share_of(summary, &greeter.backend());
        assert!(
            share > 0.3,
            "{} got {share} of the calls:\n{summary}",
            greeter.backend()
        );
    }
    assert!(
        summary.p99_ms < 40.0,
        "p99 {} ms:\n{summary}",
        summary.p99_ms
    );
}

/// The share of the calls `backend` served (0 when it served none).
fn share_of(summary: &loadgen::open::LoadgenSummary, backend: &str) -> f64 {
    summary.share.get(backend).copied().unwrap_or(0.0)
}
