//! `exp(-elapsed / decay)`: how much of an old value survives `elapsed`. The Peak-EWMA
//! estimate and the failure score both decay this way, on every pick and completion.
//!
//! Nearly every call sees an elapsed time thousands of times shorter than the decay: the
//! time since the endpoint's last update, or a sub-millisecond sample, against a decay
//! of seconds. For `x = elapsed / decay` below [`SERIES_BELOW`], the series
//! `1 − x + x²/2 − x³/6` is within `x⁴/24` (under 4e-14) of `exp(−x)`, and it spares
//! the call into libm's `exp`, which the Wasm build carries as compiled code.

use crate::Nanos;

/// Below this `elapsed / decay`, [`survival`] uses the cubic series instead of `exp`.
pub const SERIES_BELOW: f64 = 1.0 / 1024.0;

/// `exp(-elapsed / decay_ns)`. No time means everything survives (1); a decay that is
/// zero, negative or not finite means no memory (0) once any time has passed.
pub fn survival(elapsed: Nanos, decay_ns: f64) -> f64 {
    if elapsed == 0 {
        return 1.0;
    }
    if !(decay_ns.is_finite() && decay_ns > 0.0) {
        return 0.0;
    }
    let x = elapsed as f64 / decay_ns;
    if x < SERIES_BELOW {
        1.0 - x * (1.0 - x * (0.5 - x / 6.0))
    } else {
        (-x).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_time_keeps_everything_and_no_decay_keeps_nothing() {
        assert_eq!(survival(0, 1e9), 1.0);
        assert_eq!(survival(0, 0.0), 1.0);
        assert_eq!(survival(1, 0.0), 0.0);
        assert_eq!(survival(1, -1.0), 0.0);
        assert_eq!(survival(1, f64::NAN), 0.0);
        assert_eq!(survival(1, f64::INFINITY), 0.0);
    }

    #[test]
    fn one_decay_period_leaves_exp_minus_one() {
        assert_eq!(survival(1_000_000_000, 1e9), 0.367_879_441_171_442_33);
        assert_eq!(survival(3_600_000_000_000, 1e9), 0.0);
    }

    #[test]
    fn the_series_matches_exp_wherever_it_is_used() {
        let decay = 2e9;
        let mut worst: f64 = 0.0;
        // From 1 ns up to the switch-over point, geometrically.
        let mut elapsed = 1.0_f64;
        while elapsed / decay < SERIES_BELOW {
            let exact = (-(elapsed.floor()) / decay).exp();
            let series = survival(elapsed.floor() as Nanos, decay);
            worst = worst.max(((series - exact) / exact).abs());
            elapsed *= 1.01;
        }
        assert!(worst < 1e-13, "worst relative error {worst:e}");
        // Just past the switch-over, exp itself.
        let past = (decay * SERIES_BELOW) as Nanos + 1;
        assert_eq!(survival(past, decay), (-(past as f64) / decay).exp());
    }

    #[test]
    fn survival_never_rises_with_time() {
        let decay = 2e9;
        let mut last = 1.0;
        for elapsed in (0..4_000_000u64).step_by(997) {
            let s = survival(elapsed, decay);
            assert!(s <= last && s > 0.0, "{elapsed}: {s} after {last}");
            last = s;
        }
    }
}
