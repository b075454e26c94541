//! What the benchmark runs: scenarios, policies, offered load and durations.

use std::time::Duration;

use e2e::{Greeter, BACKEND_PORTS};

/// How Envoy balances, by the configuration it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Policy {
    /// Envoy's round robin over the three greeters.
    RoundRobin,
    /// Envoy's least request (P2C over outstanding requests).
    LeastRequest,
    /// The ewma-balancer filter with `override_host`.
    Ewma,
    /// The same filter with the retry policy `ewma.yaml` documents switched on.
    EwmaRetry,
    /// Round robin over the scenario's healthy greeters only: the physical best.
    Oracle,
    /// A no-op Wasm filter with `override_host`: the floor of any such filter's cost.
    WasmFloor,
    /// The `wasm-probe` module making the filter's per-request host calls and nothing
    /// else: what the proxy-wasm ABI charges for them.
    Hostcalls,
}

impl Policy {
    /// The key in `summary.json` and the label in tables and charts.
    pub fn key(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::LeastRequest => "least_request",
            Self::Ewma => "ewma",
            Self::EwmaRetry => "ewma_retry",
            Self::Oracle => "oracle",
            Self::WasmFloor => "wasm_floor",
            Self::Hostcalls => "hostcalls",
        }
    }

    /// Its Envoy configuration, relative to the repository root. A scenario run uses a
    /// copy with the `greeter` cluster's endpoints set to [`Scenario::endpoints`].
    pub fn config(self) -> &'static str {
        match self {
            Self::RoundRobin => "envoy-configs/static/round-robin.yaml",
            Self::LeastRequest => "envoy-configs/static/least-request.yaml",
            Self::Ewma => "envoy-configs/static/ewma.yaml",
            Self::EwmaRetry => "envoy-configs/bench/ewma-retry.yaml",
            Self::Oracle => "envoy-configs/bench/oracle.yaml",
            Self::WasmFloor => "envoy-configs/bench/wasm-floor.yaml",
            Self::Hostcalls => "envoy-configs/bench/hostcalls.yaml",
        }
    }

    /// The Wasm module its configuration loads, relative to the repository root.
    pub fn wasm_module(self) -> Option<&'static str> {
        match self {
            Self::Ewma | Self::EwmaRetry => Some("target/wasm32-wasip1/release/ewma_balancer.wasm"),
            Self::WasmFloor => Some("target/wasm32-wasip1/release/wasm_floor.wasm"),
            Self::Hostcalls => Some(PROBE_MODULE),
            Self::RoundRobin | Self::LeastRequest | Self::Oracle => None,
        }
    }
}

/// The `wasm-probe` module, relative to the repository root.
pub const PROBE_MODULE: &str = "target/wasm32-wasip1/release/wasm_probe.wasm";

/// The policies of the overhead measurement, in the order they run.
pub const OVERHEAD_POLICIES: [Policy; 4] = [
    Policy::RoundRobin,
    Policy::WasmFloor,
    Policy::Hostcalls,
    Policy::Ewma,
];

/// The port of the greeter `one-slow`, `fast-fail` and `churn` make slow, failing or
/// dead.
pub const ODD_ONE_OUT: u16 = 50053;

/// The ten greeters of `many-slow`, 127.0.0.1:50051-50060.
pub const MANY_PORTS: [u16; 10] = [
    50051, 50052, 50053, 50054, 50055, 50056, 50057, 50058, 50059, 50060,
];

/// The four greeters `many-slow` makes slow, 127.0.0.1:50057-50060.
pub const MANY_SLOW_PORTS: [u16; 4] = [50057, 50058, 50059, 50060];

/// The greeters of a scenario, and what happens to the odd ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// Three equal backends.
    Equal,
    /// The third backend answers 40 ms later.
    OneSlow,
    /// The third backend answers UNAVAILABLE at once.
    FastFail,
    /// The third backend is killed a third into the run and restarted two thirds in.
    Churn,
    /// Ten backends, the last four 40 ms later.
    ManySlow,
}

impl Scenario {
    /// All scenarios, in the order they run and are shown.
    pub const ALL: [Scenario; 5] = [
        Self::Equal,
        Self::OneSlow,
        Self::FastFail,
        Self::Churn,
        Self::ManySlow,
    ];

    /// The key in `summary.json`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Equal => "equal",
            Self::OneSlow => "one-slow",
            Self::FastFail => "fast-fail",
            Self::Churn => "churn",
            Self::ManySlow => "many-slow",
        }
    }

    /// One line on what the scenario does.
    pub fn description(self) -> &'static str {
        match self {
            Self::Equal => "three equal backends",
            Self::OneSlow => "127.0.0.1:50053 answers 40 ms later",
            Self::FastFail => "127.0.0.1:50053 answers UNAVAILABLE at once",
            Self::Churn => "127.0.0.1:50053 killed at 1/3 of the run, restarted at 2/3",
            Self::ManySlow => "ten backends, 127.0.0.1:50057-50060 answer 40 ms later",
        }
    }

    /// The policies compared in this scenario.
    pub fn policies(self) -> &'static [Policy] {
        const THREE: &[Policy] = &[Policy::RoundRobin, Policy::LeastRequest, Policy::Ewma];
        const WITH_ORACLE: &[Policy] = &[
            Policy::RoundRobin,
            Policy::LeastRequest,
            Policy::Ewma,
            Policy::Oracle,
        ];
        const WITH_RETRY: &[Policy] = &[
            Policy::RoundRobin,
            Policy::LeastRequest,
            Policy::Ewma,
            Policy::EwmaRetry,
        ];
        const WITH_RETRY_AND_ORACLE: &[Policy] = &[
            Policy::RoundRobin,
            Policy::LeastRequest,
            Policy::Ewma,
            Policy::EwmaRetry,
            Policy::Oracle,
        ];
        match self {
            Self::OneSlow => WITH_RETRY_AND_ORACLE,
            Self::FastFail => WITH_RETRY,
            Self::ManySlow => WITH_ORACLE,
            Self::Equal | Self::Churn => THREE,
        }
    }

    /// The ports of the scenario's greeters, all on 127.0.0.1.
    pub fn ports(self) -> &'static [u16] {
        match self {
            Self::ManySlow => &MANY_PORTS,
            Self::Equal | Self::OneSlow | Self::FastFail | Self::Churn => &BACKEND_PORTS,
        }
    }

    /// The ports of the greeters the scenario makes slow, failing or dead.
    pub fn odd_ports(self) -> &'static [u16] {
        match self {
            Self::Equal => &[],
            Self::OneSlow | Self::FastFail | Self::Churn => &[ODD_ONE_OUT],
            Self::ManySlow => &MANY_SLOW_PORTS,
        }
    }

    /// The endpoints `policy`'s Envoy balances over in this scenario: every greeter, or
    /// for the oracle only those the scenario leaves alone.
    pub fn endpoints(self, policy: Policy) -> Vec<u16> {
        let odd = self.odd_ports();
        self.ports()
            .iter()
            .copied()
            .filter(|port| policy != Policy::Oracle || !odd.contains(port))
            .collect()
    }

    /// The greeters of this scenario.
    pub fn greeters(self) -> Vec<Greeter> {
        self.ports()
            .iter()
            .map(|&port| {
                let greeter = Greeter::on(port);
                if !self.odd_ports().contains(&port) {
                    return greeter;
                }
                match self {
                    Self::OneSlow | Self::ManySlow => greeter.delay(SLOW_BY),
                    Self::FastFail => greeter.fail_rate(1.0).fail_code("UNAVAILABLE"),
                    Self::Equal | Self::Churn => greeter,
                }
            })
            .collect()
    }
}

/// How much slower the slow backends of `one-slow` and `many-slow` are.
pub const SLOW_BY: Duration = Duration::from_millis(40);

/// Offered load and durations of a whole benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Open-loop rate of every scenario run, calls per second.
    pub qps: f64,
    /// Calls in flight at most.
    pub concurrency: usize,
    /// Envoy worker threads in the scenario runs.
    pub envoy_workers: u32,
    /// Load sent before each measured run, not counted.
    pub warm_up: Duration,
    /// Each measured scenario run.
    pub measure: Duration,
    /// Closed-loop calls in flight in the overhead runs.
    pub overhead_concurrency: usize,
    /// Envoy worker threads in the overhead runs.
    pub overhead_workers: u32,
    pub overhead_warm_up: Duration,
    pub overhead_measure: Duration,
    /// Overhead runs per policy, interleaved (round_robin, wasm_floor, hostcalls, ewma,
    /// again …)
    /// so that a busy phase of the shared machine hits every policy alike; each
    /// figure is the median over the rounds.
    pub overhead_rounds: u32,
}

impl Plan {
    /// `make bench`: about five minutes.
    pub fn full() -> Self {
        Self {
            qps: 400.0,
            concurrency: 64,
            envoy_workers: 2,
            warm_up: Duration::from_secs(2),
            measure: Duration::from_secs(10),
            overhead_concurrency: 32,
            overhead_workers: 1,
            overhead_warm_up: Duration::from_millis(500),
            overhead_measure: Duration::from_millis(2_500),
            overhead_rounds: 5,
        }
    }

    /// `BENCH_QUICK=1 make bench`: the same runs, shorter; under two minutes.
    pub fn quick() -> Self {
        Self {
            warm_up: Duration::from_millis(500),
            measure: Duration::from_secs(3),
            overhead_measure: Duration::from_millis(1_500),
            overhead_rounds: 3,
            ..Self::full()
        }
    }

    /// When, from the start of a measured churn run, the backend is killed and when it
    /// is started again.
    pub fn churn_events(&self) -> (Duration, Duration) {
        (self.measure / 3, self.measure * 2 / 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_compares_the_three_policies_with_retry_and_oracle_where_they_tell() {
        let keys = |scenario: Scenario| -> Vec<&str> {
            scenario.policies().iter().map(|p| p.key()).collect()
        };
        let three = ["round_robin", "least_request", "ewma"];
        assert_eq!(keys(Scenario::Equal), three);
        assert_eq!(keys(Scenario::Churn), three);
        assert_eq!(
            keys(Scenario::OneSlow),
            [
                "round_robin",
                "least_request",
                "ewma",
                "ewma_retry",
                "oracle"
            ]
        );
        assert_eq!(
            keys(Scenario::FastFail),
            ["round_robin", "least_request", "ewma", "ewma_retry"]
        );
        assert_eq!(
            keys(Scenario::ManySlow),
            ["round_robin", "least_request", "ewma", "oracle"]
        );
    }

    #[test]
    fn only_the_third_greeter_is_odd() {
        let healthy = Greeter::on(50051);
        let one_slow = Scenario::OneSlow.greeters();
        assert_eq!(one_slow.len(), 3);
        assert_eq!(one_slow[0], healthy);
        assert_eq!(
            one_slow[2],
            Greeter::on(50053).delay(Duration::from_millis(40))
        );
        let fast_fail = Scenario::FastFail.greeters();
        assert_eq!(
            fast_fail[2],
            Greeter::on(50053).fail_rate(1.0).fail_code("UNAVAILABLE")
        );
        assert_eq!(Scenario::Churn.greeters()[2], Greeter::on(50053));
        assert_eq!(Scenario::Equal.greeters()[2], Greeter::on(50053));
    }

    #[test]
    fn many_slow_has_ten_greeters_and_the_last_four_are_slow() {
        let greeters = Scenario::ManySlow.greeters();
        let ports: Vec<u16> = greeters.iter().map(Greeter::port).collect();
        assert_eq!(ports, (50051..=50060).collect::<Vec<u16>>());
        for greeter in &greeters[..6] {
            assert_eq!(*greeter, Greeter::on(greeter.port()));
        }
        for greeter in &greeters[6..] {
            assert_eq!(
                *greeter,
                Greeter::on(greeter.port()).delay(Duration::from_millis(40))
            );
        }
    }

    #[test]
    fn the_oracle_balances_over_the_healthy_greeters_only() {
        assert_eq!(Scenario::OneSlow.endpoints(Policy::Oracle), [50051, 50052]);
        assert_eq!(
            Scenario::OneSlow.endpoints(Policy::Ewma),
            [50051, 50052, 50053]
        );
        assert_eq!(
            Scenario::ManySlow.endpoints(Policy::Oracle),
            [50051, 50052, 50053, 50054, 50055, 50056]
        );
        assert_eq!(
            Scenario::ManySlow.endpoints(Policy::RoundRobin),
            (50051..=50060).collect::<Vec<u16>>()
        );
        assert_eq!(
            Scenario::Equal.endpoints(Policy::Oracle),
            [50051, 50052, 50053]
        );
    }

    #[test]
    fn churn_kills_at_a_third_and_restarts_at_two_thirds() {
        assert_eq!(
            Plan::full().churn_events(),
            (
                Duration::from_nanos(3_333_333_333),
                Duration::from_nanos(6_666_666_666)
            )
        );
        assert_eq!(
            Plan::quick().churn_events(),
            (Duration::from_secs(1), Duration::from_secs(2))
        );
    }

    #[test]
    fn quick_and_full_offer_the_same_load() {
        let (full, quick) = (Plan::full(), Plan::quick());
        assert_eq!((quick.qps, quick.concurrency), (full.qps, full.concurrency));
        assert!(quick.measure < full.measure);
    }
}
