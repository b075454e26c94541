//! `make simulate`: a mesh on a fake clock. P proxies — each an Envoy with W workers
//! running the real `ewma_balancer.wasm` in the wasmtime proxy-wasm host, or a reference
//! policy — send open-loop calls to E endpoints modelled as queueing stations (limited
//! capacity, exponential service time, slowdowns and pauses). Every proxy balances on
//! its own view; the stations are shared, so herding and load-following show.
//!
//! Policies: `ewma` (the filter), `round_robin` and `least_request` (Envoy's),
//! `jsq` (the physical best: global knowledge), `tower_peak_ewma` (Linkerd's balancer,
//! tower's own types on a paused tokio clock) and `contrib_peak_ewma` (a model of
//! Envoy's contrib policy). See docs/benchmark.md, "Mesh simulation".

#![forbid(unsafe_code)]

pub mod filter;
pub mod mesh;
pub mod policy;
pub mod report;
pub mod scenarios;
pub mod station;
pub mod svg;
pub mod tower_p2c;

/// Simulated time in nanoseconds from the start of a run.
pub type Nanos = u64;
