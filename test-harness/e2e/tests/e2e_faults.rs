//! Faults in a real Envoy (2 workers) with real greeters on 127.0.0.1:50051-50053, each
//! compared in the same test with Envoy's round robin where that makes sense: a backend
//! killed and restarted, a backend that fails at once, a backend that never answers, and
//! the filter's counters against the client's. No retries unless a test says so.
//! Each test holds the fixed-ports lock and stops every process it started.

#![allow(clippy::unwrap_used, clippy::await_holding_lock)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use e2e::{fixed_ports_lock, EnvoyOptions, EnvoyProcess, Greeter};
use loadgen::open::Tally;

const QPS: f64 = 400.0;
const TICK: Duration = Duration::from_millis(500);
const DEAD: &str = "127.0.0.1:50053";

fn start_envoy(config: PathBuf, name: &str) -> EnvoyProcess {
    wasm_path();
    EnvoyProcess::start(config, EnvoyOptions::named(name).concurrency(2)).unwrap()
}

/// Envoy's counters of the greeter cluster that tell what retries did.
const RETRY_STATS: [&str; 5] = [
    "upstream_rq_retry",
    "upstream_rq_retry_overflow",
    "upstream_rq_retry_limit_exceeded",
    "upstream_cx_connect_fail",
    "upstream_cx_destroy_remote_with_active_rq",
];

/// Runs 12 s of open-loop load; the third backend is killed at 2 s and restarted on
/// the same port at 5 s. Returns the half-second tallies and Envoy's [`RETRY_STATS`].
async fn kill_and_restart(
    config: PathBuf,
    name: &str,
) -> (Vec<Tally>, BTreeMap<&'static str, u64>) {
    let mut greeters = three_greeters(Duration::ZERO);
    let envoy = start_envoy(config, name);
    calls(300, 8, &[]).await; // warm-up: the filter learns the endpoints
    let load = open_load(QPS, Duration::from_secs(12), TICK, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    greeters[2].kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    greeters[2] = Greeter::on(50053).spawn(greeter_server()).unwrap();
    let (intervals, _) = load.await.unwrap();
    let stats = RETRY_STATS
        .into_iter()
        .map(|s| (s, envoy.stat(&format!("cluster.greeter.{s}")).unwrap()))
        .collect();
    println!("{name}: {stats:?}");
    (intervals, stats)
}

/// Calls that did not succeed: refused with a gRPC status, or no answer at all.
fn unsuccessful(t: &Tally) -> u64 {
    t.total() - t.good()
}

/// The first half-second interval, from `from` on, where `backend` served at least
/// `share` of the calls; as seconds since the start of the load.
fn first_interval_with_share(
    intervals: &[Tally],
    from: usize,
    backend: &str,
    share: f64,
) -> Option<f64> {
    (from..intervals.len())
        .find(|&i| {
            let t = &intervals[i];
            t.total() > 0
                && t.per_backend().get(backend).copied().unwrap_or(0) as f64
                    >= share * t.total() as f64
        })
        .map(|i| (i + 1) as f64 * TICK.as_secs_f64())
}

/// A backend killed under load: the filter fails at most 5 % of the calls round robin
/// fails, with no retries; with the retry policy documented in ewma.yaml, only a call
/// whose response was already streaming when the backend died (usually none). Once
/// restarted on the same port, the backend is used again within seconds.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_backend_costs_a_fraction_of_round_robins_failures_and_is_reused_after_restart() {
    let _ports = fixed_ports_lock();
    let (rr, _) = kill_and_restart(static_config("round-robin.yaml"), "faults-kill-rr").await;
    let (ewma, _) = kill_and_restart(static_config("ewma.yaml"), "faults-kill-ewma").await;
    let (retried, stats) =
        kill_and_restart(with_retries_enabled("ewma.yaml"), "faults-kill-retries").await;
    let failed = |t: &[Tally]| unsuccessful(&merged(t, 0, t.len()));
    let reused_after = first_interval_with_share(&ewma, 10, DEAD, 0.10).map(|t| t - 5.0);
    println!(
        "failed calls: round robin {}, ewma {}, ewma with retries {}; \
         restarted backend back at >=10% share after {reused_after:?} s",
        failed(&rr),
        failed(&ewma),
        failed(&retried)
    );
    assert!(
        failed(&rr) >= 100,
        "round robin should fail about a third of the calls while the backend is down: {}",
        failed(&rr)
    );
    assert!(
        failed(&ewma) * 20 <= failed(&rr),
        "ewma failed {} calls, round robin {}",
        failed(&ewma),
        failed(&rr)
    );
    // With retries, every refused connection is retried on another endpoint, within the
    // retry limit and the cluster's retry circuit breaker. The one kind of call no proxy
    // can save is one whose response was already streaming when the process died (Envoy
    // has sent its headers on): at 400 calls/s and sub-millisecond calls the kill catches
    // at most one such call, and usually none (round robin's failures exceed its refused
    // connections by that one call in about one run in four; with retries 0 failed in
    // most runs, 1 in one CI run). Without retries the filter fails 3-6 calls.
    assert!(
        stats["upstream_rq_retry"] > 0,
        "no retry happened: {stats:?}"
    );
    assert_eq!(stats["upstream_rq_retry_overflow"], 0, "{stats:?}");
    assert_eq!(stats["upstream_rq_retry_limit_exceeded"], 0, "{stats:?}");
    assert!(
        failed(&retried) <= 1,
        "with retries: {:?}; Envoy: {stats:?}",
        merged(&retried, 0, retried.len()).failures_by_code()
    );
    let reused_after = reused_after.expect("the restarted backend never got 10% of calls again");
    assert!(reused_after <= 6.0, "reused only after {reused_after} s");
}

/// A backend that answers UNAVAILABLE at once gets at most 2 % of the upstream requests
/// after warm-up (round robin gives it a third).
#[tokio::test(flavor = "multi_thread")]
async fn a_fast_failing_backend_gets_at_most_two_percent_of_requests() {
    let _ports = fixed_ports_lock();
    let _greeters = greeters_with_third(|g| g.fail_rate(1.0));
    let mut shares = Vec::new();
    for (config, name) in [
        ("round-robin.yaml", "faults-ff-rr"),
        ("ewma.yaml", "faults-ff-ewma"),
    ] {
        let envoy = start_envoy(static_config(config), name);
        let warm = open_load(QPS, Duration::from_secs(2), TICK, &[]);
        warm.await.unwrap();
        let before = upstream_requests(&envoy);
        let (_, tally) = open_load(QPS, Duration::from_secs(5), TICK, &[])
            .await
            .unwrap();
        let after = upstream_requests(&envoy);
        let delta = |addr: &str| after.get(addr).unwrap_or(&0) - before.get(addr).unwrap_or(&0);
        let total: u64 = after.keys().map(|a| delta(a)).sum();
        let share = delta(DEAD) as f64 / total.max(1) as f64;
        println!(
            "{config}: failing backend got {:.2}% of {total} upstream requests; client success {:.2}%",
            100.0 * share,
            100.0 * tally.success_rate().unwrap_or(0.0)
        );
        shares.push(share);
    }
    assert!(shares[0] > 0.30, "round robin share {}", shares[0]);
    assert!(
        shares[1] <= 0.02,
        "ewma sent {:.2}% to the failing backend",
        100.0 * shares[1]
    );
}

/// A backend that accepts calls but never answers: its calls time out after the route's
/// 5 s, and the filter stops sending it calls long before that (the time its first call
/// has waited makes it dear within milliseconds, the 5 s failures afterwards): at most
/// 1 % of the calls fail (3 or 4 of 1,600 seen, the calls before the filter knew the
/// membership among them; 15 to 64 before the wait counted, when only the pending count
/// held it back while its estimate decayed).
#[tokio::test(flavor = "multi_thread")]
async fn a_backend_that_never_answers_times_out_per_route_and_is_avoided() {
    let _ports = fixed_ports_lock();
    let _greeters = greeters_with_third(|g| g.hang());
    let mut results = Vec::new();
    for (config, name) in [
        ("round-robin.yaml", "faults-hang-rr"),
        ("ewma.yaml", "faults-hang-ewma"),
    ] {
        let envoy = start_envoy(static_config(config), name);
        let (_, tally) = open_load(200.0, Duration::from_secs(8), TICK, &[])
            .await
            .unwrap();
        // Every call of that load has been answered or timed out (5 s route timeout) by
        // now; 2 s more of load show what the hung backend gets after its timeouts.
        let before = upstream_requests(&envoy);
        let (_, late) = open_load(200.0, Duration::from_secs(2), TICK, &[])
            .await
            .unwrap();
        let after = upstream_requests(&envoy);
        let late_to_hung = after.get(DEAD).unwrap_or(&0) - before.get(DEAD).unwrap_or(&0);
        println!(
            "{config}: {} of {} calls failed ({:?}), slowest {:?}; after the timeouts the hung \
             backend got {late_to_hung} of {} calls",
            unsuccessful(&tally),
            tally.total(),
            tally.failures_by_code(),
            tally.max(),
            late.total()
        );
        results.push((tally, late_to_hung, late.total()));
    }
    let (rr, ewma) = (&results[0], &results[1]);
    assert!(
        unsuccessful(&rr.0) * 4 >= rr.0.total(),
        "round robin failed {}",
        unsuccessful(&rr.0)
    );
    assert!(
        unsuccessful(&ewma.0) * 100 <= ewma.0.total(),
        "ewma failed {} of {}: {:?}",
        unsuccessful(&ewma.0),
        ewma.0.total(),
        ewma.0.failures_by_code()
    );
    assert!(
        ewma.1 * 50 <= ewma.2,
        "after the timeouts the hung backend still got {} of {} calls",
        ewma.1,
        ewma.2
    );
}

/// With two workers under load, the filter's per-endpoint counters add up to exactly
/// what the client counted: calls, and failures (one backend fails a fifth of its calls).
#[tokio::test(flavor = "multi_thread")]
async fn two_workers_count_exactly_what_the_client_sent() {
    let _ports = fixed_ports_lock();
    let _greeters = greeters_with_third(|g| g.fail_rate(0.2));
    let envoy = start_envoy(static_config("ewma.yaml"), "faults-count");
    let report = calls(5000, 32, &[]).await;
    assert_eq!(report.total(), 5000);
    let counted = e2e::eventually(Duration::from_secs(5), || {
        let requests = filter_counter_sum(&envoy, "ewma_balancer_requests_total");
        let failures = filter_counter_sum(&envoy, "ewma_balancer_failures_total");
        let decisions = filter_counter_sum(&envoy, "ewma_balancer_decisions_total");
        if (requests, failures, decisions) == (report.total(), report.failed(), report.total()) {
            Ok((requests, failures, decisions))
        } else {
            Err(format!(
                "filter counted requests {requests}, failures {failures}, decisions \
                 {decisions}; client {} calls, {} failed",
                report.total(),
                report.failed()
            ))
        }
    })
    .unwrap();
    println!(
        "counted {counted:?}; client failures {:?}",
        report.failures_by_code()
    );
    assert!(report.failed() > 0, "the failing backend failed nothing");
}

/// Requests that are not gRPC are not balanced (round robin spreads them, the filter
/// counts nothing), and a client's override header on them is dropped all the same.
#[tokio::test(flavor = "multi_thread")]
async fn non_grpc_requests_are_left_to_round_robin_and_cannot_steer() {
    let _ports = fixed_ports_lock();
    let _greeters = three_greeters(Duration::ZERO);
    let envoy = start_envoy(static_config("ewma.yaml"), "faults-non-grpc");
    calls(200, 4, &[]).await;
    std::thread::sleep(Duration::from_millis(600)); // two ticks: counters flushed
    let decisions_before = filter_counter_sum(&envoy, "ewma_balancer_decisions_total");
    let before = upstream_requests(&envoy);
    for _ in 0..60 {
        let response = plain_http_post(&format!("{OVERRIDE_HEADER}: {DEAD}"));
        assert!(response.starts_with("HTTP/1.1 "), "{response}");
    }
    std::thread::sleep(Duration::from_millis(600));
    let after = upstream_requests(&envoy);
    let delta: Vec<u64> = ["127.0.0.1:50051", "127.0.0.1:50052", DEAD]
        .iter()
        .map(|a| after.get(*a).unwrap_or(&0) - before.get(*a).unwrap_or(&0))
        .collect();
    println!("60 plain HTTP/1.1 requests naming {DEAD}: upstream requests {delta:?}");
    assert_eq!(delta.iter().sum::<u64>(), 60);
    // Round robin per worker (two workers): about 20 each; steered, 60 to one.
    assert!(
        delta.iter().all(|n| (14..=26).contains(n)),
        "not round robin: {delta:?}"
    );
    assert_eq!(
        filter_counter_sum(&envoy, "ewma_balancer_decisions_total"),
        decisions_before,
        "the filter balanced non-gRPC requests"
    );
}

/// One `POST /helloworld.Greeter/SayHello` with a JSON body over HTTP/1.1, and an extra
/// header line; returns the response head.
fn plain_http_post(extra_header: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect("127.0.0.1:10000").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let body = r#"{"name":"world"}"#;
    write!(
        stream,
        "POST /helloworld.Greeter/SayHello HTTP/1.1\r\nHost: greeter\r\n\
         Content-Type: application/json\r\n{extra_header}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// A gRPC client naming an endpoint in the override header never steers: whichever
/// endpoint it names is made the slow one, and still gets at most 5 % of the calls.
#[tokio::test(flavor = "multi_thread")]
async fn a_spoofed_override_header_naming_any_endpoint_never_steers() {
    let _ports = fixed_ports_lock();
    for slow_port in [50051_u16, 50052, 50053] {
        let named = format!("127.0.0.1:{slow_port}");
        let _greeters: Vec<_> = [50051_u16, 50052, 50053]
            .iter()
            .map(|&port| {
                let g = Greeter::on(port);
                let g = if port == slow_port {
                    g.delay(Duration::from_millis(40))
                } else {
                    g
                };
                g.spawn(greeter_server()).unwrap()
            })
            .collect();
        let _envoy = start_envoy(
            static_config("ewma.yaml"),
            &format!("faults-spoof-{slow_port}"),
        );
        let spoof = format!("{OVERRIDE_HEADER}:{named}");
        calls(300, 8, &[&spoof]).await;
        let report = calls(1000, 8, &[&spoof]).await;
        println!(
            "naming {named} (slow): it served {:.1}%",
            100.0 * share(&report, &named)
        );
        assert_eq!(report.ok(), 1000);
        assert!(
            share(&report, &named) <= 0.05,
            "the header naming {named} steered: {:?}",
            report.per_backend()
        );
    }
}

/// Every backend fails (UNAVAILABLE at once) for 3 s under load, then all recover
/// (SIGUSR1): each is back to at least 20 % of its fair share (a third) within 3 s.
/// Before probes, one recovered backend stayed at 0.7 % for 5 s. (What each gets later
/// is printed, not asserted: on a loaded machine a single slow sample can make one of
/// them dear for a few seconds, the uneven-shares problem, which is not about failures.)
#[tokio::test(flavor = "multi_thread")]
async fn after_every_backend_failed_each_is_back_within_three_seconds_of_recovering() {
    let _ports = fixed_ports_lock();
    let greeters: Vec<_> = e2e::BACKEND_PORTS
        .into_iter()
        .map(|p| {
            Greeter::on(p)
                .fail_rate(1.0)
                .spawn(greeter_server())
                .unwrap()
        })
        .collect();
    let _envoy = start_envoy(static_config("ewma.yaml"), "faults-all-fail");
    let load = open_load(QPS, Duration::from_secs(9), TICK, &[]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for g in &greeters {
        g.heal().unwrap();
    }
    let (intervals, _) = load.await.unwrap();
    let fair = 1.0 / 3.0;
    let mut back_after = Vec::new();
    for backend in ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"] {
        let after = first_interval_with_share(&intervals, 6, backend, 0.2 * fair).map(|t| t - 3.0);
        let last = merged(&intervals, 14, intervals.len());
        let share = last.per_backend().get(backend).copied().unwrap_or(0) as f64
            / last.total().max(1) as f64;
        println!(
            "{backend}: back at >= 20 % of a fair share {after:?} s after recovering; {:.1} % of the calls in the last 2 s",
            share * 100.0
        );
        back_after.push((backend, after));
    }
    for (backend, after) in back_after {
        let after = after.unwrap_or_else(|| panic!("{backend} never got 20 % of a fair share"));
        assert!(after <= 3.0, "{backend} back only after {after} s");
    }
}
