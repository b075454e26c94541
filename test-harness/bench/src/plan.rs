//! What the benchmark runs: scenarios, policies, offered load and durations.

use std::time::Duration;

use e2e::{Greeter, BACKEND_PORTS};

/// How the calls are balanced: by the configuration Envoy runs, or (for
/// [`Policy::TowerPeakEwma`]) by the client itself, with no Envoy in the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Policy {
    /// Envoy's round robin over the three greeters.
    RoundRobin,
    /// Envoy's least request (P2C over outstanding requests).
    LeastRequest,
    /// Envoy's least request scanning every host for the fewest outstanding requests
    /// (`selection_method: FULL_SCAN`): the best stock Envoy offers for unequal capacity.
    LeastRequestFullScan,
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
    /// No Envoy: the load generator balances itself with tower's p2c over PeakEwma
    /// (Linkerd's defaults), one HTTP/2 connection per greeter: Linkerd's algorithm on
    /// the same work without a proxy hop.
    TowerPeakEwma,
}

impl Policy {
    /// The key in `summary.json` and the label in tables and charts.
    pub fn key(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::LeastRequest => "least_request",
            Self::LeastRequestFullScan => "least_request_full_scan",
            Self::Ewma => "ewma",
            Self::EwmaRetry => "ewma_retry",
            Self::Oracle => "oracle",
            Self::WasmFloor => "wasm_floor",
            Self::Hostcalls => "hostcalls",
            Self::TowerPeakEwma => "tower_peak_ewma",
        }
    }

    /// Its Envoy configuration, relative to the repository root; `None` for a policy
    /// that runs no Envoy. A scenario run uses a copy with the `greeter` cluster's
    /// endpoints set to [`Scenario::endpoints`].
    pub fn config(self) -> Option<&'static str> {
        match self {
            Self::RoundRobin => Some("envoy-configs/static/round-robin.yaml"),
            Self::LeastRequest => Some("envoy-configs/static/least-request.yaml"),
            Self::LeastRequestFullScan => Some("envoy-configs/bench/least-request-full-scan.yaml"),
            Self::Ewma => Some("envoy-configs/static/ewma.yaml"),
            Self::EwmaRetry => Some("envoy-configs/bench/ewma-retry.yaml"),
            Self::Oracle => Some("envoy-configs/bench/oracle.yaml"),
            Self::WasmFloor => Some("envoy-configs/bench/wasm-floor.yaml"),
            Self::Hostcalls => Some("envoy-configs/bench/hostcalls.yaml"),
            Self::TowerPeakEwma => None,
        }
    }

    /// Whether the calls cross a proxy (Envoy) on their way to the greeters.
    pub fn has_proxy_hop(self) -> bool {
        self.config().is_some()
    }

    /// The Wasm module its configuration loads, relative to the repository root.
    pub fn wasm_module(self) -> Option<&'static str> {
        match self {
            Self::Ewma | Self::EwmaRetry => Some("target/wasm32-wasip1/release/ewma_balancer.wasm"),
            Self::WasmFloor => Some("target/wasm32-wasip1/release/wasm_floor.wasm"),
            Self::Hostcalls => Some(PROBE_MODULE),
            Self::RoundRobin
            | Self::LeastRequest
            | Self::LeastRequestFullScan
            | Self::Oracle
            | Self::TowerPeakEwma => None,
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
    /// Three backends of limited capacity (8, 8 and 2 calls at once, the rest queued)
    /// at 70 % of their total capacity.
    Capacity,
}

impl Scenario {
    /// All scenarios, in the order they run and are shown.
    pub const ALL: [Scenario; 6] = [
        Self::Equal,
        Self::OneSlow,
        Self::FastFail,
        Self::Churn,
        Self::ManySlow,
        Self::Capacity,
    ];

    /// The key in `summary.json`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Equal => "equal",
            Self::OneSlow => "one-slow",
            Self::FastFail => "fast-fail",
            Self::Churn => "churn",
            Self::ManySlow => "many-slow",
            Self::Capacity => "capacity",
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
            Self::Capacity => {
                "capacities 8 / 8 / 2 calls at once, 31.5 ms each, the rest queued; 70 % load"
            }
        }
    }

    /// The policies compared in this scenario: Envoy's three everywhere; the retrying
    /// filter where a backend fails or is slow; tower's balancer (Linkerd's algorithm,
    /// no proxy) where one or more backends are slow or failing; the oracle where
    /// there is a physical best to compare with.
    pub fn policies(self) -> &'static [Policy] {
        const THREE: &[Policy] = &[Policy::RoundRobin, Policy::LeastRequest, Policy::Ewma];
        const WITH_TOWER_AND_ORACLE: &[Policy] = &[
            Policy::RoundRobin,
            Policy::LeastRequest,
            Policy::Ewma,
            Policy::TowerPeakEwma,
            Policy::Oracle,
        ];
        const WITH_RETRY_AND_TOWER: &[Policy] = &[
            Policy::RoundRobin,
            Policy::LeastRequest,
            Policy::Ewma,
            Policy::EwmaRetry,
            Policy::TowerPeakEwma,
        ];
        const WITH_RETRY_TOWER_AND_ORACLE: &[Policy] = &[
            Policy::RoundRobin,
            Policy::LeastRequest,
            Policy::Ewma,
            Policy::EwmaRetry,
            Policy::TowerPeakEwma,
            Policy::Oracle,
        ];
        const CAPACITY: &[Policy] = &[
            Policy::RoundRobin,
            Policy::LeastRequest,
            Policy::LeastRequestFullScan,
            Policy::Ewma,
            Policy::TowerPeakEwma,
        ];
        match self {
            Self::OneSlow => WITH_RETRY_TOWER_AND_ORACLE,
            Self::Capacity => CAPACITY,
            Self::FastFail => WITH_RETRY_AND_TOWER,
            Self::ManySlow => WITH_TOWER_AND_ORACLE,
            Self::Equal | Self::Churn => THREE,
        }
    }

    /// The ports of the scenario's greeters, all on 127.0.0.1.
    pub fn ports(self) -> &'static [u16] {
        match self {
            Self::ManySlow => &MANY_PORTS,
            Self::Equal | Self::OneSlow | Self::FastFail | Self::Churn | Self::Capacity => {
                &BACKEND_PORTS
            }
        }
    }

    /// The ports of the greeters the scenario makes slow, failing or dead.
    pub fn odd_ports(self) -> &'static [u16] {
        match self {
            Self::Equal => &[],
            Self::OneSlow | Self::FastFail | Self::Churn | Self::Capacity => &[ODD_ONE_OUT],
            Self::ManySlow => &MANY_SLOW_PORTS,
        }
    }

    /// The endpoints `policy` balances over in this scenario (Envoy's cluster, or the
    /// client-side balancer's backends): every greeter, or for the oracle only those the
    /// scenario leaves alone.
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
                    Self::Equal | Self::Churn | Self::Capacity => greeter,
                }
            })
            .zip(self.capacities())
            .map(|(greeter, slots)| match slots {
                Some(slots) => greeter.capacity(slots).service_time(SERVICE_TIME),
                None => greeter,
            })
            .collect()
    }

    /// Each greeter's capacity (calls served at once), in port order; `None` for
    /// unlimited.
    pub fn capacities(self) -> Vec<Option<u32>> {
        match self {
            Self::Capacity => CAPACITIES.map(Some).to_vec(),
            _ => vec![None; self.ports().len()],
        }
    }

    /// The most calls the load generator keeps in flight in this scenario: the plan's
    /// bound, or in `capacity` one as large as Envoy's default circuit breaker
    /// (`max_requests` 1024), so that the queue an overloaded greeter builds is
    /// measured instead of throttling the offered load.
    pub fn concurrency(self, plan: &Plan) -> usize {
        match self {
            Self::Capacity => plan.concurrency.max(CAPACITY_CONCURRENCY),
            _ => plan.concurrency,
        }
    }
}

/// The capacities of `capacity`'s greeters, 127.0.0.1:50051-50053: calls served at once.
pub const CAPACITIES: [u32; 3] = [8, 8, 2];

/// Each call's work at `capacity`'s greeters, holding one slot: 31.5 ms makes the
/// bench's 400 calls/s 70 % of the 18 slots' 571 calls/s.
pub const SERVICE_TIME: Duration = Duration::from_micros(31_500);

/// The in-flight bound of the `capacity` runs (see [`Scenario::concurrency`]).
pub const CAPACITY_CONCURRENCY: usize = 1024;

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
    /// `make bench`: about seven minutes.
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

    /// `BENCH_QUICK=1 make bench`: the same runs, shorter; under three minutes.
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
    fn every_scenario_compares_the_three_policies_with_retry_tower_and_oracle_where_they_tell() {
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
                "tower_peak_ewma",
                "oracle"
            ]
        );
        assert_eq!(
            keys(Scenario::FastFail),
            [
                "round_robin",
                "least_request",
                "ewma",
                "ewma_retry",
                "tower_peak_ewma"
            ]
        );
        assert_eq!(
            keys(Scenario::ManySlow),
            [
                "round_robin",
                "least_request",
                "ewma",
                "tower_peak_ewma",
                "oracle"
            ]
        );
        assert_eq!(
            keys(Scenario::Capacity),
            [
                "round_robin",
                "least_request",
                "least_request_full_scan",
                "ewma",
                "tower_peak_ewma"
            ]
        );
    }

    #[test]
    fn only_tower_peak_ewma_runs_without_envoy_or_a_module() {
        assert_eq!(Policy::TowerPeakEwma.config(), None);
        assert_eq!(Policy::TowerPeakEwma.wasm_module(), None);
        assert!(!Policy::TowerPeakEwma.has_proxy_hop());
        for policy in [
            Policy::RoundRobin,
            Policy::LeastRequest,
            Policy::Ewma,
            Policy::EwmaRetry,
            Policy::Oracle,
            Policy::WasmFloor,
            Policy::Hostcalls,
        ] {
            assert!(policy.has_proxy_hop(), "{}", policy.key());
        }
        assert_eq!(
            Scenario::ManySlow.endpoints(Policy::TowerPeakEwma),
            (50051..=50060).collect::<Vec<u16>>()
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

    #[test]
    fn capacity_greeters_serve_8_8_and_2_calls_at_once_for_31_5_ms_each() {
        let service = Duration::from_micros(31_500);
        assert_eq!(
            Scenario::Capacity.greeters(),
            [
                Greeter::on(50051).capacity(8).service_time(service),
                Greeter::on(50052).capacity(8).service_time(service),
                Greeter::on(50053).capacity(2).service_time(service),
            ]
        );
        assert_eq!(Scenario::Capacity.odd_ports(), [50053]);
        assert_eq!(
            Scenario::OneSlow.capacities(),
            [None, None, None],
            "other scenarios' greeters have unlimited capacity"
        );
    }

    #[test]
    fn capacity_offers_70_percent_of_the_total_capacity() {
        let slots: u32 = CAPACITIES.iter().sum();
        let capacity_per_s = f64::from(slots) / SERVICE_TIME.as_secs_f64();
        let utilisation = Plan::full().qps / capacity_per_s;
        assert!((utilisation - 0.7).abs() < 1e-9, "{utilisation}");
    }

    #[test]
    fn only_capacity_lifts_the_in_flight_bound() {
        let plan = Plan::full();
        assert_eq!(Scenario::Capacity.concurrency(&plan), 1024);
        assert_eq!(Scenario::OneSlow.concurrency(&plan), 64);
        assert_eq!(Scenario::ManySlow.concurrency(&plan), 64);
    }

    #[test]
    fn least_request_full_scan_has_its_own_config_and_no_module() {
        assert_eq!(
            Policy::LeastRequestFullScan.config(),
            Some("envoy-configs/bench/least-request-full-scan.yaml")
        );
        assert_eq!(Policy::LeastRequestFullScan.wasm_module(), None);
        assert!(Policy::LeastRequestFullScan.has_proxy_hop());
    }
}
