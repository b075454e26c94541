//! The goals the filter is judged against (reported, never asserted).
//!
//! * `one-slow`: ewma p99 ≤ 0.2 × round robin's, ≤ 0.5 × least request's, ≤ 1.2 × the
//!   oracle's (round robin over only the healthy backends).
//! * `fast-fail`: ewma succeeds on ≥ 99.5 % of calls, without retries.
//! * overhead: the filter's extra Envoy CPU per request over round robin is at most
//!   1.3 × the extra of a no-op Wasm filter with the same `override_host` policy.

use super::{
    plan::{Policy, Scenario},
    summary::BenchSummary,
};

/// One goal and how the run measured up.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    /// What is compared, e.g. `one-slow: ewma p99 vs round_robin`.
    pub name: String,
    /// The bound, e.g. `≤ 0.2×`.
    pub target: String,
    /// The measured figure, e.g. `0.06× (2.61 / 41.30 ms)`.
    pub measured: String,
    /// Whether the bound holds; `None` when it could not be measured.
    pub met: Option<bool>,
}

impl Goal {
    /// `met`, `MISSED` or `n/a`.
    pub fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "n/a",
        }
    }
}

/// The goals, evaluated on `summary`.
pub fn goals(summary: &BenchSummary) -> Vec<Goal> {
    let mut goals = Vec::new();
    for (other, bound) in [
        (Policy::RoundRobin, 0.2),
        (Policy::LeastRequest, 0.5),
        (Policy::Oracle, 1.2),
    ] {
        let ewma = summary.result(Scenario::OneSlow, Policy::Ewma);
        let base = summary.result(Scenario::OneSlow, other);
        let (measured, met) = match (ewma, base) {
            (Some(ewma), Some(base)) if base.p99_ms > 0.0 => {
                let ratio = ewma.p99_ms / base.p99_ms;
                (
                    format!("{ratio:.2}× ({:.2} / {:.2} ms)", ewma.p99_ms, base.p99_ms),
                    Some(ratio <= bound),
                )
            }
            _ => ("not measured".to_owned(), None),
        };
        goals.push(Goal {
            name: format!("one-slow: ewma p99 vs {}", other.key()),
            target: format!("≤ {bound}×"),
            measured,
            met,
        });
    }

    let (measured, met) = match summary.result(Scenario::FastFail, Policy::Ewma) {
        Some(ewma) => (
            format!("{:.2} %", 100.0 * ewma.success_rate),
            Some(ewma.success_rate >= 0.995),
        ),
        None => ("not measured".to_owned(), None),
    };
    goals.push(Goal {
        name: "fast-fail: ewma success rate, no retries".to_owned(),
        target: "≥ 99.5 %".to_owned(),
        measured,
        met,
    });

    let cpu = &summary.overhead.cpu_us_per_request;
    let (floor_extra, ewma_extra) = (cpu.wasm_floor - cpu.round_robin, cpu.ewma - cpu.round_robin);
    let (measured, met) = if cpu.round_robin <= 0.0 {
        ("not measured".to_owned(), None)
    } else if floor_extra <= 0.0 {
        (
            format!("wasm_floor {floor_extra:+.1} µs: no floor to compare with"),
            None,
        )
    } else {
        let ratio = ewma_extra / floor_extra;
        (
            format!("{ratio:.2}× (ewma {ewma_extra:+.1} µs, wasm_floor {floor_extra:+.1} µs)"),
            Some(ratio <= 1.3),
        )
    };
    goals.push(Goal {
        name: "overhead: ewma extra CPU/request over round_robin vs wasm_floor's".to_owned(),
        target: "≤ 1.3×".to_owned(),
        measured,
        met,
    });
    goals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::run;

    fn summary() -> BenchSummary {
        let mut summary = BenchSummary::default();
        summary.insert(Scenario::OneSlow, Policy::RoundRobin, run(1.0, 41.0, 1.0));
        summary.insert(Scenario::OneSlow, Policy::LeastRequest, run(1.0, 40.0, 1.0));
        summary.insert(Scenario::OneSlow, Policy::Ewma, run(1.0, 4.0, 1.0));
        summary.insert(Scenario::OneSlow, Policy::Oracle, run(1.0, 2.0, 1.0));
        summary.insert(Scenario::FastFail, Policy::Ewma, run(1.0, 2.0, 0.9968));
        summary
            .overhead
            .cpu_us_per_request
            .set(Policy::RoundRobin, 100.0);
        summary
            .overhead
            .cpu_us_per_request
            .set(Policy::WasmFloor, 140.0);
        summary.overhead.cpu_us_per_request.set(Policy::Ewma, 160.0);
        summary
    }

    #[test]
    fn each_goal_shows_its_ratio_and_verdict() {
        let goals = goals(&summary());
        let rows: Vec<_> = goals
            .iter()
            .map(|g| {
                (
                    g.name.as_str(),
                    g.target.as_str(),
                    g.measured.as_str(),
                    g.verdict(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (
                    "one-slow: ewma p99 vs round_robin",
                    "≤ 0.2×",
                    "0.10× (4.00 / 41.00 ms)",
                    "met"
                ),
                (
                    "one-slow: ewma p99 vs least_request",
                    "≤ 0.5×",
                    "0.10× (4.00 / 40.00 ms)",
                    "met"
                ),
                (
                    "one-slow: ewma p99 vs oracle",
                    "≤ 1.2×",
                    "2.00× (4.00 / 2.00 ms)",
                    "MISSED"
                ),
                (
                    "fast-fail: ewma success rate, no retries",
                    "≥ 99.5 %",
                    "99.68 %",
                    "met"
                ),
                (
                    "overhead: ewma extra CPU/request over round_robin vs wasm_floor's",
                    "≤ 1.3×",
                    "1.50× (ewma +60.0 µs, wasm_floor +40.0 µs)",
                    "MISSED"
                ),
            ]
        );
    }

    #[test]
    fn missing_runs_are_not_judged() {
        let goals = goals(&BenchSummary::default());
        assert!(goals.iter().all(|g| g.met.is_none()), "{goals:?}");
    }

    #[test]
    fn a_floor_lost_in_noise_is_not_judged() {
        let mut summary = summary();
        summary
            .overhead
            .cpu_us_per_request
            .set(Policy::WasmFloor, 99.0);
        let overhead = goals(&summary).pop().unwrap();
        assert_eq!(overhead.met, None);
        assert_eq!(
            overhead.measured,
            "wasm_floor -1.0 µs: no floor to compare with"
        );
    }
}
