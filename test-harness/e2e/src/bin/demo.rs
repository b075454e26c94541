//! `make demo`: three greeters, one of them 40 ms slow, called over one HTTP/2
//! connection through Envoy with round robin and then with the ewma-balancer filter;
//! prints each backend's share and the client's p50/p99 side by side, then what
//! `ewma-stat` shows of the filter's Envoy while the same load keeps running.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use std::time::Duration;

use e2e::{
    repo_root, EnvoyOptions, EnvoyProcess, Greeter, GreeterProcess, ADMIN_PORT, BACKEND_PORTS,
};
use ewma_stat::{EndpointStat, StatOptions};
use loadgen::closed::{run_load, LoadSpec, DEFAULT_TARGET};
use loadgen::report::LoadReport;

const SLOW_BY: Duration = Duration::from_millis(40);
const CALLS: u64 = 3000;
const WARM_UP: u64 = 300;
const CONCURRENCY: usize = 16;
/// `ewma-stat`'s window: longer than Envoy's default 5 s stats flush interval, which
/// ewma.yaml keeps, so the latency histograms change within it.
const STAT_WINDOW: Duration = Duration::from_secs(6);

struct Run {
    policy: &'static str,
    report: LoadReport,
    /// `ewma-stat`'s rows, taken under load, for the filter's run.
    stat: Option<Vec<EndpointStat>>,
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

async fn run_policy(policy: &'static str, config: &str, with_stat: bool) -> Result<Run, String> {
    let envoy = EnvoyProcess::start(
        repo_root().join(config),
        EnvoyOptions::named(format!("demo-{policy}")).concurrency(2),
    )?;
    let spec = |count| LoadSpec {
        count,
        concurrency: CONCURRENCY,
        ..LoadSpec::new(DEFAULT_TARGET)
    };
    run_load(&spec(WARM_UP)).await.map_err(|e| e.to_string())?;
    let report = run_load(&spec(CALLS)).await.map_err(|e| e.to_string())?;
    let stat = if with_stat {
        Some(stat_under_load(spec(u64::MAX)).await?)
    } else {
        None
    };
    drop(envoy);
    Ok(Run {
        policy,
        report,
        stat,
    })
}

/// Keeps `load` running while `ewma-stat`'s library scrapes Envoy's admin interface
/// [`STAT_WINDOW`] apart.
async fn stat_under_load(load: LoadSpec) -> Result<Vec<EndpointStat>, String> {
    let running = tokio::spawn(async move { run_load(&load).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let options = StatOptions {
        admin: stat_admin().parse()?,
        window: STAT_WINDOW,
        cluster: None,
    };
    let rows = tokio::task::spawn_blocking(move || ewma_stat::collect(&options))
        .await
        .map_err(|e| e.to_string())?;
    running.abort();
    rows.map_err(|e| e.to_string())
}

fn stat_admin() -> String {
    format!("http://127.0.0.1:{ADMIN_PORT}")
}

fn print_table(runs: &[Run], greeters: &[GreeterProcess]) {
    print!("{:<12}", "policy");
    for g in greeters {
        let label = if g.spec().port() == 50053 {
            format!("{} (slow)", g.backend())
        } else {
            g.backend()
        };
        print!(" {label:>24}");
    }
    println!(" {:>9} {:>9} {:>8}", "p50", "p99", "failed");
    for run in runs {
        print!("{:<12}", run.policy);
        for g in greeters {
            let share =
                run.report.served_by(&g.backend()) as f64 / run.report.total().max(1) as f64;
            print!(" {:>23.1}%", 100.0 * share);
        }
        println!(
            " {:>7.1}ms {:>7.1}ms {:>8}",
            run.report.p50().as_secs_f64() * 1e3,
            run.report.p99().as_secs_f64() * 1e3,
            run.report.failed()
        );
    }
}

async fn demo() -> Result<(), String> {
    let wasm = repo_root().join("target/wasm32-wasip1/release/ewma_balancer.wasm");
    if !wasm.exists() {
        return Err(format!("{} is missing: run `make wasm`", wasm.display()));
    }
    let server = sibling_binary("greeter-server")?;
    let greeters = BACKEND_PORTS
        .iter()
        .map(|&port| {
            let g = Greeter::on(port);
            let g = if port == 50053 { g.delay(SLOW_BY) } else { g };
            g.spawn(&server)
        })
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "Three greeters on 127.0.0.1:50051-50053, the last one {} ms slower. {CALLS} calls, {CONCURRENCY} in flight, one HTTP/2 connection, through Envoy on {DEFAULT_TARGET} (after {WARM_UP} warm-up calls).\n",
        SLOW_BY.as_millis()
    );
    let runs = vec![
        run_policy(
            "round_robin",
            "envoy-configs/static/round-robin.yaml",
            false,
        )
        .await?,
        run_policy("ewma", "envoy-configs/static/ewma.yaml", true).await?,
    ];
    print_table(&runs, &greeters);
    let (rr, ewma) = (&runs[0].report, &runs[1].report);
    println!(
        "\newma p99 is {:.2}x round robin's; the slow backend's share went from {:.1}% to {:.1}%.",
        ewma.p99().as_secs_f64() / rr.p99().as_secs_f64().max(1e-9),
        100.0 * rr.served_by("127.0.0.1:50053") as f64 / rr.total().max(1) as f64,
        100.0 * ewma.served_by("127.0.0.1:50053") as f64 / ewma.total().max(1) as f64,
    );
    if let Some(rows) = &runs[1].stat {
        println!(
            "\nWhat the filter sees, under the same load (ewma-stat --admin {} --window {}):\n",
            stat_admin(),
            humantime::format_duration(STAT_WINDOW)
        );
        print!("{}", ewma_stat::format::table(rows));
    }
    Ok(())
}

/// `make demo`: round robin, then the ewma-balancer filter, through a real Envoy to
/// three greeters (the third 40 ms slow) on 127.0.0.1:50051-50053; prints each
/// backend's share and the client's p50/p99, then `ewma-stat`'s table. Takes the
/// fixed ports (10000, 9901, 50051-50053) while it runs; takes no options.
#[derive(Parser)]
#[command(version)]
struct Args {}

#[tokio::main]
async fn main() -> ExitCode {
    let Args {} = Args::parse();
    match demo().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}
