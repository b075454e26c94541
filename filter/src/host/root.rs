//! The root context: configuration, the tick, and a shared handle on this worker's
//! balancer for every request.

use super::adapters::{now, property_text, HostMetrics, HostStore};
use super::request::Request;
use crate::balancer::Balancer;
use crate::config::Config;
use crate::duration::format_duration;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Shared-data key prefix when the host does not tell us the plugin's name.
const DEFAULT_PREFIX: &str = "ewma-balancer";

/// What every request of this worker shares.
pub struct Worker {
    pub balancer: Balancer,
    pub header: String,
    pub balance_all_http: bool,
}

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
        if let Ok(level) = hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten();
        let config = match Config::parse(bytes.as_deref()) {
            Ok(config) => config,
            Err(e) => {
                log::error!("{e}");
                return false;
            }
        };
        let prefix = property_text(&["plugin_name"]).unwrap_or_else(|| DEFAULT_PREFIX.into());
        let refresh = Duration::from_nanos(config.refresh_interval);
        log::info!(
            "configured: plugin={prefix} header={} decay={} defaultRtt={} failurePenalty={} failureDecay={} exploreRatio={} refreshInterval={}",
            config.override_header,
            format_duration(config.decay),
            format_duration(config.default_rtt),
            format_duration(config.failure_penalty),
            format_duration(config.failure_decay),
            config.explore_ratio,
            format_duration(config.refresh_interval),
        );
        let seed = now() ^ (u64::from(self.context_id) << 32);
        let worker = Worker {
            header: config.override_header.clone(),
            balance_all_http: config.balance_all_http,
            balancer: Balancer::new(config, &prefix, seed),
        };
        self.worker = Some(Rc::new(RefCell::new(worker)));
        let _ = hostcalls::set_tick_period(refresh);
        true
    }

    fn on_tick(&mut self) {
        let Some(worker) = &self.worker else { return };
        if let Ok(mut w) = worker.try_borrow_mut() {
            w.balancer.tick(&HostStore, &mut HostMetrics, now());
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = self.worker.clone()?;
        Some(Box::new(Request::new(worker)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
