//! The dynamic Envoy (envoy-configs/dynamic: listener, cluster and endpoints from watched
//! files) with real greeters: scaling the greeter cluster under load with
//! `scripts/scale-greeter.sh` (what `make scale` runs), and invalid plugin configurations
//! pushed as listener updates. Each test runs on its own copy of the config directory.

#![allow(clippy::unwrap_used, clippy::await_holding_lock)]

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;
use e2e::{eventually, fixed_ports_lock, EnvoyOptions, EnvoyProcess, Greeter};
use ewma_balancer::invalid_configs::INVALID_CONFIGS;

const FOURTH: &str = "127.0.0.1:50054";

/// Under load: a fourth backend written into the endpoints file gets traffic within
/// seconds; a backend removed from the file and then stopped costs no failed call.
#[tokio::test(flavor = "multi_thread")]
async fn scaling_up_and_down_under_load_adds_traffic_and_loses_no_call() {
    let _ports = fixed_ports_lock();
    let dir = dynamic_copy("scale");
    let _greeters = three_greeters(Duration::ZERO);
    let mut fourth = Greeter::on(50054).spawn(greeter_server()).unwrap();
    wasm_path();
    let envoy = EnvoyProcess::start(
        dir.join("envoy.yaml"),
        EnvoyOptions::named("dynamic-scale").concurrency(2),
    )
    .unwrap();
    calls(300, 8, &[]).await;

    let load = open_load(
        400.0,
        Duration::from_secs(10),
        Duration::from_millis(250),
        &[],
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let added_at = Instant::now();
    scale(&dir, "50051,50052,50053,50054");
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Remove it from the cluster, wait until Envoy has applied that, then stop it.
    scale(&dir, "50051,50052,50053");
    eventually(Duration::from_secs(5), || {
        let hosts = upstream_requests(&envoy);
        if hosts.contains_key(FOURTH) {
            Err(format!("{FOURTH} still in the cluster: {hosts:?}"))
        } else {
            Ok(())
        }
    })
    .unwrap();
    fourth.kill();
    let (intervals, tally) = load.await.unwrap();

    // Intervals of 250 ms from the start of the load; the fourth was added at 1 s.
    let first_served = intervals
        .iter()
        .position(|t| t.per_backend().contains_key(FOURTH))
        .map(|i| (i + 1) as f64 * 0.25 - 1.0);
    let share_while_in = {
        let t = merged(&intervals, 8, 20); // 2 s to 5 s: all four in the cluster
        t.per_backend().get(FOURTH).copied().unwrap_or(0) as f64 / t.total().max(1) as f64
    };
    let served_after_removal = merged(&intervals, 24, intervals.len())
        .per_backend()
        .get(FOURTH)
        .copied()
        .unwrap_or(0);
    println!(
        "fourth backend: first call {first_served:?} s after the endpoints file changed \
         (added {:?} ago), {:.1}% share while in, {served_after_removal} calls after removal; \
         {} calls, {} failed {:?}",
        added_at.elapsed(),
        100.0 * share_while_in,
        tally.total(),
        tally.failed(),
        tally.failures_by_code()
    );
    let first_served = first_served.expect("the fourth backend never got a call");
    assert!(first_served <= 3.0, "first call after {first_served} s");
    assert!(share_while_in >= 0.10, "share {share_while_in}");
    assert_eq!(served_after_removal, 0);
    assert_eq!(tally.failed(), 0, "{:?}", tally.failures_by_code());
}

/// Each invalid plugin configuration of the README's table, pushed as a listener update:
/// Envoy refuses the update, the filter's log line is the table's, and Envoy keeps
/// serving with the configuration it had.
#[tokio::test(flavor = "multi_thread")]
async fn each_invalid_plugin_config_in_a_listener_update_is_refused_and_envoy_keeps_serving() {
    let _ports = fixed_ports_lock();
    let dir = dynamic_copy("invalid");
    let _greeters = three_greeters(Duration::ZERO);
    wasm_path();
    let envoy = EnvoyProcess::start(
        dir.join("envoy.yaml"),
        EnvoyOptions::named("dynamic-invalid").concurrency(2),
    )
    .unwrap();
    let lds = dir.join("lds.yaml");
    let good = fs::read_to_string(&lds).unwrap();
    assert!(
        good.contains(r#"value: "{}""#),
        "the plugin configuration line moved"
    );
    let rejected = || envoy.stat("listener_manager.lds.update_rejected").unwrap();
    assert_eq!(calls(50, 4, &[]).await.ok(), 50);

    for (i, (config, expected)) in INVALID_CONFIGS.iter().enumerate() {
        let before = rejected();
        // A YAML single-quoted string: only ' needs escaping (as '').
        let value = format!("value: '{}'", config.replace('\'', "''"));
        replace_file(&lds, &good.replace(r#"value: "{}""#, &value));
        eventually(Duration::from_secs(10), || {
            if rejected() > before {
                Ok(())
            } else {
                Err(format!("row {i}: update with {config} not rejected"))
            }
        })
        .unwrap();
        let log = envoy.log_contents();
        assert!(
            log.lines()
                .any(|l| l.ends_with(&format!("wasm log ewma-balancer: {expected}"))),
            "row {i}: {config}: expected the line\n  {expected}\nin\n{}",
            envoy.log_tail()
        );
        let still = calls(20, 4, &[]).await;
        assert_eq!(
            still.ok(),
            20,
            "row {i}: Envoy stopped serving after {config}"
        );
    }
    // And a valid update is still taken.
    let accepted = envoy.stat("listener_manager.lds.update_success").unwrap();
    replace_file(
        &lds,
        &good.replace(r#"value: "{}""#, r#"value: '{"exploreRatio":0.02}'"#),
    );
    eventually(Duration::from_secs(10), || {
        let now = envoy.stat("listener_manager.lds.update_success")?;
        if now > accepted {
            Ok(())
        } else {
            Err("valid update not applied".into())
        }
    })
    .unwrap();
    assert_eq!(calls(50, 4, &[]).await.ok(), 50);
    println!(
        "{} invalid configurations refused; Envoy served throughout",
        INVALID_CONFIGS.len()
    );
}
