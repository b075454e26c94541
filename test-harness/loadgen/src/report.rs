//! What a load run observed: successes per backend, failures per gRPC code,
//! and the latency distribution of successful calls.
//!
//! [`LoadReport`] keeps the full HDR histogram; [`ReportSummary`] is its flat,
//! JSON-friendly view (`greeter-client --json` prints it, benchmarks parse it
//! back). Latencies are recorded in microseconds with three significant digits.

use std::{collections::BTreeMap, fmt, time::Duration};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::{greeting::backend_of, grpc_code::code_name};

/// Backend key for replies that do not name one.
pub const UNKNOWN_BACKEND: &str = "<unknown>";

/// The result of one call, as seen by the client.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// Time from sending the request to receiving the reply or error.
    pub latency: Duration,
    /// The greeting, or the status the call ended with.
    pub result: Result<String, Status>,
}

impl CallOutcome {
    /// The backend named in the greeting, if the call succeeded and said so.
    pub fn backend(&self) -> Option<&str> {
        self.result.as_deref().ok().and_then(backend_of)
    }
}

/// Tallies of a load run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    total: u64,
    ok: u64,
    failures_by_code: BTreeMap<String, u64>,
    per_backend: BTreeMap<String, u64>,
    latency_us: Histogram<u64>,
    duration: Duration,
}

/// The flat, serializable view of a [`LoadReport`]; the JSON shape of
/// `greeter-client --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportSummary {
    pub total: u64,
    pub ok: u64,
    pub failed: u64,
    /// Failed calls by gRPC code name, e.g. `{"UNAVAILABLE": 3}`.
    pub failures_by_code: BTreeMap<String, u64>,
    /// Successful calls by the backend named in the reply.
    pub per_backend: BTreeMap<String, u64>,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Completed calls (ok or failed) per second of wall-clock time.
    pub rps: f64,
    pub duration_s: f64,
}

impl Default for LoadReport {
    fn default() -> Self {
        Self::new()
    }
}

impl LoadReport {
    /// A report of no calls.
    pub fn new() -> Self {
        Self {
            total: 0,
            ok: 0,
            failures_by_code: BTreeMap::new(),
            per_backend: BTreeMap::new(),
            latency_us: new_histogram(),
            duration: Duration::ZERO,
        }
    }

    /// Counts one call. Only successful calls enter the latency histogram:
    /// injected failures return at once and would flatter the percentiles.
    pub fn record(&mut self, outcome: &CallOutcome) {
        self.total += 1;
        match &outcome.result {
            Ok(_) => {
                self.ok += 1;
                let backend = outcome.backend().unwrap_or(UNKNOWN_BACKEND);
                *self.per_backend.entry(backend.to_owned()).or_default() += 1;
                let micros = u64::try_from(outcome.latency.as_micros()).unwrap_or(u64::MAX);
                self.latency_us.saturating_record(micros);
            }
            Err(status) => {
                let code = code_name(status.code()).to_owned();
                *self.failures_by_code.entry(code).or_default() += 1;
            }
        }
    }

    /// Sets the wall-clock duration of the run, the denominator of [`rps`](Self::rps).
    pub fn set_duration(&mut self, duration: Duration) {
        self.duration = duration;
    }

    /// Calls made.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Calls that returned a greeting.
    pub fn ok(&self) -> u64 {
        self.ok
    }

    /// Calls that ended with an error status (including client timeouts).
    pub fn failed(&self) -> u64 {
        self.total - self.ok
    }

    /// Failed calls by gRPC code name.
    pub fn failures_by_code(&self) -> &BTreeMap<String, u64> {
        &self.failures_by_code
    }

    /// Failed calls with this code name, e.g. `"UNAVAILABLE"`.
    pub fn failures_with(&self, code_name: &str) -> u64 {
        self.failures_by_code.get(code_name).copied().unwrap_or(0)
    }

    /// Successful calls by backend address.
    pub fn per_backend(&self) -> &BTreeMap<String, u64> {
        &self.per_backend
    }

    /// Successful calls served by `backend`.
    pub fn served_by(&self, backend: &str) -> u64 {
        self.per_backend.get(backend).copied().unwrap_or(0)
    }

    /// The latency histogram of successful calls, in microseconds.
    pub fn latency_histogram(&self) -> &Histogram<u64> {
        &self.latency_us
    }

    /// Latency at `quantile` (0.0..=1.0) of successful calls; zero if none.
    pub fn latency_at(&self, quantile: f64) -> Duration {
        Duration::from_micros(self.latency_us.value_at_quantile(quantile))
    }

    /// Median latency.
    pub fn p50(&self) -> Duration {
        self.latency_at(0.50)
    }

    /// 90th percentile latency.
    pub fn p90(&self) -> Duration {
        self.latency_at(0.90)
    }

    /// 99th percentile latency.
    pub fn p99(&self) -> Duration {
        self.latency_at(0.99)
    }

    /// 99.9th percentile latency.
    pub fn p999(&self) -> Duration {
        self.latency_at(0.999)
    }

    /// Slowest successful call.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.latency_us.max())
    }

    /// Wall-clock duration of the run.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Completed calls per second; zero for a run that took no time.
    pub fn rps(&self) -> f64 {
        let seconds = self.duration.as_secs_f64();
        if seconds > 0.0 {
            self.total as f64 / seconds
        } else {
            0.0
        }
    }

    /// The flat view serialized as JSON.
    pub fn summary(&self) -> ReportSummary {
        ReportSummary {
            total: self.total,
            ok: self.ok,
            failed: self.failed(),
            failures_by_code: self.failures_by_code.clone(),
            per_backend: self.per_backend.clone(),
            p50_ms: millis(self.p50()),
            p90_ms: millis(self.p90()),
            p99_ms: millis(self.p99()),
            p999_ms: millis(self.p999()),
            max_ms: millis(self.max()),
            rps: self.rps(),
            duration_s: self.duration.as_secs_f64(),
        }
    }
}

impl Serialize for LoadReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.summary().serialize(serializer)
    }
}

/// The human-readable summary printed by `greeter-client --summary`.
impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} calls: {} ok, {} failed in {:.3}s ({:.1} rps)",
            self.total,
            self.ok,
            self.failed(),
            self.duration.as_secs_f64(),
            self.rps()
        )?;
        for (backend, count) in &self.per_backend {
            let share = 100.0 * *count as f64 / self.ok as f64;
            writeln!(f, "  {backend:<24} {count:>8} {share:>6.1}%")?;
        }
        for (code, count) in &self.failures_by_code {
            writeln!(f, "  failed {code:<17} {count:>8}")?;
        }
        write!(
            f,
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
            millis(self.p50()),
            millis(self.p90()),
            millis(self.p99()),
            millis(self.max())
        )
    }
}

/// Milliseconds at the histogram's microsecond resolution.
fn millis(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1_000.0
}

/// Longest latency tracked exactly; slower calls are recorded as this.
const MAX_TRACKED_LATENCY_US: u64 = 3_600_000_000;

/// A histogram of 1 µs ..= 1 h with 3 significant digits.
#[expect(
    clippy::expect_used,
    reason = "the bounds are constants that satisfy hdrhistogram's preconditions"
)]
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_LATENCY_US, 3)
        .expect("1 µs ..= 1 h at 3 significant digits is a valid histogram")
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tonic::Code;

    use super::*;

    // Latencies stay below 2048 µs, where 3 significant digits are exact.
    fn ok(backend: &str, micros: u64) -> CallOutcome {
        CallOutcome {
            latency: Duration::from_micros(micros),
            result: Ok(format!("Hello world (Backend: {backend})")),
        }
    }

    fn failed(code: Code) -> CallOutcome {
        CallOutcome {
            latency: Duration::from_micros(50),
            result: Err(Status::new(code, "injected")),
        }
    }

    /// 100 calls: 60 to A at 10, 20, …, 600 µs, 38 to B at 1 ms, 2 UNAVAILABLE.
    fn sample() -> LoadReport {
        let mut report = LoadReport::new();
        for step in 1..=60 {
            report.record(&ok("10.0.0.1:50051", step * 10));
        }
        for _ in 0..38 {
            report.record(&ok("10.0.0.2:50051", 1_000));
        }
        report.record(&failed(Code::Unavailable));
        report.record(&failed(Code::Unavailable));
        report.set_duration(Duration::from_secs(2));
        report
    }

    #[test]
    fn counts_successes_per_backend_and_failures_per_code() {
        let report = sample();
        assert_eq!(report.total(), 100);
        assert_eq!(report.ok(), 98);
        assert_eq!(report.failed(), 2);
        assert_eq!(report.served_by("10.0.0.1:50051"), 60);
        assert_eq!(report.served_by("10.0.0.2:50051"), 38);
        assert_eq!(report.served_by("10.0.0.3:50051"), 0);
        assert_eq!(report.failures_with("UNAVAILABLE"), 2);
        assert_eq!(report.failures_with("INTERNAL"), 0);
    }

    #[test]
    fn percentiles_cover_successful_calls_only() {
        let report = sample();
        // 98 samples: the 49th is 490 µs; everything from the 61st is 1 ms.
        assert_eq!(report.p50(), Duration::from_micros(490));
        assert_eq!(report.p90(), Duration::from_millis(1));
        assert_eq!(report.p99(), Duration::from_millis(1));
        assert_eq!(report.p999(), Duration::from_millis(1));
        assert_eq!(report.max(), Duration::from_millis(1));
    }

    #[test]
    fn realistic_latencies_keep_three_significant_digits() {
        let mut report = LoadReport::new();
        for _ in 0..10 {
            report.record(&ok("10.0.0.1:50051", 40_000));
        }
        report.record(&ok("10.0.0.1:50051", 2_500_000));
        assert!(report.p50().abs_diff(Duration::from_millis(40)) < Duration::from_micros(40));
        assert!(report.max().abs_diff(Duration::from_millis(2_500)) < Duration::from_millis(3));
    }

    #[test]
    fn latencies_beyond_an_hour_saturate() {
        let mut report = LoadReport::new();
        report.record(&ok("10.0.0.1:50051", u64::MAX));
        assert!(report.max() >= Duration::from_secs(3_600));
        assert!(report.max() < Duration::from_secs(3_605));
    }

    #[test]
    fn rps_is_completed_calls_per_second() {
        assert_eq!(sample().rps(), 50.0);
    }

    #[test]
    fn empty_report_has_zero_everything() {
        let report = LoadReport::new();
        assert_eq!(report.failed(), 0);
        assert_eq!(report.p50(), Duration::ZERO);
        assert_eq!(report.max(), Duration::ZERO);
        assert_eq!(report.rps(), 0.0);
    }

    #[test]
    fn replies_without_backend_count_as_unknown() {
        let mut report = LoadReport::new();
        report.record(&CallOutcome {
            latency: Duration::from_millis(1),
            result: Ok("Hello world".into()),
        });
        assert_eq!(report.served_by(UNKNOWN_BACKEND), 1);
    }

    #[test]
    fn json_has_the_documented_fields() {
        let value = serde_json::to_value(sample()).unwrap();
        assert_eq!(
            value,
            json!({
                "total": 100,
                "ok": 98,
                "failed": 2,
                "failures_by_code": { "UNAVAILABLE": 2 },
                "per_backend": { "10.0.0.1:50051": 60, "10.0.0.2:50051": 38 },
                "p50_ms": 0.49,
                "p90_ms": 1.0,
                "p99_ms": 1.0,
                "p999_ms": 1.0,
                "max_ms": 1.0,
                "rps": 50.0,
                "duration_s": 2.0,
            })
        );
    }

    #[test]
    fn json_parses_back_into_a_summary() {
        let report = sample();
        let json = serde_json::to_string(&report).unwrap();
        let parsed: ReportSummary = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, report.summary());
    }

    #[test]
    fn text_summary_shows_shares_and_percentiles() {
        let text = sample().to_string();
        assert!(
            text.starts_with("100 calls: 98 ok, 2 failed in 2.000s (50.0 rps)"),
            "{text}"
        );
        assert!(text.contains("10.0.0.1:50051"), "{text}");
        assert!(text.contains("61.2%"), "{text}");
        assert!(text.contains("38.8%"), "{text}");
        assert!(text.contains("failed UNAVAILABLE"), "{text}");
        assert!(text.contains("p50 0.490"), "{text}");
    }
}
