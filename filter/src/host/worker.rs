//! What every request of one Envoy worker shares: its balancer and the few settings the
//! request path reads. The root context makes it; each request holds a handle on it.

use crate::balancer::Balancer;
use crate::config::Config;

pub struct Worker {
    pub balancer: Balancer,
    pub header: String,
    pub balance_all_http: bool,
}

impl Worker {
    pub fn new(config: Config, prefix: &str, seed: u64) -> Self {
        Self {
            header: config.override_header.clone(),
            balance_all_http: config.balance_all_http,
            balancer: Balancer::new(config, prefix, seed),
        }
    }
}
