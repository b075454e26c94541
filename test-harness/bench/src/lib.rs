//! `make bench`: real Envoy, real greeters, scenarios × balancing policies at the same
//! offered load, plus the CPU overhead of the filter; the pure parts live here, the
//! runs in the `bench` binary.
//!
//! - [`plan`]: scenarios, policies, their Envoy configs, offered load, durations.
//! - [`envoy_config`]: a policy's Envoy config with the scenario's greeters as endpoints.
//! - [`cpu`]: a process's CPU time from `/proc/<pid>/stat`.
//! - [`overhead`]: CPU time per request per round, and the median over rounds.
//! - [`summary`]: the shape of `target/bench/summary.json`.
//! - [`goals`]: the goals the filter is judged against.
//! - [`table`]: the Markdown tables `docs/benchmark.md` embeds.
//! - [`svg`]: the latency chart.
//! - [`publish`]: swapping the tables into `docs/benchmark.md`.

pub mod cpu;
pub mod envoy_config;
pub mod goals;
pub mod hostcall_costs;
pub mod overhead;
pub mod plan;
pub mod publish;
pub mod summary;
pub mod svg;
pub mod table;
