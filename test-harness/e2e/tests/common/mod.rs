//! Scenario helpers shared by the end-to-end tests against a real Envoy.

#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use e2e::greeter_server;
use e2e::{repo_root, EnvoyOptions, EnvoyProcess, Greeter, GreeterProcess, BACKEND_PORTS};
use loadgen::closed::{run_load, LoadSpec, DEFAULT_TARGET};
use loadgen::open::{run_loadgen, LoadgenSpec, Tally};
use loadgen::report::LoadReport;

pub const SLOW: &str = "127.0.0.1:50053";
pub const OVERRIDE_HEADER: &str = "x-ewma-balancer-host";

/// A module `make wasm` builds, from `package`; the test fails with how to build it
/// when it is missing.
fn built_module(file: &str, package: &str) -> PathBuf {
    let path = repo_root().join("target/wasm32-wasip1/release").join(file);
    assert!(
        path.exists(),
        "{} is missing: build it first with `make wasm` \
         (cargo build --release --target wasm32-wasip1 -p {package})",
        path.display()
    );
    path
}

/// The built filter; the e2e tests need it.
pub fn wasm_path() -> PathBuf {
    built_module("ewma_balancer.wasm", "ewma-balancer")
}

/// The no-op module of the benchmark's floor config.
pub fn wasm_floor_path() -> PathBuf {
    built_module("wasm_floor.wasm", "wasm-floor")
}

/// The benchmark's host-call probe.
pub fn wasm_probe_path() -> PathBuf {
    built_module("wasm_probe.wasm", "wasm-probe")
}

pub fn static_config(name: &str) -> PathBuf {
    repo_root().join("envoy-configs/static").join(name)
}

/// Three greeters on 50051-50053; the third answers `slow_by` later than the others.
pub fn three_greeters(slow_by: Duration) -> Vec<GreeterProcess> {
    greeters_with_third(|g| {
        if slow_by.is_zero() {
            g
        } else {
            g.delay(slow_by)
        }
    })
}

/// Three greeters on 50051-50053; the third is made what `third` makes of it.
pub fn greeters_with_third(third: impl FnOnce(Greeter) -> Greeter) -> Vec<GreeterProcess> {
    let [a, b, c] = BACKEND_PORTS;
    [Greeter::on(a), Greeter::on(b), third(Greeter::on(c))]
        .into_iter()
        .map(|g| g.spawn(greeter_server()).unwrap())
        .collect()
}

/// Envoy with one of the static configs, named for the log file.
pub fn envoy(config: &str, log_name: &str) -> EnvoyProcess {
    if config.contains("ewma") {
        wasm_path();
    }
    EnvoyProcess::start(
        static_config(config),
        EnvoyOptions::named(log_name).concurrency(2),
    )
    .unwrap()
}

/// `count` calls at `concurrency` over one HTTP/2 connection through Envoy.
pub async fn calls(count: u64, concurrency: usize, headers: &[&str]) -> LoadReport {
    let spec = LoadSpec {
        count,
        concurrency,
        headers: headers.iter().map(|h| h.parse().unwrap()).collect(),
        timeout: Duration::from_secs(10),
        ..LoadSpec::new(DEFAULT_TARGET)
    };
    run_load(&spec).await.unwrap()
}

pub fn share(report: &LoadReport, backend: &str) -> f64 {
    report.served_by(backend) as f64 / report.total().max(1) as f64
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Calls kept `concurrency` in flight over one HTTP/2 connection through Envoy until
/// dropped, counting completions: a steady load to watch while it runs.
pub struct SteadyLoad {
    completed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SteadyLoad {
    pub fn start(concurrency: usize) -> Self {
        use std::sync::atomic::Ordering;
        let completed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = completed.clone();
        let spec = LoadSpec {
            count: u64::MAX,
            concurrency,
            timeout: Duration::from_secs(10),
            ..LoadSpec::new(DEFAULT_TARGET)
        };
        let task = tokio::spawn(async move {
            loadgen::closed::run_load_observed(&spec, |_| {
                counter.fetch_add(1, Ordering::Relaxed);
            })
            .await
            .unwrap();
        });
        Self { completed, task }
    }

    /// Calls completed so far (ok or failed).
    pub fn completed(&self) -> u64 {
        self.completed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for SteadyLoad {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Open-loop load at `qps` for `duration`, in the background, reported every
/// `interval`: the tallies of the intervals in order, then the whole run.
pub fn open_load(
    qps: f64,
    duration: Duration,
    interval: Duration,
    headers: &[&str],
) -> tokio::task::JoinHandle<(Vec<Tally>, Tally)> {
    let spec = LoadgenSpec {
        interval,
        timeout: Duration::from_secs(10),
        headers: headers.iter().map(|h| h.parse().unwrap()).collect(),
        ..LoadgenSpec::open(DEFAULT_TARGET, qps, duration)
    };
    tokio::spawn(async move {
        let mut intervals = Vec::new();
        let report = run_loadgen(&spec, |i| intervals.push(i.tally.clone()))
            .await
            .unwrap();
        (intervals, report.tally)
    })
}

/// The tallies of `intervals[from..to]` merged.
pub fn merged(intervals: &[Tally], from: usize, to: usize) -> Tally {
    let mut all = Tally::new();
    for t in &intervals[from.min(intervals.len())..to.min(intervals.len())] {
        all.merge(t);
    }
    all
}

/// Upstream requests Envoy sent to each greeter endpoint so far (admin `/clusters`).
pub fn upstream_requests(envoy: &EnvoyProcess) -> std::collections::BTreeMap<String, u64> {
    let text = envoy.admin_get("/clusters").unwrap();
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("greeter::")?;
            let (addr, count) = rest.split_once("::rq_total::")?;
            Some((addr.to_owned(), count.trim().parse().ok()?))
        })
        .collect()
}

/// The sum of the filter's counter `metric` over all endpoints (admin `/stats`).
pub fn filter_counter_sum(envoy: &EnvoyProcess, metric: &str) -> u64 {
    let text = envoy.admin_get(&format!("/stats?filter={metric}")).unwrap();
    text.lines()
        .filter_map(|l| l.rsplit_once(": "))
        .filter(|(name, _)| name.ends_with(metric))
        .filter_map(|(_, value)| value.trim().parse::<u64>().ok())
        .sum()
}

/// A copy of a static config with its commented-out `retry_policy` block switched on.
pub fn with_retries_enabled(config: &str) -> PathBuf {
    let text = std::fs::read_to_string(static_config(config)).unwrap();
    let mut out = Vec::new();
    let mut in_block = false;
    let mut enabled = 0;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if trimmed == "# retry_policy:" {
            in_block = true;
        } else if in_block && !trimmed.starts_with("#   ") {
            in_block = false;
        }
        if in_block {
            out.push(format!("{indent}{}", &trimmed[2..]));
            enabled += 1;
        } else {
            out.push(line.to_owned());
        }
    }
    assert!(enabled >= 3, "{config} has no commented retry_policy block");
    let dir = repo_root().join("target/e2e-configs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("retries-{config}"));
    std::fs::write(&path, out.join("\n")).unwrap();
    path
}

/// The filter's counter `metric` per endpoint (admin `/stats`; the tags are still in the
/// names there: `cluster_name=.=greeter;.;endpoint=.=IP:port;.;metric`).
pub fn filter_counter_by_endpoint(
    envoy: &EnvoyProcess,
    metric: &str,
) -> std::collections::BTreeMap<String, u64> {
    let text = envoy.admin_get(&format!("/stats?filter={metric}")).unwrap();
    text.lines()
        .filter_map(|l| l.rsplit_once(": "))
        .filter(|(name, _)| name.ends_with(metric))
        .filter_map(|(name, value)| {
            let endpoint = name.split("endpoint=.=").nth(1)?.split(";.;").next()?;
            Some((endpoint.to_owned(), value.trim().parse::<u64>().ok()?))
        })
        .collect()
}

/// A copy of envoy-configs/dynamic under target/, with its paths pointing at the copy.
pub fn dynamic_copy(name: &str) -> PathBuf {
    let source = repo_root().join("envoy-configs/dynamic");
    let dir = repo_root().join("target/e2e-dynamic").join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("endpoints")).unwrap();
    for file in [
        "envoy.yaml",
        "lds.yaml",
        "cds.yaml",
        "endpoints/greeter.yaml",
    ] {
        let text = fs::read_to_string(source.join(file)).unwrap();
        let text = text.replace("envoy-configs/dynamic", &dir.display().to_string());
        fs::write(dir.join(file), text).unwrap();
    }
    dir
}

pub fn scale(dir: &Path, ports: &str) {
    let status = Command::new(repo_root().join("scripts/scale-greeter.sh"))
        .arg(ports)
        .env("DYNAMIC_DIR", dir)
        .status()
        .unwrap();
    assert!(status.success(), "scale-greeter.sh {ports}");
}

/// Writes `text` beside `path` and renames it over `path`, as a control plane would.
pub fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}
