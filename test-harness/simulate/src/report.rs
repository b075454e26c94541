//! What a run's measurements say: latency percentiles, how far each endpoint's load is
//! from its capacity share, and for `herd` how policies recover from a pause; the
//! `summary.json` shape and the tables.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::mesh::{Measured, Mesh};
use crate::Nanos;

/// One policy in one scenario, as `target/simulate/summary.json` has it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// The largest |load share − capacity share| / capacity share over endpoints.
    pub load_vs_capacity_max_dev: f64,
    pub calls: u64,
    /// `herd` only: the longest time after a pause ends until the paused endpoint gets
    /// 80 % of a fair share again (over two windows), in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_ms: Option<f64>,
    /// `herd` only: the highest mean queue of an endpoint in one 100 ms window over its
    /// mean over the run (an endpoint's own pause and the second after it left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_peak_vs_mean: Option<f64>,
    /// `ewma` only: Wasm instructions per call, and tick instructions per call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel_per_request: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tick_fuel_per_request: Option<f64>,
    /// Wall-clock seconds the run took here.
    pub run_seconds: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub scenarios: BTreeMap<String, BTreeMap<String, Figures>>,
}

/// The `q` quantile of sorted values, in ms (nearest rank).
pub fn quantile_ms(sorted: &[Nanos], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1e6
}

/// max over endpoints of |served share − capacity share| / capacity share.
pub fn max_deviation(served: &[u64], capacity_shares: &[f64]) -> f64 {
    let total = served.iter().sum::<u64>().max(1) as f64;
    served
        .iter()
        .zip(capacity_shares)
        .map(|(&s, &c)| (s as f64 / total - c).abs() / c)
        .fold(0.0, f64::max)
}

/// Recovery and queue peaks around each `(endpoint, from, to)` pause.
pub fn herd_measures(m: &Measured, mesh: &Mesh, pauses: &[(usize, Nanos, Nanos)]) -> (f64, f64) {
    let w = mesh.window;
    let endpoints = mesh.stations.len();
    let first = (mesh.warm_up / w) as usize;
    let last = ((mesh.end() / w) as usize).min(m.window_calls.len());
    let mut recovery: f64 = 0.0;
    for &(e, _, to) in pauses {
        let start = to.div_ceil(w) as usize;
        let mut back = None;
        for k in start..last.saturating_sub(1) {
            let calls = |k: usize| m.window_calls[k][e] as f64;
            let total = |k: usize| m.window_calls[k].iter().sum::<u32>() as f64;
            let fair = (total(k) + total(k + 1)) / endpoints as f64;
            if calls(k) + calls(k + 1) >= 0.8 * fair {
                back = Some(k);
                break;
            }
        }
        let at = back.map_or(mesh.end(), |k| k as Nanos * w);
        recovery = recovery.max(at.saturating_sub(to) as f64 / 1e6);
    }
    let excluded = |e: usize, k: usize| {
        let t = k as Nanos * w;
        pauses
            .iter()
            .any(|&(p, from, to)| p == e && t + w > from && t < to + 1_000_000_000)
    };
    let last_q = last.min(m.window_queue.len());
    let mut peak: f64 = 0.0;
    for e in 0..endpoints {
        let kept: Vec<f64> = (first..last_q)
            .filter(|&k| !excluded(e, k))
            .map(|k| m.window_queue[k][e])
            .collect();
        let mean = kept.iter().sum::<f64>() / kept.len().max(1) as f64;
        if mean > 0.0 {
            peak = peak.max(kept.iter().fold(0.0, |a: f64, &b| a.max(b)) / mean);
        }
    }
    (recovery, peak)
}

pub fn figures(
    m: &Measured,
    mesh: &Mesh,
    pauses: &[(usize, Nanos, Nanos)],
    seconds: f64,
) -> Figures {
    let herd = (!pauses.is_empty()).then(|| herd_measures(m, mesh, pauses));
    Figures {
        p50_ms: quantile_ms(&m.latencies, 0.5),
        p99_ms: quantile_ms(&m.latencies, 0.99),
        p999_ms: quantile_ms(&m.latencies, 0.999),
        load_vs_capacity_max_dev: max_deviation(&m.served, &mesh.capacity_shares()),
        calls: m.latencies.len() as u64,
        recovery_ms: herd.map(|h| h.0),
        queue_peak_vs_mean: herd.map(|h| h.1),
        fuel_per_request: m.fuel.map(|f| f.per_request.round()),
        tick_fuel_per_request: m.fuel.map(|f| f.ticks_per_request.round()),
        run_seconds: seconds,
    }
}

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A markdown table of one scenario.
pub fn table(policies: &BTreeMap<String, Figures>, order: &[&str]) -> String {
    let herd = policies.values().any(|f| f.recovery_ms.is_some());
    let mut out = String::from("| policy | p50 ms | p99 ms | p999 ms | max load dev |");
    if herd {
        out.push_str(" recovery ms | queue peak / mean |");
    }
    out.push_str(" fuel/call | run s |\n|---|--:|--:|--:|--:|");
    if herd {
        out.push_str("--:|--:|");
    }
    out.push_str("--:|--:|\n");
    for key in order {
        let Some(f) = policies.get(*key) else {
            continue;
        };
        out.push_str(&format!(
            "| {key} | {} | {} | {} | {:.1} % |",
            ms(f.p50_ms),
            ms(f.p99_ms),
            ms(f.p999_ms),
            f.load_vs_capacity_max_dev * 100.0
        ));
        if herd {
            out.push_str(&format!(
                " {:.0} | {:.2} |",
                f.recovery_ms.unwrap_or_default(),
                f.queue_peak_vs_mean.unwrap_or_default()
            ));
        }
        let fuel = f.fuel_per_request.map_or("".into(), |v| {
            format!(
                "{v:.0} (+{:.0} ticks)",
                f.tick_fuel_per_request.unwrap_or_default()
            )
        });
        out.push_str(&format!(" {fuel} | {:.1} |\n", f.run_seconds));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v: Vec<Nanos> = (1..=1000).map(|i| i * 1_000_000).collect();
        assert_eq!(quantile_ms(&v, 0.5), 500.0);
        assert_eq!(quantile_ms(&v, 0.99), 990.0);
        assert_eq!(quantile_ms(&v, 0.999), 999.0);
        assert_eq!(quantile_ms(&[], 0.5), 0.0);
    }

    #[test]
    fn deviation_is_relative_to_the_capacity_share() {
        // Shares 50 / 30 / 20 against capacity 40 / 40 / 20: the first is 25 % over.
        assert!((max_deviation(&[50, 30, 20], &[0.4, 0.4, 0.2]) - 0.25).abs() < 1e-12);
        assert_eq!(max_deviation(&[1, 1], &[0.5, 0.5]), 0.0);
    }

    #[test]
    fn summary_json_has_the_documented_keys() {
        let mut s = Summary::default();
        s.scenarios
            .entry("heterogeneous".into())
            .or_default()
            .insert("ewma".into(), Figures::default());
        let v = serde_json::to_value(&s).unwrap_or_default();
        let f = &v["scenarios"]["heterogeneous"]["ewma"];
        for key in ["p50_ms", "p99_ms", "p999_ms", "load_vs_capacity_max_dev"] {
            assert!(f[key].is_number(), "{key}: {f}");
        }
        assert!(f.get("recovery_ms").is_none());
    }
}
