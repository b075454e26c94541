//! # wasm-probe
//!
//! A proxy-wasm HTTP filter that, on every request, makes the host calls its plugin
//! configuration names, as often as it says, and nothing else: no balancing logic, no
//! state beyond a round-robin counter. The benchmark uses it to split the filter's cost
//! into what the proxy-wasm ABI charges for the calls balancing needs and what the
//! filter's own code adds:
//!
//! * `make bench` runs it with ewma-balancer's steady-state calls per request
//!   ([`FILTER_CALLS`], `envoy-configs/bench/hostcalls.yaml`) beside the filter and the
//!   no-op `wasm-floor`;
//! * `make bench-hostcalls` runs it once per call with that call repeated, against
//!   itself with no calls, to price each call on its own.
//!
//! The configuration is a list of `call=count` items separated by spaces or commas,
//! plus `endpoints=IP:port|IP:port|…` for the `override_header` call, e.g.
//! `request_header=1 cluster_name=1 override_header=1 endpoints=127.0.0.1:50051|127.0.0.1:50052`,
//! and `trap_at=N` to make the VM trap on its Nth request (for failure-policy tests).
//! An unknown call, a count that is not a whole number up to [`MAX_COUNT`], or
//! `override_header` without endpoints is refused with one log line saying so.

#![deny(unsafe_code)]

mod calls;
#[cfg(target_arch = "wasm32")]
mod host;

pub use calls::{with_probe_calls, Call, Calls, FILTER_CALLS, MAX_COUNT};
