//! `make bench-hostcalls`: what each proxy-wasm host call costs Envoy, on its own.
//!
//! The `wasm-probe` module runs once with no calls (the baseline) and once per call
//! with that call made [`REPEAT`] times per request; a call's price is its run's Envoy
//! CPU per request over the baseline's, divided by [`REPEAT`]. Repeating the call lifts
//! it well above the machine's noise; rounds are interleaved and each figure is a median.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;
use wasm_probe::{Call, Calls, FILTER_CALLS};

use super::overhead::median;

/// How often the measured call is made per request.
pub const REPEAT: u32 = 20;

/// The endpoints the probe's override header names in turn (the three greeters).
pub const ENDPOINTS: &str = "endpoints=127.0.0.1:50051|127.0.0.1:50052|127.0.0.1:50053";

/// The probe configuration of the run that measures `call`, or of the baseline.
pub fn probe_calls(call: Option<Call>) -> String {
    match call {
        Some(call) => format!("{}={REPEAT} {ENDPOINTS}", call.name()),
        None => ENDPOINTS.to_owned(),
    }
}

/// `yaml` (envoy-configs/bench/hostcalls.yaml) with the probe's configuration replaced
/// by `calls`. The file must hold exactly one `value: "…"` line: the probe's.
pub fn with_probe_calls(yaml: &str, calls: &str) -> Result<String, String> {
    let is_value = |line: &str| line.trim_start().starts_with("value: \"");
    match yaml.lines().filter(|l| is_value(l)).count() {
        1 => {}
        n => return Err(format!("expected one `value: \"…\"` line, found {n}")),
    }
    let mut out = String::with_capacity(yaml.len());
    for line in yaml.lines() {
        if is_value(line) {
            let indent = &line[..line.len() - line.trim_start().len()];
            let _ = writeln!(out, "{indent}value: \"{calls}\"");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// Envoy CPU µs per request of every round: the baseline's and each call's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostcallRounds {
    pub baseline: Vec<f64>,
    pub calls: BTreeMap<Call, Vec<f64>>,
}

/// `target/bench/hostcalls.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostcallCosts {
    /// Calls per request in each call's run.
    pub repetitions: u32,
    /// The probe with no calls: Envoy CPU µs per request (median over the rounds).
    pub baseline_cpu_us_per_request: f64,
    /// Call name → its price.
    pub calls: BTreeMap<&'static str, CallCost>,
    /// The sum of the prices of ewma-balancer's per-request calls (`FILTER_CALLS`).
    pub filter_calls_us: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallCost {
    /// Envoy CPU µs one call adds to a request.
    pub us_per_call: f64,
    /// Envoy CPU µs per request of each round with the call repeated.
    pub rounds_cpu_us_per_request: Vec<f64>,
}

impl HostcallRounds {
    /// The medians and prices.
    pub fn costs(&self) -> HostcallCosts {
        let baseline = median(&self.baseline);
        let calls: BTreeMap<_, _> = self
            .calls
            .iter()
            .map(|(call, rounds)| {
                let cost = CallCost {
                    us_per_call: (median(rounds) - baseline) / f64::from(REPEAT),
                    rounds_cpu_us_per_request: rounds.clone(),
                };
                (call.name(), cost)
            })
            .collect();
        let filter = Calls::parse(&format!("{FILTER_CALLS} {ENDPOINTS}")).unwrap_or_default();
        let filter_calls_us = Call::ALL
            .iter()
            .filter_map(|&call| {
                let price = calls.get(call.name())?.us_per_call;
                Some(f64::from(filter.count(call)) * price)
            })
            .sum();
        HostcallCosts {
            repetitions: REPEAT,
            baseline_cpu_us_per_request: baseline,
            calls,
            filter_calls_us,
        }
    }
}

/// The table `make bench-publish` puts in the README.
pub fn markdown(costs: &HostcallCosts, setup_line: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{setup_line}\n");
    out.push_str("| call | what it does | µs per call | each round, µs/request (call ×");
    let _ = writeln!(out, "{REPEAT}) | in the filter's calls |");
    out.push_str("|---|---|--:|--:|:-:|\n");
    let filter = Calls::parse(&format!("{FILTER_CALLS} {ENDPOINTS}")).unwrap_or_default();
    for call in Call::ALL {
        let Some(cost) = costs.calls.get(call.name()) else {
            continue;
        };
        let rounds: Vec<String> = cost
            .rounds_cpu_us_per_request
            .iter()
            .map(|r| format!("{r:.1}"))
            .collect();
        let _ = writeln!(
            out,
            "| `{}` | {} | {:.2} | {} | {} |",
            call.name(),
            call.description(),
            cost.us_per_call,
            rounds.join(" / "),
            match filter.count(call) {
                0 => "–".to_owned(),
                n => format!("×{n}"),
            }
        );
    }
    let _ = writeln!(
        out,
        "\nBaseline (the probe making no calls): {:.1} µs/request. The filter's per-request \
         calls (`FILTER_CALLS`) add up to **{:.2} µs**.",
        costs.baseline_cpu_us_per_request, costs.filter_calls_us
    );
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const YAML: &str = "    config:\n      configuration:\n        \"@type\": x\n        value: \"old calls\"\n    next: 1\n";

    #[test]
    fn the_probe_configuration_is_replaced_in_place() {
        assert_eq!(
            with_probe_calls(YAML, "clock=20").unwrap(),
            "    config:\n      configuration:\n        \"@type\": x\n        value: \"clock=20\"\n    next: 1\n"
        );
        assert!(with_probe_calls("a: 1\n", "x").is_err());
        assert!(with_probe_calls(&format!("{YAML}{YAML}"), "x").is_err());
    }

    #[test]
    fn each_run_repeats_one_call_and_the_baseline_makes_none() {
        assert_eq!(
            probe_calls(Some(Call::GrpcStatus)),
            format!("grpc_status=20 {ENDPOINTS}")
        );
        assert_eq!(probe_calls(None), ENDPOINTS);
        for call in [None, Some(Call::OverrideHeader)] {
            assert!(Calls::parse(&probe_calls(call)).is_ok());
        }
    }

    #[test]
    fn a_calls_price_is_its_median_over_the_baseline_per_repetition() {
        let rounds = HostcallRounds {
            baseline: vec![33.0, 34.0, 32.0],
            calls: BTreeMap::from([
                (Call::Clock, vec![38.0, 39.0, 80.0]),
                (Call::ClusterName, vec![49.0, 49.0, 49.0]),
                (Call::Counter, vec![34.0, 34.0, 34.0]),
            ]),
        };
        let costs = rounds.costs();
        assert_eq!(costs.baseline_cpu_us_per_request, 33.0);
        assert_eq!(costs.calls["clock"].us_per_call, 0.3);
        assert_eq!(costs.calls["cluster_name"].us_per_call, 0.8);
        assert_eq!(costs.calls["counter"].us_per_call, 0.05);
        // The filter makes two clock reads of different kinds and one cluster read; the
        // calls not measured (response_clock …) count nothing.
        assert!((costs.filter_calls_us - 1.1).abs() < 1e-9);
        let table = markdown(&costs, "setup");
        assert!(table.contains(
            "| `clock` | read the clock (request headers) | 0.30 | 38.0 / 39.0 / 80.0 | ×1 |"
        ));
        assert!(
            table.contains("| `counter` | increment a counter | 0.05 | 34.0 / 34.0 / 34.0 | – |")
        );
        assert!(table.contains("add up to **1.10 µs**"));
    }
}
