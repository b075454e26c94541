//! `make bench-hostcalls`: what each proxy-wasm host call costs Envoy, on its own.
//!
//! The `wasm-probe` module runs once with no calls (the baseline), once per call with that
//! call made [`REPEAT`] times per request, and once with the filter's calls made once each
//! ([`FILTER_CALLS`]). A call's price is its run's Envoy CPU per request over the
//! baseline's, divided by [`REPEAT`]: repeating the call lifts it well above the
//! machine's noise, but a call repeated in a tight loop finds Envoy's and V8's code and
//! data warm, so the price is a marginal one. The filter's calls made together, once
//! each, as the filter makes them, show what they cost in context. Rounds are interleaved
//! and each figure is a median.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;
use wasm_probe::{Call, Calls, FILTER_CALLS};

use super::overhead::median;

/// How often the measured call is made per request.
pub const REPEAT: u32 = 20;

/// The endpoints the probe's override header names in turn (the three greeters).
pub const ENDPOINTS: &str = "endpoints=127.0.0.1:50051|127.0.0.1:50052|127.0.0.1:50053";

/// One run of `make bench-hostcalls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProbeRun {
    /// No calls.
    Baseline,
    /// One call, [`REPEAT`] times per request.
    Repeated(Call),
    /// The filter's calls, once each per request.
    FilterCalls,
}

impl ProbeRun {
    /// Every run of a round, in order.
    pub fn all() -> Vec<ProbeRun> {
        let mut runs = vec![Self::Baseline];
        runs.extend(Call::ALL.map(Self::Repeated));
        runs.push(Self::FilterCalls);
        runs
    }

    /// Its name in logs and file names.
    pub fn label(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Repeated(call) => call.name(),
            Self::FilterCalls => "filter_calls",
        }
    }

    /// The probe configuration of the run.
    pub fn probe_calls(self) -> String {
        match self {
            Self::Baseline => ENDPOINTS.to_owned(),
            Self::Repeated(call) => format!("{}={REPEAT} {ENDPOINTS}", call.name()),
            Self::FilterCalls => format!("{FILTER_CALLS} {ENDPOINTS}"),
        }
    }
}

/// Envoy CPU µs per request of every round of every run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostcallRounds {
    pub runs: BTreeMap<ProbeRun, Vec<f64>>,
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
    /// The same calls made together, once each per request, over the baseline.
    pub filter_calls_together_us: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallCost {
    /// Envoy CPU µs one call adds to a request.
    pub us_per_call: f64,
    /// Envoy CPU µs per request of each round with the call repeated.
    pub rounds_cpu_us_per_request: Vec<f64>,
}

impl HostcallRounds {
    /// Adds one round of `run`.
    pub fn add(&mut self, run: ProbeRun, cpu_us_per_request: f64) {
        self.runs.entry(run).or_default().push(cpu_us_per_request);
    }

    fn median_of(&self, run: ProbeRun) -> Option<f64> {
        self.runs.get(&run).map(|rounds| median(rounds))
    }

    /// The medians and prices.
    pub fn costs(&self) -> HostcallCosts {
        let baseline = self.median_of(ProbeRun::Baseline).unwrap_or(0.0);
        let calls: BTreeMap<_, _> = self
            .runs
            .iter()
            .filter_map(|(run, rounds)| match run {
                ProbeRun::Repeated(call) => Some((*call, rounds)),
                ProbeRun::Baseline | ProbeRun::FilterCalls => None,
            })
            .map(|(call, rounds)| {
                let cost = CallCost {
                    us_per_call: (median(rounds) - baseline) / f64::from(REPEAT),
                    rounds_cpu_us_per_request: rounds.clone(),
                };
                (call.name(), cost)
            })
            .collect();
        let filter = filter_calls();
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
            filter_calls_together_us: self
                .median_of(ProbeRun::FilterCalls)
                .map_or(0.0, |together| together - baseline),
        }
    }
}

/// How often the filter makes each call per request ([`FILTER_CALLS`]).
fn filter_calls() -> Calls {
    Calls::parse(&ProbeRun::FilterCalls.probe_calls()).unwrap_or_default()
}

/// The table `make bench-publish` puts in docs/benchmark.md.
pub fn markdown(costs: &HostcallCosts, setup_line: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{setup_line}\n");
    out.push_str("| call | what it does | µs per call | each round, µs/request (call ×");
    let _ = writeln!(out, "{REPEAT}) | in the filter's calls |");
    out.push_str("|---|---|--:|--:|:-:|\n");
    let filter = filter_calls();
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
         calls (`FILTER_CALLS`) add up to {:.2} µs at these marginal prices; made together, \
         once each per request as the filter makes them, they cost **{:.2} µs** over the \
         baseline.",
        costs.baseline_cpu_us_per_request, costs.filter_calls_us, costs.filter_calls_together_us
    );
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use wasm_probe::with_probe_calls;

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
    fn each_run_repeats_one_call_the_baseline_makes_none_and_the_last_the_filters() {
        let runs = ProbeRun::all();
        assert_eq!(runs.len(), Call::ALL.len() + 2);
        assert_eq!(runs[0], ProbeRun::Baseline);
        assert_eq!(runs[runs.len() - 1], ProbeRun::FilterCalls);
        assert_eq!(
            ProbeRun::Repeated(Call::GrpcStatus).probe_calls(),
            format!("grpc_status=20 {ENDPOINTS}")
        );
        assert_eq!(ProbeRun::Baseline.probe_calls(), ENDPOINTS);
        assert_eq!(
            ProbeRun::FilterCalls.probe_calls(),
            format!("{FILTER_CALLS} {ENDPOINTS}")
        );
        for run in runs {
            assert!(Calls::parse(&run.probe_calls()).is_ok(), "{}", run.label());
        }
    }

    #[test]
    fn a_calls_price_is_its_median_over_the_baseline_per_repetition() {
        let mut rounds = HostcallRounds::default();
        for (run, cpu) in [
            (ProbeRun::Baseline, [33.0, 34.0, 32.0]),
            (ProbeRun::Repeated(Call::Clock), [38.0, 39.0, 80.0]),
            (ProbeRun::Repeated(Call::ClusterName), [49.0, 49.0, 49.0]),
            (ProbeRun::Repeated(Call::Counter), [34.0, 34.0, 34.0]),
            (ProbeRun::FilterCalls, [36.5, 36.0, 37.0]),
        ] {
            for c in cpu {
                rounds.add(run, c);
            }
        }
        let costs = rounds.costs();
        assert_eq!(costs.baseline_cpu_us_per_request, 33.0);
        assert_eq!(costs.calls["clock"].us_per_call, 0.3);
        assert_eq!(costs.calls["cluster_name"].us_per_call, 0.8);
        assert_eq!(costs.calls["counter"].us_per_call, 0.05);
        // The filter reads the cluster once and the clock only at the request's end and
        // the response (`body_clock`, `response_clock`, not measured here: they count
        // nothing), not at the pick.
        assert!((costs.filter_calls_us - 0.8).abs() < 1e-9);
        let table = markdown(&costs, "setup");
        assert!(table.contains(
            "| `clock` | read the clock (request headers) | 0.30 | 38.0 / 39.0 / 80.0 | – |"
        ));
        assert!(
            table.contains("| `counter` | increment a counter | 0.05 | 34.0 / 34.0 / 34.0 | – |")
        );
        assert_eq!(costs.filter_calls_together_us, 3.5);
        assert!(table.contains("add up to 0.80 µs at these marginal prices"));
        assert!(table.contains("they cost **3.50 µs** over the baseline"));
    }
}
