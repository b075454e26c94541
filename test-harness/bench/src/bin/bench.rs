//! `make bench`: every scenario under every policy through a real Envoy to real
//! greeters at the same open-loop load, then the CPU overhead of the filter at
//! saturation; writes `target/bench/summary.json`, `latency.svg` and `summary.md`.
//!
//! ```text
//! make bench                   # about seven minutes
//! BENCH_QUICK=1 make bench     # the same runs, shorter: under three minutes
//! make bench-publish           # copy the latest tables and chart into docs/benchmark.md and docs/bench/
//! make bench-hostcalls         # what each proxy-wasm host call costs: target/bench/hostcalls.*
//! cargo run --release -p bench --bin bench -- --scenario capacity --scenario one-slow
//! ```
//!
//! `--scenario KEY` (repeatable; the keys of `summary.json`, and `overhead` for the
//! overhead rounds) runs only the named parts, in their usual order, and writes its
//! outputs to `target/bench/selected/` instead, so that a partial run never overwrites
//! the full results `make bench-publish` copies; goals of parts not run read
//! "not measured".
//!
//! Scenarios run one after another, each under each policy with a fresh Envoy: warm-up
//! load first (not counted), then the measured run. Each run's Envoy gets a copy of the
//! policy's configuration with the scenario's greeters as the `greeter` cluster's
//! endpoints (`target/bench/configs/<scenario>-<policy>.yaml`). The fixed ports (Envoy
//! 10000 and 9901, greeters 50051-50060) are held only while the benchmark runs, under
//! the same cross-process lock as the end-to-end tests; every process is a guard that
//! stops it when dropped, also on error.
//!
//! `tower_peak_ewma` runs no Envoy: the load generator balances the same load itself
//! with tower's p2c over PeakEwma, one connection per greeter (Linkerd's algorithm
//! without a proxy hop).

#![forbid(unsafe_code)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use bench::{
    cpu::process_cpu_time,
    envoy_config::with_greeter_endpoints,
    hostcall_costs::{self, HostcallRounds, ProbeRun, REPEAT},
    overhead::{OverheadSample, OverheadSamples},
    plan::{Plan, Policy, Scenario, ODD_ONE_OUT, OVERHEAD_POLICIES},
    publish,
    summary::{BenchSummary, RunResult},
    svg::latency_svg,
    table::{human, markdown, share_cell, Setup},
};
use clap::Parser;
use e2e::{
    envoy_bin, fixed_ports_lock, repo_root, EnvoyOptions, EnvoyProcess, Greeter, GreeterProcess,
    BACKEND_PORTS,
};
use loadgen::closed::DEFAULT_TARGET;
use loadgen::open::{run_loadgen, LoadgenReport, LoadgenSpec, LoadgenSummary, Target};
use wasm_probe::with_probe_calls;

/// Where the outputs go, relative to the repository root.
const OUT_DIR: &str = "target/bench";
/// Where `--publish` puts the chart docs/benchmark.md shows.
const PUBLISHED_CHART: &str = "docs/bench/latency.svg";
/// Requests the Envoy listener received (all configs use `stat_prefix: greeter`).
const REQUESTS_STAT: &str = "http.greeter.downstream_rq_total";
/// Per-call deadline; Envoy's route timeout is 5 s too.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The time limits the benchmark is meant to stay within (28 scenario runs since
/// capacity and tower_peak_ewma, then the overhead rounds).
const BUDGET_FULL: Duration = Duration::from_secs(480);
const BUDGET_QUICK: Duration = Duration::from_secs(180);
/// Rounds of `--hostcalls` (13 runs each).
const HOSTCALL_ROUNDS: u32 = 3;

/// Latency-aware balancing benchmark (set BENCH_QUICK=1 for the short run).
#[derive(Debug, Parser)]
struct Args {
    /// Instead of running, copy the latest results (target/bench/summary.md and
    /// latency.svg, and hostcalls.md if present) into docs/benchmark.md's benchmark blocks and
    /// docs/bench/.
    #[arg(long, conflicts_with = "hostcalls")]
    publish: bool,
    /// Instead of the benchmark, price each proxy-wasm host call on its own (the
    /// wasm-probe module): target/bench/hostcalls.{json,md}.
    #[arg(long)]
    hostcalls: bool,
    /// Run only this scenario (by its key, e.g. `capacity`, or `overhead` for the
    /// overhead rounds); repeatable. Outputs go to target/bench/selected/.
    #[arg(long = "scenario", value_name = "KEY", value_parser = parse_part,
          conflicts_with_all = ["publish", "hostcalls"])]
    scenarios: Vec<Part>,
}

/// A part of the benchmark `--scenario` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Scenario(Scenario),
    Overhead,
}

fn parse_part(key: &str) -> Result<Part, String> {
    if key == "overhead" {
        return Ok(Part::Overhead);
    }
    Scenario::ALL
        .into_iter()
        .find(|scenario| scenario.key() == key)
        .map(Part::Scenario)
        .ok_or_else(|| {
            let keys: Vec<&str> = Scenario::ALL.iter().map(|s| s.key()).collect();
            format!(
                "unknown scenario `{key}`: expected one of {}, overhead",
                keys.join(", ")
            )
        })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = if args.publish {
        publish()
    } else if args.hostcalls {
        hostcalls().await
    } else {
        bench(&args.scenarios).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error}");
            ExitCode::FAILURE
        }
    }
}

fn quick() -> bool {
    std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The whole benchmark, or only the `selected` parts (all if empty).
async fn bench(selected: &[Part]) -> Result<(), String> {
    let runs = |part: Part| selected.is_empty() || selected.contains(&part);
    let out_dir = if selected.is_empty() {
        OUT_DIR.to_owned()
    } else {
        format!("{OUT_DIR}/selected")
    };
    let quick = quick();
    let plan = if quick { Plan::quick() } else { Plan::full() };
    let server = preflight()?;
    let _ports = fixed_ports_lock();
    let started = Instant::now();
    println!(
        "{} benchmark: {} calls/s open loop, at most {} in flight, {} warm-up + {} measured per run\n",
        if quick { "quick" } else { "full" },
        plan.qps,
        plan.concurrency,
        humantime::format_duration(plan.warm_up),
        humantime::format_duration(plan.measure),
    );

    let mut summary = BenchSummary::default();
    for scenario in Scenario::ALL
        .into_iter()
        .filter(|&scenario| runs(Part::Scenario(scenario)))
    {
        println!("{}: {}", scenario.key(), scenario.description());
        let mut greeters = spawn_greeters(scenario.greeters(), &server)?;
        for &policy in scenario.policies() {
            let run = scenario_run(&plan, scenario, policy, &mut greeters).await?;
            println!("  {:<23} {}", policy.key(), one_line(scenario, &run));
            summary.insert(scenario, policy, RunResult::from(&run));
        }
    }
    let overhead_samples = if runs(Part::Overhead) {
        overhead(&plan, &server).await?
    } else {
        OverheadSamples::default()
    };
    summary.overhead = overhead_samples.figures();

    let elapsed = started.elapsed();
    let setup = Setup {
        plan: plan.clone(),
        quick,
        elapsed,
        backends: BACKEND_PORTS
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect(),
        overhead_samples,
    };
    let table = markdown(&summary, &setup);
    let title = format!(
        "Latency by scenario and policy: {} calls/s open loop, one HTTP/2 connection",
        plan.qps
    );
    let dir = repo_root().join(&out_dir);
    let json = serde_json::to_string_pretty(&summary)
        .map_err(|error| format!("cannot encode summary: {error}"))?;
    write(&dir.join("summary.json"), &(json + "\n"))?;
    write(&dir.join("latency.svg"), &latency_svg(&summary, &title))?;
    write(&dir.join("summary.md"), &table)?;

    println!("\n{table}");
    println!(
        "wrote {out_dir}/summary.json, {out_dir}/latency.svg, {out_dir}/summary.md in {:.1} s",
        elapsed.as_secs_f64()
    );
    let budget = if quick { BUDGET_QUICK } else { BUDGET_FULL };
    if selected.is_empty() && elapsed > budget {
        println!(
            "note: the benchmark took longer than its {} budget (a busy machine?)",
            humantime::format_duration(budget)
        );
    }
    Ok(())
}

/// Checks what the runs need before starting any process; returns the greeter binary.
fn preflight() -> Result<PathBuf, String> {
    envoy_bin()?;
    let root = repo_root();
    for module in OVERHEAD_POLICIES.iter().filter_map(|p| p.wasm_module()) {
        if !root.join(module).is_file() {
            return Err(format!("{module} is missing: run `make wasm`"));
        }
    }
    let exe = std::env::current_exe().map_err(|error| error.to_string())?;
    let server = exe.with_file_name("greeter-server");
    if server.is_file() {
        Ok(server)
    } else {
        Err(format!("{} is missing: run `make build`", server.display()))
    }
}

fn spawn_greeters(specs: Vec<Greeter>, server: &Path) -> Result<Vec<GreeterProcess>, String> {
    specs.into_iter().map(|g| g.spawn(server)).collect()
}

/// A fresh Envoy with `config` (relative paths in it are to the repository root).
fn start_envoy(config: &Path, name: &str, workers: u32) -> Result<EnvoyProcess, String> {
    EnvoyProcess::start(
        config,
        EnvoyOptions::named(name)
            .concurrency(workers)
            .log_level("warn"),
    )
}

/// `plan`'s open-loop load at `target`, with `scenario`'s in-flight bound.
fn open_loop(plan: &Plan, scenario: Scenario, target: &Target, duration: Duration) -> LoadgenSpec {
    LoadgenSpec {
        concurrency: scenario.concurrency(plan),
        timeout: CALL_TIMEOUT,
        ..LoadgenSpec::open(target.clone(), plan.qps, duration)
    }
}

async fn load(spec: &LoadgenSpec) -> Result<LoadgenReport, String> {
    run_loadgen(spec, |_| {})
        .await
        .map_err(|error| error.to_string())
}

/// One scenario under one policy: a fresh Envoy (none for a client-side policy),
/// warm-up, then the measured run.
async fn scenario_run(
    plan: &Plan,
    scenario: Scenario,
    policy: Policy,
    greeters: &mut [GreeterProcess],
) -> Result<LoadgenSummary, String> {
    let name = format!("{}-{}", scenario.key(), policy.key());
    let (target, _envoy) = match policy.config() {
        Some(source) => {
            let config = run_config(scenario, policy, source, &name)?;
            let envoy = start_envoy(&config, &format!("bench-{name}"), plan.envoy_workers)?;
            (Target::from(DEFAULT_TARGET), Some(envoy))
        }
        // The balancer lives in the load generator, one connection per greeter.
        None => (
            Target::TowerPeakEwma(
                scenario
                    .endpoints(policy)
                    .iter()
                    .map(|port| format!("http://127.0.0.1:{port}"))
                    .collect(),
            ),
            None,
        ),
    };
    load(&open_loop(plan, scenario, &target, plan.warm_up)).await?;
    let spec = open_loop(plan, scenario, &target, plan.measure);
    let report = if scenario == Scenario::Churn {
        let odd = greeters
            .iter_mut()
            .find(|g| g.port() == ODD_ONE_OUT)
            .ok_or("churn needs the greeter on port 50053")?;
        let (kill_at, restart_at) = plan.churn_events();
        let (report, churned) = tokio::join!(load(&spec), churn(odd, kill_at, restart_at));
        churned?;
        report?
    } else {
        load(&spec).await?
    };
    Ok(report.summary)
}

/// Writes `target/bench/configs/<name>.yaml`: `policy`'s configuration (`source`) with
/// the greeters `scenario` gives it as the `greeter` cluster's endpoints.
fn run_config(
    scenario: Scenario,
    policy: Policy,
    source: &str,
    name: &str,
) -> Result<PathBuf, String> {
    let root = repo_root();
    let text = fs::read_to_string(root.join(source))
        .map_err(|error| format!("cannot read {source}: {error}"))?;
    let path = root
        .join(OUT_DIR)
        .join("configs")
        .join(format!("{name}.yaml"));
    write(
        &path,
        &with_greeter_endpoints(&text, source, &scenario.endpoints(policy))?,
    )?;
    Ok(path)
}

/// Kills `greeter` at `kill_at` and starts it again at `restart_at` from now.
async fn churn(
    greeter: &mut GreeterProcess,
    kill_at: Duration,
    restart_at: Duration,
) -> Result<(), String> {
    let start = tokio::time::Instant::now();
    tokio::time::sleep_until(start + kill_at).await;
    greeter.kill();
    tokio::time::sleep_until(start + restart_at).await;
    // Waits (briefly) until the greeter accepts connections again.
    tokio::task::block_in_place(|| greeter.restart())
}

/// Closed loop at saturation with equal backends, interleaved rounds of round_robin,
/// wasm_floor, hostcalls and ewma; Envoy's CPU time over the requests it served in each.
async fn overhead(plan: &Plan, server: &Path) -> Result<OverheadSamples, String> {
    println!(
        "overhead: equal backends, closed loop, {} in flight, Envoy with {} worker(s)",
        plan.overhead_concurrency, plan.overhead_workers
    );
    let _greeters = spawn_greeters(Scenario::Equal.greeters(), server)?;
    let mut samples = OverheadSamples::default();
    for round in 1..=plan.overhead_rounds {
        for policy in OVERHEAD_POLICIES {
            let config = repo_root().join(envoy_config(policy)?);
            let name = format!("bench-overhead-{}", policy.key());
            let (sample, report) = saturate(plan, &config, &name).await?;
            println!(
                "  round {round} {:<12} {}  share {} %",
                policy.key(),
                sample_line(&sample),
                share_cell(Scenario::Equal, &report.share)
            );
            samples.add(policy, sample);
        }
    }
    Ok(samples)
}

/// One overhead run: a fresh Envoy (`plan.overhead_workers`) with `config`, closed-loop
/// warm-up, then the measured closed-loop run and Envoy's CPU time over it.
async fn saturate(
    plan: &Plan,
    config: &Path,
    name: &str,
) -> Result<(OverheadSample, LoadgenSummary), String> {
    let spec = |duration| LoadgenSpec {
        timeout: CALL_TIMEOUT,
        ..LoadgenSpec::closed(DEFAULT_TARGET, plan.overhead_concurrency, duration)
    };
    let envoy = start_envoy(config, name, plan.overhead_workers)?;
    load(&spec(plan.overhead_warm_up)).await?;
    let pid = envoy.pid().ok_or("Envoy has no process id")?;
    let cpu_before = process_cpu_time(pid)?;
    let requests_before = envoy.stat(REQUESTS_STAT)?;
    let report = load(&spec(plan.overhead_measure)).await?;
    let cpu_after = process_cpu_time(pid)?;
    let requests_after = envoy.stat(REQUESTS_STAT)?;
    drop(envoy);
    let sample = OverheadSample {
        envoy_cpu: cpu_after.saturating_sub(cpu_before),
        requests: requests_after.saturating_sub(requests_before),
        rps: report.summary.rps,
        p50_ms: report.summary.p50_ms,
    };
    Ok((sample, report.summary))
}

/// `policy`'s Envoy configuration, for the runs that need one.
fn envoy_config(policy: Policy) -> Result<&'static str, String> {
    policy
        .config()
        .ok_or_else(|| format!("{} runs no Envoy", policy.key()))
}

fn sample_line(sample: &OverheadSample) -> String {
    format!(
        "{:>6.1} µs Envoy CPU/request ({} requests, {:.2} s CPU)  {:>5.0} rps  p50 {:.2} ms",
        sample.cpu_us_per_request(),
        sample.requests,
        sample.envoy_cpu.as_secs_f64(),
        sample.rps,
        sample.p50_ms,
    )
}

/// `make bench-hostcalls`: the probe with no calls, with each call repeated, and with the
/// filter's calls once each, in interleaved rounds, as the overhead runs (closed loop,
/// one Envoy worker).
async fn hostcalls() -> Result<(), String> {
    let quick = quick();
    let plan = if quick { Plan::quick() } else { Plan::full() };
    let server = preflight()?;
    let _ports = fixed_ports_lock();
    let started = Instant::now();
    let root = repo_root();
    let template_path = root.join(envoy_config(Policy::Hostcalls)?);
    let template = fs::read_to_string(&template_path)
        .map_err(|error| format!("cannot read {}: {error}", template_path.display()))?;
    let dir = root.join(OUT_DIR).join("hostcalls");
    let runs: Vec<(ProbeRun, PathBuf)> = ProbeRun::all()
        .into_iter()
        .map(|run| (run, dir.join(format!("{}.yaml", run.label()))))
        .collect();
    for (run, path) in &runs {
        write(path, &with_probe_calls(&template, &run.probe_calls())?)?;
    }
    println!(
        "host calls: the wasm-probe module with no calls, with each call {REPEAT}× per \
         request, and with the filter's calls; closed loop, {} in flight, Envoy with {} \
         worker(s), {HOSTCALL_ROUNDS} rounds",
        plan.overhead_concurrency, plan.overhead_workers
    );
    let _greeters = spawn_greeters(Scenario::Equal.greeters(), &server)?;
    let mut rounds = HostcallRounds::default();
    for round in 1..=HOSTCALL_ROUNDS {
        for (run, path) in &runs {
            let label = run.label();
            let (sample, report) =
                saturate(&plan, path, &format!("bench-hostcalls-{label}")).await?;
            if report.success_rate < 1.0 {
                return Err(format!(
                    "{label}: {:.2} % of calls failed; a probe run must serve every call",
                    100.0 * (1.0 - report.success_rate)
                ));
            }
            println!("  round {round} {label:<17} {}", sample_line(&sample));
            rounds.add(*run, sample.cpu_us_per_request());
        }
    }
    let costs = rounds.costs();
    let setup_line = format!(
        "Envoy CPU per request with the `wasm-probe` module making one host call {REPEAT}× \
         per request (and, in a last run, the filter's calls once each), against the probe \
         making none; closed loop with {} calls in flight, \
         Envoy with {} worker, {HOSTCALL_ROUNDS} rounds of {} per run, interleaved; medians. \
         Whole run: {:.0} s.",
        plan.overhead_concurrency,
        plan.overhead_workers,
        human(plan.overhead_measure),
        started.elapsed().as_secs_f64()
    );
    let table = hostcall_costs::markdown(&costs, &setup_line);
    let json = serde_json::to_string_pretty(&costs)
        .map_err(|error| format!("cannot encode host call costs: {error}"))?;
    write(&root.join(OUT_DIR).join("hostcalls.json"), &(json + "\n"))?;
    write(&root.join(OUT_DIR).join("hostcalls.md"), &table)?;
    println!("\n{table}");
    println!(
        "wrote {OUT_DIR}/hostcalls.json, {OUT_DIR}/hostcalls.md in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn one_line(scenario: Scenario, run: &LoadgenSummary) -> String {
    format!(
        "p50 {:>6.2}  p90 {:>6.2}  p99 {:>6.2}  p999 {:>7.2}  max {:>7.2} ms  success {:>6.2}%  {:>5.0} rps  share {} %",
        run.p50_ms,
        run.p90_ms,
        run.p99_ms,
        run.p999_ms,
        run.max_ms,
        100.0 * run.success_rate,
        run.rps,
        share_cell(scenario, &run.share)
    )
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    }
    fs::write(path, contents).map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// Copies the latest chart to docs/bench/ and the latest tables into docs/benchmark.md.
fn publish() -> Result<(), String> {
    let root = repo_root();
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|error| {
            format!(
                "cannot read {}: {error} (run `make bench` first)",
                path.display()
            )
        })
    };
    let table = read(&root.join(OUT_DIR).join("summary.md"))?;
    let chart = read(&root.join(OUT_DIR).join("latency.svg"))?;
    let readme_path = root.join("docs/benchmark.md");
    let mut updated = publish::replace_block(&read(&readme_path)?, &table)
        .map_err(|error| format!("docs/benchmark.md: {error}"))?;
    // The host-call table comes from its own run (`make bench-hostcalls`), if there was one.
    let hostcalls = root.join(OUT_DIR).join("hostcalls.md");
    if hostcalls.is_file() {
        updated = publish::replace_between(
            &updated,
            publish::HOSTCALLS_BEGIN,
            publish::HOSTCALLS_END,
            &read(&hostcalls)?,
        )
        .map_err(|error| format!("docs/benchmark.md: {error}"))?;
    }
    write(&root.join(PUBLISHED_CHART), &chart)?;
    write(&readme_path, &updated)?;
    println!("updated docs/benchmark.md and {PUBLISHED_CHART}");
    Ok(())
}
