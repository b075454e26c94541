//! # wasm-floor
//!
//! A proxy-wasm HTTP filter that does nothing per request. Envoy still creates an HTTP
//! context for every request and calls into the V8 VM for each of its callbacks (request
//! headers, response headers, trailers, log, done, delete), so running this module
//! measures the fixed cost of *any* Wasm filter. The benchmark (`make bench`) loads it
//! in front of a cluster with the `override_host` policy (`envoy-configs/bench/wasm-floor.yaml`):
//! that is the unavoidable bill of a filter built like ewma-balancer, against which the
//! balancing logic's own cost is judged.

#![deny(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext};

/// One request's context: every callback keeps the trait's default (continue).
struct NoOp;

impl Context for NoOp {}

impl HttpContext for NoOp {}

#[allow(unsafe_code)] // the SDK's entry-point macro exports `_initialize` with `#[no_mangle]`
mod entry {
    use super::NoOp;
    use proxy_wasm::traits::HttpContext;

    proxy_wasm::main! {{
        proxy_wasm::set_http_context(|_context_id, _root_context_id| -> Box<dyn HttpContext> {
            Box::new(NoOp)
        });
    }}
}
