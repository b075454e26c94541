//! The filter in an Istio-like sidecar (envoy-configs/istio-like: Istio's stats tags and
//! inclusion list, the virtual host names istiod generates, the cluster
//! `outbound|8000||greeter-server.default.svc.cluster.local` from EDS files, the filter by
//! ECDS as istio-agent hands it over, Istio's default retry policy). Real Envoy (2
//! workers), real greeters on 127.0.0.1:50051-50055; calls carry the :authority an app in
//! the mesh would send. Each test runs on its own copy of the config directory, holds the
//! fixed-ports lock and stops every process it started. docs/istio.md states the findings.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::await_holding_lock
)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use e2e::{
    eventually, fixed_ports_lock, repo_root, EnvoyOptions, EnvoyProcess, Greeter, GreeterProcess,
};
use greeter::pb::greeter_client::GreeterClient;
use loadgen::closed::{say_hello, LoadSpec, DEFAULT_TARGET};
use loadgen::report::{CallOutcome, LoadReport};
use tonic::transport::{Channel, Endpoint};

/// What an app in namespace `default` calls the greeter by.
const AUTHORITY: &str = "greeter-server.default.svc.cluster.local:8000";
/// The outbound cluster istiod names for it.
const CLUSTER: &str = "outbound|8000||greeter-server.default.svc.cluster.local";
/// The ECDS resource and HTTP filter name of the WasmPlugin default/ewma-balancer.
const PLUGIN: &str = "extensions.istio.io/wasmplugin/default.ewma-balancer";
const MODULE: &str = "target/wasm32-wasip1/release/ewma_balancer.wasm";
const FILES: [&str; 6] = [
    "envoy.yaml",
    "lds.yaml",
    "rds.yaml",
    "cds.yaml",
    "endpoints/greeter-server.yaml",
    "ecds.yaml",
];

/// A copy of envoy-configs/istio-like under target/e2e-istio/<name>, its paths pointing
/// at the copy.
fn istio_copy(name: &str) -> PathBuf {
    let source = repo_root().join("envoy-configs/istio-like");
    let dir = repo_root().join("target/e2e-istio").join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("endpoints")).unwrap();
    for file in FILES {
        let text = fs::read_to_string(source.join(file)).unwrap();
        let text = text.replace("envoy-configs/istio-like", &dir.display().to_string());
        fs::write(dir.join(file), text).unwrap();
    }
    dir
}

/// Rewrites `file` of the copy in place (before Envoy starts) with `edit`, which must
/// change it.
fn edit(dir: &Path, file: &str, edit: impl FnOnce(&str) -> String) {
    let path = dir.join(file);
    let text = fs::read_to_string(&path).unwrap();
    let edited = edit(&text);
    assert_ne!(
        text, edited,
        "{file}: the edit changed nothing (an anchor moved?)"
    );
    fs::write(path, edited).unwrap();
}

/// `text` with `anchor` (which must occur once) replaced by `with`.
fn replace_once(text: &str, anchor: &str, with: &str) -> String {
    assert_eq!(text.matches(anchor).count(), 1, "anchor {anchor:?}");
    text.replacen(anchor, with, 1)
}

fn ecds_file(dir: &Path) -> PathBuf {
    dir.join("ecds.yaml")
}

fn start_envoy(dir: &Path, name: &str) -> EnvoyProcess {
    wasm_path();
    EnvoyProcess::start(
        dir.join("envoy.yaml"),
        EnvoyOptions::named(name).concurrency(2),
    )
    .unwrap()
}

fn greeters(specs: Vec<Greeter>) -> Vec<GreeterProcess> {
    specs
        .into_iter()
        .map(|g| g.spawn(greeter_server()).unwrap())
        .collect()
}

/// One HTTP/2 connection to Envoy's listener whose calls carry `authority`.
async fn channel(authority: &str) -> Channel {
    Endpoint::from_shared(DEFAULT_TARGET.to_owned())
        .unwrap()
        .origin(format!("http://{authority}").parse().unwrap())
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap()
}

fn spec(headers: &[&str]) -> LoadSpec {
    LoadSpec {
        headers: headers.iter().map(|h| h.parse().unwrap()).collect(),
        timeout: Duration::from_secs(10),
        ..LoadSpec::new(DEFAULT_TARGET)
    }
}

/// `count` calls addressed to `authority`, `concurrency` in flight over one connection.
async fn calls_to(authority: &str, count: u64, concurrency: usize, headers: &[&str]) -> LoadReport {
    let channel = channel(authority).await;
    let spec = Arc::new(spec(headers));
    let issued = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (channel, spec, issued) = (channel.clone(), spec.clone(), issued.clone());
        workers.spawn(async move {
            let mut client = GreeterClient::new(channel);
            let mut outcomes = Vec::new();
            while issued.fetch_add(1, Ordering::Relaxed) < count {
                outcomes.push(say_hello(&mut client, &spec).await);
            }
            outcomes
        });
    }
    let mut report = LoadReport::new();
    while let Some(outcomes) = workers.join_next().await {
        for outcome in outcomes.unwrap() {
            report.record(&outcome);
        }
    }
    report
}

/// Calls to [`AUTHORITY`] kept `concurrency` in flight (each worker pausing `gap`
/// between calls) until [`finish`](Self::finish), each recorded with when it ended.
struct Timeline {
    started: Instant,
    stop: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<(Duration, CallOutcome)>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Timeline {
    async fn start(concurrency: usize, gap: Duration) -> Self {
        let channel = channel(AUTHORITY).await;
        let spec = Arc::new(spec(&[]));
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..concurrency)
            .map(|_| {
                let (channel, spec) = (channel.clone(), spec.clone());
                let (stop, calls) = (stop.clone(), calls.clone());
                tokio::spawn(async move {
                    let mut client = GreeterClient::new(channel);
                    while !stop.load(Ordering::Relaxed) {
                        let outcome = say_hello(&mut client, &spec).await;
                        calls.lock().unwrap().push((started.elapsed(), outcome));
                        tokio::time::sleep(gap).await;
                    }
                })
            })
            .collect();
        Self {
            started,
            stop,
            calls,
            workers,
        }
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    async fn finish(self) -> Vec<(Duration, CallOutcome)> {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.unwrap();
        }
        Arc::try_unwrap(self.calls)
            .ok()
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

/// The calls that ended within `[from, to)`, as a report.
fn between(calls: &[(Duration, CallOutcome)], from: Duration, to: Duration) -> LoadReport {
    let mut report = LoadReport::new();
    for (at, outcome) in calls {
        if *at >= from && *at < to {
            report.record(outcome);
        }
    }
    report
}

/// Upstream requests per endpoint of `cluster` (admin `/clusters`).
fn upstream(envoy: &EnvoyProcess, cluster: &str) -> BTreeMap<String, u64> {
    let prefix = format!("{cluster}::");
    envoy
        .admin_get("/clusters")
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (addr, count) = line.strip_prefix(&prefix)?.split_once("::rq_total::")?;
            Some((addr.to_owned(), count.trim().parse().ok()?))
        })
        .collect()
}

/// One series of `/stats/prometheus`: its labels and value.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The series of `metric` (exactly that name) in a Prometheus text scrape.
fn series(scrape: &str, metric: &str) -> Vec<Series> {
    scrape
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(metric)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.rsplit_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let labels = labels
                .split("\",")
                .filter(|l| !l.is_empty())
                .filter_map(|l| {
                    let (k, v) = l.split_once("=\"")?;
                    Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
                })
                .collect();
            Some(Series {
                labels,
                value: value.trim().parse().ok()?,
            })
        })
        .collect()
}

/// The filter's counter `metric` per endpoint of `cluster`, from `/stats/prometheus`.
fn by_endpoint(envoy: &EnvoyProcess, metric: &str, cluster: &str) -> BTreeMap<String, u64> {
    let scrape = envoy.admin_get("/stats/prometheus").unwrap();
    series(&scrape, metric)
        .into_iter()
        .filter(|s| s.labels.get("cluster_name").map(String::as_str) == Some(cluster))
        .map(|s| (s.labels["endpoint"].clone(), s.value as u64))
        .collect()
}

fn sum(map: &BTreeMap<String, u64>) -> u64 {
    map.values().sum()
}

/// Waits until the filter has counted `expected` requests in [`CLUSTER`] in all.
fn filter_counted(envoy: &EnvoyProcess, expected: u64) {
    eventually(Duration::from_secs(3), || {
        let counted = sum(&by_endpoint(envoy, "ewma_balancer_requests_total", CLUSTER));
        if counted == expected {
            Ok(())
        } else {
            Err(format!("the filter counted {counted}, not {expected}"))
        }
    })
    .unwrap();
}

/// The filter's `ewma_balancer_requests_total` per endpoint of `cluster`, once it equals
/// Envoy's own upstream request counts of that cluster (the filter's counters trail the
/// calls by up to a refresh).
fn settled_requests(envoy: &EnvoyProcess, cluster: &str) -> BTreeMap<String, u64> {
    eventually(Duration::from_secs(3), || {
        let filter = by_endpoint(envoy, "ewma_balancer_requests_total", cluster);
        let envoys = upstream(envoy, cluster);
        if filter == envoys {
            Ok(filter)
        } else {
            Err(format!("filter {filter:?} vs Envoy {envoys:?}"))
        }
    })
    .unwrap()
}

/// Calls to the service's names are balanced by the filter away from the 40 ms slow
/// backend; a name the virtual host does not list gets Istio's REGISTRY_ONLY catch-all
/// (502, UNAVAILABLE to gRPC) and reaches no greeter: the virtual host is not `*`.
#[tokio::test(flavor = "multi_thread")]
async fn calls_to_the_service_name_avoid_the_slow_backend_and_an_unknown_name_gets_no_route() {
    let _ports = fixed_ports_lock();
    let dir = istio_copy("slow");
    let _greeters = three_greeters(Duration::from_millis(40));
    let envoy = start_envoy(&dir, "istio-slow");

    // Every name istiod lists for a caller in the namespace (the port is ignored).
    for name in [
        "greeter-server.default.svc.cluster.local.:8000",
        "greeter-server",
        "greeter-server:8000",
        "greeter-server.default",
        "greeter-server.default.svc:8000",
        "10.96.80.80:8000",
    ] {
        let report = calls_to(name, 10, 2, &[]).await;
        assert_eq!(report.ok(), 10, "{name}: {:?}", report.failures_by_code());
    }
    calls_to(AUTHORITY, 300, 8, &[]).await; // the filter meets the endpoints
    let report = calls_to(AUTHORITY, 600, 8, &[]).await;
    let slow = share(&report, SLOW);
    println!(
        "{AUTHORITY}: {} of 600 ok, per backend {:?}, slow share {:.1} %, p99 {:.1} ms",
        report.ok(),
        report.per_backend(),
        100.0 * slow,
        ms(report.p99())
    );
    assert_eq!(report.ok(), 600, "{:?}", report.failures_by_code());
    assert!(slow < 0.05, "slow backend share {slow}");

    let before = upstream(&envoy, CLUSTER);
    for name in ["reviews.default.svc.cluster.local:9080", "127.0.0.1:10000"] {
        let report = calls_to(name, 5, 1, &[]).await;
        println!("{name}: {:?}", report.failures_by_code());
        assert_eq!(report.ok(), 0, "{name} was routed");
        assert_eq!(report.failures_with("UNAVAILABLE"), 5, "{name}");
    }
    assert_eq!(
        upstream(&envoy, CLUSTER),
        before,
        "an unknown name reached a greeter"
    );
}

/// The `|` of Istio's cluster names survives everywhere the filter puts the name: its
/// metric labels come out exactly as `cluster_name="outbound|8000||…"`, matching Envoy's
/// per-endpoint counts; the membership it reads from the admin interface (a regex on the
/// name) and shares between workers (shared-data keys with the name) covers all three
/// endpoints; the latency histogram gets the annotation's buckets; and `ewma-stat
/// --cluster` shows the three endpoints.
#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_name_with_bars_survives_in_shared_data_keys_and_metric_labels() {
    let _ports = fixed_ports_lock();
    let dir = istio_copy("labels");
    let _greeters = three_greeters(Duration::from_millis(20));
    let envoy = start_envoy(&dir, "istio-labels");
    let report = calls_to(AUTHORITY, 400, 8, &[]).await;
    assert_eq!(report.ok(), 400, "{:?}", report.failures_by_code());

    let requests = settled_requests(&envoy, CLUSTER);
    println!("ewma_balancer_requests_total by endpoint: {requests:?}");
    assert_eq!(
        requests.keys().collect::<Vec<_>>(),
        ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"]
    );
    assert_eq!(sum(&requests), 400);
    let scrape = envoy.admin_get("/stats/prometheus").unwrap();
    let exact = format!(
        "ewma_balancer_requests_total{{cluster_name=\"{CLUSTER}\",endpoint=\"127.0.0.1:50051\"}} {}",
        requests["127.0.0.1:50051"]
    );
    assert!(scrape.lines().any(|l| l == exact), "no line {exact}");
    // Every series of the filter carries the whole name, never a piece cut at a '|'.
    let filter_lines: Vec<&str> = scrape
        .lines()
        .filter(|l| l.starts_with("ewma_balancer_") && l.contains("cluster_name="))
        .collect();
    assert!(filter_lines.len() >= 20, "{filter_lines:?}");
    for line in &filter_lines {
        assert!(
            line.contains(&format!("cluster_name=\"{CLUSTER}\"")),
            "{line}"
        );
    }
    // Membership from the admin interface, known to the workers through shared data (the
    // gauges are set on the workers' ticks, after the first admin answer).
    eventually(Duration::from_secs(5), || {
        let scrape = envoy
            .admin_get("/stats/prometheus")
            .map_err(|e| e.to_string())?;
        let gauge = |metric: &str| {
            series(&scrape, metric)
                .into_iter()
                .find(|s| s.labels.get("cluster_name").map(String::as_str) == Some(CLUSTER))
                .map(|s| s.value)
        };
        let seen = [
            gauge("ewma_balancer_membership_admin"),
            gauge("ewma_balancer_members_known"),
            gauge("ewma_balancer_members_usable"),
        ];
        if seen == [Some(1.0), Some(3.0), Some(3.0)] {
            Ok(())
        } else {
            Err(format!("admin, known, usable: {seen:?}"))
        }
    })
    .unwrap();
    // sidecar.istio.io/statsHistogramBuckets: 0.1 ms .. 10 s instead of Envoy's defaults.
    let buckets: Vec<String> = series(&scrape, "ewma_balancer_latency_us_bucket")
        .into_iter()
        .filter(|s| s.labels.get("endpoint").map(String::as_str) == Some("127.0.0.1:50051"))
        .map(|s| s.labels["le"].clone())
        .collect();
    assert_eq!(
        buckets.first().map(String::as_str),
        Some("100"),
        "{buckets:?}"
    );
    assert!(buckets.iter().any(|b| b == "10000000"), "{buckets:?}");
    // Envoy's own cluster stats are cut by Istio's inclusion list, as in a sidecar, but
    // for upstream_rq_total, which istio/patches/proxy-config.yaml keeps for the alert
    // EwmaBalancerMetricsAbsent, under Istio's `cluster_name` tag.
    assert!(
        !scrape.contains("envoy_cluster_upstream_cx_total{cluster_name=\"outbound"),
        "Istio's stats matcher keeps no other upstream stats of outbound clusters"
    );
    assert!(
        scrape.contains(&format!(
            "envoy_cluster_upstream_rq_total{{cluster_name=\"{CLUSTER}\"}}"
        )),
        "the patch's inclusion suffix upstream_rq_total keeps Envoy's request count per cluster"
    );

    let load = Timeline::start(4, Duration::from_millis(2)).await;
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(e2e::built_binary("ewma-stat"))
            .args([
                "--admin",
                "http://127.0.0.1:9901",
                "--window",
                "6s",
                "-o",
                "json",
                "--cluster",
                CLUSTER,
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("ewma-stat did not finish within 20 s")
    .unwrap();
    let calls = load.finish().await;
    assert!(calls.iter().all(|(_, c)| c.result.is_ok()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ewma-stat failed: {stderr}");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    println!("ewma-stat --cluster {CLUSTER}: {rows:#?}");
    let endpoints: Vec<&str> = rows
        .iter()
        .map(|r| r["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(
        endpoints,
        ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"]
    );
    for row in &rows {
        let cluster = row.get("cluster_name").or_else(|| row.get("cluster"));
        assert_eq!(cluster.and_then(|c| c.as_str()), Some(CLUSTER), "{row}");
    }
    let rps: f64 = rows.iter().map(|r| r["rps"].as_f64().unwrap()).sum();
    assert!(rps > 100.0, "the endpoints' RPS add up to {rps}");
}

/// The ECDS file with the plugin configuration's `decay` set to `decay`.
fn with_decay(text: &str, decay: &str) -> String {
    replace_once(text, r#""decay":"2s""#, &format!(r#""decay":"{decay}""#))
}

/// How many times the filter logged its configuration with `decay`.
fn configured_with(envoy: &EnvoyProcess, decay: &str) -> usize {
    let needle = "configured: plugin=default.ewma-balancer ";
    let decay = format!(" decay=\"{decay}\" ");
    envoy
        .log_contents()
        .lines()
        .filter(|l| l.contains(needle) && l.contains(&decay))
        .count()
}

/// The value of a counter or gauge on `/stats` (0 when Envoy has not made it).
fn stat_or_zero(envoy: &EnvoyProcess, name: &str) -> u64 {
    envoy.stat(name).unwrap_or(0)
}

/// The plugin configuration changed by ECDS under load (decay 2 s → 1 s), as istiod
/// pushes a changed WasmPlugin: no call fails across the reload, the new configuration
/// is on every worker within a second or two, and the 40 ms slow backend is avoided again
/// within 1 s of it. Istio sets no vm_id, and Envoy keys a VM by vm_id, VM
/// configuration and code, none of which changed: the test measures whether Envoy made
/// new VMs and how many calls the slow backend got right after the reload (a filter
/// starting from nothing would send it about a third of its first calls).
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_configuration_changed_by_ecds_under_load_loses_no_call_and_keeps_avoiding_the_slow_backend(
) {
    let _ports = fixed_ports_lock();
    let dir = istio_copy("reload");
    let _greeters = three_greeters(Duration::from_millis(40));
    let envoy = start_envoy(&dir, "istio-reload");
    let good = fs::read_to_string(ecds_file(&dir)).unwrap();
    calls_to(AUTHORITY, 300, 8, &[]).await;
    let vms_created = |e: &EnvoyProcess| stat_or_zero(e, "wasm.envoy.wasm.runtime.v8.created");
    let (created_before, active_before) = (
        vms_created(&envoy),
        stat_or_zero(&envoy, "wasm.envoy.wasm.runtime.v8.active"),
    );

    let learned = |e: &EnvoyProcess| {
        e.log_contents()
            .lines()
            .filter(|l| l.contains("wasm log") && l.contains("learned endpoint"))
            .count()
    };
    let load = Timeline::start(4, Duration::from_millis(3)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let learned_before = learned(&envoy);
    let renamed_at = load.elapsed();
    replace_file(&ecds_file(&dir), &with_decay(&good, "1s"));
    // The main thread's root context and one per worker.
    let applied_at = eventually(Duration::from_secs(5), || {
        let n = configured_with(&envoy, "1s");
        if n >= 3 {
            Ok(load.elapsed())
        } else {
            Err(format!("{n} root contexts configured with decay 1s"))
        }
    })
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = load.finish().await;
    let end = calls.last().unwrap().0;

    let all = between(&calls, Duration::ZERO, end + Duration::from_secs(1));
    let before = between(&calls, renamed_at - Duration::from_secs(1), renamed_at);
    let first_half_second = between(&calls, applied_at, applied_at + Duration::from_millis(500));
    let after_a_second = between(&calls, applied_at + Duration::from_secs(1), end);
    let (created_after, active_after) = (
        vms_created(&envoy),
        stat_or_zero(&envoy, "wasm.envoy.wasm.runtime.v8.active"),
    );
    let learned_after = learned(&envoy);
    println!(
        "ECDS reload: applied on every root context {:.0} ms after the rename; {} calls, {} failed \
         {:?}; slow share: the second before {:.1} %, the first 500 ms after {:.1} % ({} of {}), \
         from 1 s after {:.1} %; V8 VMs created {created_before} -> {created_after}, active \
         {active_before} -> {active_after}; 'learned endpoint' log lines before the reload \
         {learned_before}, after {learned_after}",
        ms(applied_at - renamed_at),
        all.total(),
        all.failed(),
        all.failures_by_code(),
        100.0 * share(&before, SLOW),
        100.0 * share(&first_half_second, SLOW),
        first_half_second.served_by(SLOW),
        first_half_second.total(),
        100.0 * share(&after_a_second, SLOW),
    );
    assert_eq!(all.failed(), 0, "{:?}", all.failures_by_code());
    assert!(
        applied_at - renamed_at < Duration::from_secs(3),
        "applied {:?} after the rename",
        applied_at - renamed_at
    );
    assert!(after_a_second.total() >= 500, "{}", after_a_second.total());
    // Shared state survived: the new root contexts (in the same per-worker VMs) started
    // from the records the old ones left in shared data, so the slow backend got no
    // share right after the reload and no endpoint had to be learned again.
    assert!(
        first_half_second.total() >= 100,
        "{}",
        first_half_second.total()
    );
    assert!(
        share(&first_half_second, SLOW) < 0.05,
        "slow share right after the reload {}",
        share(&first_half_second, SLOW)
    );
    assert_eq!(learned_after, learned_before, "endpoints learned again");
    assert!(
        share(&after_a_second, SLOW) < 0.05,
        "slow share {}",
        share(&after_a_second, SLOW)
    );
    // The ECDS resource Envoy runs now is the new one.
    let dump = envoy
        .admin_get("/config_dump?resource=ecds_filters")
        .unwrap();
    assert!(dump.contains(r#"\"decay\":\"1s\""#), "{dump}");
}

/// The filesystem subscription's rejections so far (Envoy logs each with its reason).
fn rejections(envoy: &EnvoyProcess) -> Vec<String> {
    envoy
        .log_contents()
        .lines()
        .filter_map(|l| l.split("Filesystem config update rejected: ").nth(1))
        .map(str::to_owned)
        .collect()
}

fn ecds_dump(envoy: &EnvoyProcess) -> String {
    envoy
        .admin_get("/config_dump?resource=ecds_filters")
        .unwrap()
}

/// Writes `text` as the ECDS file and waits until Envoy has taken it (the ECDS config
/// dump changed, nothing rejected).
fn push_ecds(envoy: &EnvoyProcess, dir: &Path, text: &str) {
    let (rejected_before, dump_before) = (rejections(envoy).len(), ecds_dump(envoy));
    replace_file(&ecds_file(dir), text);
    eventually(Duration::from_secs(5), || {
        if ecds_dump(envoy) != dump_before {
            Ok(())
        } else {
            Err(format!(
                "the ECDS config dump has not changed; rejections: {:?}",
                &rejections(envoy)[rejected_before..]
            ))
        }
    })
    .unwrap();
    assert_eq!(
        rejections(envoy).len(),
        rejected_before,
        "{:?}",
        rejections(envoy)
    );
}

/// Writes `text` as the ECDS file and waits until Envoy has rejected it: the reason, and
/// whether the ECDS config dump shows the rejected resource anyway.
fn push_rejected_ecds(envoy: &EnvoyProcess, dir: &Path, text: &str) -> (String, bool) {
    let (rejected_before, dump_before) = (rejections(envoy).len(), ecds_dump(envoy));
    replace_file(&ecds_file(dir), text);
    let reason = eventually(Duration::from_secs(5), || {
        rejections(envoy)
            .get(rejected_before)
            .cloned()
            .ok_or_else(|| "not rejected yet".to_owned())
    })
    .unwrap();
    (reason, ecds_dump(envoy) != dump_before)
}

/// What istio-agent puts in the plugin's place when it cannot fetch the module, or the
/// file is not Wasm (it checks the magic number): an RBAC filter under the same name,
/// allowing everything under FAIL_OPEN and denying everything under FAIL_CLOSE.
fn agent_substitute(fail_open: bool) -> String {
    let rules = if fail_open {
        "rules_stat_prefix: wasm-default-allow"
    } else {
        "rules: {}\n    rules_stat_prefix: wasm-default-deny"
    };
    format!(
        "resources:\n- \"@type\": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\n  \
         name: {PLUGIN}\n  typed_config:\n    \
         \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC\n    {rules}\n"
    )
}

/// A module that is missing or not Wasm, under FAIL_OPEN and FAIL_CLOSED, delivered by
/// ECDS. What Envoy does with such a resource, as e2e_failure_policy found for static
/// configs: it refuses it under every policy, here by rejecting the ECDS update and
/// keeping the filter it had (the filter keeps balancing). What an Istio sidecar gets
/// instead (istio-agent does not pass such a module on): allow-all RBAC under FAIL_OPEN
/// (every call succeeds, without the filter, and a client's own override header is still
/// stripped), deny-all under FAIL_CLOSE (every call fails, PERMISSION_DENIED, none
/// reaches a greeter); the module back, and the filter balances again. Last, an Envoy
/// whose first ECDS resource names a missing module: the listener serves, but every call
/// fails (the filter has no configuration and Envoy answers 500), whatever the policy says.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_non_wasm_module_by_ecds_is_refused_and_the_agents_substitute_fails_open_or_closed(
) {
    let _ports = fixed_ports_lock();
    let dir = istio_copy("failure");
    let _greeters = three_greeters(Duration::ZERO);
    let good = fs::read_to_string(ecds_file(&dir)).unwrap();
    let not_wasm = repo_root().join("README.md").display().to_string();
    let mut rows = Vec::new();
    {
        let envoy = start_envoy(&dir, "istio-failure");
        assert_eq!(calls_to(AUTHORITY, 50, 4, &[]).await.ok(), 50);
        let mut counted = 50;
        filter_counted(&envoy, counted);
        for (case, module) in [
            ("missing", "target/no-such-module.wasm"),
            ("not Wasm", &not_wasm),
        ] {
            for policy in ["FAIL_OPEN", "FAIL_CLOSED"] {
                let bad = replace_once(&good, MODULE, module);
                let bad = replace_once(
                    &bad,
                    "failure_policy: FAIL_OPEN",
                    &format!("failure_policy: {policy}"),
                );
                let (reason, dumped) = push_rejected_ecds(&envoy, &dir, &bad);
                let report = calls_to(AUTHORITY, 30, 2, &[]).await;
                println!(
                    "| module {case} | {policy} | update rejected: {reason}; in the ECDS config \
                     dump anyway: {dumped} | {} of 30 calls ok |",
                    report.ok(),
                );
                assert_eq!(
                    report.ok(),
                    30,
                    "{case} {policy}: {:?}",
                    report.failures_by_code()
                );
                // The filter it had still counts (and balances) every call.
                counted += 30;
                filter_counted(&envoy, counted);
                rows.push((case, policy, reason));
            }
        }

        // istio-agent's FAIL_OPEN substitute: calls flow without the filter; a client
        // naming the slow endpoint itself is not obeyed (the strip filter runs first).
        push_ecds(&envoy, &dir, &agent_substitute(true));
        let header = format!("{OVERRIDE_HEADER}: {SLOW}");
        let report = calls_to(AUTHORITY, 90, 3, &[&header]).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        // The plugin's VM is gone, and its metrics with it (Envoy drops the VM's stats
        // scope): the series are absent, or at most what they were.
        let shown = sum(&by_endpoint(
            &envoy,
            "ewma_balancer_requests_total",
            CLUSTER,
        ));
        println!(
            "| agent substitute | FAIL_OPEN (allow-all RBAC) | {} of 90 ok, per backend {:?}; \
             the filter's requests_total now sums to {shown} (was {counted}) |",
            report.ok(),
            report.per_backend()
        );
        assert_eq!(report.ok(), 90, "{:?}", report.failures_by_code());
        assert!(shown <= counted, "the filter ran: {shown} > {counted}");
        assert!(share(&report, SLOW) < 0.5, "{:?}", report.per_backend());

        push_ecds(&envoy, &dir, &agent_substitute(false));
        let before = upstream(&envoy, CLUSTER);
        let report = calls_to(AUTHORITY, 20, 2, &[]).await;
        println!(
            "| agent substitute | FAIL_CLOSE (deny-all RBAC) | {:?} |",
            report.failures_by_code()
        );
        assert_eq!(report.failures_with("PERMISSION_DENIED"), 20);
        assert_eq!(upstream(&envoy, CLUSTER), before);

        // The module back: a new VM, counting from zero.
        push_ecds(&envoy, &dir, &good);
        assert_eq!(calls_to(AUTHORITY, 40, 2, &[]).await.ok(), 40);
        filter_counted(&envoy, 40);
    }
    for (case, _, reason) in &rows {
        let expected = if *case == "missing" {
            "Invalid path"
        } else {
            "Wasm"
        };
        assert!(reason.contains(expected), "{case}: {reason}");
    }

    // An Envoy starting with a module it cannot load in its first ECDS resource.
    replace_file(
        &ecds_file(&dir),
        &replace_once(&good, MODULE, "target/no-such-module.wasm"),
    );
    let envoy = start_envoy(&dir, "istio-failure-boot");
    let report = calls_to(AUTHORITY, 10, 1, &[]).await;
    let before = upstream(&envoy, CLUSTER);
    println!(
        "| Envoy starting with a missing module | FAIL_OPEN | listener up, calls: {:?} |",
        report.failures_by_code()
    );
    assert_eq!(
        report.failures_with("UNKNOWN"),
        10,
        "{:?}",
        report.failures_by_code()
    );
    assert_eq!(sum(&before), 0);
}

/// One call as the access log saw it.
#[derive(Debug)]
struct Logged {
    named: Vec<String>,
    served_by: String,
    attempts: u32,
}

/// Istio's default retry policy with the third greeter failing every call fast
/// (UNAVAILABLE): every client call succeeds, from the first, and every call Envoy retried
/// once was served by the runner-up the filter named second (issue K); the failures are
/// counted per endpoint and gRPC status.
#[tokio::test(flavor = "multi_thread")]
async fn istios_retry_policy_with_a_fast_failing_backend_succeeds_every_call_on_the_runner_up() {
    let _ports = fixed_ports_lock();
    let dir = istio_copy("retry");
    let log = dir.join("access.log");
    edit(&dir, "lds.yaml", |text| {
        replace_once(
            text,
            "        stat_prefix: outbound_0.0.0.0_8000\n",
            &format!(
                "        stat_prefix: outbound_0.0.0.0_8000\n        access_log:\n        - name: envoy.access_loggers.file\n          typed_config:\n            \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n            path: {}\n            log_format:\n              text_format_source:\n                inline_string: \"%REQ(X-EWMA-BALANCER-HOST)% %UPSTREAM_HOST% %UPSTREAM_REQUEST_ATTEMPT_COUNT%\\n\"\n",
                log.display()
            ),
        )
    });
    let [a, b, c] = e2e::BACKEND_PORTS;
    let _greeters = greeters(vec![
        Greeter::on(a),
        Greeter::on(b),
        Greeter::on(c).fail_rate(1.0).fail_code("UNAVAILABLE"),
    ]);
    wasm_path();
    let envoy = EnvoyProcess::start(
        dir.join("envoy.yaml"),
        EnvoyOptions::named("istio-retry")
            .concurrency(2)
            .arg("--file-flush-interval-msec")
            .arg("50"),
    )
    .unwrap();

    // Paced calls for 6 s. The filter soon avoids the failing backend but probes it again
    // now and then (naming it first); Envoy retries each such call.
    let load = Timeline::start(4, Duration::from_millis(4)).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let calls = load.finish().await;
    let report = between(&calls, Duration::ZERO, Duration::MAX);
    let logged: Vec<Logged> = eventually(Duration::from_secs(5), || {
        let lines: Vec<Logged> = fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                Some(Logged {
                    named: f.next()?.split(',').map(str::to_owned).collect(),
                    served_by: f.next()?.to_owned(),
                    attempts: f.next()?.parse().ok()?,
                })
            })
            .collect();
        if lines.len() as u64 >= report.total() {
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
    let scrape = envoy.admin_get("/stats/prometheus").unwrap();
    // The failing endpoint's failures by grpc_status. A call Envoy retried ends with the
    // runner-up's OK: the filter infers the winner's failure without seeing its status.
    let by_status: BTreeMap<String, u64> =
        series(&scrape, "ewma_balancer_failures_by_status_total")
            .into_iter()
            .filter(|s| {
                s.labels.get("cluster_name").map(String::as_str) == Some(CLUSTER)
                    && s.labels.get("endpoint").map(String::as_str) == Some(SLOW)
            })
            .map(|s| (s.labels["grpc_status"].clone(), s.value as u64))
            .collect();
    let failures_at_slow = by_endpoint(&envoy, "ewma_balancer_failures_total", CLUSTER)
        .get(SLOW)
        .copied()
        .unwrap_or(0);
    drop(envoy);

    let failing = SLOW.to_owned();
    // Retried calls the filter had named two endpoints for (its first few calls, before
    // it knows the cluster, name none and are retried by round robin).
    let retried: Vec<&Logged> = logged
        .iter()
        .filter(|l| l.attempts >= 2 && l.named.len() == 2)
        .collect();
    let retried_unnamed = logged
        .iter()
        .filter(|l| l.attempts >= 2 && l.named.len() != 2)
        .count();
    let to_runner_up = retried
        .iter()
        .filter(|l| l.attempts == 2 && l.named.get(1) == Some(&l.served_by))
        .count();
    let named_failing_first = logged.iter().filter(|l| l.named[0] == failing).count();
    println!(
        "{} calls, {} ok; {retried_unnamed} retried before the filter named any; {} retried ({} once, {to_runner_up} of those served by the runner-up); \
         the failing backend named first {named_failing_first} times; failures \
         at {SLOW} by grpc_status {by_status:?} of {failures_at_slow} failures; \
         examples {:?}",
        report.total(),
        report.ok(),
        retried.len(),
        retried.iter().filter(|l| l.attempts == 2).count(),
        retried.iter().take(3).collect::<Vec<_>>()
    );
    assert!(report.total() >= 1000, "{} calls", report.total());
    assert_eq!(
        report.ok(),
        report.total(),
        "{:?}",
        report.failures_by_code()
    );
    assert!(!retried.is_empty(), "no call was retried");
    assert_eq!(
        to_runner_up,
        retried.len(),
        "a retried call was not served by the runner-up on its second attempt"
    );
    assert!(
        logged
            .iter()
            .filter(|l| l.named.len() == 2)
            .all(|l| l.named[0] != l.named[1]),
        "winner and runner-up are different endpoints"
    );
    assert!(failures_at_slow > 0, "no failure counted for {SLOW}");
    assert_eq!(
        by_status.values().sum::<u64>(),
        failures_at_slow,
        "{by_status:?}"
    );
}

const CANARY: &str = "outbound|8000|canary|greeter-server.default.svc.cluster.local";

/// The Lua filter of [`rerouted_copy`]: calls of canary users go to the canary subset.
const CANARY_LUA: &str = "        - name: canary-users.lua
          typed_config:
            \"@type\": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
            default_source_code:
              inline_string: |
                function envoy_on_request(request)
                  if request:headers():get(\"x-user-group\") == \"canary\" then
                    request:headers():replace(\"x-greeter-subset\", \"canary\")
                    request:clearRouteCache()
                  end
                end
";

/// A copy with a canary subset (cluster [`CANARY`], greeters 50054-50055), a
/// VirtualService-like route sending `x-greeter-subset: canary` there, and
/// [`CANARY_LUA`] inserted in the HTTP filter chain before the line `before`.
fn rerouted_copy(name: &str, before: &str) -> PathBuf {
    let dir = istio_copy(name);
    let endpoints = fs::read_to_string(dir.join("endpoints/greeter-server.yaml")).unwrap();
    let endpoints = replace_once(
        &endpoints,
        "    - { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 50053 } } }, load_balancing_weight: 1 }\n",
        "",
    )
    .replace(CLUSTER, CANARY)
    .replace("port_value: 50051", "port_value: 50054")
    .replace("port_value: 50052", "port_value: 50055");
    fs::write(dir.join("endpoints/greeter-server-canary.yaml"), endpoints).unwrap();
    edit(&dir, "cds.yaml", |text| {
        let (head, cluster) = text.split_once("resources:\n").unwrap();
        let canary = cluster.replace(CLUSTER, CANARY).replace(
            "endpoints/greeter-server.yaml",
            "endpoints/greeter-server-canary.yaml",
        );
        format!("{head}resources:\n{cluster}{canary}")
    });
    edit(&dir, "rds.yaml", |text| {
        replace_once(
            text,
            "    routes:\n    - name: default\n",
            &format!(
                "    routes:\n    - name: canary\n      match:\n        prefix: /\n        headers:\n        - name: x-greeter-subset\n          string_match: {{ exact: canary }}\n      route: {{ cluster: \"{CANARY}\", timeout: 0s }}\n    - name: default\n"
            ),
        )
    });
    edit(&dir, "lds.yaml", |text| {
        replace_once(text, before, &format!("{CANARY_LUA}{before}"))
    });
    dir
}

/// What the filter made of calls a Lua filter before it rerouted: the calls (plain and
/// canary users'), and the filter's request counts in each cluster.
type Rerouted = (
    LoadReport,
    LoadReport,
    BTreeMap<String, u64>,
    BTreeMap<String, u64>,
);

/// The counts once they equal Envoy's per cluster.
async fn run_rerouted(dir: &Path, name: &str) -> Rerouted {
    let envoy = start_envoy(dir, name);
    let plain = calls_to(AUTHORITY, 200, 4, &[]).await;
    let rerouted = calls_to(AUTHORITY, 300, 4, &["x-user-group: canary"]).await;
    let default_counts = settled_requests(&envoy, CLUSTER);
    let canary_counts = settled_requests(&envoy, CANARY);
    println!(
        "{name}: plain calls served by {:?}, canary users' by {:?}; the filter counted \
         {default_counts:?} in {CLUSTER} and {canary_counts:?} in {CANARY}",
        plain.per_backend(),
        rerouted.per_backend()
    );
    assert_eq!(plain.ok(), 200, "{:?}", plain.failures_by_code());
    assert_eq!(rerouted.ok(), 300, "{:?}", rerouted.failures_by_code());
    assert!(plain.per_backend().keys().all(|b| [
        "127.0.0.1:50051",
        "127.0.0.1:50052",
        "127.0.0.1:50053"
    ]
    .contains(&b.as_str())));
    assert_eq!(
        rerouted.per_backend().keys().collect::<Vec<_>>(),
        ["127.0.0.1:50054", "127.0.0.1:50055"]
    );
    (plain, rerouted, default_counts, canary_counts)
}

/// A filter before ours that changes the route (a Lua filter, as an EnvoyFilter would
/// insert, setting the header a VirtualService route matches and clearing the route
/// cache), placed where Istio would put it: after the first strip filter
/// (istio/envoy-filter.yaml's INSERT_FIRST), before the Wasm filter. Envoy recomputes the
/// route only when a filter next asks for it, and the Wasm filter's `xds.cluster_name`
/// does not ask (measured: without the resolve-route filter the Wasm filter balanced the
/// default cluster for rerouted calls, which reached the canary by its round robin
/// fallback). The resolve-route filter right before ours (the EnvoyFilter's INSERT_BEFORE)
/// looks up its per-route config, which makes Envoy recompute the route: the filter
/// balances the final cluster (outbound|8000|canary|…, greeters 50054-50055) and labels
/// its metrics with it, and plain calls stay on the default cluster.
#[tokio::test(flavor = "multi_thread")]
async fn a_filter_before_ours_that_changes_the_route_makes_it_balance_the_final_cluster() {
    let _ports = fixed_ports_lock();
    let _greeters = greeters(
        [50051, 50052, 50053, 50054, 50055]
            .into_iter()
            .map(Greeter::on)
            .collect(),
    );

    // The strip filter, the Lua filter, the resolve-route filter, ours.
    let dir = rerouted_copy(
        "reroute",
        "        # istio/envoy-filter.yaml's INSERT_BEFORE the Wasm filter: the same removal, here\n",
    );
    let (_, _, default_counts, canary_counts) = run_rerouted(&dir, "istio-reroute").await;
    assert_eq!(
        default_counts.keys().collect::<Vec<_>>(),
        ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"]
    );
    assert_eq!(sum(&default_counts), 200);
    assert_eq!(
        canary_counts.keys().collect::<Vec<_>>(),
        ["127.0.0.1:50054", "127.0.0.1:50055"]
    );
    assert_eq!(sum(&canary_counts), 300);
}
