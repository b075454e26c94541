//! Counting what came back: good, bad and failed calls, latency of the good ones, and
//! which backend served them.
//!
//! As in slow_cooker, a call is **good** when it returned a reply, **bad** when a gRPC
//! status came back instead (from the backend or from the proxy in between, e.g.
//! UNAVAILABLE), and **failed** when no answer came at all: the client's own deadline
//! expired, or the connection failed before a status arrived. Only good calls enter the
//! latency histogram (an error returned at once would flatter the percentiles); their
//! latency runs from the time the call was *due*, not from when it was sent.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;
use tonic::{Code, Status};

use crate::{grpc_code::code_name, report::new_histogram};

/// How one call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A reply.
    Good,
    /// A gRPC status other than OK, sent by the server or a proxy.
    Bad(Code),
    /// No answer: the client's deadline (`DEADLINE_EXCEEDED`) or a transport error.
    Failed(Code),
}

impl Verdict {
    /// Classifies a call's result. Statuses that tonic made up from a local error
    /// (connection refused, reset, broken HTTP/2) carry that error as their source;
    /// statuses received from the peer carry none.
    pub fn of<T>(result: &Result<T, Status>) -> Self {
        match result {
            Ok(_) => Self::Good,
            Err(status) if std::error::Error::source(status).is_some() => {
                Self::Failed(status.code())
            }
            Err(status) => Self::Bad(status.code()),
        }
    }

    /// The gRPC code the call ended with.
    pub fn code(self) -> Code {
        match self {
            Self::Good => Code::Ok,
            Self::Bad(code) | Self::Failed(code) => code,
        }
    }
}

/// One finished call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// From the time the call was due to its answer (or to giving up).
    pub latency: Duration,
    pub verdict: Verdict,
    /// The backend named in the reply, for good calls.
    pub backend: Option<String>,
}

/// Counts and latencies of a set of calls: one reporting interval, or a whole run.
#[derive(Debug, Clone)]
pub struct Tally {
    good: u64,
    bad: u64,
    failed: u64,
    failures_by_code: BTreeMap<String, u64>,
    per_backend: BTreeMap<String, u64>,
    latency_us: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

impl Tally {
    /// No calls.
    pub fn new() -> Self {
        Self {
            good: 0,
            bad: 0,
            failed: 0,
            failures_by_code: BTreeMap::new(),
            per_backend: BTreeMap::new(),
            latency_us: new_histogram(),
        }
    }

    /// Counts one call.
    pub fn record(&mut self, call: &Finished) {
        match call.verdict {
            Verdict::Good => {
                self.good += 1;
                if let Some(backend) = &call.backend {
                    *self.per_backend.entry(backend.clone()).or_default() += 1;
                }
                let micros = u64::try_from(call.latency.as_micros()).unwrap_or(u64::MAX);
                self.latency_us.saturating_record(micros.max(1));
            }
            Verdict::Bad(code) | Verdict::Failed(code) => {
                if matches!(call.verdict, Verdict::Bad(_)) {
                    self.bad += 1;
                } else {
                    self.failed += 1;
                }
                *self
                    .failures_by_code
                    .entry(code_name(code).to_owned())
                    .or_default() += 1;
            }
        }
    }

    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: &Tally) {
        self.good += other.good;
        self.bad += other.bad;
        self.failed += other.failed;
        for (code, n) in &other.failures_by_code {
            *self.failures_by_code.entry(code.clone()).or_default() += n;
        }
        for (backend, n) in &other.per_backend {
            *self.per_backend.entry(backend.clone()).or_default() += n;
        }
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
    }

    /// Calls that returned a reply.
    pub fn good(&self) -> u64 {
        self.good
    }

    /// Calls answered with an error status.
    pub fn bad(&self) -> u64 {
        self.bad
    }

    /// Calls that got no answer.
    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// Calls counted.
    pub fn total(&self) -> u64 {
        self.good + self.bad + self.failed
    }

    /// Good calls over all calls; `None` if there were none.
    pub fn success_rate(&self) -> Option<f64> {
        let total = self.total();
        (total > 0).then(|| self.good as f64 / total as f64)
    }

    /// Bad and failed calls by gRPC code name.
    pub fn failures_by_code(&self) -> &BTreeMap<String, u64> {
        &self.failures_by_code
    }

    /// Good calls by the backend named in the reply.
    pub fn per_backend(&self) -> &BTreeMap<String, u64> {
        &self.per_backend
    }

    /// Each backend's fraction of the good calls.
    pub fn shares(&self) -> BTreeMap<String, f64> {
        self.per_backend
            .iter()
            .map(|(backend, n)| (backend.clone(), *n as f64 / self.good.max(1) as f64))
            .collect()
    }

    /// Latency of good calls at `quantile` (0.0..=1.0); zero if there were none.
    pub fn latency_at(&self, quantile: f64) -> Duration {
        Duration::from_micros(self.latency_us.value_at_quantile(quantile))
    }

    /// Fastest good call; zero if there were none.
    pub fn min(&self) -> Duration {
        if self.latency_us.is_empty() {
            Duration::ZERO
        } else {
            Duration::from_micros(self.latency_us.min())
        }
    }

    /// Slowest good call.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.latency_us.max())
    }

    /// The latency histogram of good calls, in microseconds.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.latency_us
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    fn good(backend: &str, micros: u64) -> Finished {
        Finished {
            latency: Duration::from_micros(micros),
            verdict: Verdict::Good,
            backend: Some(backend.to_owned()),
        }
    }

    fn not_good(verdict: Verdict) -> Finished {
        Finished {
            latency: Duration::from_millis(1),
            verdict,
            backend: None,
        }
    }

    #[test]
    fn statuses_from_the_peer_are_bad_and_local_errors_failed() {
        assert_eq!(Verdict::of(&Ok::<_, Status>(())), Verdict::Good);
        assert_eq!(
            Verdict::of::<()>(&Err(Status::unavailable("backend says no"))),
            Verdict::Bad(Code::Unavailable)
        );
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            Verdict::of::<()>(&Err(Status::from_error(Box::new(refused)))),
            Verdict::Failed(Code::Unknown)
        );
    }

    #[test]
    fn counts_good_bad_and_failed_calls() {
        let mut tally = Tally::new();
        tally.record(&good("10.0.0.1:50051", 500));
        tally.record(&good("10.0.0.2:50051", 700));
        tally.record(&good("10.0.0.1:50051", 900));
        tally.record(&not_good(Verdict::Bad(Code::Unavailable)));
        tally.record(&not_good(Verdict::Failed(Code::DeadlineExceeded)));
        assert_eq!((tally.good(), tally.bad(), tally.failed()), (3, 1, 1));
        assert_eq!(tally.total(), 5);
        assert_eq!(tally.success_rate(), Some(0.6));
        assert_eq!(
            tally.failures_by_code(),
            &BTreeMap::from([("DEADLINE_EXCEEDED".into(), 1), ("UNAVAILABLE".into(), 1)])
        );
        assert_eq!(
            tally.shares(),
            BTreeMap::from([
                ("10.0.0.1:50051".into(), 2.0 / 3.0),
                ("10.0.0.2:50051".into(), 1.0 / 3.0)
            ])
        );
        assert_eq!(tally.min(), Duration::from_micros(500));
        assert_eq!(tally.latency_at(0.5), Duration::from_micros(700));
        assert_eq!(tally.max(), Duration::from_micros(900));
    }

    #[test]
    fn p999_is_the_thousandth_slowest_in_a_million() {
        // 999,000 calls of 1 ms and 1,000 of 200 ms: p999 is still 1 ms; one more slow
        // call in the top thousand and it is 200 ms.
        let mut tally = Tally::new();
        for _ in 0..999_000 {
            tally.record(&good("a", 1_000));
        }
        for _ in 0..1_000 {
            tally.record(&good("a", 200_000));
        }
        assert_eq!(tally.latency_at(0.999), Duration::from_millis(1));
        tally.record(&good("a", 200_000));
        assert_eq!(tally.latency_at(0.999).as_millis(), 200);
    }

    #[test]
    fn merging_adds_counts_and_histograms() {
        let mut first = Tally::new();
        first.record(&good("a", 100));
        first.record(&not_good(Verdict::Bad(Code::Internal)));
        let mut second = Tally::new();
        second.record(&good("b", 300));
        second.record(&not_good(Verdict::Bad(Code::Internal)));
        first.merge(&second);
        assert_eq!((first.good(), first.bad(), first.failed()), (2, 2, 0));
        assert_eq!(
            first.failures_by_code(),
            &BTreeMap::from([("INTERNAL".into(), 2)])
        );
        assert_eq!(
            first.per_backend(),
            &BTreeMap::from([("a".into(), 1), ("b".into(), 1)])
        );
        assert_eq!(first.max(), Duration::from_micros(300));
        assert_eq!(first.min(), Duration::from_micros(100));
    }

    #[test]
    fn an_empty_tally_has_no_success_rate_and_zero_latencies() {
        let tally = Tally::new();
        assert_eq!(tally.success_rate(), None);
        assert_eq!(tally.min(), Duration::ZERO);
        assert_eq!(tally.latency_at(0.99), Duration::ZERO);
        assert_eq!(tally.max(), Duration::ZERO);
        assert!(tally.shares().is_empty());
    }
}
