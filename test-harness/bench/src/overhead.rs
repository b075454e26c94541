//! The overhead measurement's arithmetic: Envoy CPU time per request of each round,
//! reduced to one figure per policy by the median over the rounds.
//!
//! On a small machine shared with other work, one round can land in a busy phase; the
//! rounds of all policies are interleaved and the median keeps one unlucky round from
//! deciding the result.

use std::{collections::BTreeMap, time::Duration};

use super::{plan::Policy, summary::Overhead};

/// One measured closed-loop run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverheadSample {
    /// Envoy's CPU time (user + system) during the run.
    pub envoy_cpu: Duration,
    /// Requests Envoy received during the run.
    pub requests: u64,
    /// Completed calls per second.
    pub rps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
}

impl OverheadSample {
    /// Envoy CPU µs per request; zero if no request was served.
    pub fn cpu_us_per_request(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.envoy_cpu.as_secs_f64() * 1e6 / self.requests as f64
        }
    }
}

/// Every round of every policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverheadSamples {
    rounds: BTreeMap<Policy, Vec<OverheadSample>>,
}

impl OverheadSamples {
    /// Adds one round of `policy`.
    pub fn add(&mut self, policy: Policy, sample: OverheadSample) {
        self.rounds.entry(policy).or_default().push(sample);
    }

    /// The CPU µs per request of each round of `policy`, in the order they ran.
    pub fn cpu_per_round(&self, policy: Policy) -> Vec<f64> {
        self.rounds
            .get(&policy)
            .map(|samples| {
                samples
                    .iter()
                    .map(OverheadSample::cpu_us_per_request)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The medians per policy: the figures of `summary.json`.
    pub fn figures(&self) -> Overhead {
        let mut overhead = Overhead::default();
        for (&policy, samples) in &self.rounds {
            let of = |figure: fn(&OverheadSample) -> f64| {
                median(&samples.iter().map(figure).collect::<Vec<_>>())
            };
            overhead
                .cpu_us_per_request
                .set(policy, of(OverheadSample::cpu_us_per_request));
            overhead.throughput_rps.set(policy, of(|s| s.rps));
            overhead.p50_ms.set(policy, of(|s| s.p50_ms));
        }
        overhead
    }
}

/// The median of `values` (the mean of the middle two for an even count); zero if
/// there are none. NaNs sort last.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cpu_ms: u64, requests: u64, rps: f64) -> OverheadSample {
        OverheadSample {
            envoy_cpu: Duration::from_millis(cpu_ms),
            requests,
            rps,
            p50_ms: rps / 1_000.0,
        }
    }

    #[test]
    fn cpu_per_request_is_cpu_time_over_requests() {
        assert_eq!(sample(2_500, 20_000, 5_000.0).cpu_us_per_request(), 125.0);
        assert_eq!(sample(10, 0, 0.0).cpu_us_per_request(), 0.0);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[1.0, f64::NAN, 2.0]), 2.0);
    }

    #[test]
    fn one_unlucky_round_does_not_decide_the_figure() {
        let mut samples = OverheadSamples::default();
        samples.add(Policy::Ewma, sample(2_600, 20_000, 5_000.0));
        samples.add(Policy::Ewma, sample(5_000, 20_000, 2_500.0));
        samples.add(Policy::Ewma, sample(2_700, 20_000, 4_800.0));
        samples.add(Policy::RoundRobin, sample(2_000, 20_000, 6_000.0));
        assert_eq!(samples.cpu_per_round(Policy::Ewma), [130.0, 250.0, 135.0]);
        assert_eq!(samples.cpu_per_round(Policy::WasmFloor), Vec::<f64>::new());
        let figures = samples.figures();
        assert_eq!(figures.cpu_us_per_request.ewma, 135.0);
        assert_eq!(figures.throughput_rps.ewma, 4_800.0);
        assert_eq!(figures.p50_ms.ewma, 4.8);
        assert_eq!(figures.cpu_us_per_request.round_robin, 100.0);
        assert_eq!(figures.cpu_us_per_request.wasm_floor, 0.0);
    }
}
