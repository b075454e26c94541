//! The root context: configuration, the tick, and a shared handle on this worker's
//! balancer for every request.

use super::abi;
use super::adapters::{follow_host_log_level, now, property_text, HostMetrics, HostStore};
use super::request::{PassThrough, Request};
use super::worker::Worker;
use crate::config::Config;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;

/// Shared-data key prefix when the host does not tell us the plugin's name.
const DEFAULT_PREFIX: &str = "ewma-balancer";

pub struct Root {
    context_id: u32,
    worker: Option<Rc<RefCell<Worker>>>,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            worker: None,
        }
    }
}

impl Context for Root {}

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
        if let Ok(mut w) = worker.try_borrow_mut() {
            w.balancer.tick(&HostStore, &mut HostMetrics, now());
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
