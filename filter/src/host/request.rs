//! One HTTP request: strip any client-supplied override header, pick, note when the
//! request was whole and when the response began, and report the end to the core,
//! which asks for the facts it needs to judge it.

use super::adapters::{
    last_now, now, property_bytes, property_int, property_text, request_header, set_request_header,
    HostMetrics, HostStore,
};
use super::worker::Worker;
use crate::balancer::{Completion, Decision, Pick};
use crate::facts::CompletionFacts;
use crate::observation::Timing;
use crate::outcome::{is_grpc_content_type, parse_grpc_timeout, ResponseFacts};
use crate::Nanos;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;

/// A request of a worker that has no configuration: it does nothing. (The SDK panics
/// if a root context returns no HTTP context at all.)
pub struct PassThrough;

impl Context for PassThrough {}
impl HttpContext for PassThrough {}

pub struct Request {
    worker: Rc<RefCell<Worker>>,
    /// Set once the request is balanced (or observed for learning).
    tracked: Option<Tracked>,
}

struct Tracked {
    cluster: String,
    pick: Option<Pick>,
    grpc: bool,
    started: Nanos,
    request_done: Option<Nanos>,
    first_response: Option<Nanos>,
}

impl Request {
    pub fn new(worker: Rc<RefCell<Worker>>) -> Self {
        Self {
            worker,
            tracked: None,
        }
    }

    /// The request is whole (end of stream seen on headers, body or trailers).
    fn request_done(&mut self, at: impl FnOnce() -> Nanos) {
        if let Some(t) = &mut self.tracked {
            if t.request_done.is_none() {
                t.request_done = Some(at());
            }
        }
    }
}

/// Serialized property paths (parts separated by NUL).
const CLUSTER_NAME: &[u8] = b"xds\0cluster_name";
const GRPC_STATUS: &[u8] = b"response\0grpc_status";
const RESPONSE_CODE: &[u8] = b"response\0code";
const RESPONSE_FLAGS: &[u8] = b"response\0flags";
const CODE_DETAILS: &[u8] = b"response\0code_details";
const UPSTREAM_ADDRESS: &[u8] = b"upstream\0address";
const ATTEMPTS: &[u8] = b"upstream\0request_attempt_count";

/// The facts of a completed request, each read from Envoy when the core asks.
struct HostFacts;

impl ResponseFacts for HostFacts {
    fn grpc_status(&mut self) -> Option<u32> {
        property_int(GRPC_STATUS).and_then(|c| u32::try_from(c).ok())
    }

    fn http_status(&mut self) -> Option<u32> {
        property_int(RESPONSE_CODE)
            .and_then(|c| u32::try_from(c).ok())
            .filter(|c| *c > 0)
    }

    fn flags(&mut self) -> Option<u64> {
        property_int(RESPONSE_FLAGS).and_then(|f| u64::try_from(f).ok())
    }

    fn details_are(&mut self, details: &str) -> bool {
        property_bytes(CODE_DETAILS).is_some_and(|d| d == details.as_bytes())
    }

    fn grpc_timeout(&mut self) -> Option<Nanos> {
        parse_grpc_timeout(&request_header("grpc-timeout")?)
    }
}

impl CompletionFacts for HostFacts {
    fn upstream_address(&mut self) -> Option<String> {
        property_text(UPSTREAM_ADDRESS)
    }

    fn attempts(&mut self) -> Option<u64> {
        property_int(ATTEMPTS).and_then(|n| u64::try_from(n).ok())
    }
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Ok(mut w) = self.worker.try_borrow_mut() else {
            return Action::Continue;
        };
        let w = &mut *w;
        let grpc = request_header("content-type").is_some_and(|ct| is_grpc_content_type(&ct));
        let cluster = if grpc || w.balance_all_http {
            property_text(CLUSTER_NAME)
        } else {
            None
        };
        let Some(cluster) = cluster else {
            // Not ours to balance; still, a client must never steer.
            set_request_header(&w.header, None);
            return Action::Continue;
        };
        // A request with a body is timed from its end (read then); its pick takes the
        // worker's last clock reading, which saves a host call on every request.
        let started = if end_of_stream { now() } else { last_now() };
        let pick = match w
            .balancer
            .pick(&HostStore, &mut HostMetrics, &cluster, started)
        {
            Decision::Override(pick) => {
                // `winner,runner-up`: override_host takes them in order, one per attempt.
                let value = match &pick.runner_up {
                    Some(runner_up) => {
                        w.value.clear();
                        w.value.push_str(&pick.addr);
                        w.value.push(',');
                        w.value.push_str(runner_up);
                        w.value.as_str()
                    }
                    None => &pick.addr,
                };
                set_request_header(&w.header, Some(value));
                Some(pick)
            }
            Decision::Fallback(_) => {
                set_request_header(&w.header, None);
                None
            }
        };
        self.tracked = Some(Tracked {
            cluster,
            pick,
            grpc,
            started,
            request_done: end_of_stream.then_some(started),
            first_response: None,
        });
        Action::Continue
    }

    fn on_http_request_body(&mut self, _body_size: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            self.request_done(now);
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.request_done(now);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(t) = &mut self.tracked {
            t.first_response.get_or_insert_with(now);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some(t) = self.tracked.take() else { return };
        let Ok(mut w) = self.worker.try_borrow_mut() else {
            return;
        };
        // With a response, the time of its first byte doubles as "now": one clock read
        // saved on every answered request.
        let finished = t.first_response.unwrap_or_else(now);
        w.balancer.complete(
            &HostStore,
            &mut HostMetrics,
            &mut HostFacts,
            &Completion {
                cluster: &t.cluster,
                pick: t.pick.as_ref(),
                grpc: t.grpc,
                timing: Timing {
                    started: t.started,
                    request_done: t.request_done,
                    first_response: t.first_response,
                    finished,
                },
            },
        );
    }
}
