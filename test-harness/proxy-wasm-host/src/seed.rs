//! Writing endpoint state into shared data directly, as other workers would have left
//! it: lets a test or the fuel meter start from a cluster of N known endpoints without
//! discovering them one exploration at a time.

use ewma_balancer::index::ClusterIndex;
use ewma_balancer::record::EndpointRecord;
use ewma_balancer::store::{index_key, record_key};

use super::env::HostEnv;

/// Registers `addrs` in `cluster` with a latency estimate of `latency_ns` each.
pub fn seed_endpoints(
    env: &HostEnv,
    prefix: &str,
    cluster: &str,
    addrs: &[String],
    latency_ns: f64,
    now: u64,
) {
    let mut index = ClusterIndex::default();
    let mut shared = env.shared();
    for addr in addrs {
        if let Some(slot) = index.insert(addr, u16::MAX) {
            let record = EndpointRecord::new(addr, latency_ns, now);
            let _ = shared.set(&record_key(prefix, cluster, slot), &record.encode(), 0);
        }
    }
    let _ = shared.set(&index_key(prefix, cluster), &index.encode(), 0);
}

/// The endpoint records of `cluster` as they stand in shared data.
pub fn endpoint_records(env: &HostEnv, prefix: &str, cluster: &str) -> Vec<EndpointRecord> {
    let shared = env.shared();
    let Some(index) = shared
        .get(&index_key(prefix, cluster))
        .and_then(|(bytes, _)| ClusterIndex::decode(bytes, u16::MAX).ok())
    else {
        return Vec::new();
    };
    index
        .entries
        .iter()
        .filter_map(|(slot, _)| shared.get(&record_key(prefix, cluster, *slot)))
        .filter_map(|(bytes, _)| EndpointRecord::decode(bytes).ok())
        .collect()
}
