//! `make observe`: the filter at work, for a person to look at with Prometheus and
//! Grafana. Three greeters (50052 failing 10 % of its calls with UNAVAILABLE, 50053 20 ms
//! slow), Envoy with `envoy-configs/static/ewma.yaml`, a steady open-loop load, and a
//! Prometheus scraping Envoy's `/stats/prometheus` every second with
//! `dashboards/alerts.yaml` loaded. Prints the URLs, then one line of the client's view
//! every 10 s; Ctrl-C stops everything.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use e2e::{
    fixed_ports_lock, repo_root, url_encode, EnvoyOptions, EnvoyProcess, Greeter,
    PrometheusOptions, PrometheusProcess, ADMIN_PORT,
};
use loadgen::closed::DEFAULT_TARGET;
use loadgen::open::{run_loadgen, LoadgenSpec};

const SLOW_BY: Duration = Duration::from_millis(20);
const FAIL_RATE: f64 = 0.10;
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// `make observe`: Envoy with the ewma-balancer filter, three greeters on
/// 127.0.0.1:50051-50053 (the second failing 10 % of its calls, the third 20 ms slow),
/// steady load, and a Prometheus to look at it with. Takes the fixed ports (10000, 9901,
/// 50051-50053) while it runs; Ctrl-C stops everything.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Calls per second through Envoy.
    #[arg(long, default_value_t = 100.0)]
    qps: f64,
    /// Prometheus's port (0: a free one).
    #[arg(long, default_value_t = 0)]
    prometheus_port: u16,
    /// Stop by itself after this long (e.g. 30s); runs until Ctrl-C otherwise.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

fn sibling_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(name);
    path.exists().then_some(path).ok_or_else(|| {
        format!(
            "{name} not found next to {}: run `make build`",
            exe.display()
        )
    })
}

async fn observe(args: Args) -> Result<(), String> {
    let wasm = repo_root().join("target/wasm32-wasip1/release/ewma_balancer.wasm");
    if !wasm.exists() {
        return Err(format!("{} is missing: run `make wasm`", wasm.display()));
    }
    let server = sibling_binary("greeter-server")?;
    let _ports = fixed_ports_lock();
    let _greeters = [
        Greeter::on(50051),
        Greeter::on(50052)
            .fail_rate(FAIL_RATE)
            .fail_code("UNAVAILABLE"),
        Greeter::on(50053).delay(SLOW_BY),
    ]
    .into_iter()
    .map(|g| g.spawn(&server))
    .collect::<Result<Vec<_>, _>>()?;
    let envoy = EnvoyProcess::start(
        repo_root().join("envoy-configs/static/ewma.yaml"),
        EnvoyOptions::named("observe-envoy").concurrency(2),
    )?;
    let mut options = PrometheusOptions::envoy("observe-prometheus")
        .rule_file(repo_root().join("dashboards/alerts.yaml"));
    if args.prometheus_port != 0 {
        options = options.port(args.prometheus_port);
    }
    let prometheus = PrometheusProcess::start(&options)?;
    let url = prometheus.url();
    let graph = format!(
        "{}?g0.expr={}&g0.tab=0&g0.range_input=5m",
        prometheus.ui_url("graph"),
        url_encode(
            "sum by (cluster_name, endpoint) (rate(ewma_balancer_requests_total[15s])) / on (cluster_name) group_left () sum by (cluster_name) (rate(ewma_balancer_requests_total[15s]))"
        )
    );
    println!(
        "Greeters on 127.0.0.1:50051 (healthy), 50052 (fails {:.0} % with UNAVAILABLE), 50053 ({} ms slow); \
         {} calls/s through Envoy on {DEFAULT_TARGET}.\n",
        FAIL_RATE * 100.0,
        SLOW_BY.as_millis(),
        args.qps
    );
    println!(
        "  Prometheus      {url}   (alerts: {}, scrape config: {})",
        prometheus.ui_url("alerts"),
        prometheus.ui_url("config")
    );
    println!("  each endpoint's share  {graph}");
    println!(
        "  Envoy admin     http://127.0.0.1:{ADMIN_PORT}   (its metrics: http://127.0.0.1:{ADMIN_PORT}/stats/prometheus)"
    );
    println!("  ewma-stat       target/release/ewma-stat --admin http://127.0.0.1:{ADMIN_PORT}");
    println!(
        "  Grafana         Dashboards > New > Import > upload {}, with a Prometheus data source at {url} \
         (scrape interval 1s)",
        repo_root().join("dashboards/ewma-balancer.json").display()
    );
    println!(
        "\nLogs in {} and beside it. Ctrl-C stops everything.\n",
        prometheus.log_path().display()
    );

    let spec = LoadgenSpec {
        interval: REPORT_EVERY,
        ..LoadgenSpec::open(
            DEFAULT_TARGET,
            args.qps,
            args.duration.unwrap_or(Duration::from_secs(7 * 24 * 3600)),
        )
    };
    let load = run_loadgen(&spec, |report| {
        let t = &report.tally;
        let shares: Vec<String> = t
            .shares()
            .iter()
            .map(|(backend, share)| format!("{backend} {:.1}%", share * 100.0))
            .collect();
        println!(
            "client: {:.0} calls/s, {:.2}% ok, p99 {:.1} ms; {}",
            t.total() as f64 / report.length.as_secs_f64().max(1e-3),
            t.success_rate().unwrap_or(1.0) * 100.0,
            t.latency_at(0.99).as_secs_f64() * 1e3,
            shares.join(", ")
        );
    });
    tokio::select! {
        result = load => {
            result.map_err(|e| e.to_string())?;
        }
        signal = tokio::signal::ctrl_c() => {
            signal.map_err(|e| e.to_string())?;
            println!("\nstopping");
        }
    }
    drop(prometheus);
    drop(envoy);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match observe(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("observe: {e}");
            ExitCode::FAILURE
        }
    }
}
