//! `make simulate`: every mesh scenario under every policy on the fake clock; prints a
//! table per scenario and the goals, writes `target/simulate/summary.json`,
//! `summary.md` and `latency.svg`.
//!
//! ```text
//! make simulate                                     # about a minute and a half
//! cargo run --release -p simulate -- --scenario herd   # only the named scenarios
//! ```

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Instant;

use proxy_wasm_host::{filter_host, repo_root};
use simulate::mesh::run;
use simulate::report::{figures, table, Figures, Summary};
use simulate::scenarios::{self, policy, POLICIES};
use simulate::svg::chart;

const OUT_DIR: &str = "target/simulate";
/// What `make simulate` is meant to stay within.
const BUDGET_SECONDS: f64 = 120.0;

fn main() -> ExitCode {
    match simulate() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("simulate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn simulate() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut only = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--scenario" => only.push(it.next().ok_or("--scenario needs a key")?.clone()),
            other => {
                return Err(format!(
                    "unknown argument {other} (accepted: --scenario KEY)"
                ))
            }
        }
    }
    let host = filter_host()?;
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut md = String::new();
    let mut keys = Vec::new();
    for s in scenarios::all() {
        if !only.is_empty() && !only.iter().any(|k| k == s.key) {
            continue;
        }
        keys.push(s.key);
        println!(
            "{}: {} ({:.0} calls/s offered, {:.0} % of capacity, {} s measured)",
            s.key,
            s.description,
            s.mesh.rate_per_proxy * s.mesh.proxies as f64,
            s.mesh.utilisation() * 100.0,
            s.mesh.measure / 1_000_000_000
        );
        let rows = summary.scenarios.entry(s.key.to_owned()).or_default();
        for key in POLICIES {
            let t = Instant::now();
            let mut p = policy(key, &s.mesh, &host)?;
            let measured = run(&s.mesh, p.as_mut()).map_err(|e| format!("{} {key}: {e}", s.key))?;
            let f = figures(&measured, &s.mesh, &s.pauses, t.elapsed().as_secs_f64());
            println!(
                "  {key:<18} p50 {:>7.2} ms  p99 {:>8.2} ms  p999 {:>8.2} ms  max load dev {:>5.1} %  ({:.1} s)",
                f.p50_ms,
                f.p99_ms,
                f.p999_ms,
                f.load_vs_capacity_max_dev * 100.0,
                f.run_seconds
            );
            if measured.unanswered > 0 {
                println!(
                    "    {} calls never answered (a queue that did not drain)",
                    measured.unanswered
                );
            }
            rows.insert(key.to_owned(), f);
        }
        md.push_str(&format!(
            "### {}: {}\n\n{}\n",
            s.key,
            s.description,
            table(rows, &POLICIES)
        ));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let goals = goals(&summary);
    md.push_str(&format!("### Goals\n\n{goals}\nRun in {elapsed:.0} s.\n"));
    println!("\n{md}");
    let dir = repo_root().join(OUT_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())? + "\n";
    for (name, text) in [
        ("summary.json", json),
        ("summary.md", md),
        ("latency.svg", chart(&summary.scenarios, &keys, &POLICIES)),
    ] {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))?;
    }
    println!("wrote {OUT_DIR}/summary.json, summary.md, latency.svg in {elapsed:.1} s");
    if elapsed > BUDGET_SECONDS {
        println!("note: longer than the {BUDGET_SECONDS} s budget (a busy machine?)");
    }
    Ok(())
}

/// The issue's goals, each met or missed by how much.
fn goals(s: &Summary) -> String {
    let get = |sc: &str, p: &str| s.scenarios.get(sc).and_then(|m| m.get(p)).cloned();
    let mut out = String::new();
    let mut line = |name: String, value: f64, limit: f64| {
        let verdict = if value <= limit { "met" } else { "MISSED" };
        out.push_str(&format!(
            "- {name}: {value:.2} (goal <= {limit}) {verdict}\n"
        ));
    };
    if let Some(ewma) = get("heterogeneous", "ewma") {
        let ratio =
            |p: &str, f: fn(&Figures) -> f64| get("heterogeneous", p).map(|o| f(&ewma) / f(&o));
        if let Some(r) = ratio("jsq", |f| f.p99_ms) {
            line("heterogeneous: ewma p99 / jsq p99".into(), r, 1.3);
        }
        if let Some(r) = ratio("round_robin", |f| f.p99_ms) {
            line("heterogeneous: ewma p99 / round_robin p99".into(), r, 0.5);
        }
        line(
            "heterogeneous: ewma max load dev".into(),
            ewma.load_vs_capacity_max_dev,
            0.2,
        );
        for p in ["tower_peak_ewma", "contrib_peak_ewma"] {
            if let Some(r) = ratio(p, |f| f.p99_ms) {
                line(format!("heterogeneous: ewma p99 / {p} p99"), r, 1.0);
            }
        }
    }
    if let Some(m) = s.scenarios.get("herd") {
        for (p, f) in m {
            line(
                format!("herd: {p} recovery s"),
                f.recovery_ms.unwrap_or_default() / 1000.0,
                2.0,
            );
            line(
                format!("herd: {p} queue peak / mean"),
                f.queue_peak_vs_mean.unwrap_or_default(),
                2.0,
            );
        }
    }
    if let Some(f) = get("low-rate", "ewma") {
        line(
            "low-rate: ewma max load dev".into(),
            f.load_vs_capacity_max_dev,
            0.2,
        );
    }
    if let (Some(big), Some(small)) = (get("scale", "ewma"), get("heterogeneous", "ewma")) {
        line("scale: ewma run s".into(), big.run_seconds, 60.0);
        if let (Some(a), Some(b)) = (big.fuel_per_request, small.fuel_per_request) {
            line(
                "scale: fuel per call at 1,000 endpoints / at 50".into(),
                a / b,
                1.25,
            );
        }
    }
    out
}
