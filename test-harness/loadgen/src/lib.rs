//! Load for the greeter, through Envoy or straight at greeters:
//!
//! - [`closed`] and [`report`]: a fixed number of calls kept `concurrency` in flight over
//!   a chosen number of HTTP/2 connections, reporting calls per backend, failures per
//!   gRPC code and latency percentiles (the `greeter-client` binary, and the e2e tests);
//! - [`client_lb`] and [`dns_round_robin`]: the client's `pick_first` / `round_robin`
//!   policies; round robin over every address a name resolves to, re-resolved
//!   periodically (gRPC's policy over a headless Service);
//! - [`open`]: open-loop load at a fixed rate, latency counted from the intended send
//!   time, tallied per interval with HDR histograms (the `loadgen` binary, the bench);
//! - [`tower_peak_ewma`]: Linkerd's balancer client-side (tower's p2c over PeakEwma, one
//!   connection per greeter), a target of [`open`] runs;
//! - [`reset_flood`]: a hostile HTTP/2 client that resets its own streams;
//! - [`header`]: `name: value` metadata from the command line.

#![forbid(unsafe_code)]

// The greeter's protocol, under the names the modules use.
use greeter::{greeting, grpc_code, pb};

pub mod client_lb;
pub mod closed;
pub mod dns_round_robin;
pub mod header;
pub mod open;
pub mod report;
pub mod reset_flood;
pub mod tower_peak_ewma;
