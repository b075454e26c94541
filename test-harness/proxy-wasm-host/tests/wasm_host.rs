//! The built `ewma_balancer.wasm` in the wasmtime proxy-wasm host: many workers, a fake
//! clock, Envoy's shared-data semantics, an emulated `override_host` cluster. Every test
//! runs in milliseconds to seconds and is deterministic. Build the module first with
//! `make wasm`.

#![allow(clippy::unwrap_used, clippy::panic, clippy::type_complexity)]

use ewma_balancer::balancer::CHECK_EVERY;
use std::time::Duration;

use proxy_wasm_host::scenario::{Endpoint, Nanos, Reply, Run, Scenario, EPOCH};
use proxy_wasm_host::{
    endpoint_records, filter_host, headers, Vm, VmOptions, WasmHost, LOG_CRITICAL,
};

const MS: Nanos = 1_000_000;
const SEC: Nanos = 1_000 * MS;
const PREFIX: &str = "ewma-balancer";
const HEADER: &str = "x-ewma-balancer-host";

fn host() -> WasmHost {
    filter_host().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(i: usize) -> String {
    format!("10.0.{}.{}:8080", i / 250, i % 250 + 1)
}

/// Share of requests arriving in `[from, to)` (scenario seconds) served by `endpoint`.
fn share_between(run: &Run, endpoint: &str, from: u64, to: u64) -> f64 {
    let window: Vec<_> = run
        .requests
        .iter()
        .filter(|r| r.at >= from * SEC && r.at < to * SEC)
        .collect();
    let hits = window
        .iter()
        .filter(|r| r.endpoint.as_deref() == Some(endpoint))
        .count();
    hits as f64 / window.len().max(1) as f64
}

fn assert_no_critical_logs(vms: &[Vm]) {
    for vm in vms {
        let critical: Vec<_> = vm
            .logs()
            .iter()
            .filter(|l| l.level >= LOG_CRITICAL)
            .collect();
        assert!(
            critical.is_empty(),
            "critical log lines (a panic?): {critical:?}"
        );
        assert!(
            vm.unsupported_calls().is_empty(),
            "{:?}",
            vm.unsupported_calls()
        );
    }
}

#[test]
fn a_slow_endpoint_is_avoided_and_recovered_from() {
    let host = host();
    let mut s = Scenario::new(vec![
        Endpoint::new(addr(0), ms(1)),
        Endpoint::new(addr(1), ms(1)),
        Endpoint::new(addr(2), ms(1)).latency_fn(|t| if t < 20 * SEC { ms(40) } else { ms(1) }),
    ]);
    s.workers = 2;
    s.requests = 20_000;
    s.interval = ms(4);
    let run = s.run(&host).unwrap();
    let slow = share_between(&run, &addr(2), 2, 20);
    let recovered = share_between(&run, &addr(2), 65, 80);
    println!(
        "slow endpoint share while slow: {:.2}%, after recovery: {:.1}%",
        100.0 * slow,
        100.0 * recovered
    );
    assert!(slow <= 0.05, "slow endpoint got {:.1}%", 100.0 * slow);
    assert!(
        recovered >= 0.15,
        "recovered endpoint got only {:.1}%",
        100.0 * recovered
    );
    assert_no_critical_logs(&run.vms);
}

#[test]
fn a_fast_failing_endpoint_is_avoided() {
    let host = host();
    let mut s = Scenario::new(vec![
        Endpoint::new(addr(0), ms(2)),
        Endpoint::new(addr(1), ms(2)),
        Endpoint::new(addr(2), Duration::from_micros(200)).always(Reply::Status(14)),
    ]);
    s.workers = 2;
    s.requests = 10_000;
    s.warm_up = 1_000;
    let run = s.run(&host).unwrap();
    let share = run.share(&addr(2));
    let failed = run
        .requests
        .iter()
        .skip(1_000)
        .filter(|r| r.reply != Reply::Ok)
        .count();
    println!(
        "fast-failing endpoint share {:.2}%, failed requests {failed} of 9000",
        100.0 * share
    );
    assert!(
        share <= 0.02,
        "fast-failing endpoint got {:.2}%",
        100.0 * share
    );
    assert_no_critical_logs(&run.vms);
}

#[test]
fn an_endpoint_that_left_is_forgotten_within_a_bounded_number_of_picks() {
    let host = host();
    let mut s = Scenario::new(vec![
        Endpoint::new(addr(0), ms(1)),
        Endpoint::new(addr(1), ms(1)),
        Endpoint::new(addr(2), ms(1)).leaves_at(Duration::from_secs(5)),
    ]);
    s.workers = 2;
    s.requests = 5_000;
    s.interval = ms(2);
    let run = s.run(&host).unwrap();
    let gone = addr(2);
    // Each worker names it at most CHECK_EVERY times after it left: the next checked
    // pick reads `upstream.address`, sees the mismatch and forgets it. (Envoy serves the
    // named-but-gone endpoint's requests from its fallback, so none of them fails.)
    for worker in 0..2 {
        let named_after = run
            .requests
            .iter()
            .filter(|r| {
                r.worker == worker && r.at >= 5 * SEC && r.chosen.as_deref() == Some(gone.as_str())
            })
            .count();
        assert!(
            named_after <= CHECK_EVERY as usize,
            "worker {worker} named the departed endpoint {named_after} times"
        );
    }
    assert!(run
        .requests
        .iter()
        .filter(|r| r.at >= 5 * SEC)
        .all(|r| r.endpoint.as_deref() != Some(gone.as_str())));
    let records = endpoint_records(host.env(), PREFIX, "greeter");
    assert!(
        records.iter().all(|r| r.addr != gone),
        "still in shared data"
    );
    assert_eq!(records.len(), 2);
    assert_no_critical_logs(&run.vms);
}

#[test]
fn a_new_endpoint_gets_traffic_within_a_bounded_number_of_requests() {
    let host = host();
    let mut s = Scenario::new(vec![
        Endpoint::new(addr(0), ms(2)),
        Endpoint::new(addr(1), ms(2)),
        Endpoint::new(addr(2), ms(2)),
        Endpoint::new(addr(3), ms(2)).joins_at(Duration::from_secs(5)),
    ]);
    s.workers = 2;
    s.requests = 8_000;
    let run = s.run(&host).unwrap();
    let newcomer = addr(3);
    let first = run
        .requests
        .iter()
        .filter(|r| r.at >= 5 * SEC)
        .position(|r| r.endpoint.as_deref() == Some(newcomer.as_str()))
        .unwrap();
    let later = share_between(&run, &newcomer, 7, 8);
    println!(
        "new endpoint first served after {first} requests; share a second later {:.1}%",
        100.0 * later
    );
    // exploreRatio 1 % over 4 endpoints: one request in 400 on average reaches it.
    assert!(first <= 2_000, "took {first} requests");
    assert!(later >= 0.15, "new endpoint share {:.1}%", 100.0 * later);
}

#[test]
fn pending_counts_stay_exact_with_two_workers_interleaving() {
    let host = host();
    host.set_now(EPOCH);
    let mut vms = [
        host.vm(&VmOptions::default()).unwrap(),
        host.vm(&VmOptions::default()).unwrap(),
    ];
    let request = || {
        headers(&[
            ("content-type", "application/grpc"),
            (":path", "/helloworld.Greeter/SayHello"),
        ])
    };
    let cluster: &[&str] = &["xds", "cluster_name"];
    // Both workers learn two endpoints from completed requests.
    for (i, vm) in vms.iter_mut().enumerate() {
        for e in 0..2 {
            let (ctx, _) = vm
                .request(request(), &[(cluster, b"greeter".to_vec())])
                .unwrap();
            vm.set_property(ctx, &["upstream", "address"], addr(e).into_bytes());
            vm.set_property(ctx, &["response", "code"], 200i64.to_le_bytes().to_vec());
            vm.set_property(
                ctx,
                &["response", "grpc_status"],
                0i64.to_le_bytes().to_vec(),
            );
            vm.response_headers(ctx, headers(&[(":status", "200")]), false)
                .unwrap();
            vm.finish(ctx).unwrap();
            host.set_now(EPOCH + (i * 2 + e) as u64 * MS);
        }
    }
    let mut open = Vec::new();
    for i in 0..60 {
        let w = i % 2;
        let (ctx, _) = vms[w]
            .request(request(), &[(cluster, b"greeter".to_vec())])
            .unwrap();
        let named = vms[w]
            .request_headers(ctx)
            .iter()
            .find(|(k, _)| k == HEADER.as_bytes())
            // `winner,runner-up`: the pending count is the winner's.
            .map(|(_, v)| {
                let v = String::from_utf8(v.clone()).unwrap();
                v.split(',').next().unwrap().to_owned()
            });
        open.push((w, ctx, named));
        if i % 7 == 0 {
            vms[1 - w].tick().unwrap();
        }
    }
    for vm in &mut vms {
        vm.tick().unwrap();
    }
    let pending = |host: &WasmHost| -> Vec<(String, u32)> {
        let mut v: Vec<_> = endpoint_records(host.env(), PREFIX, "greeter")
            .into_iter()
            .map(|r| (r.addr, r.pending))
            .collect();
        v.sort();
        v
    };
    let expected = |open: &[(usize, u32, Option<String>)]| -> Vec<(String, u32)> {
        (0..2)
            .map(|e| {
                (
                    addr(e),
                    open.iter()
                        .filter(|(_, _, n)| n.as_deref() == Some(addr(e).as_str()))
                        .count() as u32,
                )
            })
            .collect()
    };
    assert_eq!(pending(&host), expected(&open));
    assert!(
        open.iter().filter(|o| o.2.is_some()).count() >= 50,
        "the filter named too few endpoints"
    );
    // Finish in an interleaved order, with ticks racing the completions.
    open.sort_by_key(|(w, ctx, _)| (ctx % 3, *w));
    for (i, (w, ctx, named)) in open.iter().enumerate() {
        let vm = &mut vms[*w];
        let served = named.clone().unwrap_or_else(|| addr(0));
        vm.set_property(*ctx, &["upstream", "address"], served.into_bytes());
        vm.set_property(*ctx, &["response", "code"], 200i64.to_le_bytes().to_vec());
        vm.set_property(
            *ctx,
            &["response", "grpc_status"],
            0i64.to_le_bytes().to_vec(),
        );
        vm.response_headers(*ctx, headers(&[(":status", "200")]), false)
            .unwrap();
        vm.finish(*ctx).unwrap();
        if i % 5 == 0 {
            vms[1 - *w].tick().unwrap();
        }
    }
    for vm in &mut vms {
        vm.tick().unwrap();
    }
    assert_eq!(pending(&host), vec![(addr(0), 0), (addr(1), 0)]);
    assert_no_critical_logs(&vms);
}

#[test]
fn shared_data_stays_bounded_while_ten_thousand_endpoints_churn() {
    let host = host();
    let mut endpoints: Vec<Endpoint> = (0..10_000)
        .map(|i| {
            // about 30 endpoints in the cluster at any time, each for 300 ms
            let t = Duration::from_millis(10 * i as u64);
            Endpoint::new(addr(i), ms(1))
                .joins_at(t)
                .leaves_at(t + ms(300))
        })
        .collect();
    endpoints.push(Endpoint::new("10.9.9.9:8080", ms(1)));
    let mut s = Scenario::new(endpoints);
    // Explore a lot so that many endpoints are learned and the bound is what limits them.
    s.options.plugin_config =
        br#"{"maxEndpoints":64,"endpointTtl":"1s","exploreRatio":0.5}"#.to_vec();
    s.requests = 50_000;
    s.interval = Duration::from_micros(2_000);
    let run = s.run(&host).unwrap();
    let known = endpoint_records(host.env(), PREFIX, "greeter").len();
    let shared = host.env().shared();
    let peak_slots = shared
        .snapshot()
        .keys()
        .filter(|k| !k.ends_with("index") && !k.contains("|membership|"))
        .count();
    assert!(
        peak_slots <= 64,
        "{peak_slots} record slots were ever written"
    );
    let keys = shared.snapshot().len();
    let bytes = shared.bytes();
    println!("after 10,000 endpoints: {keys} keys, {bytes} bytes of shared data, {known} endpoints known");
    assert!(known <= 64, "{known} endpoints known");
    // 64 records, the index, and the process-wide membership lease and registry (this
    // Envoy has no admin cluster, so there are no members keys).
    assert!(keys <= 67, "{keys} keys");
    // 64 records of at most 128 bytes under keys of ~22 bytes, the index, the lease (18
    // bytes) and the registry (one cluster name).
    assert!(
        bytes <= 64 * (128 + 24) + (12 + 64 * 20) + 32 + 2 * 40 + 24,
        "{bytes} bytes"
    );
    drop(shared);
    assert_no_critical_logs(&run.vms);
}

#[test]
fn the_clock_going_backwards_or_jumping_an_hour_breaks_nothing() {
    let host = host();
    let mut s = Scenario::new(vec![
        Endpoint::new(addr(0), ms(1)),
        Endpoint::new(addr(1), ms(1)),
        Endpoint::new(addr(2), ms(40)),
    ]);
    s.workers = 2;
    s.requests = 15_000;
    s.interval = ms(2);
    s.clock = Box::new(|t| match t {
        t if t < 10 * SEC => EPOCH + t,
        t if t < 20 * SEC => EPOCH + t - 3_600 * SEC,
        t => EPOCH + t + 3_600 * SEC,
    });
    let run = s.run(&host).unwrap();
    for (from, to) in [(3, 10), (12, 20), (22, 30)] {
        let share = share_between(&run, &addr(2), from, to);
        assert!(
            share <= 0.05,
            "slow share {:.1}% in {from}..{to}s",
            100.0 * share
        );
    }
    assert_no_critical_logs(&run.vms);
}

#[test]
fn malformed_properties_and_headers_never_trap_the_vm() {
    let host = host();
    host.set_now(EPOCH);
    let mut vm = host.vm(&VmOptions::default()).unwrap();
    let huge = vec![b'x'; 1 << 20];
    let not_utf8 = vec![0xff, 0xfe, 0x00, 0xc3];
    let cluster: &[&str] = &["xds", "cluster_name"];
    let cases: Vec<(Vec<(Vec<u8>, Vec<u8>)>, Vec<(&[&str], Vec<u8>)>)> = vec![
        (headers(&[("content-type", "application/grpc")]), vec![]),
        (
            headers(&[("content-type", "application/grpc")]),
            vec![(cluster, not_utf8.clone())],
        ),
        (
            headers(&[("content-type", "application/grpc")]),
            vec![(cluster, huge.clone())],
        ),
        (
            headers(&[("content-type", "application/grpc")]),
            vec![(cluster, Vec::new())],
        ),
        (
            vec![(b"content-type".to_vec(), not_utf8.clone())],
            vec![(cluster, b"greeter".to_vec())],
        ),
        (
            vec![
                (b"content-type".to_vec(), huge.clone()),
                (HEADER.as_bytes().to_vec(), huge.clone()),
            ],
            vec![(cluster, b"greeter".to_vec())],
        ),
        (
            vec![
                (b"content-type".to_vec(), b"application/grpc".to_vec()),
                (HEADER.as_bytes().to_vec(), not_utf8.clone()),
            ],
            vec![(cluster, b"greeter".to_vec())],
        ),
    ];
    let bad_responses: Vec<Vec<(&[&str], Vec<u8>)>> = vec![
        vec![],
        vec![
            (&["upstream", "address"], not_utf8.clone()),
            (&["response", "code"], vec![1, 2, 3]),
        ],
        vec![
            (&["upstream", "address"], huge.clone()),
            (&["response", "grpc_status"], (-7i64).to_le_bytes().to_vec()),
        ],
        vec![
            (&["upstream", "address"], b"not an address".to_vec()),
            (&["response", "code"], i64::MAX.to_le_bytes().to_vec()),
        ],
        vec![
            (&["upstream", "address"], Vec::new()),
            (&["response", "code"], 200i64.to_le_bytes().to_vec()),
        ],
    ];
    for (i, (request, properties)) in cases.iter().enumerate() {
        for (j, response) in bad_responses.iter().enumerate() {
            let (ctx, _) = vm
                .request(request.clone(), properties)
                .unwrap_or_else(|e| panic!("case {i}/{j}: {e}"));
            for (path, value) in response {
                vm.set_property(ctx, path, value.clone());
            }
            vm.response_headers(ctx, vec![(b":status".to_vec(), not_utf8.clone())], false)
                .unwrap();
            vm.response_trailers(ctx, vec![(b"grpc-status".to_vec(), huge.clone())])
                .unwrap();
            vm.finish(ctx)
                .unwrap_or_else(|e| panic!("case {i}/{j}: {e}"));
            host.set_now(host.now() + MS);
        }
    }
    vm.tick().unwrap();
    assert_no_critical_logs(std::slice::from_ref(&vm));
    // and the VM still balances afterwards
    let mut s = Scenario::new(vec![
        Endpoint::new(addr(0), ms(1)),
        Endpoint::new(addr(1), ms(1)),
        Endpoint::new(addr(2), ms(40)),
    ]);
    s.requests = 3_000;
    s.warm_up = 500;
    let run = s.run(&host).unwrap();
    assert!(run.share(&addr(2)) <= 0.05);
}

#[test]
fn a_client_supplied_override_header_never_survives() {
    let host = host();
    host.set_now(EPOCH);
    let mut s = Scenario::new(vec![
        Endpoint::new(addr(0), ms(1)),
        Endpoint::new(addr(1), ms(1)),
        Endpoint::new(addr(2), ms(40)),
    ]);
    s.requests = 2_000;
    s.client_headers = vec![(HEADER.into(), addr(2)), (HEADER.into(), addr(2))];
    let run = s.run(&host).unwrap();
    // The filter's own choice or nothing, never the client's, even while it knows no endpoint.
    let steered = run
        .requests
        .iter()
        .filter(|r| r.chosen.as_deref() == Some(addr(2).as_str()))
        .count();
    assert!(
        steered <= 20,
        "the client's header survived {steered} times"
    );
    assert!(run.share(&addr(2)) <= 0.05);

    let mut vm = host.vm(&VmOptions::default()).unwrap();
    for content_type in ["text/plain", "application/json", "application/grpc-web"] {
        let spoof = headers(&[
            ("content-type", content_type),
            (HEADER, "10.0.0.3:8080"),
            (HEADER, "10.0.0.3:8080"),
        ]);
        let (ctx, _) = vm
            .request(spoof, &[(&["xds", "cluster_name"], b"greeter".to_vec())])
            .unwrap();
        let left: Vec<_> = vm
            .request_headers(ctx)
            .into_iter()
            .filter(|(k, _)| k == HEADER.as_bytes())
            .collect();
        assert!(
            left.iter().all(|(_, v)| v != b"10.0.0.3:8080"),
            "{content_type}: the client's header survived: {left:?}"
        );
        vm.finish(ctx).unwrap();
    }
}

#[test]
fn an_invalid_config_is_refused_with_one_line_naming_the_field() {
    let host = host();
    let vm = host
        .vm(&VmOptions {
            plugin_config: br#"{"exploreRatio": 2}"#.to_vec(),
            ..VmOptions::default()
        })
        .unwrap();
    assert!(!vm.configured);
    let errors: Vec<_> = vm
        .logs()
        .iter()
        .filter(|l| l.level == 4)
        .map(|l| l.message.as_str())
        .collect();
    assert_eq!(
        errors,
        vec![
            r#"invalid plugin configuration: field "exploreRatio": expected a number between 0 and 0.5, got 2"#
        ]
    );
}

#[test]
fn a_module_importing_something_the_host_lacks_is_refused_by_name() {
    let wat = r#"(module (import "env" "proxy_frobnicate" (func (param i32))) (memory (export "memory") 1))"#;
    let err = WasmHost::from_binary(wat.as_bytes())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        err,
        "the module imports env.proxy_frobnicate, which this test host does not implement"
    );
}
