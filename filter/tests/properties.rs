//! Property tests of the core's invariants (proptest): what must hold for every input,
//! not just the literal cases of the unit tests. They state properties any sane
//! implementation keeps (an EWMA stays within its samples, a score within [0, 1]) rather
//! than the exact formulas, so the formulas can be tuned without touching these.

use ewma_balancer::choice::{first_wins, Contender};
use ewma_balancer::cost::{cost, Load};
use ewma_balancer::failure_score::FailureScore;
use ewma_balancer::index::ClusterIndex;
use ewma_balancer::p2c::pick_two;
use ewma_balancer::peak_ewma::PeakEwma;
use ewma_balancer::record::{EndpointRecord, MAX_ADDR_LEN, MAX_RECORD_LEN};
use ewma_balancer::rng::SplitMix64;
use ewma_balancer::Nanos;
use proptest::prelude::*;

const MS: f64 = 1e6;
/// Latencies from 0 to ~28 hours, in ns.
const LATENCY: std::ops::Range<f64> = 0.0..1e14;
/// Decays within what the configuration accepts: 10 ms to 1 h.
const DECAY: std::ops::RangeInclusive<f64> = 1e7..=3.6e12;
/// Failure penalties within what the configuration accepts: 1 ms to 1 h.
const PENALTY: std::ops::RangeInclusive<f64> = 1e6..=3.6e12;

/// Slack for floating-point rounding in convex combinations and exp().
fn at_most(a: f64, b: f64) -> bool {
    a <= b + 1e-9 * b.abs()
}

fn load(latency_ns: f64, pending: u32, failure: f64) -> Load {
    Load {
        latency_ns,
        pending,
        failure,
    }
}

/// Steps of a clock that mostly moves forward but may stall, jump back or leap ahead.
fn clock_step() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..2_000_000_000,
        1 => Just(0i64),
        1 => -2_000_000_000i64..0,
        1 => 0i64..1_000_000_000_000_000,
    ]
}

fn advance(t: Nanos, step: i64) -> Nanos {
    if step >= 0 {
        t.saturating_add(step.unsigned_abs())
    } else {
        t.saturating_sub(step.unsigned_abs())
    }
}

proptest! {
    // ---- cost ----

    #[test]
    fn cost_is_monotone_in_latency(
        a in LATENCY, b in LATENCY, pending in any::<u32>(), failure in 0.0..=1.0f64,
        penalty in PENALTY,
    ) {
        let (lo, hi) = (a.min(b), a.max(b));
        prop_assert!(cost(load(lo, pending, failure), penalty) <= cost(load(hi, pending, failure), penalty));
    }

    #[test]
    fn cost_is_monotone_in_pending(
        latency in LATENCY, a in any::<u32>(), b in any::<u32>(), failure in 0.0..=1.0f64,
        penalty in PENALTY,
    ) {
        let (lo, hi) = (a.min(b), a.max(b));
        prop_assert!(cost(load(latency, lo, failure), penalty) <= cost(load(latency, hi, failure), penalty));
    }

    #[test]
    fn more_pending_costs_strictly_more_for_a_nonzero_latency(
        latency in 1.0..1e12f64, pending in 0u32..1_000_000,
    ) {
        prop_assert!(cost(load(latency, pending, 0.0), 1e9) < cost(load(latency, pending + 1, 0.0), 1e9));
    }

    #[test]
    fn cost_is_monotone_in_the_failure_score(
        latency in LATENCY, pending in any::<u32>(), a in 0.0..=1.0f64, b in 0.0..=1.0f64,
        penalty in PENALTY,
    ) {
        let (lo, hi) = (a.min(b), a.max(b));
        prop_assert!(cost(load(latency, pending, lo), penalty) <= cost(load(latency, pending, hi), penalty));
    }

    #[test]
    fn cost_is_never_nan_nor_negative(
        latency in any::<f64>(), pending in any::<u32>(), failure in any::<f64>(),
        penalty in any::<f64>(),
    ) {
        let c = cost(load(latency, pending, failure), penalty);
        prop_assert!(c >= 0.0, "{c}");
    }

    // ---- P2C ----

    #[test]
    fn pick_two_gives_distinct_indices_in_range(
        n in prop_oneof![2usize..10, 2usize..100_000, 2usize..=usize::MAX],
        seed in any::<u64>(),
    ) {
        let mut rng = SplitMix64::new(seed);
        for _ in 0..8 {
            let pair = pick_two(n, &mut rng);
            prop_assert!(pair.is_some(), "no pair for n = {n}");
            let (a, b) = pair.unwrap_or_default();
            prop_assert!(a < n && b < n, "({a}, {b}) out of 0..{n}");
            prop_assert_ne!(a, b);
        }
    }

    #[test]
    fn pick_two_gives_nothing_below_two(n in 0usize..2, seed in any::<u64>()) {
        prop_assert_eq!(pick_two(n, &mut SplitMix64::new(seed)), None);
    }

    #[test]
    fn a_pair_never_goes_to_the_one_four_times_dearer_and_is_symmetric(
        ca in 0.0..1e12f64, r in 4.0..1e6f64, u in 0.0..1.0f64,
        idle in 0.0..1.0f64, idle_dear in 0.0..1.0f64,
    ) {
        // Whatever the idle costs: four times dearer never wins.
        let a = Contender { cost: ca, idle_cost: ca * idle };
        let dear = Contender { cost: ca * r, idle_cost: ca * idle_dear };
        prop_assert!(first_wins(a, dear, u) || ca == 0.0);
        prop_assert!(!first_wins(dear, a, u) || ca == 0.0);
        // Swapping the pair (and the coin) swaps the answer.
        let b = Contender { cost: ca * (r / 4.0 + 0.5).min(3.9), idle_cost: ca * idle_dear };
        prop_assert_eq!(first_wins(a, b, u), !first_wins(b, a, 1.0 - u));
    }

    // ---- Peak-EWMA ----

    /// With no time passing between observations nothing decays, so the estimate is
    /// bounded by the samples seen (the initial one included).
    #[test]
    fn peak_ewma_stays_within_its_samples_when_no_time_passes(
        initial in LATENCY, samples in prop::collection::vec(LATENCY, 1..40),
        now in any::<Nanos>(), decay in DECAY,
    ) {
        let mut e = PeakEwma::new(initial, now);
        let (mut min, mut max) = (initial, initial);
        for s in samples {
            e.observe(s, now, decay);
            min = min.min(s);
            max = max.max(s);
            let est = e.estimate_at(now, decay);
            prop_assert!(at_most(min, est) && at_most(est, max), "{est} outside [{min}, {max}]");
        }
    }

    /// With time passing the estimate decays toward zero, by at most exp(-elapsed/decay)
    /// since the earliest observation, and never rises above the largest sample, whatever
    /// the clock does (stalls, steps back, leaps ahead).
    #[test]
    fn peak_ewma_stays_between_the_decayed_minimum_and_the_maximum(
        initial in LATENCY,
        steps in prop::collection::vec((LATENCY, clock_step()), 1..40),
        start in 0u64..(u64::MAX / 2), query_after in 0u64..100_000_000_000, decay in DECAY,
    ) {
        let mut e = PeakEwma::new(initial, start);
        let (mut min, mut max) = (initial, initial);
        let (mut t, mut earliest, mut latest) = (start, start, start);
        for (s, step) in steps {
            t = advance(t, step);
            e.observe(s, t, decay);
            min = min.min(s);
            max = max.max(s);
            earliest = earliest.min(t);
            latest = latest.max(t);
        }
        let q = latest.saturating_add(query_after);
        let est = e.estimate_at(q, decay);
        let floor = min * (-((q - earliest) as f64) / decay).exp();
        prop_assert!(est.is_finite());
        prop_assert!(at_most(est, max), "{est} > max sample {max}");
        prop_assert!(at_most(floor, est), "{est} < decayed minimum {floor}");
    }

    /// A sample pulls the estimate toward itself: one above it never lowers it, one below
    /// never raises it. Reading does not change the estimate.
    #[test]
    fn peak_ewma_moves_toward_each_sample_and_reads_do_not_mutate(
        initial in LATENCY, sample in LATENCY, dt in 0u64..100_000_000_000, decay in DECAY,
    ) {
        let mut e = PeakEwma::new(initial, 1_000);
        let now = 1_000 + dt;
        let before = e.estimate_at(now, decay);
        prop_assert_eq!(before, e.estimate_at(now, decay), "reads don't mutate");
        e.observe(sample, now, decay);
        let after = e.estimate_at(now, decay);
        if sample >= before {
            prop_assert!(at_most(before, after), "{sample} above {before} lowered it to {after}");
            prop_assert!(at_most(after, sample), "overshot {sample}: {after}");
        } else {
            prop_assert!(at_most(after, before), "{sample} below {before} raised it to {after}");
            prop_assert!(at_most(sample, after), "undershot {sample}: {after}");
        }
    }

    #[test]
    fn peak_ewma_ignores_non_finite_and_negative_samples(
        initial in LATENCY, bad in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), -1e12..-1e-9f64],
        dt in 0u64..10_000_000_000, decay in DECAY,
    ) {
        let mut e = PeakEwma::new(initial, 0);
        let before = e.estimate_at(dt, decay);
        e.observe(bad, dt, decay);
        let after = e.estimate_at(dt, decay);
        prop_assert!(after.is_finite() && after >= 0.0);
        prop_assert_eq!(before, after);
    }

    // ---- failure score ----

    #[test]
    fn failure_score_stays_in_zero_one(
        outcomes in prop::collection::vec((any::<bool>(), clock_step()), 0..60),
        start in any::<Nanos>(), query in clock_step(), decay in DECAY,
    ) {
        let mut s = FailureScore::default();
        let mut t = start;
        for (failed, step) in outcomes {
            t = advance(t, step);
            s.record(failed, t, decay);
            let v = s.at(t, decay);
            prop_assert!((0.0..=1.0).contains(&v), "score {v}");
        }
        let v = s.at(advance(t, query), decay);
        prop_assert!((0.0..=1.0).contains(&v), "score {v}");
    }

    /// A failure never lowers the score and a success never raises it, at the time they
    /// are recorded.
    #[test]
    fn failures_raise_and_successes_lower_the_score(
        value in 0.0..=1.0f64, stamp in 0u64..1_000_000_000_000, dt in clock_step(),
        failed in any::<bool>(), decay in DECAY,
    ) {
        let mut s = FailureScore::from_parts(value, stamp, 0);
        let now = advance(stamp, dt);
        let before = s.at(now, decay);
        s.record(failed, now, decay);
        let after = s.at(now, decay);
        if failed {
            prop_assert!(at_most(before, after), "failure lowered {before} to {after}");
            prop_assert!(after > 0.0, "a failure left no trace");
        } else {
            prop_assert!(at_most(after, before), "success raised {before} to {after}");
        }
    }

    // ---- shared-data codecs ----

    #[test]
    fn any_valid_record_round_trips_within_the_size_bound(r in record()) {
        let bytes = r.encode();
        prop_assert!(bytes.len() <= MAX_RECORD_LEN, "{} bytes", bytes.len());
        prop_assert_eq!(EndpointRecord::decode(&bytes), Ok(r.clone()));
        prop_assert_eq!(EndpointRecord::decode_owned(&bytes, r.addr.clone()), Ok(r));
    }

    #[test]
    fn a_truncated_or_extended_record_is_rejected(r in record(), cut in any::<prop::sample::Index>(), extra in any::<u8>()) {
        let bytes = r.encode();
        let n = cut.index(bytes.len());
        prop_assert!(EndpointRecord::decode(&bytes[..n]).is_err(), "prefix of {n} bytes accepted");
        let mut longer = bytes;
        longer.push(extra);
        prop_assert!(EndpointRecord::decode(&longer).is_err(), "trailing byte accepted");
    }

    /// Any index a worker could write (distinct slots below the bound, distinct
    /// addresses) round-trips.
    #[test]
    fn any_index_round_trips(
        entries in prop::collection::btree_map(0..u16::MAX, address(), 0..40),
    ) {
        let mut seen = std::collections::BTreeSet::new();
        let index = ClusterIndex {
            entries: entries.into_iter().filter(|(_, a)| seen.insert(a.clone())).collect(),
        };
        prop_assert_eq!(ClusterIndex::decode(&index.encode(), u16::MAX), Ok(index));
    }
}

/// Any string of at most `MAX_ADDR_LEN` bytes (any UTF-8, not only `IP:port`).
fn address() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..=MAX_ADDR_LEN).prop_map(|chars| {
        let mut s = String::new();
        for c in chars {
            if s.len() + c.len_utf8() > MAX_ADDR_LEN {
                break;
            }
            s.push(c);
        }
        s
    })
}

/// Any record a worker could write: a sane estimate and score, any counters and stamps.
fn record() -> impl Strategy<Value = EndpointRecord> {
    (
        address(),
        (LATENCY, any::<Nanos>()),
        (0.0..=1.0f64, any::<Nanos>(), 0u8..=6),
        any::<u32>(),
        any::<Nanos>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                addr,
                (est, est_stamp),
                (score, score_stamp, failed_probes),
                pending,
                last_seen,
                requests,
                failures,
            )| {
                let mut r = EndpointRecord::new(&addr, est, est_stamp);
                r.latency = PeakEwma::new(est, est_stamp);
                r.failure = FailureScore::from_parts(score, score_stamp, failed_probes);
                r.pending = pending;
                r.last_seen = last_seen;
                r.requests = requests;
                r.failures = failures;
                r
            },
        )
}

#[test]
fn the_tolerance_is_tight_enough_to_catch_an_overshoot() {
    // The slack above is relative 1e-9: a 1 ns overshoot of a 1 ms estimate is caught.
    assert!(!at_most(MS + 1.0, MS));
    assert!(at_most(MS * (1.0 + 1e-12), MS));
}
