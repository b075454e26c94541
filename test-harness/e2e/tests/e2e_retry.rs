//! The override header names `winner,runner-up`, and Envoy's `override_host` takes them
//! in order, one per attempt: with the retry policy `ewma.yaml` documents switched on, a
//! retried call goes to the runner-up. Real Envoy (2 workers), real greeters on
//! 127.0.0.1:50051-50053, two of them failing at once; an access log records, per call,
//! the header the filter set, the endpoint that answered and the attempts it took.
//! Holds the fixed-ports lock and stops every process it started.

#![allow(clippy::unwrap_used, clippy::await_holding_lock)]

mod common;

use std::time::Duration;

const TICK: Duration = Duration::from_millis(500);

use common::*;
use e2e::{fixed_ports_lock, EnvoyOptions, EnvoyProcess, Greeter, BACKEND_PORTS};

/// Calls that did not succeed: refused with a gRPC status, or no answer at all.
fn unsuccessful(t: &loadgen::open::Tally) -> u64 {
    t.total() - t.good()
}

/// One call as the access log saw it.
#[derive(Debug)]
struct Logged {
    named: Vec<String>,
    served_by: String,
    attempts: u32,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_call_goes_to_the_runner_up_and_two_failing_endpoints_are_never_both_named() {
    let _ports = fixed_ports_lock();
    let [good, bad_a, bad_b] = BACKEND_PORTS;
    let failing = [format!("127.0.0.1:{bad_a}"), format!("127.0.0.1:{bad_b}")];
    let _greeters: Vec<_> = [
        Greeter::on(good),
        Greeter::on(bad_a).fail_rate(1.0).fail_code("UNAVAILABLE"),
        Greeter::on(bad_b).fail_rate(1.0).fail_code("UNAVAILABLE"),
    ]
    .into_iter()
    .map(|g| g.spawn(e2e::greeter_server()).unwrap())
    .collect();

    // ewma.yaml with its documented retry policy on, and an access log of every call.
    let log = e2e::repo_root().join("target/e2e-logs/retry-access.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&log);
    let config = with_retries_enabled("ewma.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    let access_log = format!(
        "          stat_prefix: greeter\n          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: {}\n              log_format:\n                text_format_source:\n                  inline_string: \"%REQ(X-EWMA-BALANCER-HOST)% %UPSTREAM_HOST% %UPSTREAM_REQUEST_ATTEMPT_COUNT%\\n\"\n",
        log.display()
    );
    assert!(text.contains("          stat_prefix: greeter\n"));
    let text = text.replacen("          stat_prefix: greeter\n", &access_log, 1);
    let config = config.with_file_name("retries-access-log-ewma.yaml");
    std::fs::write(&config, text).unwrap();
    wasm_path();
    let envoy = EnvoyProcess::start(
        &config,
        EnvoyOptions::named("retry-runner-up")
            .concurrency(2)
            .arg("--file-flush-interval-msec")
            .arg("50"),
    )
    .unwrap();

    // 200 calls/s for 6 s; the first 2 s are the filter meeting the endpoints (Envoy's
    // default retry circuit breaker, 3 retries at once, can overflow while round robin
    // still picks the failing ones).
    let (intervals, report) = open_load(200.0, Duration::from_secs(6), TICK, &[])
        .await
        .unwrap();
    let settled = merged(&intervals, 4, intervals.len());
    let logged = e2e::eventually(Duration::from_secs(5), || {
        let lines: Vec<Logged> = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            // Not the calls of the first 2 s.
            .skip(400)
            .filter_map(|l| {
                let mut f = l.split(' ');
                Some(Logged {
                    named: f.next()?.split(',').map(str::to_owned).collect(),
                    served_by: f.next()?.to_owned(),
                    attempts: f.next()?.parse().ok()?,
                })
            })
            .collect();
        if lines.len() as u64 + 400 >= report.total() {
            Ok(lines)
        } else {
            Err(format!(
                "{} of {} calls logged",
                lines.len(),
                report.total()
            ))
        }
    })
    .unwrap();
    drop(envoy);

    let retried: Vec<&Logged> = logged.iter().filter(|l| l.attempts == 2).collect();
    let to_runner_up = retried
        .iter()
        .filter(|l| l.named.get(1) == Some(&l.served_by))
        .count();
    let both_failing = logged
        .iter()
        .filter(|l| l.named.len() == 2 && l.named.iter().all(|n| failing.contains(n)))
        .count();
    println!(
        "{} calls, {} failed ({} after the first 2 s); after 2 s: {} calls logged, {} \
         retried once, {to_runner_up} of them served by the runner-up, both named endpoints \
         failing: {both_failing}; examples {:?}",
        report.total(),
        unsuccessful(&report),
        unsuccessful(&settled),
        logged.len(),
        retried.len(),
        retried.iter().take(3).collect::<Vec<_>>()
    );
    assert_eq!(
        unsuccessful(&settled),
        0,
        "{:?}",
        settled.failures_by_code()
    );
    assert!(
        !retried.is_empty(),
        "no call was retried: the failing endpoints got no call"
    );
    assert_eq!(
        to_runner_up,
        retried.len(),
        "a call retried once was not served by the runner-up"
    );
    assert!(
        logged
            .iter()
            .all(|l| l.named.len() == 2 && l.named[0] != l.named[1]),
        "every call names two different endpoints"
    );
    assert_eq!(both_failing, 0, "two failing endpoints named for one call");
}
