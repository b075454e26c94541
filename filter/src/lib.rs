//! # ewma-balancer
//!
//! Latency-aware load balancing for gRPC in Envoy and Istio, as a proxy-wasm HTTP filter.
//!
//! Each endpoint of a cluster is weighed by a Peak-EWMA of its latency times its
//! outstanding requests (Linkerd's and Finagle's `PeakEwma`), made failure-aware; for
//! each request the filter samples two endpoints and names the cheaper one in a request
//! header that the cluster's `envoy.load_balancing_policies.override_host` policy obeys
//! (power of two choices). Endpoints are learned from `upstream.address` of completed
//! requests, so no control-plane access is needed.
//!
//! The crate is a pure core (everything but `host`) that imports nothing from proxy-wasm
//! and takes time as an argument, and a thin host adapter (`host`, built for wasm32 only)
//! that turns proxy-wasm callbacks into calls on [`balancer::Balancer`].

#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_possible_wrap
    )
)]

/// Nanoseconds on the host's clock (wall clock in Envoy: it may jump, so all arithmetic
/// on it saturates).
pub type Nanos = u64;

pub mod balancer;
pub mod cas;
pub mod choice;
pub mod cluster_view;
pub mod config;
pub mod cost;
pub mod decay;
pub mod duration;
pub mod facts;
pub mod failure_score;
pub mod fetcher;
pub mod fx_map;
pub mod index;
pub mod invalid_configs;
pub mod lease;
pub mod membership;
pub mod metrics;
pub mod observation;
pub mod outcome;
pub mod p2c;
pub mod peak_ewma;
pub mod record;
pub mod rng;
pub mod store;
pub mod tuning;

#[cfg(target_arch = "wasm32")]
mod host;
