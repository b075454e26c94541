//! When each call of an open-loop run is meant to be sent.
//!
//! Call `n` (from 0) of a run at `qps` calls per second is due `n / qps` seconds after
//! the start, whatever happened to the calls before it. Offsets are computed from `n`,
//! never by adding periods, so a long run does not drift.

use std::time::Duration;

/// How calls are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Open loop: a fixed rate, in calls per second, across all connections. A call
    /// that cannot be sent on time (all `concurrency` slots busy) is sent as soon as a
    /// slot frees, and its latency still counts from when it was due.
    Open { qps: f64 },
    /// Closed loop: each of `concurrency` slots sends its next call as soon as the
    /// previous one is answered. Measures saturation throughput.
    Closed,
}

impl Pace {
    /// An open-loop pace, if `qps` is a positive finite rate.
    pub fn open(qps: f64) -> Result<Self, String> {
        if qps.is_finite() && qps > 0.0 {
            Ok(Self::Open { qps })
        } else {
            Err(format!("qps must be a positive number, got {qps}"))
        }
    }

    /// The target rate, if any.
    pub fn qps(self) -> Option<f64> {
        match self {
            Self::Open { qps } => Some(qps),
            Self::Closed => None,
        }
    }
}

/// When to stop sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// Send no call due (open loop) or started (closed loop) this long after the start.
    pub duration: Option<Duration>,
    /// Send at most this many calls.
    pub total: Option<u64>,
}

impl Stop {
    /// Stop after `duration`.
    pub fn after(duration: Duration) -> Self {
        Self {
            duration: Some(duration),
            total: None,
        }
    }

    /// Stop after `total` calls.
    pub fn calls(total: u64) -> Self {
        Self {
            duration: None,
            total: Some(total),
        }
    }

    /// Whether a run with this stop condition ends by itself.
    pub fn is_bounded(self) -> bool {
        self.duration.is_some() || self.total.is_some()
    }
}

/// Offset from the start of the run at which call `n` is due, at `qps`.
pub fn due_offset(n: u64, qps: f64) -> Duration {
    Duration::from_secs_f64(n as f64 / qps)
}

/// Calls an open loop at `qps` sends before `stop`: those due strictly before
/// `stop.duration`, at most `stop.total`. `None` if `stop` bounds neither.
pub fn planned_calls(qps: f64, stop: Stop) -> Option<u64> {
    let by_duration = stop.duration.map(|d| due_before(d, qps));
    match (by_duration, stop.total) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Calls due in `[from, to)` of an open loop at `qps` planned to send `planned` calls:
/// the traffic goal of a reporting interval.
pub fn due_between(from: Duration, to: Duration, qps: f64, planned: Option<u64>) -> u64 {
    let cap = |n: u64| planned.map_or(n, |p| n.min(p));
    cap(due_before(to, qps)).saturating_sub(cap(due_before(from, qps)))
}

/// Number of calls `n` with `n / qps < offset`, i.e. `ceil(offset × qps)`.
fn due_before(offset: Duration, qps: f64) -> u64 {
    // Rounded to the nanosecond first, so 10 s at 300 qps is exactly 3000 calls.
    let exact = (offset.as_secs_f64() * qps * 1e9).round() / 1e9;
    exact.ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn calls_are_due_at_multiples_of_the_period() {
        assert_eq!(due_offset(0, 400.0), Duration::ZERO);
        assert_eq!(due_offset(1, 400.0), MS(2) + Duration::from_micros(500));
        assert_eq!(due_offset(400, 400.0), Duration::from_secs(1));
        assert_eq!(due_offset(1_000_000, 400.0), Duration::from_secs(2_500));
    }

    #[test]
    fn offsets_do_not_drift_over_a_long_run() {
        // 3 qps: a period of 333.333… ms that summing would round at every step.
        assert_eq!(due_offset(3 * 3_600, 3.0), Duration::from_secs(3_600));
    }

    #[test]
    fn planned_calls_are_those_due_before_the_end() {
        assert_eq!(
            planned_calls(400.0, Stop::after(Duration::from_secs(10))),
            Some(4_000)
        );
        assert_eq!(
            planned_calls(300.0, Stop::after(Duration::from_secs(10))),
            Some(3_000)
        );
        assert_eq!(planned_calls(3.0, Stop::after(MS(1_001))), Some(4));
        assert_eq!(planned_calls(400.0, Stop::calls(7)), Some(7));
        let both = Stop {
            duration: Some(Duration::from_secs(1)),
            total: Some(1_000),
        };
        assert_eq!(planned_calls(400.0, both), Some(400));
        let unbounded = Stop {
            duration: None,
            total: None,
        };
        assert_eq!(planned_calls(400.0, unbounded), None);
    }

    #[test]
    fn interval_goal_counts_the_calls_due_in_it() {
        assert_eq!(due_between(MS(0), MS(1_000), 400.0, None), 400);
        assert_eq!(due_between(MS(1_000), MS(2_000), 400.0, None), 400);
        // 3 qps: calls at 0, 333, 667 ms, then 1000 ms falls in the next second.
        assert_eq!(due_between(MS(0), MS(1_000), 3.0, None), 3);
        assert_eq!(due_between(MS(1_000), MS(1_500), 3.0, None), 2);
        // The last interval of a run stops at the planned total.
        assert_eq!(due_between(MS(1_000), MS(2_000), 400.0, Some(500)), 100);
        assert_eq!(due_between(MS(2_000), MS(3_000), 400.0, Some(500)), 0);
    }

    #[test]
    fn pace_must_be_a_positive_rate() {
        assert_eq!(Pace::open(400.0), Ok(Pace::Open { qps: 400.0 }));
        assert!(Pace::open(0.0).is_err());
        assert!(Pace::open(-1.0).is_err());
        assert!(Pace::open(f64::NAN).is_err());
        assert!(Pace::open(f64::INFINITY).is_err());
        assert_eq!(Pace::Closed.qps(), None);
    }
}
