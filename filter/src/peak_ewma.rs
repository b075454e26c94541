//! Peak-EWMA latency estimate, after Finagle's `PeakEwma` and Linkerd's `linkerd-ewma`.
//!
//! The estimate decays toward zero with time (`estimate × exp(-elapsed / decay)`), so an
//! endpoint that was avoided because it was slow is probed again later instead of being
//! shunned forever. A sample above the decayed estimate replaces it outright (the
//! "peak"), so an endpoint that slows down is penalised at once. A sample below it pulls
//! the estimate toward itself with weight `1 - exp(-sample / decay)`, which is what tower
//! and Finagle do in effect: they decay the estimate when they read it to send the request,
//! so by the time the sample arrives, the elapsed time is the sample's own duration.
//!
//! Time is an argument everywhere (nanoseconds on any clock that only the caller reads);
//! reading never mutates, and a clock that goes backwards is treated as "no time passed".

use crate::decay::survival;
use crate::Nanos;

/// A latency estimate with its timestamp. Plain data: it is stored in shared data as is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeakEwma {
    /// The estimate at `stamp`, in nanoseconds. Always finite and non-negative.
    estimate_ns: f64,
    /// When `estimate_ns` was last updated.
    stamp: Nanos,
}

impl PeakEwma {
    /// A new estimate seeded with a first sample (or the configured default RTT).
    pub fn new(initial_ns: f64, now: Nanos) -> Self {
        Self {
            estimate_ns: sanitize(initial_ns).unwrap_or(0.0),
            stamp: now,
        }
    }

    /// The stored estimate, without decay.
    pub fn raw_ns(&self) -> f64 {
        self.estimate_ns
    }

    /// When the estimate was last updated.
    pub fn stamp(&self) -> Nanos {
        self.stamp
    }

    /// The estimate as seen at `now`: decayed toward zero for the time without samples.
    /// Does not mutate.
    pub fn estimate_at(&self, now: Nanos, decay_ns: f64) -> f64 {
        self.estimate_ns * weight(now.saturating_sub(self.stamp), decay_ns)
    }

    /// Adds what a request the client gave up on says: the endpoint had not answered
    /// `bound_ns` after it had the request, so its latency is at least that. A bound
    /// above the current estimate is a peak and replaces it; one below it says nothing
    /// new and changes nothing (not even the stamp: the estimate goes on decaying as if
    /// the request had never been). Non-finite or negative bounds are ignored.
    pub fn observe_at_least(&mut self, bound_ns: f64, now: Nanos, decay_ns: f64) {
        let Some(bound) = sanitize(bound_ns) else {
            return;
        };
        if bound > self.estimate_at(now, decay_ns) {
            self.estimate_ns = bound;
            self.stamp = self.stamp.max(now);
        }
    }

    /// Takes a first sample as the whole estimate: what the estimate held before was a
    /// placeholder (the default RTT, or a member's fair starting estimate), which a
    /// sample below it would otherwise leave nearly untouched, keeping the endpoint dear
    /// for seconds. Non-finite or negative samples are ignored.
    pub fn first(&mut self, sample_ns: f64, now: Nanos) {
        if let Some(sample) = sanitize(sample_ns) {
            self.estimate_ns = sample;
            self.stamp = self.stamp.max(now);
        }
    }

    /// Adds a sample taken at `now`. Non-finite or negative samples are ignored.
    pub fn observe(&mut self, sample_ns: f64, now: Nanos, decay_ns: f64) {
        let Some(sample) = sanitize(sample_ns) else {
            return;
        };
        let current = self.estimate_at(now, decay_ns);
        if sample > current {
            // Peak: a sample worse than what we currently believe replaces it.
            self.estimate_ns = sample;
        } else {
            // A better sample pulls the estimate down by the weight of its own duration:
            // the estimate was read when the request was sent (tower and Finagle decay on
            // that read), so the time since then is the sample's latency. Idle time has
            // already been accounted for by the decay toward zero.
            // `sample` is finite and non-negative (sanitized); the cast saturates.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let w = weight(sample as Nanos, decay_ns);
            self.estimate_ns = current * w + sample * (1.0 - w);
        }
        // A clock that went backwards never rewinds the stamp.
        self.stamp = self.stamp.max(now);
    }
}

/// `exp(-elapsed / decay)`: the share of the old estimate that survives `elapsed`.
/// A decay that is zero or not finite means "no memory" (weight 0) for any elapsed time,
/// and "no time passed" (weight 1) for zero elapsed time.
fn weight(elapsed: Nanos, decay_ns: f64) -> f64 {
    survival(elapsed, decay_ns)
}

fn sanitize(value: f64) -> Option<f64> {
    (value.is_finite() && value >= 0.0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1_000_000.0;
    const SEC: Nanos = 1_000_000_000;
    const DECAY: f64 = 10.0 * 1e9;
    /// exp(-1), the weight left after one decay period.
    const EXP_NEG1: f64 = 0.367_879_441_171_442_33;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn new_estimate_is_the_initial_sample() {
        let e = PeakEwma::new(30.0 * MS, 5 * SEC);
        assert_eq!(e.raw_ns(), 30.0 * MS);
        assert_eq!(e.estimate_at(5 * SEC, DECAY), 30.0 * MS);
    }

    #[test]
    fn higher_sample_replaces_the_estimate_at_once() {
        let mut e = PeakEwma::new(10.0 * MS, 0);
        e.observe(50.0 * MS, 1, DECAY);
        assert_eq!(e.raw_ns(), 50.0 * MS);
    }

    #[test]
    fn lower_sample_pulls_the_decayed_estimate_by_its_own_duration() {
        let mut e = PeakEwma::new(100.0 * MS, 0);
        e.observe(20.0 * MS, 10 * SEC, DECAY);
        // decayed: 100·e⁻¹ = 36.788 ms; w = exp(-20 ms / 10 s); 36.788·w + 20·(1 − w)
        assert!(close(e.raw_ns(), 36.75440178242545 * MS), "{}", e.raw_ns());
        assert_eq!(e.stamp(), 10 * SEC);
    }

    #[test]
    fn lower_sample_with_no_elapsed_time_barely_moves_the_estimate() {
        let mut e = PeakEwma::new(40.0 * MS, 7 * SEC);
        e.observe(1.0 * MS, 7 * SEC, DECAY);
        // 40·exp(-0.0001) + 1·(1 − exp(-0.0001))
        assert!(close(e.raw_ns(), 39.9961001949935 * MS), "{}", e.raw_ns());
    }

    #[test]
    fn a_fast_sample_never_raises_the_estimate() {
        let mut e = PeakEwma::new(40.0 * MS, 0);
        let before = e.estimate_at(30 * SEC, DECAY);
        e.observe(1.0 * MS, 30 * SEC, DECAY);
        assert!(e.raw_ns() <= before, "{} > {before}", e.raw_ns());
    }

    #[test]
    fn idle_estimate_decays_toward_zero_without_mutating() {
        let e = PeakEwma::new(40.0 * MS, 0);
        let seen = e.estimate_at(10 * SEC, DECAY);
        assert!(close(seen, 40.0 * MS * EXP_NEG1), "{seen}");
        assert_eq!(e.raw_ns(), 40.0 * MS, "reads don't mutate");
        assert_eq!(e.stamp(), 0);
    }

    #[test]
    fn an_hour_idle_decays_to_practically_zero() {
        let e = PeakEwma::new(1000.0 * MS, 0);
        assert!(e.estimate_at(3600 * SEC, DECAY) < 1e-100);
    }

    #[test]
    fn clock_going_backwards_is_no_time_passed_and_keeps_the_stamp() {
        let mut e = PeakEwma::new(40.0 * MS, 100 * SEC);
        assert_eq!(e.estimate_at(50 * SEC, DECAY), 40.0 * MS);
        e.observe(40.0 * MS, 50 * SEC, DECAY);
        assert_eq!(e.raw_ns(), 40.0 * MS);
        assert_eq!(e.stamp(), 100 * SEC);
        e.observe(90.0 * MS, 50 * SEC, DECAY);
        assert_eq!(e.raw_ns(), 90.0 * MS, "peaks still count");
    }

    #[test]
    fn nan_infinite_and_negative_samples_are_ignored() {
        let mut e = PeakEwma::new(40.0 * MS, 0);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0] {
            e.observe(bad, 5 * SEC, DECAY);
        }
        assert_eq!(e.raw_ns(), 40.0 * MS);
        assert_eq!(PeakEwma::new(f64::NAN, 0).raw_ns(), 0.0);
    }

    #[test]
    fn zero_decay_follows_the_latest_sample() {
        let mut e = PeakEwma::new(40.0 * MS, 0);
        e.observe(2.0 * MS, 1, 0.0);
        assert_eq!(e.raw_ns(), 2.0 * MS);
        e.observe(1.0 * MS, 1, 0.0);
        assert_eq!(e.raw_ns(), 1.0 * MS);
        assert_eq!(e.estimate_at(2, 0.0), 0.0);
    }

    #[test]
    fn a_bound_above_the_estimate_is_a_peak() {
        let mut e = PeakEwma::new(1.0 * MS, 0);
        e.observe_at_least(25.0 * MS, 2 * SEC, DECAY);
        assert_eq!(e.raw_ns(), 25.0 * MS);
        assert_eq!(e.stamp(), 2 * SEC);
    }

    #[test]
    fn a_bound_below_the_estimate_changes_nothing_not_even_the_stamp() {
        let mut e = PeakEwma::new(40.0 * MS, 0);
        e.observe_at_least(1.0 * MS, 10 * SEC, DECAY);
        assert_eq!(e, PeakEwma::new(40.0 * MS, 0));
        // decayed to 40·e⁻¹ = 14.715 ms at 10 s: a 14 ms bound is below it, a 15 ms one above
        e.observe_at_least(14.0 * MS, 10 * SEC, DECAY);
        assert_eq!(e.raw_ns(), 40.0 * MS);
        e.observe_at_least(15.0 * MS, 10 * SEC, DECAY);
        assert_eq!(e.raw_ns(), 15.0 * MS);
    }

    #[test]
    fn bad_bounds_are_ignored() {
        let mut e = PeakEwma::new(4.0 * MS, 0);
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            e.observe_at_least(bad, SEC, DECAY);
        }
        assert_eq!(e, PeakEwma::new(4.0 * MS, 0));
    }

    #[test]
    fn huge_elapsed_time_does_not_overflow() {
        let mut e = PeakEwma::new(40.0 * MS, 0);
        e.observe(5.0 * MS, Nanos::MAX, DECAY);
        assert!(close(e.raw_ns(), 5.0 * MS));
        assert_eq!(e.stamp(), Nanos::MAX);
    }

    #[test]
    fn estimate_never_exceeds_the_largest_sample_and_stays_within_samples_without_idle_time() {
        let samples = [3.0, 7.0, 1.0, 9.0, 4.0, 4.0, 2.0, 8.0];
        let mut idle = PeakEwma::new(samples[0] * MS, 0);
        let mut busy = PeakEwma::new(samples[0] * MS, 0);
        for (i, s) in samples.iter().enumerate().skip(1) {
            idle.observe(s * MS, i as Nanos * SEC, DECAY);
            busy.observe(s * MS, 0, DECAY);
            assert!(
                idle.raw_ns() >= 0.0 && idle.raw_ns() <= 9.0 * MS,
                "{}",
                idle.raw_ns()
            );
            assert!(
                busy.raw_ns() >= 1.0 * MS && busy.raw_ns() <= 9.0 * MS,
                "{}",
                busy.raw_ns()
            );
        }
    }
}
