//! The end-of-run summary: printed as text, and as one JSON object with `--json`.

use std::{collections::BTreeMap, fmt, time::Duration};

use serde::{Deserialize, Serialize};

use super::tally::Tally;

/// What a whole run did; the JSON shape of `loadgen --json`.
///
/// Latencies (`*_ms`) are of good calls, from their intended send time, in
/// milliseconds. `rps` counts every completed call (good, bad or failed) per second
/// from the start to the last answer; `goal_pct` is `rps` over the target `qps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadgenSummary {
    pub target: String,
    /// Target rate; `null` for a closed loop.
    pub qps: Option<f64>,
    pub concurrency: u64,
    pub connections: u64,
    /// Calls the schedule planned (open loop), `null` if unbounded or closed loop.
    pub planned: Option<u64>,
    pub sent: u64,
    pub good: u64,
    pub bad: u64,
    pub failed: u64,
    /// Good calls over completed calls (0 if none completed).
    pub success_rate: f64,
    pub rps: f64,
    pub goal_pct: Option<f64>,
    pub duration_s: f64,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Bad and failed calls by gRPC code name.
    pub failures_by_code: BTreeMap<String, u64>,
    /// Good calls by the backend named in the reply.
    pub per_backend: BTreeMap<String, u64>,
    /// Each backend's fraction of the good calls.
    pub share: BTreeMap<String, f64>,
}

/// How a run was set up, for its summary.
#[derive(Debug, Clone, PartialEq)]
pub struct RunShape {
    pub target: String,
    pub qps: Option<f64>,
    pub concurrency: u64,
    pub connections: u64,
    pub planned: Option<u64>,
    pub sent: u64,
    /// From the start of the schedule to the last answer.
    pub elapsed: Duration,
}

impl LoadgenSummary {
    /// The summary of a run shaped `shape` that counted `tally`.
    pub fn new(shape: &RunShape, tally: &Tally) -> Self {
        let seconds = shape.elapsed.as_secs_f64();
        let rps = if seconds > 0.0 {
            tally.total() as f64 / seconds
        } else {
            0.0
        };
        Self {
            target: shape.target.clone(),
            qps: shape.qps,
            concurrency: shape.concurrency,
            connections: shape.connections,
            planned: shape.planned,
            sent: shape.sent,
            good: tally.good(),
            bad: tally.bad(),
            failed: tally.failed(),
            success_rate: tally.success_rate().unwrap_or(0.0),
            rps,
            goal_pct: shape.qps.map(|qps| 100.0 * rps / qps),
            duration_s: seconds,
            min_ms: millis(tally.min()),
            p50_ms: millis(tally.latency_at(0.50)),
            p90_ms: millis(tally.latency_at(0.90)),
            p95_ms: millis(tally.latency_at(0.95)),
            p99_ms: millis(tally.latency_at(0.99)),
            p999_ms: millis(tally.latency_at(0.999)),
            max_ms: millis(tally.max()),
            failures_by_code: tally.failures_by_code().clone(),
            per_backend: tally.per_backend().clone(),
            share: tally.shares(),
        }
    }

    /// Completed calls.
    pub fn total(&self) -> u64 {
        self.good + self.bad + self.failed
    }
}

/// Milliseconds at microsecond resolution.
pub fn millis(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1_000.0
}

/// The text summary printed at the end of a run.
impl fmt::Display for LoadgenSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pace = match self.qps {
            Some(qps) => format!("{qps} qps open loop"),
            None => "closed loop".to_owned(),
        };
        writeln!(
            f,
            "FINAL {}: {} calls in {:.3}s ({pace}, concurrency {}, {} connection{})",
            self.target,
            self.total(),
            self.duration_s,
            self.concurrency,
            self.connections,
            if self.connections == 1 { "" } else { "s" }
        )?;
        write!(
            f,
            "  good/bad/failed {}/{}/{}  success {:.2}%  {:.1} rps",
            self.good,
            self.bad,
            self.failed,
            100.0 * self.success_rate,
            self.rps
        )?;
        if let Some(goal) = self.goal_pct {
            write!(f, " ({goal:.1}% of goal)")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "  latency ms (good calls, from intended send time): min {:.3}  p50 {:.3}  p90 {:.3}  p95 {:.3}  p99 {:.3}  p999 {:.3}  max {:.3}",
            self.min_ms, self.p50_ms, self.p90_ms, self.p95_ms, self.p99_ms, self.p999_ms, self.max_ms
        )?;
        for (backend, count) in &self.per_backend {
            let share = self.share.get(backend).copied().unwrap_or(0.0);
            writeln!(
                f,
                "  backend {backend:<24} {count:>9} {:>6.1}%",
                100.0 * share
            )?;
        }
        for (code, count) in &self.failures_by_code {
            writeln!(f, "  error   {code:<24} {count:>9}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tonic::Code;

    use super::*;
    use crate::open::tally::{Finished, Verdict};

    fn sample() -> LoadgenSummary {
        let mut tally = Tally::new();
        for (backend, micros) in [
            ("10.0.0.1:50051", 400),
            ("10.0.0.2:50051", 600),
            ("10.0.0.1:50051", 1_000),
        ] {
            tally.record(&Finished {
                latency: Duration::from_micros(micros),
                verdict: Verdict::Good,
                backend: Some(backend.to_owned()),
            });
        }
        tally.record(&Finished {
            latency: Duration::from_millis(2),
            verdict: Verdict::Bad(Code::Unavailable),
            backend: None,
        });
        let shape = RunShape {
            target: "http://127.0.0.1:10000".into(),
            qps: Some(2.0),
            concurrency: 8,
            connections: 1,
            planned: Some(4),
            sent: 4,
            elapsed: Duration::from_millis(2_500),
        };
        LoadgenSummary::new(&shape, &tally)
    }

    #[test]
    fn json_has_the_documented_fields() {
        assert_eq!(
            serde_json::to_value(sample()).unwrap(),
            json!({
                "target": "http://127.0.0.1:10000",
                "qps": 2.0,
                "concurrency": 8,
                "connections": 1,
                "planned": 4,
                "sent": 4,
                "good": 3,
                "bad": 1,
                "failed": 0,
                "success_rate": 0.75,
                "rps": 1.6,
                "goal_pct": 80.0,
                "duration_s": 2.5,
                "min_ms": 0.4,
                "p50_ms": 0.6,
                "p90_ms": 1.0,
                "p95_ms": 1.0,
                "p99_ms": 1.0,
                "p999_ms": 1.0,
                "max_ms": 1.0,
                "failures_by_code": { "UNAVAILABLE": 1 },
                "per_backend": { "10.0.0.1:50051": 2, "10.0.0.2:50051": 1 },
                "share": { "10.0.0.1:50051": 2.0 / 3.0, "10.0.0.2:50051": 1.0 / 3.0 },
            })
        );
    }

    #[test]
    fn json_parses_back() {
        let summary = sample();
        let text = serde_json::to_string(&summary).unwrap();
        assert_eq!(
            serde_json::from_str::<LoadgenSummary>(&text).unwrap(),
            summary
        );
    }

    #[test]
    fn text_summary_shows_counts_latencies_and_shares() {
        assert_eq!(
            sample().to_string(),
            "FINAL http://127.0.0.1:10000: 4 calls in 2.500s (2 qps open loop, concurrency 8, 1 connection)\n\
             \x20 good/bad/failed 3/1/0  success 75.00%  1.6 rps (80.0% of goal)\n\
             \x20 latency ms (good calls, from intended send time): min 0.400  p50 0.600  p90 1.000  p95 1.000  p99 1.000  p999 1.000  max 1.000\n\
             \x20 backend 10.0.0.1:50051                   2   66.7%\n\
             \x20 backend 10.0.0.2:50051                   1   33.3%\n\
             \x20 error   UNAVAILABLE                      1\n"
        );
    }

    #[test]
    fn a_closed_loop_has_no_goal() {
        let shape = RunShape {
            target: "t".into(),
            qps: None,
            concurrency: 1,
            connections: 2,
            planned: None,
            sent: 0,
            elapsed: Duration::ZERO,
        };
        let summary = LoadgenSummary::new(&shape, &Tally::new());
        assert_eq!(summary.goal_pct, None);
        assert_eq!(summary.rps, 0.0);
        assert_eq!(summary.success_rate, 0.0);
        assert!(summary
            .to_string()
            .contains("(closed loop, concurrency 1, 2 connections)"));
    }
}
