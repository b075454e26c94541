//! What every request of one Envoy worker shares: its balancer and the few settings the
//! request path reads. The root context makes it; each request holds a handle on it.

use crate::balancer::Balancer;
use crate::config::Config;

pub struct Worker {
    pub balancer: Balancer,
    pub header: String,
    /// The override header's value of the request being picked (reused, so a pick
    /// allocates nothing).
    pub value: String,
    pub balance_all_http: bool,
}

impl Worker {
    pub fn new(config: Config, prefix: &str, seed: u64) -> Self {
        Self {
            header: config.override_header.clone(),
            value: String::with_capacity(96),
            balance_all_http: config.balance_all_http,
            balancer: Balancer::new(config, prefix, seed),
        }
    }
}
