//! Test harness for the EWMA gRPC balancer.
//!
//! - [`server`] and [`greeter`]: a `helloworld.Greeter` backend whose
//!   [`behaviour`] (delay, jitter, failures, hangs) is configurable, served by
//!   the `greeter-server` binary.
//! - [`load`] and [`report`]: a load generator over a chosen number of HTTP/2
//!   connections, reporting calls per backend, failures per gRPC code and
//!   latency percentiles; the `greeter-client` binary prints it.
//! - [`client_lb`] and [`dns_round_robin`]: the client's `pick_first` /
//!   `round_robin` policies; round robin over every address a name resolves
//!   to, re-resolved periodically (gRPC's policy over a headless Service).
//! - [`loadgen`]: an open-loop load generator (fixed rate, latency from the
//!   intended send time), behind the `loadgen` binary and the `bench` binary.
//! - [`bench`]: scenarios, CPU accounting, summary, tables and chart of
//!   `make bench` (the `bench` binary runs them).
//! - [`stat`]: the filter's per-endpoint metrics from Envoy's admin
//!   `/stats/prometheus` over a window, behind the `ewma-stat` binary.
//! - [`support`]: builders for greeter and Envoy processes used by
//!   end-to-end tests.

#![forbid(unsafe_code)]

/// Code generated from `proto/helloworld.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("helloworld");
}

pub mod behaviour;
pub mod bench;
pub mod client_lb;
pub mod dns_round_robin;
pub mod greeter;
pub mod greeting;
pub mod grpc_code;
pub mod header;
pub mod load;
pub mod loadgen;
pub mod report;
pub mod reset_flood;
pub mod server;
pub mod stat;
pub mod support;
pub mod wasm_host;
