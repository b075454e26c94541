//! The root context: configuration, the tick, and a shared handle on this worker's
//! balancer for every request.

use super::abi;
use super::adapters::{follow_host_log_level, now, property_text, HostMetrics, HostStore};
use super::request::{PassThrough, Request};
use super::worker::Worker;
use crate::config::Config;
use crate::membership::MAX_ANSWER_BYTES;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Shared-data key prefix when the host does not tell us the plugin's name.
const DEFAULT_PREFIX: &str = "ewma-balancer";

pub struct Root {
    context_id: u32,
    worker: Option<Rc<RefCell<Worker>>>,
    /// The token of the membership request in flight.
    fetch_token: Option<u32>,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            worker: None,
            fetch_token: None,
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if self.fetch_token != Some(token_id) {
            return;
        }
        self.fetch_token = None;
        let Some(worker) = &self.worker else { return };
        let Ok(mut w) = worker.try_borrow_mut() else {
            return;
        };
        // No `:status`: Envoy gives none when the call failed (reset, timeout).
        let status = abi::header(abi::HTTP_CALL_RESPONSE_HEADERS, ":status")
            .ok()
            .flatten()
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u32>().ok());
        // An answer over the bound is not even read: the core refuses it by its size.
        let body = if body_size > MAX_ANSWER_BYTES {
            Vec::new()
        } else {
            abi::buffer(abi::HTTP_CALL_RESPONSE_BODY)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        w.balancer
            .membership_answer(&HostStore, status, body_size, &body, now());
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        follow_host_log_level();
        let bytes = abi::buffer(abi::PLUGIN_CONFIGURATION).ok().flatten();
        let config = match Config::parse(bytes.as_deref()) {
            Ok(config) => config,
            Err(e) => {
                log::error!("{e}");
                return false;
            }
        };
        let prefix = property_text(b"plugin_name").unwrap_or_else(|| DEFAULT_PREFIX.into());
        log::info!("configured: plugin={prefix} {}", config.describe());
        let refresh_ms = u32::try_from(config.refresh_interval / 1_000_000).unwrap_or(u32::MAX);
        let seed = now() ^ (u64::from(self.context_id) << 32);
        self.worker = Some(Rc::new(RefCell::new(Worker::new(config, &prefix, seed))));
        let _ = abi::set_tick_period_ms(refresh_ms);
        true
    }

    fn on_tick(&mut self) {
        let Some(worker) = &self.worker else { return };
        let Ok(mut w) = worker.try_borrow_mut() else {
            return;
        };
        let Some(request) = w.balancer.tick(&HostStore, &mut HostMetrics, now()) else {
            return;
        };
        // The SDK's dispatch registers the call, so that its answer reaches
        // `on_http_call_response` (an unregistered token would make the SDK panic).
        // Envoy answers BadArgument for a cluster that does not exist.
        let sent = proxy_wasm::hostcalls::dispatch_http_call(
            &request.cluster,
            vec![
                (":method", "GET"),
                (":path", &request.path),
                (":authority", "envoy-admin"),
            ],
            None,
            vec![],
            Duration::from_millis(u64::from(request.timeout_ms)),
        );
        match sent {
            Ok(token) => self.fetch_token = Some(token),
            Err(_) => w.balancer.membership_cannot_send(),
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match self.worker.clone() {
            Some(worker) => Box::new(Request::new(worker)),
            None => Box::new(PassThrough),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
