//! How a greeter backend treats each call: slow, flaky, or silent.
//!
//! The decision is a pure function of the configured [`Behaviour`] and an
//! injected random source, so tests can pin it with a seeded RNG while the
//! server draws from `rand::rng()`.

use std::{fmt, str::FromStr, time::Duration};

use rand::{Rng, RngExt};
use tonic::Code;

/// Probability in `0.0..=1.0` that a call fails.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FailRate(f64);

impl FailRate {
    /// Never fail.
    pub const NEVER: Self = Self(0.0);
    /// Fail every call.
    pub const ALWAYS: Self = Self(1.0);

    /// The probability as a plain number.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for FailRate {
    type Error = String;

    fn try_from(rate: f64) -> Result<Self, String> {
        if (0.0..=1.0).contains(&rate) {
            Ok(Self(rate))
        } else {
            Err(format!("fail rate must be within 0.0..=1.0, got {rate}"))
        }
    }
}

impl FromStr for FailRate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let rate: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("fail rate must be a number within 0.0..=1.0, got `{text}`"))?;
        Self::try_from(rate)
    }
}

impl fmt::Display for FailRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a greeter does with every call it receives.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Fixed time to wait before answering.
    pub delay: Duration,
    /// Upper bound of a uniformly random extra wait added to `delay`.
    pub jitter: Duration,
    /// Share of calls answered with `fail_code` straight away.
    pub fail_rate: FailRate,
    /// Status returned by failing calls.
    pub fail_code: Code,
    /// Accept calls but never answer them (failures still fail).
    pub hang: bool,
}

impl Default for Behaviour {
    /// A healthy, instant backend.
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            fail_rate: FailRate::NEVER,
            fail_code: Code::Unavailable,
            hang: false,
        }
    }
}

/// The fate of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Answer with a greeting after waiting this long.
    Reply { after: Duration },
    /// Answer at once with this error status.
    Fail(Code),
    /// Never answer.
    Hang,
}

impl Behaviour {
    /// Decides one call's fate. Failure is rolled first, so failing calls
    /// skip both the delay and the hang.
    pub fn plan(&self, rng: &mut impl Rng) -> Plan {
        if self.fail_rate.get() > 0.0 && rng.random_bool(self.fail_rate.get()) {
            return Plan::Fail(self.fail_code);
        }
        if self.hang {
            return Plan::Hang;
        }
        let jitter = if self.jitter.is_zero() {
            Duration::ZERO
        } else {
            self.jitter.mul_f64(rng.random_range(0.0..=1.0))
        };
        Plan::Reply {
            after: self.delay + jitter,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{rngs::StdRng, SeedableRng};

    use super::*;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn healthy_backend_replies_at_once() {
        assert_eq!(
            Behaviour::default().plan(&mut rng()),
            Plan::Reply {
                after: Duration::ZERO
            }
        );
    }

    #[test]
    fn delay_without_jitter_is_exact() {
        let behaviour = Behaviour {
            delay: Duration::from_millis(40),
            ..Behaviour::default()
        };
        assert_eq!(
            behaviour.plan(&mut rng()),
            Plan::Reply {
                after: Duration::from_millis(40)
            }
        );
    }

    #[test]
    fn jitter_stays_between_delay_and_delay_plus_jitter() {
        let behaviour = Behaviour {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(5),
            ..Behaviour::default()
        };
        let mut rng = rng();
        for _ in 0..1_000 {
            let Plan::Reply { after } = behaviour.plan(&mut rng) else {
                panic!("a behaviour without failures or hangs must reply");
            };
            assert!(after >= Duration::from_millis(10), "{after:?}");
            assert!(after <= Duration::from_millis(15), "{after:?}");
        }
    }

    #[test]
    fn fail_rate_one_always_fails_with_the_configured_code() {
        let behaviour = Behaviour {
            delay: Duration::from_secs(1),
            fail_rate: FailRate::ALWAYS,
            fail_code: Code::ResourceExhausted,
            hang: true,
            ..Behaviour::default()
        };
        let mut rng = rng();
        for _ in 0..100 {
            assert_eq!(
                behaviour.plan(&mut rng),
                Plan::Fail(Code::ResourceExhausted)
            );
        }
    }

    #[test]
    fn fail_rate_half_fails_about_half_the_calls() {
        let behaviour = Behaviour {
            fail_rate: FailRate::try_from(0.5).unwrap(),
            ..Behaviour::default()
        };
        let mut rng = rng();
        let failures = (0..10_000)
            .filter(|_| matches!(behaviour.plan(&mut rng), Plan::Fail(_)))
            .count();
        assert!((4_500..=5_500).contains(&failures), "{failures}");
    }

    #[test]
    fn hang_applies_to_calls_that_do_not_fail() {
        let behaviour = Behaviour {
            hang: true,
            ..Behaviour::default()
        };
        assert_eq!(behaviour.plan(&mut rng()), Plan::Hang);
    }

    #[test]
    fn fail_rate_accepts_only_probabilities() {
        assert_eq!("0".parse::<FailRate>(), Ok(FailRate::NEVER));
        assert_eq!("1.0".parse::<FailRate>(), Ok(FailRate::ALWAYS));
        assert_eq!("0.25".parse::<FailRate>().map(FailRate::get), Ok(0.25));
        assert!("1.5".parse::<FailRate>().is_err());
        assert!("-0.1".parse::<FailRate>().is_err());
        assert!("NaN".parse::<FailRate>().is_err());
        assert!("often".parse::<FailRate>().is_err());
    }
}
