//! The load of one endpoint, as P2C compares it.
//!
//! `cost = max(latency, failure × failure_penalty) × (pending + 1)`
//!
//! This is Linkerd's `rtt × (pending + 1)` with one change: an endpoint that failed
//! recently is treated as if its latency were `failure_penalty` (decaying with its failure
//! score). With the default penalty of 1 s, an endpoint that fails fast costs more than
//! any healthy endpoint faster than a second, whatever its latency samples say.

/// The inputs of one cost, all "as seen at now".
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// Peak-EWMA latency estimate, decayed to now (ns).
    pub latency_ns: f64,
    /// Requests in flight to this endpoint, across all workers as far as known.
    pub pending: u32,
    /// Failure score decayed to now, in `[0, 1]`.
    pub failure: f64,
}

/// The cost of an endpoint under `load`. Never NaN: a non-finite input costs `f64::MAX`,
/// so a corrupted record can only make an endpoint less attractive, never more.
pub fn cost(load: Load, failure_penalty_ns: f64) -> f64 {
    let valid = |x: f64| x.is_finite() && x >= 0.0;
    if !(valid(load.latency_ns) && valid(load.failure) && valid(failure_penalty_ns)) {
        return f64::MAX;
    }
    let effective = load.latency_ns.max(load.failure * failure_penalty_ns);
    (effective * (f64::from(load.pending) + 1.0)).min(f64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1e6;
    const PENALTY: f64 = 1000.0 * MS;

    fn load(latency_ms: f64, pending: u32, failure: f64) -> Load {
        Load {
            latency_ns: latency_ms * MS,
            pending,
            failure,
        }
    }

    #[test]
    fn healthy_cost_is_latency_times_pending_plus_one() {
        assert_eq!(cost(load(10.0, 0, 0.0), PENALTY), 10.0 * MS);
        assert_eq!(cost(load(10.0, 3, 0.0), PENALTY), 40.0 * MS);
    }

    #[test]
    fn cost_grows_with_latency_and_pending() {
        assert!(cost(load(11.0, 2, 0.0), PENALTY) > cost(load(10.0, 2, 0.0), PENALTY));
        assert!(cost(load(10.0, 3, 0.0), PENALTY) > cost(load(10.0, 2, 0.0), PENALTY));
    }

    #[test]
    fn fast_failing_endpoint_costs_more_than_a_slow_healthy_one() {
        let fast_failing = cost(load(0.2, 0, 1.0), PENALTY);
        let slow_healthy = cost(load(40.0, 5, 0.0), PENALTY);
        assert_eq!(fast_failing, 1000.0 * MS);
        assert!(fast_failing > slow_healthy);
    }

    #[test]
    fn a_decayed_failure_counts_only_while_it_exceeds_latency() {
        assert_eq!(cost(load(5.0, 0, 0.001), PENALTY), 5.0 * MS);
        assert_eq!(cost(load(5.0, 1, 0.01), PENALTY), 20.0 * MS);
    }

    #[test]
    fn non_finite_or_negative_inputs_cost_the_most() {
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            assert_eq!(cost(load(bad, 0, 0.0), PENALTY), f64::MAX);
            assert_eq!(
                cost(
                    Load {
                        latency_ns: MS,
                        pending: 0,
                        failure: bad
                    },
                    PENALTY
                ),
                f64::MAX
            );
        }
        assert_eq!(cost(load(1.0, 0, 0.0), f64::NAN), f64::MAX);
    }

    #[test]
    fn pending_at_u32_max_stays_finite() {
        assert!(cost(load(1e12, u32::MAX, 0.0), PENALTY).is_finite());
    }
}
