//! The benchmark's host-call probe (`test-harness/bench/wasm-probe/`) in a real Envoy: it makes the calls
//! its configuration names, so `make bench` and `make bench-hostcalls` measure real
//! calls, and it refuses a configuration it cannot follow. Each test holds the
//! fixed-ports lock and stops every process it started, also when it fails.

#![allow(clippy::unwrap_used, clippy::await_holding_lock)]

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use e2e::{fixed_ports_lock, repo_root, EnvoyOptions, EnvoyProcess};
use wasm_probe::with_probe_calls;

/// envoy-configs/bench/hostcalls.yaml with the probe configured by `calls`.
fn probe_config(name: &str, calls: &str) -> PathBuf {
    wasm_probe_path();
    let template =
        fs::read_to_string(repo_root().join("envoy-configs/bench/hostcalls.yaml")).unwrap();
    let dir = repo_root().join("target/e2e-configs");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.yaml"));
    fs::write(&path, with_probe_calls(&template, calls).unwrap()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn the_probe_makes_the_calls_its_configuration_names() {
    let _ports = fixed_ports_lock();
    let _greeters = three_greeters(Duration::ZERO);
    let config = probe_config(
        "probe-calls",
        "override_header=1 counter=2 grpc_status=1 endpoints=127.0.0.1:50053",
    );
    let envoy = EnvoyProcess::start(&config, EnvoyOptions::named("probe-calls")).unwrap();
    let report = calls(300, 8, &[]).await;
    assert_eq!(report.ok(), 300, "{:?}", report.failures_by_code());
    // The override header names only the third greeter: override_host obeys it.
    assert_eq!(report.served_by(SLOW), 300, "{:?}", report.per_backend());
    // Two counter increments in every request's on_log (which may run just after the
    // client has its answer).
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut counted = filter_counter_sum(&envoy, "wasm_probe_counter");
    while counted < 600 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        counted = filter_counter_sum(&envoy, "wasm_probe_counter");
    }
    assert_eq!(counted, 600);
}

#[test]
fn an_invalid_probe_configuration_is_refused_with_one_line() {
    let _ports = fixed_ports_lock();
    let config = probe_config("probe-invalid", "clocks=1");
    let mut envoy = EnvoyProcess::spawn(&config, EnvoyOptions::named("probe-invalid")).unwrap();
    let (status, log) = envoy.wait_exit(Duration::from_secs(20)).unwrap();
    assert!(
        !status.success(),
        "Envoy started with a bad probe config:\n{log}"
    );
    assert!(
        log.contains(r#"invalid wasm-probe configuration: unknown call "clocks""#),
        "no clear error line in the log:\n{log}"
    );
}
