//! The probe's proxy-wasm contexts: each callback makes its calls and ignores what they
//! return, except to keep the compiler from dropping them.

use crate::calls::{Call, Calls};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;

/// The header `override_host` reads in the benchmark's configs.
const OVERRIDE_HEADER: &str = "x-ewma-balancer-host";

struct Shared {
    calls: Calls,
    histogram: u32,
    counter: u32,
    /// Which endpoint the next override names.
    next: Cell<usize>,
    /// Requests this VM has seen.
    requests: Cell<u64>,
}

#[derive(Default)]
struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let calls = match std::str::from_utf8(&bytes)
            .map_err(|_| "invalid wasm-probe configuration: not UTF-8".to_owned())
            .and_then(|text| Calls::parse(text).map_err(|e| e.to_string()))
        {
            Ok(calls) => calls,
            Err(error) => {
                log::error!("{error}");
                return false;
            }
        };
        let define = |kind, name| hostcalls::define_metric(kind, name).unwrap_or(0);
        self.shared = Some(Rc::new(Shared {
            histogram: define(MetricType::Histogram, "wasm_probe_histogram"),
            counter: define(MetricType::Counter, "wasm_probe_counter"),
            calls,
            next: Cell::new(0),
            requests: Cell::new(0),
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(Request { shared }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    shared: Rc<Shared>,
}

impl Request {
    fn times(&self, call: Call, mut make: impl FnMut(u32)) {
        for i in 0..self.shared.calls.count(call) {
            make(i);
        }
    }
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let n = self.shared.requests.get() + 1;
        self.shared.requests.set(n);
        if self.shared.calls.trap_at == Some(n) {
            // A runtime trap, as a panic in a filter would cause: what Envoy does next is
            // its `failure_policy`.
            core::arch::wasm32::unreachable();
        }
        self.times(Call::RequestHeader, |_| {
            black_box(hostcalls::get_map_value_bytes(
                MapType::HttpRequestHeaders,
                "content-type",
            ))
            .ok();
        });
        self.times(Call::ClusterName, |_| {
            black_box(hostcalls::get_property(vec!["xds", "cluster_name"])).ok();
        });
        self.times(Call::Clock, |_| {
            black_box(hostcalls::get_current_time()).ok();
        });
        let endpoints = &self.shared.calls.endpoints;
        self.times(Call::OverrideHeader, |_| {
            let i = self.shared.next.get();
            self.shared.next.set(i.wrapping_add(1));
            if let Some(endpoint) = endpoints.get(i % endpoints.len().max(1)) {
                let _ = hostcalls::set_map_value(
                    MapType::HttpRequestHeaders,
                    OVERRIDE_HEADER,
                    Some(endpoint),
                );
            }
        });
        self.times(Call::SetHeader, |_| {
            let _ =
                hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-wasm-probe", Some("1"));
        });
        Action::Continue
    }

    fn on_http_request_body(&mut self, _size: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            self.times(Call::BodyClock, |_| {
                black_box(hostcalls::get_current_time()).ok();
            });
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        self.times(Call::ResponseClock, |_| {
            black_box(hostcalls::get_current_time()).ok();
        });
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _trailers: usize) -> Action {
        self.times(Call::ResponseTrailer, |_| {
            black_box(hostcalls::get_map_value_bytes(
                MapType::HttpResponseTrailers,
                "grpc-status",
            ))
            .ok();
        });
        Action::Continue
    }

    fn on_log(&mut self) {
        self.times(Call::GrpcStatus, |_| {
            black_box(hostcalls::get_property(vec!["response", "grpc_status"])).ok();
        });
        self.times(Call::UpstreamAddress, |_| {
            black_box(hostcalls::get_property(vec!["upstream", "address"])).ok();
        });
        let (histogram, counter) = (self.shared.histogram, self.shared.counter);
        self.times(Call::Histogram, |i| {
            let _ = hostcalls::record_metric(histogram, 1_000 + u64::from(i));
        });
        self.times(Call::Counter, |_| {
            let _ = hostcalls::increment_metric(counter, 1);
        });
    }
}

#[allow(unsafe_code)] // the SDK's entry-point macro exports `_initialize` with `#[no_mangle]`
mod entry {
    use super::*;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        proxy_wasm::set_root_context(|_context_id| -> Box<dyn RootContext> {
            Box::new(Root::default())
        });
    }}
}
