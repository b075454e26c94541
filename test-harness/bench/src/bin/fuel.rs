//! `fuel`: what one request costs the filter, in Wasm instructions (wasmtime fuel) and
//! hostcalls, in steady state with 3, 100 and 1,000 endpoints. Deterministic: the same
//! module gives the same figures on any machine, however loaded.
//!
//! It then runs the `wasm-probe` module making the filter's host calls with no logic
//! (`wasm_probe::FILTER_CALLS`) in the same scenario with 3 endpoints: the filter's fuel
//! over the probe's is what its own code costs per request.
//!
//! The last line is one JSON object:
//! `{"fuel_per_request": {"3": N, "100": N, "1000": N}, "hostcalls_per_request": {…},
//!   "probe_fuel_per_request": N, "probe_hostcalls_per_request": N,
//!   "admin_poll_per_refresh": {"10": {"fuel": N, "bytes": N}, "1000": {…}}}`.
//! The filter runs as deployed, with membership from a simulated admin interface; the
//! poll's own cost (per refresh, for 10 and 1,000 endpoints) is printed apart.

#![forbid(unsafe_code)]

use clap::Parser;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use bench::plan::PROBE_MODULE;
use e2e::repo_root;
use proxy_wasm_host::scenario::{Endpoint, Scenario, EPOCH};
use proxy_wasm_host::{filter_wasm_path, seed_endpoints, VmOptions, WasmHost};

const SIZES: [usize; 3] = [3, 100, 1000];
const POLL_SIZES: [usize; 2] = [10, 1000];
const REQUESTS: usize = 6_000;
const WARM_UP: usize = 1_000;

struct Figures {
    fuel: u64,
    hostcalls: f64,
    tick_fuel: u64,
    /// Fuel per request by callback (warm-up included), to see where it goes.
    by_callback: Vec<(&'static str, u64)>,
}

/// The module under test: the filter, or the probe making the filter's host calls.
#[derive(Clone, Copy, PartialEq)]
enum Module {
    Filter,
    Probe,
}

fn measure(module: Module, endpoints: usize) -> Result<Figures, String> {
    let addrs: Vec<String> = (0..endpoints)
        .map(|i| format!("10.1.{}.{}:8080", i / 250, i % 250 + 1))
        .collect();
    let (path, options) = match module {
        Module::Filter => (filter_wasm_path(), VmOptions::default()),
        Module::Probe => (
            repo_root().join(PROBE_MODULE),
            VmOptions {
                plugin_name: "wasm-probe".into(),
                plugin_config: format!(
                    "{} endpoints={}",
                    wasm_probe::FILTER_CALLS,
                    addrs.join("|")
                )
                .into_bytes(),
                ..VmOptions::default()
            },
        ),
    };
    let host = WasmHost::load(&path).map_err(|e| e.to_string())?;
    // The cluster as the workers would have learned it: every endpoint known, 1 ms.
    seed_endpoints(host.env(), "ewma-balancer", "greeter", &addrs, 1e6, EPOCH);
    let mut s = Scenario::new(
        addrs
            .iter()
            .map(|a| Endpoint::new(a.clone(), Duration::from_millis(1)))
            .collect(),
    );
    s.requests = REQUESTS;
    s.warm_up = WARM_UP;
    s.interval = Duration::from_micros(500);
    s.options = options;
    // The filter as deployed: membership from the (simulated) admin interface.
    if module == Module::Filter {
        s.admin_cluster = Some("prometheus_stats".to_owned());
    }
    let run = s.run(&host).map_err(|e| e.to_string())?;
    let requests = run.requests.len().max(1) as u64;
    let by_callback = run.vms[0]
        .callback_costs
        .iter()
        .filter(|(name, _)| {
            !matches!(
                **name,
                "proxy_on_tick" | "proxy_on_vm_start" | "proxy_on_configure"
            )
        })
        .map(|(name, cost)| (*name, cost.fuel / requests))
        .collect();
    Ok(Figures {
        by_callback,
        fuel: run.fuel_per_request(),
        hostcalls: run.hostcalls_per_request(),
        tick_fuel: run.tick_cost.fuel / run.ticks.max(1),
    })
}

/// The admin poll: what one refresh costs the lease holder (the answer's parse and the
/// members written to shared data) and how big Envoy's answer is, for `endpoints`.
struct Poll {
    fuel: u64,
    bytes: u64,
    tick_fuel: u64,
}

fn measure_poll(endpoints: usize) -> Result<Poll, String> {
    let host = WasmHost::load(&filter_wasm_path()).map_err(|e| e.to_string())?;
    let mut s = Scenario::new(
        (0..endpoints)
            .map(|i| {
                Endpoint::new(
                    format!("10.1.{}.{}:8080", i / 250, i % 250 + 1),
                    Duration::from_millis(1),
                )
            })
            .collect(),
    );
    s.workers = 2;
    s.requests = 500;
    s.interval = Duration::from_millis(20); // 10 s: ten refreshes
    s.admin_cluster = Some("prometheus_stats".to_owned());
    let run = s.run(&host).map_err(|e| e.to_string())?;
    let calls = run.admin_calls.max(1);
    Ok(Poll {
        fuel: run.admin_cost.fuel / calls,
        bytes: run.admin_bytes / calls,
        tick_fuel: run.tick_cost.fuel / run.ticks.max(1),
    })
}

/// `name=fuel …` for each callback, to see where the fuel goes.
fn per_callback(figures: &Figures) -> String {
    let parts: Vec<String> = figures
        .by_callback
        .iter()
        .map(|(name, fuel)| format!("{}={fuel}", name.trim_start_matches("proxy_on_")))
        .collect();
    parts.join(" ")
}

/// What one request costs the filter, in Wasm instructions and host calls, with 3, 100
/// and 1,000 endpoints (the built `target/wasm32-wasip1/release/ewma_balancer.wasm` in
/// the wasmtime proxy-wasm host, a fake clock), then the host-call probe's cost. Takes
/// no options; the last line printed is JSON.
#[derive(Parser)]
#[command(version)]
struct Args {}

fn main() -> ExitCode {
    let Args {} = Args::parse();
    let mut fuel = BTreeMap::new();
    let mut hostcalls = BTreeMap::new();
    println!(
        "{:>9} {:>16} {:>20} {:>16}",
        "endpoints", "fuel/request", "hostcalls/request", "fuel/tick"
    );
    for n in SIZES {
        match measure(Module::Filter, n) {
            Ok(f) => {
                println!(
                    "{n:>9} {:>16} {:>20.2} {:>16}",
                    f.fuel, f.hostcalls, f.tick_fuel
                );
                println!("{:>9} per callback: {}", "", per_callback(&f));
                fuel.insert(n.to_string(), serde_json::json!(f.fuel));
                hostcalls.insert(
                    n.to_string(),
                    serde_json::json!((f.hostcalls * 100.0).round() / 100.0),
                );
            }
            Err(e) => {
                eprintln!("fuel: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let probe = match measure(Module::Probe, SIZES[0]) {
        Ok(probe) => probe,
        Err(e) => {
            eprintln!("fuel: wasm-probe: {e}");
            return ExitCode::FAILURE;
        }
    };
    let filter = fuel
        .get(&SIZES[0].to_string())
        .and_then(|f| f.as_u64())
        .unwrap_or(0);
    println!(
        "\nwasm-probe making the filter's host calls with no logic ({} endpoints): {} fuel, \
         {:.2} hostcalls per request; the filter's own code: {} fuel per request",
        SIZES[0],
        probe.fuel,
        probe.hostcalls,
        filter.saturating_sub(probe.fuel)
    );
    println!("{:>9} per callback: {}", "", per_callback(&probe));
    println!(
        "\nthe admin poll, once per membershipRefresh by one worker per Envoy:\n{:>9} {:>16} {:>16} {:>16}",
        "endpoints", "fuel/refresh", "bytes/refresh", "fuel/tick"
    );
    let mut poll = BTreeMap::new();
    for n in POLL_SIZES {
        match measure_poll(n) {
            Ok(p) => {
                println!("{n:>9} {:>16} {:>16} {:>16}", p.fuel, p.bytes, p.tick_fuel);
                poll.insert(
                    n.to_string(),
                    serde_json::json!({"fuel": p.fuel, "bytes": p.bytes}),
                );
            }
            Err(e) => {
                eprintln!("fuel: admin poll: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "fuel_per_request": fuel,
            "hostcalls_per_request": hostcalls,
            "probe_fuel_per_request": probe.fuel,
            "probe_hostcalls_per_request": (probe.hostcalls * 100.0).round() / 100.0,
            "admin_poll_per_refresh": poll,
        })
    );
    ExitCode::SUCCESS
}
