//! The goals the filter is judged against (reported, never asserted).
//!
//! * `one-slow`: ewma p99 ≤ 0.2 × round robin's, ≤ 0.5 × least request's, ≤ 1.2 × the
//!   oracle's (round robin over only the healthy backends); ewma p999 ≤ 3 × the
//!   oracle's; at most 0.1 % of ewma's calls go to the slow backend.
//! * `fast-fail`: ewma succeeds on ≥ 99.9 % of calls without retries, and on all of
//!   them with the retry policy `ewma.yaml` documents (`ewma_retry`).
//! * `many-slow`: ewma p99 ≤ 1.5 × the oracle's; at most 0.5 % of ewma's calls go to
//!   the four slow backends.
//! * `equal`: every backend gets a fair share (1/3) of ewma's calls within ±20 %.
//! * `capacity`: ewma p99 ≤ 0.5 × round robin's and ≤ least request's with a full scan
//!   (the best stock Envoy offers); each backend gets its capacity share (8/18, 8/18,
//!   2/18) of ewma's calls within ±20 %.
//! * overhead: the filter's extra Envoy CPU per request over round robin is at most
//!   1.15 × the extra of its host calls alone (the `hostcalls` probe): the filter's own
//!   code costs at most 15 % on top of what the proxy-wasm ABI charges.

use super::{
    plan::{Policy, Scenario, CAPACITIES},
    summary::{BenchSummary, RunResult},
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

    fn new(name: impl Into<String>, target: impl Into<String>, judged: Judged) -> Self {
        let (measured, met) = judged.unwrap_or_else(|| ("not measured".to_owned(), None));
        Self {
            name: name.into(),
            target: target.into(),
            measured,
            met,
        }
    }
}

/// The measured figure and the verdict; `None` when a run is missing.
type Judged = Option<(String, Option<bool>)>;

/// The goals, evaluated on `summary`.
pub fn goals(summary: &BenchSummary) -> Vec<Goal> {
    let ewma = |scenario| summary.result(scenario, Policy::Ewma);
    let mut goals = Vec::new();
    for (other, bound) in [
        (Policy::RoundRobin, 0.2),
        (Policy::LeastRequest, 0.5),
        (Policy::Oracle, 1.2),
    ] {
        goals.push(Goal::new(
            format!("one-slow: ewma p99 vs {}", other.key()),
            format!("≤ {bound}×"),
            latency_ratio(
                ewma(Scenario::OneSlow),
                summary.result(Scenario::OneSlow, other),
                |run| run.p99_ms,
                bound,
            ),
        ));
    }
    goals.push(Goal::new(
        "one-slow: ewma p999 vs oracle",
        "≤ 3×",
        latency_ratio(
            ewma(Scenario::OneSlow),
            summary.result(Scenario::OneSlow, Policy::Oracle),
            |run| run.p999_ms,
            3.0,
        ),
    ));
    goals.push(odd_share_goal(summary, Scenario::OneSlow, 0.1));

    goals.push(Goal::new(
        "fast-fail: ewma success rate, no retries",
        "≥ 99.9 %",
        ewma(Scenario::FastFail)
            .map(|run| (percent(run.success_rate), Some(run.success_rate >= 0.999))),
    ));
    goals.push(Goal::new(
        "fast-fail: ewma_retry success rate",
        "= 100 %",
        summary
            .result(Scenario::FastFail, Policy::EwmaRetry)
            .map(|run| (percent(run.success_rate), Some(run.success_rate >= 1.0))),
    ));

    goals.push(Goal::new(
        "many-slow: ewma p99 vs oracle",
        "≤ 1.5×",
        latency_ratio(
            ewma(Scenario::ManySlow),
            summary.result(Scenario::ManySlow, Policy::Oracle),
            |run| run.p99_ms,
            1.5,
        ),
    ));
    goals.push(odd_share_goal(summary, Scenario::ManySlow, 0.5));

    goals.push(Goal::new(
        "equal: ewma share off a fair share (1/3), largest",
        "≤ 0.2 (±20 %)",
        ewma(Scenario::Equal).map(|run| {
            let ports = Scenario::Equal.ports();
            let fair = 1.0 / ports.len().max(1) as f64;
            let expected: Vec<(u16, f64)> = ports.iter().map(|&port| (port, fair)).collect();
            fairness(run, &expected, 0.2)
        }),
    ));

    for (other, bound) in [
        (Policy::RoundRobin, 0.5),
        (Policy::LeastRequestFullScan, 1.0),
    ] {
        goals.push(Goal::new(
            format!("capacity: ewma p99 vs {}", other.key()),
            format!("≤ {bound}×"),
            latency_ratio(
                ewma(Scenario::Capacity),
                summary.result(Scenario::Capacity, other),
                |run| run.p99_ms,
                bound,
            ),
        ));
    }
    goals.push(Goal::new(
        "capacity: ewma share off its capacity share (8/18, 8/18, 2/18), largest",
        "≤ 0.2 (±20 %)",
        ewma(Scenario::Capacity).map(|run| fairness(run, &capacity_shares(), 0.2)),
    ));

    goals.push(overhead_goal(summary));
    goals
}

/// `ewma`'s latency over `base`'s, by `pick`, against `bound`.
fn latency_ratio(
    ewma: Option<&RunResult>,
    base: Option<&RunResult>,
    pick: impl Fn(&RunResult) -> f64,
    bound: f64,
) -> Judged {
    let (ewma, base) = (pick(ewma?), pick(base?));
    if base <= 0.0 {
        return None;
    }
    let ratio = ewma / base;
    Some((
        format!("{ratio:.2}× ({ewma:.2} / {base:.2} ms)"),
        Some(ratio <= bound),
    ))
}

/// The part of ewma's successful calls that went to the backends `scenario` makes slow,
/// against `bound_percent`.
fn odd_share_goal(summary: &BenchSummary, scenario: Scenario, bound_percent: f64) -> Goal {
    let odd = scenario.odd_ports();
    let backends = match odd {
        [port] => format!("127.0.0.1:{port}"),
        [first, .., last] => format!("the {} slow backends ({first}-{last})", odd.len()),
        [] => "no backend".to_owned(),
    };
    Goal::new(
        format!("{}: ewma share to {backends}", scenario.key()),
        format!("≤ {bound_percent} %"),
        summary.result(scenario, Policy::Ewma).map(|run| {
            let percent = 100.0 * share_of(run, odd);
            (format!("{percent:.2} %"), Some(percent <= bound_percent))
        }),
    )
}

/// The summed share of the backends on `ports` (127.0.0.1); a backend that got no
/// successful call has none.
pub fn share_of(run: &RunResult, ports: &[u16]) -> f64 {
    ports
        .iter()
        .filter_map(|port| run.share.get(&format!("127.0.0.1:{port}")))
        .fold(0.0, |sum, share| sum + share)
}

/// Each `capacity` backend's part of the total capacity: 8/18, 8/18, 2/18.
pub fn capacity_shares() -> Vec<(u16, f64)> {
    let total: u32 = CAPACITIES.iter().sum();
    Scenario::Capacity
        .ports()
        .iter()
        .zip(CAPACITIES)
        .map(|(&port, slots)| (port, f64::from(slots) / f64::from(total.max(1))))
        .collect()
}

/// The largest |share − expected| / expected over the backends `(port, expected share)`,
/// against `bound`.
fn fairness(run: &RunResult, expected: &[(u16, f64)], bound: f64) -> (String, Option<bool>) {
    let worst = expected
        .iter()
        .filter(|(_, fair)| *fair > 0.0)
        .map(|&(port, fair)| {
            let share = share_of(run, &[port]);
            ((share - fair).abs() / fair, port, share)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match worst {
        Some((off, port, share)) => (
            format!("{off:.2} (127.0.0.1:{port} at {:.1} %)", 100.0 * share),
            Some(off <= bound),
        ),
        None => ("no backends".to_owned(), None),
    }
}

/// ewma's extra Envoy CPU per request over round robin against the `hostcalls` probe's.
fn overhead_goal(summary: &BenchSummary) -> Goal {
    let cpu = &summary.overhead.cpu_us_per_request;
    let (calls_extra, ewma_extra) = (cpu.hostcalls - cpu.round_robin, cpu.ewma - cpu.round_robin);
    let judged = if cpu.round_robin <= 0.0 || cpu.hostcalls <= 0.0 || cpu.ewma <= 0.0 {
        None
    } else if calls_extra <= 0.0 {
        Some((
            format!("hostcalls {calls_extra:+.1} µs: no host-call cost to compare with"),
            None,
        ))
    } else {
        let ratio = ewma_extra / calls_extra;
        Some((
            format!("{ratio:.2}× (ewma {ewma_extra:+.1} µs, hostcalls {calls_extra:+.1} µs)"),
            Some(ratio <= 1.15),
        ))
    };
    Goal::new(
        "overhead: ewma extra CPU/request over round_robin vs hostcalls'",
        "≤ 1.15×",
        judged,
    )
}

/// A success rate in percent with two decimals, never rounded up to 100.00 %.
fn percent(rate: f64) -> String {
    let text = format!("{:.2} %", 100.0 * rate);
    if rate < 1.0 && text == "100.00 %" {
        "99.99 %".to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::summary::tests::run;

    /// `run` with these shares of 127.0.0.1:`port`.
    fn with_shares(mut result: RunResult, shares: &[(u16, f64)]) -> RunResult {
        result.share = shares
            .iter()
            .map(|&(port, share)| (format!("127.0.0.1:{port}"), share))
            .collect::<BTreeMap<_, _>>();
        result
    }

    fn summary() -> BenchSummary {
        let mut summary = BenchSummary::default();
        summary.insert(Scenario::OneSlow, Policy::RoundRobin, run(1.0, 41.0, 1.0));
        summary.insert(Scenario::OneSlow, Policy::LeastRequest, run(1.0, 40.0, 1.0));
        let mut one_slow = with_shares(
            run(1.0, 4.0, 1.0),
            &[(50051, 0.4996), (50052, 0.4996), (50053, 0.0008)],
        );
        one_slow.p999_ms = 7.0;
        summary.insert(Scenario::OneSlow, Policy::Ewma, one_slow);
        summary.insert(Scenario::OneSlow, Policy::Oracle, run(1.0, 2.0, 1.0));
        summary.insert(Scenario::FastFail, Policy::Ewma, run(1.0, 2.0, 0.9968));
        summary.insert(
            Scenario::FastFail,
            Policy::EwmaRetry,
            run(1.0, 2.0, 0.99999),
        );
        let mut many: Vec<(u16, f64)> = (50051..=50056).map(|p| (p, 0.1655)).collect();
        many.extend((50057..=50060).map(|p| (p, 0.0018)));
        summary.insert(
            Scenario::ManySlow,
            Policy::Ewma,
            with_shares(run(1.0, 2.8, 1.0), &many),
        );
        summary.insert(Scenario::ManySlow, Policy::Oracle, run(1.0, 2.0, 1.0));
        summary.insert(
            Scenario::Equal,
            Policy::Ewma,
            with_shares(
                run(1.0, 2.0, 1.0),
                &[(50051, 0.271), (50052, 0.339), (50053, 0.390)],
            ),
        );
        summary.insert(
            Scenario::Capacity,
            Policy::RoundRobin,
            run(30.0, 400.0, 1.0),
        );
        summary.insert(
            Scenario::Capacity,
            Policy::LeastRequestFullScan,
            run(32.0, 60.0, 1.0),
        );
        summary.insert(
            Scenario::Capacity,
            Policy::Ewma,
            with_shares(
                run(32.0, 50.0, 1.0),
                &[(50051, 0.45), (50052, 0.45), (50053, 0.10)],
            ),
        );
        let cpu = &mut summary.overhead.cpu_us_per_request;
        cpu.set(Policy::RoundRobin, 30.0);
        cpu.set(Policy::WasmFloor, 35.0);
        cpu.set(Policy::Hostcalls, 40.0);
        cpu.set(Policy::Ewma, 41.0);
        summary
    }

    fn rows(goals: &[Goal]) -> Vec<(&str, &str, &str, &str)> {
        goals
            .iter()
            .map(|g| {
                (
                    g.name.as_str(),
                    g.target.as_str(),
                    g.measured.as_str(),
                    g.verdict(),
                )
            })
            .collect()
    }

    #[test]
    fn each_goal_shows_its_ratio_and_verdict() {
        let goals = goals(&summary());
        assert_eq!(
            rows(&goals),
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
                    "one-slow: ewma p999 vs oracle",
                    "≤ 3×",
                    "1.75× (7.00 / 4.00 ms)",
                    "met"
                ),
                (
                    "one-slow: ewma share to 127.0.0.1:50053",
                    "≤ 0.1 %",
                    "0.08 %",
                    "met"
                ),
                (
                    "fast-fail: ewma success rate, no retries",
                    "≥ 99.9 %",
                    "99.68 %",
                    "MISSED"
                ),
                (
                    "fast-fail: ewma_retry success rate",
                    "= 100 %",
                    "99.99 %",
                    "MISSED"
                ),
                (
                    "many-slow: ewma p99 vs oracle",
                    "≤ 1.5×",
                    "1.40× (2.80 / 2.00 ms)",
                    "met"
                ),
                (
                    "many-slow: ewma share to the 4 slow backends (50057-50060)",
                    "≤ 0.5 %",
                    "0.72 %",
                    "MISSED"
                ),
                (
                    "equal: ewma share off a fair share (1/3), largest",
                    "≤ 0.2 (±20 %)",
                    "0.19 (127.0.0.1:50051 at 27.1 %)",
                    "met"
                ),
                (
                    "capacity: ewma p99 vs round_robin",
                    "≤ 0.5×",
                    "0.12× (50.00 / 400.00 ms)",
                    "met"
                ),
                (
                    "capacity: ewma p99 vs least_request_full_scan",
                    "≤ 1×",
                    "0.83× (50.00 / 60.00 ms)",
                    "met"
                ),
                (
                    "capacity: ewma share off its capacity share (8/18, 8/18, 2/18), largest",
                    "≤ 0.2 (±20 %)",
                    "0.10 (127.0.0.1:50053 at 10.0 %)",
                    "met"
                ),
                (
                    "overhead: ewma extra CPU/request over round_robin vs hostcalls'",
                    "≤ 1.15×",
                    "1.10× (ewma +11.0 µs, hostcalls +10.0 µs)",
                    "met"
                ),
            ]
        );
    }

    #[test]
    fn a_retry_run_that_failed_nothing_meets_its_goal() {
        let mut summary = summary();
        summary.insert(Scenario::FastFail, Policy::EwmaRetry, run(1.0, 2.0, 1.0));
        summary.insert(Scenario::FastFail, Policy::Ewma, run(1.0, 2.0, 0.9992));
        let goals = goals(&summary);
        let fast_fail: Vec<_> = rows(&goals)
            .into_iter()
            .filter(|row| row.0.starts_with("fast-fail"))
            .map(|row| (row.2, row.3))
            .collect();
        assert_eq!(fast_fail, [("99.92 %", "met"), ("100.00 %", "met")]);
    }

    #[test]
    fn a_backend_left_out_of_equal_is_as_unfair_as_it_gets() {
        let mut summary = summary();
        summary.insert(
            Scenario::Equal,
            Policy::Ewma,
            with_shares(run(1.0, 2.0, 1.0), &[(50051, 0.5), (50052, 0.5)]),
        );
        let equal = goals(&summary)
            .into_iter()
            .find(|g| g.name.starts_with("equal"))
            .unwrap();
        assert_eq!(
            (equal.measured.as_str(), equal.verdict()),
            ("1.00 (127.0.0.1:50053 at 0.0 %)", "MISSED")
        );
    }

    #[test]
    fn a_small_backend_given_an_equal_share_is_twice_over_its_capacity_share() {
        let mut summary = summary();
        summary.insert(
            Scenario::Capacity,
            Policy::Ewma,
            with_shares(
                run(30.0, 400.0, 1.0),
                &[(50051, 0.3333), (50052, 0.3334), (50053, 0.3333)],
            ),
        );
        let capacity = goals(&summary)
            .into_iter()
            .find(|g| g.name.starts_with("capacity: ewma share"))
            .unwrap();
        assert_eq!(
            (capacity.measured.as_str(), capacity.verdict()),
            ("2.00 (127.0.0.1:50053 at 33.3 %)", "MISSED")
        );
    }

    #[test]
    fn capacity_shares_are_8_8_and_2_of_18() {
        let shares = capacity_shares();
        let ports: Vec<u16> = shares.iter().map(|s| s.0).collect();
        assert_eq!(ports, [50051, 50052, 50053]);
        for (share, expected) in shares.iter().zip([8.0 / 18.0, 8.0 / 18.0, 2.0 / 18.0]) {
            assert!((share.1 - expected).abs() < 1e-12, "{shares:?}");
        }
    }

    #[test]
    fn missing_runs_are_not_judged() {
        let goals = goals(&BenchSummary::default());
        assert_eq!(goals.len(), 14);
        assert!(goals.iter().all(|g| g.met.is_none()), "{goals:?}");
        assert!(
            goals.iter().all(|g| g.measured == "not measured"),
            "{goals:?}"
        );
    }

    #[test]
    fn host_calls_lost_in_noise_are_not_judged() {
        let mut summary = summary();
        summary
            .overhead
            .cpu_us_per_request
            .set(Policy::Hostcalls, 29.0);
        let overhead = goals(&summary).pop().unwrap();
        assert_eq!(overhead.met, None);
        assert_eq!(
            overhead.measured,
            "hostcalls -1.0 µs: no host-call cost to compare with"
        );
    }

    #[test]
    fn a_summary_from_before_the_probe_has_no_overhead_verdict() {
        let mut summary = summary();
        summary
            .overhead
            .cpu_us_per_request
            .set(Policy::Hostcalls, 0.0);
        let overhead = goals(&summary).pop().unwrap();
        assert_eq!(
            (overhead.measured.as_str(), overhead.met),
            ("not measured", None)
        );
    }
}
