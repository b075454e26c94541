//! `target/bench/summary.json`: every scenario run and the overhead figures.
//!
//! ```json
//! {"scenarios": {"one-slow": {"ewma": {"p50_ms": 0.9, "p90_ms": 1.4, "p99_ms": 2.6,
//!    "p999_ms": 41.3, "max_ms": 44.0, "success_rate": 1.0, "rps": 400.0,
//!    "share": {"127.0.0.1:50051": 0.5, "127.0.0.1:50052": 0.49, "127.0.0.1:50053": 0.01}}, …}, …},
//!  "overhead": {"cpu_us_per_request": {"round_robin": 90.0, "wasm_floor": 125.0,
//!                                      "hostcalls": 137.0, "ewma": 140.0},
//!               "throughput_rps": {…same keys}, "p50_ms": {…same keys}}}
//! ```
//!
//! `hostcalls` (the filter's host calls alone, in the `wasm-probe` module) is a key
//! beyond the three the benchmark was specified with; readers that know only those
//! three keep working.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::plan::{Policy, Scenario};
use loadgen::open::LoadgenSummary;

/// The whole benchmark.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BenchSummary {
    /// Scenario key → policy key → result.
    pub scenarios: BTreeMap<String, BTreeMap<String, RunResult>>,
    pub overhead: Overhead,
}

/// One measured run of a scenario under a policy. Latencies are of successful calls,
/// from their intended send time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Successful calls over all calls.
    pub success_rate: f64,
    /// Completed calls per second.
    pub rps: f64,
    /// Each backend's fraction of the successful calls.
    pub share: BTreeMap<String, f64>,
}

impl From<&LoadgenSummary> for RunResult {
    fn from(run: &LoadgenSummary) -> Self {
        Self {
            p50_ms: run.p50_ms,
            p90_ms: run.p90_ms,
            p99_ms: run.p99_ms,
            p999_ms: run.p999_ms,
            max_ms: run.max_ms,
            success_rate: run.success_rate,
            rps: run.rps,
            share: run.share.clone(),
        }
    }
}

/// The cost of balancing, at saturation with equal backends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overhead {
    /// Envoy's CPU time (user + system, all threads) over the requests it served, µs.
    pub cpu_us_per_request: PerPolicy,
    /// Completed calls per second.
    pub throughput_rps: PerPolicy,
    /// Median latency, ms.
    pub p50_ms: PerPolicy,
}

/// One figure for each policy of the overhead measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PerPolicy {
    pub round_robin: f64,
    pub wasm_floor: f64,
    /// Absent from summaries written before the probe existed.
    #[serde(default)]
    pub hostcalls: f64,
    pub ewma: f64,
}

impl PerPolicy {
    /// The figure of `policy`, if it is one of the overhead policies.
    pub fn get(&self, policy: Policy) -> Option<f64> {
        match policy {
            Policy::RoundRobin => Some(self.round_robin),
            Policy::WasmFloor => Some(self.wasm_floor),
            Policy::Hostcalls => Some(self.hostcalls),
            Policy::Ewma => Some(self.ewma),
            Policy::LeastRequest
            | Policy::LeastRequestFullScan
            | Policy::EwmaRetry
            | Policy::Oracle
            | Policy::TowerPeakEwma => None,
        }
    }

    /// Sets the figure of `policy`; other policies are ignored.
    pub fn set(&mut self, policy: Policy, value: f64) {
        match policy {
            Policy::RoundRobin => self.round_robin = value,
            Policy::WasmFloor => self.wasm_floor = value,
            Policy::Hostcalls => self.hostcalls = value,
            Policy::Ewma => self.ewma = value,
            Policy::LeastRequest
            | Policy::LeastRequestFullScan
            | Policy::EwmaRetry
            | Policy::Oracle
            | Policy::TowerPeakEwma => {}
        }
    }
}

impl BenchSummary {
    /// Records the result of `policy` in `scenario`.
    pub fn insert(&mut self, scenario: Scenario, policy: Policy, result: RunResult) {
        self.scenarios
            .entry(scenario.key().to_owned())
            .or_default()
            .insert(policy.key().to_owned(), result);
    }

    /// The result of `policy` in `scenario`, if it ran.
    pub fn result(&self, scenario: Scenario, policy: Policy) -> Option<&RunResult> {
        self.scenarios.get(scenario.key())?.get(policy.key())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    pub(crate) fn run(p50: f64, p99: f64, success_rate: f64) -> RunResult {
        RunResult {
            p50_ms: p50,
            p90_ms: p50 * 2.0,
            p99_ms: p99,
            p999_ms: p99 * 2.0,
            max_ms: p99 * 3.0,
            success_rate,
            rps: 400.0,
            share: BTreeMap::from([
                ("127.0.0.1:50051".to_owned(), 0.5),
                ("127.0.0.1:50052".to_owned(), 0.5),
            ]),
        }
    }

    #[test]
    fn json_has_the_documented_shape() {
        let mut summary = BenchSummary::default();
        summary.insert(Scenario::OneSlow, Policy::Ewma, run(1.0, 2.5, 1.0));
        summary
            .overhead
            .cpu_us_per_request
            .set(Policy::RoundRobin, 90.0);
        summary
            .overhead
            .cpu_us_per_request
            .set(Policy::WasmFloor, 125.0);
        summary
            .overhead
            .cpu_us_per_request
            .set(Policy::Hostcalls, 137.0);
        summary.overhead.cpu_us_per_request.set(Policy::Ewma, 140.0);
        summary.overhead.throughput_rps.set(Policy::Ewma, 3_000.0);
        summary.overhead.p50_ms.set(Policy::Ewma, 9.5);
        assert_eq!(
            serde_json::to_value(&summary).unwrap(),
            json!({
                "scenarios": {
                    "one-slow": {
                        "ewma": {
                            "p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 2.5, "p999_ms": 5.0,
                            "max_ms": 7.5, "success_rate": 1.0, "rps": 400.0,
                            "share": { "127.0.0.1:50051": 0.5, "127.0.0.1:50052": 0.5 }
                        }
                    }
                },
                "overhead": {
                    "cpu_us_per_request": {
                        "round_robin": 90.0, "wasm_floor": 125.0, "hostcalls": 137.0, "ewma": 140.0
                    },
                    "throughput_rps": {
                        "round_robin": 0.0, "wasm_floor": 0.0, "hostcalls": 0.0, "ewma": 3000.0
                    },
                    "p50_ms": { "round_robin": 0.0, "wasm_floor": 0.0, "hostcalls": 0.0, "ewma": 9.5 }
                }
            })
        );
    }

    #[test]
    fn json_parses_back() {
        let mut summary = BenchSummary::default();
        summary.insert(Scenario::Churn, Policy::RoundRobin, run(0.7, 3.0, 0.889));
        let text = serde_json::to_string_pretty(&summary).unwrap();
        assert_eq!(
            serde_json::from_str::<BenchSummary>(&text).unwrap(),
            summary
        );
    }

    #[test]
    fn a_summary_from_before_the_probe_parses_with_no_hostcalls_figure() {
        let three = json!({"round_robin": 90.0, "wasm_floor": 125.0, "ewma": 140.0});
        let old = json!({"scenarios": {}, "overhead": {
            "cpu_us_per_request": three, "throughput_rps": three, "p50_ms": three}});
        let summary: BenchSummary = serde_json::from_value(old).unwrap();
        assert_eq!(summary.overhead.cpu_us_per_request.ewma, 140.0);
        assert_eq!(summary.overhead.cpu_us_per_request.hostcalls, 0.0);
    }

    #[test]
    fn only_the_overhead_policies_have_overhead_figures() {
        let mut figures = PerPolicy::default();
        figures.set(Policy::Oracle, 1.0);
        figures.set(Policy::Ewma, 2.0);
        assert_eq!(figures.get(Policy::Oracle), None);
        assert_eq!(figures.get(Policy::Ewma), Some(2.0));
    }
}
