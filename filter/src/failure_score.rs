//! A decaying failure score in `[0, 1]`, the filter's answer to "fast failures look fast".
//!
//! Peak-EWMA alone rewards an endpoint that fails at once: its latency samples are tiny,
//! so it attracts traffic (tower and Envoy's contrib `peak_ewma` both have this hole;
//! Linkerd covers it with a separate `grpc-status`-aware biaser and breaker). Here each
//! endpoint carries a score that jumps to 1 on a failure ("peak", like the latency
//! estimate), halves on each success, and decays toward 0 with time, so an endpoint that
//! failed recently is treated as if it were `failure_penalty` slow (see `cost.rs`) and an
//! endpoint that recovered is tried again within a few `failure_decay` periods.
//!
//! Time alone forgives slowly (a score of 1 under a 1 s penalty still costs 50 ms after
//! three decay periods), and power of two choices never picks the worst endpoint of a
//! pair, so an endpoint shunned for failures would wait for that decay before anyone
//! learns it recovered (measured: after all three backends failed and recovered, one
//! stayed at 0.7 % of the calls for 5 s). So a penalised endpoint is *probed*, as
//! Finagle probes and as a circuit breaker half-opens: once no outcome has been seen
//! for [`probe_interval`], one call goes to it. A probe that succeeds forgives the score
//! at once; one that fails doubles the wait before the next, up to [`MAX_PROBE_INTERVAL`],
//! so an endpoint that still fails gets a bounded trickle of calls.

use crate::decay::survival;
use crate::Nanos;

/// How much of the score one success forgives.
pub const SUCCESS_FORGIVENESS: f64 = 0.5;

/// A score this small (or smaller) after a success becomes 0 (30 successes after a failure, with no
/// time passing): even with the longest `failurePenalty` (1 h) it would add under 4 µs to
/// an endpoint's cost, and a score of exactly 0 spares the decay arithmetic on every pick.
pub const NEGLIGIBLE: f64 = 1.0 / (1u64 << 30) as f64;

/// The wait after the last outcome of a penalised endpoint before it is probed. A
/// second: an endpoint back from a total failure is back within about a second, and a
/// dead one costs each worker a call at 1, 3, 7, 15 s and then every 16 s (measured:
/// with 250 ms, the probes of a killed backend and their retries overflowed Envoy's
/// retry circuit breaker under load).
pub const FIRST_PROBE_INTERVAL: Nanos = 1_000_000_000;
/// The longest wait between probes of an endpoint that keeps failing them.
pub const MAX_PROBE_INTERVAL: Nanos = 16_000_000_000;
/// Failed probes in a row beyond which the interval stops growing (1 s × 2⁴ = 16 s).
const MAX_FAILED_PROBES: u8 = 4;

/// The wait before the next probe after `failed_probes` failed probes in a row:
/// 1 s, 2 s, 4 s, 8 s, then 16 s.
pub fn probe_interval(failed_probes: u8) -> Nanos {
    FIRST_PROBE_INTERVAL << failed_probes.min(MAX_FAILED_PROBES)
}

#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct FailureScore {
    value: f64,
    stamp: Nanos,
    /// Probes that failed since the last success.
    failed_probes: u8,
}

impl FailureScore {
    /// Rebuilds a score from its stored parts; out-of-range values are clamped.
    pub fn from_parts(value: f64, stamp: Nanos, failed_probes: u8) -> Self {
        let value = if value.is_finite() {
            value.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Self {
            value,
            stamp,
            failed_probes: failed_probes.min(MAX_FAILED_PROBES),
        }
    }

    pub fn failed_probes(&self) -> u8 {
        self.failed_probes
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
            self.failed_probes = 0;
            let forgiven = self.at(now, decay_ns) * (1.0 - SUCCESS_FORGIVENESS);
            if forgiven <= NEGLIGIBLE {
                0.0
            } else {
                forgiven
            }
        };
        self.stamp = self.stamp.max(now);
    }

    /// Records the outcome of a probe: a success forgives the score entirely (the
    /// endpoint answered after a quiet spell: it is back), a failure is a failure and
    /// lengthens the wait before the next probe.
    pub fn record_probe(&mut self, failed: bool, now: Nanos, decay_ns: f64) {
        if failed {
            self.record(true, now, decay_ns);
            self.failed_probes = self.failed_probes.saturating_add(1).min(MAX_FAILED_PROBES);
        } else {
            self.value = 0.0;
            self.failed_probes = 0;
            self.stamp = self.stamp.max(now);
        }
    }

    /// Records a probe that succeeded, but too slowly to bring its endpoint back onto
    /// the shortlist: a success for the score, a failed probe for the wait before the
    /// next one.
    pub fn record_slow_probe(&mut self, now: Nanos, decay_ns: f64) {
        let failed_probes = self.failed_probes;
        self.record(false, now, decay_ns);
        self.failed_probes = failed_probes.saturating_add(1).min(MAX_FAILED_PROBES);
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
        let mut s = FailureScore::from_parts(1.0, 0, 0);
        s.record(false, 0, DECAY);
        assert_eq!(s.raw(), 0.5);
        s.record(false, 0, DECAY);
        assert_eq!(s.raw(), 0.25);
    }

    #[test]
    fn score_decays_with_time_without_mutating() {
        let s = FailureScore::from_parts(1.0, 0, 0);
        // exp(-2) after two decay periods
        assert!((s.at(2 * SEC, DECAY) - 0.135_335_283_236_612_7).abs() < 1e-12);
        assert_eq!(s.raw(), 1.0);
    }

    #[test]
    fn clock_going_backwards_keeps_score_and_stamp() {
        let mut s = FailureScore::from_parts(1.0, 10 * SEC, 0);
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
    fn the_probe_interval_doubles_from_1_s_to_16_s() {
        let intervals: Vec<Nanos> = (0..7).map(probe_interval).collect();
        assert_eq!(intervals, [1, 2, 4, 8, 16, 16, 16].map(|s| s * SEC));
    }

    #[test]
    fn a_successful_probe_forgives_at_once() {
        let mut s = FailureScore::default();
        s.record(true, 0, DECAY);
        s.record_probe(false, SEC, DECAY);
        assert_eq!(s.raw(), 0.0);
        assert_eq!(s.failed_probes(), 0);
    }

    #[test]
    fn each_failed_or_slow_probe_doubles_the_wait_and_a_success_resets_it() {
        let mut s = FailureScore::default();
        s.record(true, 0, DECAY);
        let mut t = 0;
        for expected in [2_000, 4_000, 8_000] {
            t += probe_interval(s.failed_probes());
            s.record_probe(true, t, DECAY);
            assert_eq!(s.raw(), 1.0);
            assert_eq!(probe_interval(s.failed_probes()), expected * 1_000_000);
        }
        s.record_slow_probe(t + SEC, DECAY);
        assert_eq!(s.raw(), 0.5 * (-1.0f64).exp());
        assert_eq!(probe_interval(s.failed_probes()), 16 * SEC);
        s.record_slow_probe(t + 2 * SEC, DECAY);
        assert_eq!(probe_interval(s.failed_probes()), 16 * SEC);
        s.record(false, t, DECAY);
        assert_eq!(
            s.failed_probes(),
            0,
            "an ordinary success resets the backoff"
        );
    }

    #[test]
    fn stored_garbage_is_clamped() {
        assert_eq!(FailureScore::from_parts(f64::NAN, 0, 0).raw(), 0.0);
        assert_eq!(FailureScore::from_parts(7.0, 0, 200).raw(), 1.0);
        assert_eq!(FailureScore::from_parts(-7.0, 0, 0).raw(), 0.0);
        assert_eq!(FailureScore::from_parts(7.0, 0, 200).failed_probes(), 4);
    }
}
