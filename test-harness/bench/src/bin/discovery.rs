//! `discovery`: how fast the filter finds a cluster's endpoints, and how evenly it uses
//! them, with membership from Envoy's admin interface and learned from traffic, for
//! 10, 50 and 200 equal endpoints (5 ms) at 5, 50 and 500 calls/s per proxy (2 workers),
//! in the wasmtime proxy-wasm host with the built filter and a fake clock.
//!
//! Each run lasts 120 s. An endpoint joins at 60 s; at 90 s one endpoint is marked
//! UNHEALTHY (it keeps answering) and another leaves the cluster. Printed per run:
//! when every initial endpoint had been served, the busiest endpoint's share of the
//! first 30 s (against a fair share), when the joining endpoint was first served and
//! when it first had half a fair share over a 2 s window, and how many calls named the
//! unhealthy or departed endpoint after 92 s. The last line is the table as JSON.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use proxy_wasm_host::scenario::{Endpoint, Nanos, Run, Scenario};
use proxy_wasm_host::{filter_wasm_path, WasmHost};
use serde::Serialize;

const MS: Nanos = 1_000_000;
const SEC: Nanos = 1_000 * MS;

/// The discovery table (about a minute): membership from the admin interface against
/// learned, over 10/50/200 endpoints at 5/50/500 calls/s per proxy.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Only these endpoint counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [10, 50, 200])]
    endpoints: Vec<usize>,
    /// Only these rates, calls/s per proxy (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [5, 50, 500])]
    rates: Vec<u64>,
}

#[derive(Serialize)]
struct Row {
    mode: &'static str,
    endpoints: usize,
    calls_per_s: u64,
    /// Seconds until every initial endpoint had been served (`None`: not all were).
    all_served_s: Option<f64>,
    served_first_30s: usize,
    busiest_share_first_30s: f64,
    fair_share: f64,
    joined_first_call_s: Option<f64>,
    joined_half_share_s: Option<f64>,
    named_after_unhealthy: usize,
    named_after_left: usize,
}

fn addr(i: usize) -> String {
    format!("10.2.{}.{}:8080", i / 250, i % 250 + 1)
}

fn run_one(host: &WasmHost, n: usize, rate: u64, admin: bool) -> Result<Row, String> {
    let unhealthy = addr(0);
    let leaving = addr(1);
    let joining = addr(n);
    let mut endpoints: Vec<Endpoint> = (0..n)
        .map(|i| Endpoint::new(addr(i), Duration::from_millis(5)))
        .collect();
    endpoints[0] = Endpoint::new(unhealthy.clone(), Duration::from_millis(5)).health_fn(|t| {
        if t >= 90 * SEC {
            "UNHEALTHY"
        } else {
            "HEALTHY"
        }
    });
    endpoints[1] =
        Endpoint::new(leaving.clone(), Duration::from_millis(5)).leaves_at(Duration::from_secs(90));
    endpoints.push(
        Endpoint::new(joining.clone(), Duration::from_millis(5)).joins_at(Duration::from_secs(60)),
    );
    let mut s = Scenario::new(endpoints);
    s.workers = 2;
    s.interval = Duration::from_nanos(SEC / rate);
    s.requests = usize::try_from(rate * 120).map_err(|e| e.to_string())?;
    s.admin_cluster = admin.then(|| "prometheus_stats".to_owned());
    // Each run in an Envoy of its own: shared data must not carry over.
    let run = s.run(&host.fresh()).map_err(|e| e.to_string())?;
    Ok(summarize(
        &run, n, rate, admin, &unhealthy, &leaving, &joining,
    ))
}

fn summarize(
    run: &Run,
    n: usize,
    rate: u64,
    admin: bool,
    unhealthy: &str,
    leaving: &str,
    joining: &str,
) -> Row {
    let mut first: BTreeMap<&str, Nanos> = BTreeMap::new();
    let mut first_30: BTreeMap<&str, usize> = BTreeMap::new();
    let mut total_30 = 0usize;
    for r in &run.requests {
        let Some(e) = r.endpoint.as_deref() else {
            continue;
        };
        first.entry(e).or_insert(r.at);
        if r.at < 30 * SEC {
            *first_30.entry(e).or_default() += 1;
            total_30 += 1;
        }
    }
    let initial: Vec<String> = (0..n).map(addr).collect();
    let all_served = initial
        .iter()
        .map(|a| first.get(a.as_str()).copied())
        .collect::<Option<Vec<_>>>()
        .and_then(|t| t.into_iter().max());
    let busiest = first_30.values().max().copied().unwrap_or(0);
    // Half a fair share (of n + 1 endpoints) over a 2 s window, after joining.
    let fair_after = 1.0 / (n + 1) as f64;
    let joined_half = (60..90).step_by(1).find(|&s| {
        let window: Vec<_> = run
            .requests
            .iter()
            .filter(|r| r.at >= s * SEC && r.at < (s + 2) * SEC)
            .collect();
        let hits = window
            .iter()
            .filter(|r| r.endpoint.as_deref() == Some(joining))
            .count();
        !window.is_empty() && hits as f64 >= 0.5 * fair_after * window.len() as f64
    });
    let named_after = |who: &str| {
        run.requests
            .iter()
            .filter(|r| r.at >= 92 * SEC && r.chosen.as_deref() == Some(who))
            .count()
    };
    Row {
        mode: if admin { "admin" } else { "learned" },
        endpoints: n,
        calls_per_s: rate,
        all_served_s: all_served.map(|t| t as f64 / SEC as f64),
        served_first_30s: first_30.len(),
        busiest_share_first_30s: busiest as f64 / total_30.max(1) as f64,
        fair_share: 1.0 / n as f64,
        joined_first_call_s: first.get(joining).map(|&t| (t as f64 - 60e9) / 1e9),
        joined_half_share_s: joined_half.map(|s| (s + 2 - 60) as f64),
        named_after_unhealthy: named_after(unhealthy),
        named_after_left: named_after(leaving),
    }
}

fn seconds(x: Option<f64>) -> String {
    x.map_or("never".to_owned(), |s| format!("{s:.1} s"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let host = match std::fs::read(filter_wasm_path())
        .map_err(|e| {
            format!(
                "{}: {e}: build it with `make wasm`",
                filter_wasm_path().display()
            )
        })
        .and_then(|b| WasmHost::from_binary(&b).map_err(|e| e.to_string()))
    {
        Ok(host) => host,
        Err(e) => {
            eprintln!("discovery: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("| membership | endpoints | calls/s per proxy | every endpoint served | served in the first 30 s | busiest, first 30 s (fair) | joined: first call | joined: half a fair share | named after unhealthy / left |");
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    let mut rows = Vec::new();
    for admin in [true, false] {
        for &n in &args.endpoints {
            for &rate in &args.rates {
                match run_one(&host, n, rate, admin) {
                    Ok(row) => {
                        println!(
                            "| {} | {} | {} | {} | {} | {:.1} % ({:.1} %) | {} | {} | {} / {} |",
                            row.mode,
                            row.endpoints,
                            row.calls_per_s,
                            seconds(row.all_served_s),
                            row.served_first_30s,
                            row.busiest_share_first_30s * 100.0,
                            row.fair_share * 100.0,
                            seconds(row.joined_first_call_s),
                            seconds(row.joined_half_share_s),
                            row.named_after_unhealthy,
                            row.named_after_left
                        );
                        rows.push(row);
                    }
                    Err(e) => {
                        eprintln!("discovery: {n} endpoints at {rate}/s: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    }
    match serde_json::to_string(&rows) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("discovery: {e}"),
    }
    ExitCode::SUCCESS
}
