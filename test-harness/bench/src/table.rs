//! The Markdown tables docs/benchmark.md embeds (`target/bench/summary.md`).

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use super::{
    goals::{goals, share_of},
    overhead::OverheadSamples,
    plan::{Plan, Policy, Scenario, CAPACITIES, ODD_ONE_OUT, OVERHEAD_POLICIES},
    summary::{BenchSummary, Overhead, RunResult},
};

/// How the benchmark was run, for the text around the tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    pub plan: Plan,
    /// `BENCH_QUICK=1`.
    pub quick: bool,
    /// Wall-clock time of the whole benchmark.
    pub elapsed: Duration,
    /// Backend addresses in column order, e.g. `127.0.0.1:50051`.
    pub backends: Vec<String>,
    /// Every overhead round, to show the spread behind the medians.
    pub overhead_samples: OverheadSamples,
}

/// The scenario table, the overhead table and the goals, in Markdown.
pub fn markdown(summary: &BenchSummary, setup: &Setup) -> String {
    let plan = &setup.plan;
    let mut out = String::new();
    let ports: Vec<&str> = setup
        .backends
        .iter()
        .map(|b| b.rsplit(':').next().unwrap_or(b))
        .collect();
    let _ = writeln!(
        out,
        "Open loop at {} calls/s (at most {} in flight; {} in {capacity}) over one HTTP/2 \
         connection through Envoy ({} workers); {} warm-up, then {} measured per run{}. \
         Latencies in ms, of \
         successful calls, from their intended send time. Whole benchmark: {:.0} s.\n\n\
         Shares are of the successful calls, in %; for {many}'s {} backends, the range over \
         the {} fast ones and over the {} slow ones (×count). *Odd share*: the part that went \
         to the backends the scenario makes slow, failing, dead or small (127.0.0.1:{ODD_ONE_OUT}, \
         in {capacity} the one with {} slots; {} in {many}).\n",
        plan.qps,
        plan.concurrency,
        Scenario::Capacity.concurrency(plan),
        plan.envoy_workers,
        human(plan.warm_up),
        human(plan.measure),
        if setup.quick {
            " (`BENCH_QUICK=1`)"
        } else {
            ""
        },
        setup.elapsed.as_secs_f64(),
        Scenario::ManySlow.ports().len(),
        Scenario::ManySlow.ports().len() - Scenario::ManySlow.odd_ports().len(),
        Scenario::ManySlow.odd_ports().len(),
        CAPACITIES[2],
        port_range(Scenario::ManySlow.odd_ports()),
        many = Scenario::ManySlow.key(),
        capacity = Scenario::Capacity.key(),
    );
    if let Some(note) = client_side_note(summary) {
        let _ = writeln!(out, "{note}\n");
    }
    let _ = writeln!(
        out,
        "| scenario | policy | p50 | p90 | p99 | p999 | max | success | rps | share {} (%) | odd share (%) |",
        ports.join(" / ")
    );
    out.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|:-:|--:|\n");
    for scenario in Scenario::ALL {
        for &policy in scenario.policies() {
            if let Some(run) = summary.result(scenario, policy) {
                scenario_row(&mut out, scenario, policy, run);
            }
        }
    }

    let _ = writeln!(
        out,
        "\n**Overhead**: equal backends, closed loop with {} calls in flight, Envoy with {} \
         worker{}, {} rounds of {} per policy, interleaved; medians over the rounds. CPU is \
         the Envoy process's user + system time over the requests it served.\n",
        plan.overhead_concurrency,
        plan.overhead_workers,
        if plan.overhead_workers == 1 { "" } else { "s" },
        plan.overhead_rounds,
        human(plan.overhead_measure)
    );
    out.push_str(
        "| policy | Envoy CPU µs/request | over round_robin | each round | throughput rps | p50 ms |\n",
    );
    out.push_str("|---|--:|--:|--:|--:|--:|\n");
    let overhead = &summary.overhead;
    let base = overhead.cpu_us_per_request.round_robin;
    for policy in OVERHEAD_POLICIES {
        let cpu = overhead.cpu_us_per_request.get(policy).unwrap_or(0.0);
        let extra = if policy == Policy::RoundRobin || base <= 0.0 {
            "–".to_owned()
        } else {
            format!("{:+.1} ({:+.0} %)", cpu - base, 100.0 * (cpu - base) / base)
        };
        let rounds: Vec<String> = setup
            .overhead_samples
            .cpu_per_round(policy)
            .iter()
            .map(|cpu| format!("{cpu:.0}"))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {cpu:.1} | {extra} | {} | {:.0} | {} |",
            policy.key(),
            rounds.join(" / "),
            overhead.throughput_rps.get(policy).unwrap_or(0.0),
            latency(overhead.p50_ms.get(policy).unwrap_or(0.0))
        );
    }

    if let Some(line) = breakdown(overhead) {
        let _ = writeln!(out, "\n{line}");
    }

    out.push_str("\n**Goals** (reported, not asserted):\n\n");
    out.push_str("| goal | target | measured | |\n|---|---|---|---|\n");
    for goal in goals(summary) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            goal.name,
            goal.target,
            goal.measured,
            goal.verdict()
        );
    }
    out
}

/// What the rows without Envoy are; `None` if there are none.
fn client_side_note(summary: &BenchSummary) -> Option<String> {
    let ran = Scenario::ALL
        .iter()
        .any(|&scenario| summary.result(scenario, Policy::TowerPeakEwma).is_some());
    ran.then(|| {
        format!(
            "*{}* has no proxy hop: no Envoy runs, and the load generator balances the same \
             load itself with tower's p2c over PeakEwma (Linkerd's defaults: 30 ms default \
             RTT, 10 s decay, RTT to the response headers) over one HTTP/2 connection per \
             greeter, as Linkerd's balancer does inside its proxy. A gRPC status comes after \
             HTTP 200, so tower counts a fast UNAVAILABLE as a fast answer (Linkerd adds \
             failure accrual separately).",
            Policy::TowerPeakEwma.key()
        )
    })
}

/// Where the filter's cost over the no-op module goes: the host calls (the probe making
/// the same calls) and the filter's own code. `None` unless all three were measured.
fn breakdown(overhead: &Overhead) -> Option<String> {
    let cpu = &overhead.cpu_us_per_request;
    if cpu.wasm_floor <= 0.0 || cpu.hostcalls <= 0.0 || cpu.ewma <= 0.0 {
        return None;
    }
    Some(format!(
        "Of ewma's {:+.1} µs over wasm_floor, {:+.1} µs is its host calls alone (`hostcalls`: \
         the `wasm-probe` module making the same calls per request with no logic) and {:+.1} µs \
         its own code.",
        cpu.ewma - cpu.wasm_floor,
        cpu.hostcalls - cpu.wasm_floor,
        cpu.ewma - cpu.hostcalls
    ))
}

fn scenario_row(out: &mut String, scenario: Scenario, policy: Policy, run: &RunResult) {
    let shares = share_cell(scenario, &run.share);
    let odd = scenario.odd_ports();
    let odd_share = if odd.is_empty() {
        "–".to_owned()
    } else {
        format!("{:.2}", 100.0 * share_of(run, odd))
    };
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {:.2} % | {:.0} | {shares} | {odd_share} |",
        scenario.key(),
        policy.key(),
        latency(run.p50_ms),
        latency(run.p90_ms),
        latency(run.p99_ms),
        latency(run.p999_ms),
        latency(run.max_ms),
        100.0 * run.success_rate,
        run.rps,
    );
}

/// Backends' shares of the successful calls in percent: each one's, in port order, for
/// a scenario of up to three backends (`33.3 / 33.3 / 33.4`), else
/// [`grouped_shares`].
pub fn share_cell(scenario: Scenario, share: &BTreeMap<String, f64>) -> String {
    let ports = scenario.ports();
    if ports.len() > 3 {
        return grouped_shares(scenario, share);
    }
    let shares: Vec<String> = ports
        .iter()
        .map(|port| format!("{:.1}", 100.0 * port_share(share, *port)))
        .collect();
    shares.join(" / ")
}

/// The range of the shares (%) of the backends a scenario leaves alone and of those it
/// makes odd, with their counts: `16.1–17.0 ×6 / 0.0–0.2 ×4`.
pub fn grouped_shares(scenario: Scenario, share: &BTreeMap<String, f64>) -> String {
    let odd = scenario.odd_ports();
    let (healthy, odd): (Vec<u16>, Vec<u16>) = scenario
        .ports()
        .iter()
        .partition(|port| !odd.contains(port));
    [healthy, odd]
        .iter()
        .filter(|group| !group.is_empty())
        .map(|group| {
            let percents = group.iter().map(|port| 100.0 * port_share(share, *port));
            let lo = percents.clone().fold(f64::INFINITY, f64::min);
            let hi = percents.fold(f64::NEG_INFINITY, f64::max);
            let (lo, hi) = (format!("{lo:.1}"), format!("{hi:.1}"));
            let range = if lo == hi { lo } else { format!("{lo}–{hi}") };
            format!("{range} ×{}", group.len())
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

fn port_share(share: &BTreeMap<String, f64>, port: u16) -> f64 {
    share
        .get(&format!("127.0.0.1:{port}"))
        .copied()
        .unwrap_or(0.0)
}

/// `50057-50060`, or the one port.
fn port_range(ports: &[u16]) -> String {
    match ports {
        [] => String::new(),
        [port] => port.to_string(),
        [first, .., last] => format!("{first}-{last}"),
    }
}

/// Three significant digits or so: `0.62`, `41.3`, `1204`.
pub fn latency(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// `500 ms`, `2.5 s`, `10 s`.
pub fn human(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{} s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{overhead::OverheadSample, summary::tests::run};

    #[test]
    fn durations_read_as_ms_or_seconds() {
        assert_eq!(human(Duration::from_millis(500)), "500 ms");
        assert_eq!(human(Duration::from_millis(2_500)), "2.5 s");
        assert_eq!(human(Duration::from_secs(10)), "10 s");
    }

    #[test]
    fn latencies_keep_about_three_digits() {
        assert_eq!(latency(0.6234), "0.62");
        assert_eq!(latency(41.26), "41.3");
        assert_eq!(latency(1204.4), "1204");
    }

    #[test]
    fn tables_show_every_run_the_overhead_and_the_goals() {
        let mut summary = BenchSummary::default();
        let mut slow = run(1.0, 41.0, 1.0);
        slow.share = BTreeMap::from([
            ("127.0.0.1:50051".to_owned(), 0.3334),
            ("127.0.0.1:50052".to_owned(), 0.3333),
            ("127.0.0.1:50053".to_owned(), 0.3333),
        ]);
        summary.insert(Scenario::OneSlow, Policy::RoundRobin, slow);
        summary.insert(Scenario::OneSlow, Policy::Ewma, run(0.9, 2.6, 0.9995));
        summary.insert(Scenario::Equal, Policy::Ewma, run(0.9, 2.0, 1.0));
        summary.insert(Scenario::OneSlow, Policy::TowerPeakEwma, run(0.5, 2.2, 1.0));
        let mut many = run(0.9, 2.7, 1.0);
        many.share = (50051..=50060)
            .map(|port| {
                let share = match port {
                    50051..=50055 => 0.166,
                    50056 => 0.1691,
                    _ => 0.0004,
                };
                (format!("127.0.0.1:{port}"), share)
            })
            .collect();
        summary.insert(Scenario::ManySlow, Policy::Ewma, many);
        let mut samples = OverheadSamples::default();
        for (policy, cpu_ms, rps, p50_ms) in [
            (Policy::RoundRobin, 2_000, 3_000.0, 9.5),
            (Policy::WasmFloor, 2_800, 2_500.0, 11.0),
            (Policy::Hostcalls, 2_960, 2_420.0, 11.5),
            (Policy::Ewma, 3_000, 2_400.0, 12.25),
            (Policy::Ewma, 3_300, 2_300.0, 13.0),
            (Policy::Ewma, 2_900, 2_450.0, 12.0),
        ] {
            let envoy_cpu = Duration::from_millis(cpu_ms);
            samples.add(
                policy,
                OverheadSample {
                    envoy_cpu,
                    requests: 20_000,
                    rps,
                    p50_ms,
                },
            );
        }
        summary.overhead = samples.figures();
        let setup = Setup {
            plan: Plan::full(),
            quick: false,
            elapsed: Duration::from_secs(241),
            backends: ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"]
                .map(String::from)
                .to_vec(),
            overhead_samples: samples,
        };
        let text = markdown(&summary, &setup);
        let expected_lines = [
            "Open loop at 400 calls/s (at most 64 in flight; 1024 in capacity) over one HTTP/2 connection through Envoy (2 workers); 2 s warm-up, then 10 s measured per run. Latencies in ms, of successful calls, from their intended send time. Whole benchmark: 241 s.",
            "Shares are of the successful calls, in %; for many-slow's 10 backends, the range over the 6 fast ones and over the 4 slow ones (×count). *Odd share*: the part that went to the backends the scenario makes slow, failing, dead or small (127.0.0.1:50053, in capacity the one with 2 slots; 50057-50060 in many-slow).",
            "| scenario | policy | p50 | p90 | p99 | p999 | max | success | rps | share 50051 / 50052 / 50053 (%) | odd share (%) |",
            "| equal | ewma | 0.90 | 1.80 | 2.00 | 4.00 | 6.00 | 100.00 % | 400 | 50.0 / 50.0 / 0.0 | – |",
            "| one-slow | round_robin | 1.00 | 2.00 | 41.0 | 82.0 | 123 | 100.00 % | 400 | 33.3 / 33.3 / 33.3 | 33.33 |",
            "| one-slow | ewma | 0.90 | 1.80 | 2.60 | 5.20 | 7.80 | 99.95 % | 400 | 50.0 / 50.0 / 0.0 | 0.00 |",
            "| one-slow | tower_peak_ewma | 0.50 | 1.00 | 2.20 | 4.40 | 6.60 | 100.00 % | 400 | 50.0 / 50.0 / 0.0 | 0.00 |",
            "*tower_peak_ewma* has no proxy hop: no Envoy runs, and the load generator balances the same load itself with tower's p2c over PeakEwma (Linkerd's defaults: 30 ms default RTT, 10 s decay, RTT to the response headers) over one HTTP/2 connection per greeter, as Linkerd's balancer does inside its proxy. A gRPC status comes after HTTP 200, so tower counts a fast UNAVAILABLE as a fast answer (Linkerd adds failure accrual separately).",
            "| many-slow | ewma | 0.90 | 1.80 | 2.70 | 5.40 | 8.10 | 100.00 % | 400 | 16.6–16.9 ×6 / 0.0 ×4 | 0.16 |",
            "| round_robin | 100.0 | – | 100 | 3000 | 9.50 |",
            "| wasm_floor | 140.0 | +40.0 (+40 %) | 140 | 2500 | 11.0 |",
            "| hostcalls | 148.0 | +48.0 (+48 %) | 148 | 2420 | 11.5 |",
            "| ewma | 150.0 | +50.0 (+50 %) | 150 / 165 / 145 | 2400 | 12.2 |",
            "Of ewma's +10.0 µs over wasm_floor, +8.0 µs is its host calls alone (`hostcalls`: the `wasm-probe` module making the same calls per request with no logic) and +2.0 µs its own code.",
            "| one-slow: ewma p99 vs round_robin | ≤ 0.2× | 0.06× (2.60 / 41.00 ms) | met |",
            "| overhead: ewma extra CPU/request over round_robin vs hostcalls' | ≤ 1.15× | 1.04× (ewma +50.0 µs, hostcalls +48.0 µs) | met |",
        ];
        for line in expected_lines {
            assert!(
                text.lines().any(|l| l == line),
                "missing line {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn three_backends_show_each_share_and_ten_show_ranges() {
        let share = |pairs: &[(u16, f64)]| -> BTreeMap<String, f64> {
            pairs
                .iter()
                .map(|&(port, share)| (format!("127.0.0.1:{port}"), share))
                .collect()
        };
        let three = share(&[(50051, 0.476), (50052, 0.521), (50053, 0.003)]);
        assert_eq!(share_cell(Scenario::OneSlow, &three), "47.6 / 52.1 / 0.3");
        let mut ten: Vec<(u16, f64)> = (50051..=50056)
            .map(|p| (p, 0.15 + 0.002 * f64::from(p - 50051)))
            .collect();
        ten.extend([(50057, 0.05), (50058, 0.0), (50059, 0.011), (50060, 0.0)]);
        assert_eq!(
            share_cell(Scenario::ManySlow, &share(&ten)),
            "15.0–16.0 ×6 / 0.0–5.0 ×4"
        );
        assert_eq!(
            share_cell(Scenario::ManySlow, &BTreeMap::new()),
            "0.0 ×6 / 0.0 ×4"
        );
    }
}
