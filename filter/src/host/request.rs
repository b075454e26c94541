//! One HTTP request: strip any client-supplied override header, pick, time the response,
//! report the outcome.

use super::adapters::{
    now, property_int, property_text, request_header, set_request_header, HostMetrics, HostStore,
};
use super::root::Worker;
use crate::balancer::{Completion, Decision};
use crate::outcome::{Outcome, ResponseFacts};
use crate::Nanos;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;

pub struct Request {
    worker: Rc<RefCell<Worker>>,
    /// Set once the request is balanced (or observed for learning).
    tracked: Option<Tracked>,
}

struct Tracked {
    cluster: String,
    /// Whether `on_log` must read `upstream.address` (see [`reads_upstream_address`]).
    read_actual: bool,
    chosen: Option<Rc<str>>,
    grpc: bool,
    started: Nanos,
    first_response: Option<Nanos>,
}

impl Request {
    pub fn new(worker: Rc<RefCell<Worker>>) -> Self {
        Self {
            worker,
            tracked: None,
        }
    }
}

/// `upstream.address` (a dear property read) is read when the filter named no endpoint
/// (the fallback chose, and the filter learns from it), when the request failed (the
/// endpoint may be gone), and when the balancer asks for a check (see
/// `balancer::CHECK_EVERY`). Otherwise the outcome is credited to the endpoint named.
fn reads_upstream_address(fallback_or_check: bool, outcome: Outcome) -> bool {
    fallback_or_check || !outcome.is_success()
}

fn is_grpc(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|ct| ct.starts_with(b"application/grpc"))
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Ok(mut w) = self.worker.try_borrow_mut() else {
            return Action::Continue;
        };
        let w = &mut *w;
        let grpc = is_grpc(request_header("content-type").as_deref());
        let cluster = if grpc || w.balance_all_http {
            property_text(&["xds", "cluster_name"])
        } else {
            None
        };
        let Some(cluster) = cluster else {
            // Not ours to balance; still, a client must never steer.
            set_request_header(&w.header, None);
            return Action::Continue;
        };
        let started = now();
        let chosen = match w
            .balancer
            .pick(&HostStore, &mut HostMetrics, &cluster, started)
        {
            Decision::Override(addr) => {
                set_request_header(&w.header, Some(&addr));
                Some(addr)
            }
            Decision::Fallback(_) => {
                set_request_header(&w.header, None);
                None
            }
        };
        self.tracked = Some(Tracked {
            read_actual: chosen.is_none() || w.balancer.check_last_pick(),
            cluster,
            chosen,
            grpc,
            started,
            first_response: None,
        });
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
        // The time of the first response byte doubles as "now": one clock read saved.
        let finished = t.first_response.unwrap_or_else(now);
        let latency = finished.saturating_sub(t.started);
        let grpc_status =
            property_int(&["response", "grpc_status"]).and_then(|c| u32::try_from(c).ok());
        // With a gRPC status the HTTP code adds nothing (Envoy answers gRPC with 200).
        let http_status = match grpc_status {
            Some(_) => None,
            None => property_int(&["response", "code"])
                .and_then(|c| u32::try_from(c).ok())
                .filter(|c| *c > 0),
        };
        let facts = ResponseFacts {
            http_status,
            grpc_status,
            grpc: t.grpc,
        };
        let outcome = Outcome::judge(facts, &w.balancer.config().failure_grpc_codes);
        let actual = if reads_upstream_address(t.read_actual, outcome) {
            property_text(&["upstream", "address"])
        } else {
            None
        };
        w.balancer.complete(
            &HostStore,
            &mut HostMetrics,
            &Completion {
                cluster: &t.cluster,
                chosen: t.chosen.as_deref(),
                actual: actual.as_deref(),
                latency,
                outcome,
                now: finished,
            },
        );
    }
}
