//! Which endpoints a pick may draw from, and how a pair is decided.
//!
//! Plain power of two choices over every endpoint leaks in two ways that the filter
//! already knows about (issue K, measured): when k of n endpoints are bad, both draws
//! are bad with probability k(k−1)/(n(n−1)) (13 % for 4 of 10) and one of them gets
//! the call whatever the costs say; and among equal endpoints the cheaper of a pair wins
//! every time, so a sub-millisecond difference in estimates sends one endpoint two
//! thirds of the calls and another none (0 / 34 / 49 / 67 % measured over 2 s).
//!
//! * **The shortlist.** On each tick the worker keeps the endpoints whose *idle cost*
//!   (latency or failure penalty, no pending term) is within [`SHORTLIST_FACTOR`] of
//!   the cheapest, or within [`SHORTLIST_SLACK_NS`] of it, whichever is wider; at least
//!   two stay on it when there are two. Picks draw their pair from the shortlist only,
//!   with live pending counts, so the work per pick stays flat in n and no share goes
//!   to an endpoint known to be slow or failing, however many of them there are. An
//!   endpoint whose probe found it still bad stays off until a probe says otherwise
//!   (its estimate's decay alone does not bring it back).
//! * **Probes.** An endpoint off the shortlist gets one call at a time (claimed in
//!   shared data, so one per Envoy, not one per worker), once its last outcome is
//!   [`probe_interval`](crate::failure_score::probe_interval) old: 1 s, then 2, 4, 8 and
//!   16 s while probes keep finding it bad. A probe that comes back within the
//!   shortlist's threshold replaces the estimate (it is the freshest word after a quiet
//!   spell) and the endpoint is back at the next tick.
//! * **A soft pair.** The dearer of a pair, `r` times the cheaper's cost, still wins
//!   `(4 − r) / 6` of the time: half at a tie, a third at 2×, none from 4× on. Sub-
//!   millisecond estimates differ by a latency peak or two, which says little; obeying
//!   them sharply gave one of three equal backends 41-47 % of the calls in quick
//!   benchmark runs. Three equal endpoints with jittered latency in the wasmtime host,
//!   400 calls/s, the worst deviation from a fair share over 2 s windows: 0.43, 0.28
//!   and 0.17 for `1 / (1 + r^k)` with k = 4, 2, 1 (k = 1 still sends 1.2 % to an 80×
//!   slower endpoint whose pair it is), 0.42 for a linear fall to none at 2×, 0.16 for
//!   this rule (0.09 at 1,000 calls/s, where chance alone is about 0.03). What is
//!   clearly dearer (4×, or a pending count of 3 against 0) is never chosen, so a
//!   two-endpoint cluster with one slow member sends it nothing. Nor is what is a few
//!   milliseconds slower ([`TIE_SPAN_NS`], on the latency estimates): an endpoint at
//!   30 ms beside one at 10 ms says something however noisy its estimate. (The mesh
//!   simulation's heterogeneous run, 17 of 50 endpoints at half speed: p99 97 → 93 ms,
//!   the two third-speed endpoints of its test from 20.7 % of the calls to under the
//!   20 % it allows.) A request pending is load, not speed, and the relative rule
//!   alone weighs it: on the loaded costs, two equal 2 ms endpoints one request apart
//!   (4 ms against 2) made a hard pair. The span is 3 ms because a 2 ms endpoint's
//!   Peak-EWMA reads a millisecond or more above its neighbour's after a hiccup: ten
//!   proxies over five such endpoints (wasmtime host, jittered latency, one call in 50
//!   three times as slow), worst deviation from a fair share per 2 s window: 0.21 with
//!   a 2 ms span on the loaded costs, 0.20 / 0.15 / 0.13 with 2 / 3 / 5 ms on the
//!   estimates, 0.10 with no absolute rule; the heterogeneous run's p99 was 93 ms,
//!   96 / 94 / 99 ms and 97 ms respectively.

/// An endpoint stays on the shortlist while its idle cost is within this factor of the
/// cheapest's …
pub const SHORTLIST_FACTOR: f64 = 8.0;
/// … or within this much of it, whichever is wider (sub-millisecond estimates differ by
/// whole multiples on a busy machine without meaning anything).
pub const SHORTLIST_SLACK_NS: f64 = 5_000_000.0;
/// A pair is decided softly while its costs are within this factor (see
/// [`first_wins`]); beyond it, the cheaper always wins.
pub const TIE_SPAN: f64 = 4.0;
/// … and while the dearer's latency estimate (its idle cost) is within this much above
/// the cheaper's: softness is for estimates that differ by noise (a latency peak), not
/// for an endpoint a few milliseconds slower, which a soft pair would keep feeding (a
/// third-speed endpoint on the 8× shortlist won a sixth of its pairs: 20.7 % of the
/// calls to two of fourteen capacity shares).
pub const TIE_SPAN_NS: f64 = 3_000_000.0;

/// One of a pair as [`first_wins`] sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Contender {
    /// What P2C compares: latency (or failure penalty) × (pending + 1), over weight.
    pub cost: f64,
    /// The same without the pending term: how slow the endpoint is, not how busy.
    pub idle_cost: f64,
}

/// One endpoint as the shortlist sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Latency (or failure penalty) over weight, without the pending term.
    pub idle_cost: f64,
    /// A probe found it bad since it last came back: only a good probe returns it.
    pub held_out: bool,
}

/// The idle cost at or below which an endpoint belongs on the shortlist, given the
/// cheapest idle cost among those not held out.
pub fn threshold(cheapest: f64) -> f64 {
    (cheapest * SHORTLIST_FACTOR).max(cheapest + SHORTLIST_SLACK_NS)
}

/// Marks in `keep` which of `candidates` go on the shortlist and returns the threshold
/// used (`f64::MAX` when none was measured). At least `min(2, len)` are kept: the
/// cheapest of the rest fill in, so that a pair can still be drawn (and nobody piles on
/// one endpoint) when only one is good.
pub fn shortlist(candidates: &[Candidate], keep: &mut Vec<bool>) -> f64 {
    keep.clear();
    let cheapest = candidates
        .iter()
        .filter(|c| !c.held_out)
        .map(|c| c.idle_cost)
        .fold(f64::MAX, f64::min);
    let limit = if cheapest < f64::MAX {
        threshold(cheapest)
    } else {
        f64::MAX
    };
    keep.extend(
        candidates
            .iter()
            .map(|c| !c.held_out && c.idle_cost <= limit),
    );
    let want = candidates.len().min(2);
    let mut kept = keep.iter().filter(|&&k| k).count();
    while kept < want {
        // The cheapest not kept yet (held out or not): at most two passes.
        let next = candidates
            .iter()
            .zip(keep.iter())
            .enumerate()
            .filter(|(_, (_, &k))| !k)
            .min_by(|(_, (a, _)), (_, (b, _))| a.idle_cost.total_cmp(&b.idle_cost))
            .map(|(i, _)| i);
        match next.and_then(|i| keep.get_mut(i)) {
            Some(k) => *k = true,
            None => break,
        }
        kept += 1;
    }
    limit
}

/// Whether the first of a pair gets the call, given both and `u`, uniform in `[0, 1)`.
/// The dearer of the two, its cost `r` times the cheaper's and its idle cost `d`
/// nanoseconds above the cheaper's, wins with probability `½ min((TIE_SPAN − r) /
/// (TIE_SPAN − 1), 1 − d / TIE_SPAN_NS)`: one half at a tie, falling linearly to none
/// at `TIE_SPAN` times or `TIE_SPAN_NS` slower, whichever comes first (a dearer one
/// that is no slower, only busier, is left to the relative rule). Costs are never NaN
/// (see `cost.rs`); a cost of zero beats any other, two zeros toss a coin.
pub fn first_wins(a: Contender, b: Contender, u: f64) -> bool {
    let (cheap, dear) = if a.cost <= b.cost { (a, b) } else { (b, a) };
    let p_dearer = if cheap.cost > 0.0 {
        let relative = (TIE_SPAN - dear.cost / cheap.cost) / (TIE_SPAN - 1.0);
        let absolute = 1.0 - (dear.idle_cost - cheap.idle_cost) / TIE_SPAN_NS;
        (0.5 * relative.min(absolute)).clamp(0.0, 0.5)
    } else if dear.cost > 0.0 {
        0.0
    } else {
        0.5
    };
    let p_first = if a.cost <= b.cost {
        1.0 - p_dearer
    } else {
        p_dearer
    };
    u < p_first
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1e6;

    fn c(ms: f64) -> Candidate {
        Candidate {
            idle_cost: ms * MS,
            held_out: false,
        }
    }

    fn kept(candidates: &[Candidate]) -> (Vec<bool>, f64) {
        let mut keep = Vec::new();
        let t = shortlist(candidates, &mut keep);
        (keep, t)
    }

    #[test]
    fn the_threshold_is_eight_times_the_cheapest_or_five_ms_above_it() {
        assert_eq!(threshold(0.5 * MS), 5.5 * MS);
        assert_eq!(threshold(MS), 8.0 * MS);
        assert_eq!(threshold(10.0 * MS), 80.0 * MS);
    }

    #[test]
    fn slow_and_failing_endpoints_are_left_off_however_many() {
        // Six at about 1 ms, four 40 ms slower, one failing (1 s penalty): the slack
        // decides, 8 × 0.5 ms being below 0.5 + 5 ms.
        let mut all: Vec<Candidate> = (0..6).map(|i| c(0.5 + 0.2 * f64::from(i))).collect();
        all.extend((0..4).map(|_| c(41.0)));
        all.push(c(1000.0));
        let (keep, t) = kept(&all);
        assert_eq!(t, 5.5 * MS);
        assert_eq!(
            keep,
            [true, true, true, true, true, true, false, false, false, false, false]
        );
    }

    #[test]
    fn at_least_two_stay_so_that_a_pair_can_be_drawn() {
        let (keep, _) = kept(&[c(40.0), c(1.0), c(1000.0)]);
        assert_eq!(keep, [true, true, false]);
        let (keep, _) = kept(&[c(1.0)]);
        assert_eq!(keep, [true]);
        let (keep, t) = kept(&[]);
        assert!(keep.is_empty());
        assert_eq!(t, f64::MAX);
    }

    #[test]
    fn an_endpoint_held_out_by_a_bad_probe_stays_off_however_cheap_its_estimate() {
        let held = Candidate {
            idle_cost: 0.1 * MS,
            held_out: true,
        };
        let (keep, t) = kept(&[c(1.0), c(1.2), held]);
        assert_eq!(keep, [true, true, false]);
        // The threshold comes from the cheapest not held out.
        assert_eq!(t, 8.0 * MS);
        // … unless it is needed for a pair.
        let (keep, _) = kept(&[c(1.0), held]);
        assert_eq!(keep, [true, true]);
    }

    #[test]
    fn all_held_out_keeps_the_two_cheapest() {
        let held = |ms: f64| Candidate {
            idle_cost: ms * MS,
            held_out: true,
        };
        let (keep, t) = kept(&[held(900.0), held(300.0), held(500.0)]);
        assert_eq!(keep, [false, true, true]);
        assert_eq!(t, f64::MAX);
    }

    /// An idle endpoint: its cost is its idle cost.
    fn idle(cost: f64) -> Contender {
        Contender {
            cost,
            idle_cost: cost,
        }
    }

    /// How many of 100,000 evenly spread coins give the call to the first.
    fn first_share(a: Contender, b: Contender) -> usize {
        let n = 100_000;
        (0..n)
            .filter(|&i| first_wins(a, b, f64::from(i) / f64::from(n)))
            .count()
    }

    #[test]
    fn a_pair_follows_its_costs_softly_up_to_four_times() {
        // The dearer wins (4 − r) / 6 of the time: ½ at a tie, none from 4× on.
        let p = |a: f64, b: f64| first_share(idle(a), idle(b));
        assert_eq!(p(1.0, 1.0), 50_000);
        assert_eq!(p(1.1, 1.0), 48_334);
        assert_eq!(p(2.0, 1.0), 33_334);
        assert_eq!(p(1.0, 2.0), 66_667);
        assert_eq!(p(3.0, 1.0), 16_667);
        assert_eq!(p(4.0, 1.0), 0);
        assert_eq!(p(1.0, 80.0), 100_000);
    }

    #[test]
    fn a_pair_is_soft_only_within_three_ms() {
        let p = |a: f64, b: f64| first_share(idle(a * MS), idle(b * MS));
        // Sub-millisecond: the relative rule decides, as above.
        assert_eq!(p(0.6, 0.3), 33_334);
        // 1.5 ms apart at 2×: the absolute rule (a quarter) is sharper than the relative (a third).
        assert_eq!(p(3.0, 1.5), 25_000);
        // 10 ms against 11: a tenth dearer, but 1 ms: a third, not nearly a half.
        assert_eq!(p(11.0, 10.0), 33_334);
        // 10 ms against 12: a sixth; from 3 ms apart, never.
        assert_eq!(p(12.0, 10.0), 16_667);
        assert_eq!(p(13.0, 10.0), 0);
        // 10 ms against 30 (3×, 20 ms): never, where the relative rule alone gave a sixth.
        assert_eq!(p(30.0, 10.0), 0);
    }

    #[test]
    fn a_pair_apart_by_load_alone_stays_soft_however_many_ms() {
        // Two equal 2 ms endpoints, one with a request pending: 4 ms against 2. The
        // relative rule gives the busier a third; the absolute rule, on the loaded
        // costs, gave it none.
        let busy = Contender {
            cost: 4.0 * MS,
            idle_cost: 2.0 * MS,
        };
        assert_eq!(first_share(busy, idle(2.0 * MS)), 33_334);
        // 10 ms endpoints, 20 ms apart by two requests pending: still the relative rule.
        let busier = Contender {
            cost: 30.0 * MS,
            idle_cost: 10.0 * MS,
        };
        assert_eq!(first_share(busier, idle(10.0 * MS)), 16_667);
        // 1.5 ms slower and a request pending (23 ms against 10, 2.3×): the absolute
        // rule on the estimates, a quarter, is sharper than the relative one (0.28).
        let slower = Contender {
            cost: 23.0 * MS,
            idle_cost: 11.5 * MS,
        };
        assert_eq!(first_share(slower, idle(10.0 * MS)), 25_000);
        // The cheaper by cost may be the slower one, only idle: the relative rule.
        let idle_but_slower = idle(3.0 * MS);
        let busy_but_fast = Contender {
            cost: 4.0 * MS,
            idle_cost: 1.0 * MS,
        };
        assert_eq!(first_share(idle_but_slower, busy_but_fast), 55_556);
    }

    #[test]
    fn zero_costs_win_and_two_zeros_toss_a_coin() {
        assert!(first_wins(idle(0.0), idle(1.0), 0.999));
        assert!(!first_wins(idle(1.0), idle(0.0), 0.0));
        assert!(first_wins(idle(0.0), idle(0.0), 0.49));
        assert!(!first_wins(idle(0.0), idle(0.0), 0.5));
        assert!(!first_wins(idle(f64::MAX), idle(1.0), 0.0));
    }
}
