//! A decaying failure score in `[0, 1]`, the filter's answer to "fast failures look fast".
//!
//! Peak-EWMA alone rewards an endpoint that fails at once: its latency samples are tiny,
//! so it attracts traffic (tower and Envoy's contrib `peak_ewma` both have this hole;
//! Linkerd covers it with a separate `grpc-status`-aware biaser and breaker). Here each
//! endpoint carries a score that jumps to 1 on a failure ("peak", like the latency
//! estimate), halves on each success, and decays toward 0 with time, so an endpoint that
//! failed recently is treated as if it were `failure_penalty` slow (see `cost.rs`) and an
//! endpoint that recovered is tried again within a few `failure_decay` periods.

use crate::decay::survival;
use crate::Nanos;

/// How much of the score one success forgives.
pub const SUCCESS_FORGIVENESS: f64 = 0.5;

/// A score this small (or smaller) after a success becomes 0 (30 successes after a failure, with no
/// time passing): even with the longest `failurePenalty` (1 h) it would add under 4 µs to
/// an endpoint's cost, and a score of exactly 0 spares the decay arithmetic on every pick.
pub const NEGLIGIBLE: f64 = 1.0 / (1u64 << 30) as f64;

#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct FailureScore {
    value: f64,
    stamp: Nanos,
}

impl FailureScore {
    /// Rebuilds a score from its stored parts; out-of-range values are clamped.
    pub fn from_parts(value: f64, stamp: Nanos) -> Self {
        let value = if value.is_finite() {
            value.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Self { value, stamp }
    }

    pub fn raw(&self) -> f64 {
        self.value
    }

    pub fn stamp(&self) -> Nanos {
        self.stamp
    }

    /// The score at `now`, decayed for the time since the last outcome. Does not mutate.
    pub fn at(&self, now: Nanos, decay_ns: f64) -> f64 {
        if self.value == 0.0 {
            return 0.0;
        }
        self.value * survival(now.saturating_sub(self.stamp), decay_ns)
    }

    /// Records one outcome observed at `now`.
    pub fn record(&mut self, failed: bool, now: Nanos, decay_ns: f64) {
        self.value = if failed {
            1.0
        } else {
            let forgiven = self.at(now, decay_ns) * (1.0 - SUCCESS_FORGIVENESS);
            if forgiven <= NEGLIGIBLE {
                0.0
            } else {
                forgiven
            }
        };
        self.stamp = self.stamp.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Nanos = 1_000_000_000;
    const DECAY: f64 = 1e9;

    #[test]
    fn a_failure_sets_the_score_to_one() {
        let mut s = FailureScore::default();
        s.record(true, 5 * SEC, DECAY);
        assert_eq!(s.raw(), 1.0);
        assert_eq!(s.at(5 * SEC, DECAY), 1.0);
    }

    #[test]
    fn each_success_halves_the_score() {
        let mut s = FailureScore::from_parts(1.0, 0);
        s.record(false, 0, DECAY);
        assert_eq!(s.raw(), 0.5);
        s.record(false, 0, DECAY);
        assert_eq!(s.raw(), 0.25);
    }

    #[test]
    fn score_decays_with_time_without_mutating() {
        let s = FailureScore::from_parts(1.0, 0);
        // exp(-2) after two decay periods
        assert!((s.at(2 * SEC, DECAY) - 0.135_335_283_236_612_7).abs() < 1e-12);
        assert_eq!(s.raw(), 1.0);
    }

    #[test]
    fn clock_going_backwards_keeps_score_and_stamp() {
        let mut s = FailureScore::from_parts(1.0, 10 * SEC);
        assert_eq!(s.at(3 * SEC, DECAY), 1.0);
        s.record(false, 3 * SEC, DECAY);
        assert_eq!(s.raw(), 0.5);
        assert_eq!(s.stamp(), 10 * SEC);
    }

    #[test]
    fn thirty_successes_in_a_row_clear_a_failure() {
        let mut s = FailureScore::default();
        s.record(true, 0, DECAY);
        for _ in 0..29 {
            s.record(false, 0, DECAY);
        }
        assert_eq!(s.raw(), 1.0 / (1u64 << 29) as f64);
        s.record(false, 0, DECAY);
        assert_eq!(s.raw(), 0.0);
        assert_eq!(s.at(5 * SEC, DECAY), 0.0);
    }

    #[test]
    fn stored_garbage_is_clamped() {
        assert_eq!(FailureScore::from_parts(f64::NAN, 0).raw(), 0.0);
        assert_eq!(FailureScore::from_parts(7.0, 0).raw(), 1.0);
        assert_eq!(FailureScore::from_parts(-7.0, 0).raw(), 0.0);
    }
}
