//! The numbers the balancing math runs on, in the one shape it uses them: built once
//! from the validated [`Config`] (durations in nanoseconds as `f64`, because they only
//! ever divide or scale latencies), small and `Copy`, as Linkerd's `ewma` and `p2c`
//! configs are. `decay` goes from the plugin JSON (`"decay": "2s"`) through
//! `Config::decay` (u64 ns) to [`Tuning::decay_ns`] and from there, unchanged, to every
//! `exp(-elapsed / decay)` of the estimate.

use crate::config::Config;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tuning {
    /// Peak-EWMA decay (`decay`).
    pub decay_ns: f64,
    /// Failure score decay (`failureDecay`).
    pub failure_decay_ns: f64,
    /// What a failure score of 1 costs, as a latency (`failurePenalty`).
    pub failure_penalty_ns: f64,
    /// The estimate of an endpoint with no sample yet (`defaultRtt`).
    pub default_rtt_ns: f64,
}

impl From<&Config> for Tuning {
    fn from(config: &Config) -> Self {
        Self {
            decay_ns: config.decay as f64,
            failure_decay_ns: config.failure_decay as f64,
            failure_penalty_ns: config.failure_penalty as f64,
            default_rtt_ns: config.default_rtt as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_the_configs_durations_in_nanoseconds() {
        let t = Tuning::from(&Config::default());
        assert_eq!(
            t,
            Tuning {
                decay_ns: 2e9,
                failure_decay_ns: 1e9,
                failure_penalty_ns: 1e9,
                default_rtt_ns: 30e6,
            }
        );
    }
}
