//! `fuel`: what one request costs the filter, in Wasm instructions (wasmtime fuel) and
//! hostcalls, in steady state with 3, 100 and 1,000 endpoints. Deterministic: the same
//! module gives the same figures on any machine, however loaded.
//!
//! The last line is one JSON object:
//! `{"fuel_per_request": {"3": N, "100": N, "1000": N}, "hostcalls_per_request": {…}}`.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use test_harness::wasm_host::scenario::{Endpoint, Scenario, EPOCH};
use test_harness::wasm_host::{filter_wasm_path, seed_endpoints, WasmHost};

const SIZES: [usize; 3] = [3, 100, 1000];
const REQUESTS: usize = 6_000;
const WARM_UP: usize = 1_000;

struct Figures {
    fuel: u64,
    hostcalls: f64,
    tick_fuel: u64,
    /// Fuel per request by callback (warm-up included), to see where it goes.
    by_callback: Vec<(&'static str, u64)>,
}

fn measure(endpoints: usize) -> Result<Figures, String> {
    let host = WasmHost::load(&filter_wasm_path()).map_err(|e| e.to_string())?;
    let addrs: Vec<String> = (0..endpoints)
        .map(|i| format!("10.1.{}.{}:8080", i / 250, i % 250 + 1))
        .collect();
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

fn main() -> ExitCode {
    let mut fuel = BTreeMap::new();
    let mut hostcalls = BTreeMap::new();
    println!(
        "{:>9} {:>16} {:>20} {:>16}",
        "endpoints", "fuel/request", "hostcalls/request", "fuel/tick"
    );
    for n in SIZES {
        match measure(n) {
            Ok(f) => {
                println!(
                    "{n:>9} {:>16} {:>20.2} {:>16}",
                    f.fuel, f.hostcalls, f.tick_fuel
                );
                let parts: Vec<String> = f
                    .by_callback
                    .iter()
                    .map(|(name, fuel)| format!("{}={fuel}", name.trim_start_matches("proxy_on_")))
                    .collect();
                println!("{:>9} per callback: {}", "", parts.join(" "));
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
    println!(
        "{}",
        serde_json::json!({"fuel_per_request": fuel, "hostcalls_per_request": hostcalls})
    );
    ExitCode::SUCCESS
}
