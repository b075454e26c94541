//! Per-endpoint metrics: names, kinds, and the host's metric API as the core sees it.
//!
//! Envoy has no labels on Wasm metrics; labels come from `stats_config.stats_tags`
//! regexes that cut `<tag>=.=<value>;.;` segments out of the name (the convention Istio's
//! bootstrap already extracts). Tags come first and the metric name last, so that what is
//! left after extraction is exactly the metric name: `ewma_balancer_requests_total` for
//! cluster `greeter` and endpoint `127.0.0.1:50051` is defined as
//! `cluster=.=greeter;.;endpoint=.=127.0.0.1:50051;.;ewma_balancer_requests_total` and
//! scraped as `ewma_balancer_requests_total{cluster="greeter",endpoint="127.0.0.1:50051"}`.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// The host's metric calls. Ids come from `define`; a failed define yields `None` and the
/// metric is simply not emitted.
pub trait Metrics {
    fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32>;
    fn increment(&mut self, id: u32, delta: u64);
    /// Records a histogram sample, or sets a gauge.
    fn record(&mut self, id: u32, value: u64);
}

pub const REQUESTS: &str = "ewma_balancer_requests_total";
pub const FAILURES: &str = "ewma_balancer_failures_total";
pub const LATENCY: &str = "ewma_balancer_latency_us";
pub const EWMA: &str = "ewma_balancer_ewma_us";
pub const PENDING: &str = "ewma_balancer_pending";
pub const DECISIONS: &str = "ewma_balancer_decisions_total";
/// Requests to clusters beyond a worker's `MAX_CLUSTERS` (no labels).
pub const CLUSTERS_OVER_LIMIT: &str = "ewma_balancer_clusters_over_limit_total";

/// The metric name carrying `cluster` and `endpoint` tags.
pub fn endpoint_metric_name(metric: &str, cluster: &str, endpoint: &str) -> String {
    format!(
        "cluster=.={};.;endpoint=.={};.;{metric}",
        tag_value(cluster),
        tag_value(endpoint)
    )
}

/// The metric name carrying `cluster` and `decision` tags.
pub fn decision_metric_name(cluster: &str, decision: &str) -> String {
    format!(
        "cluster=.={};.;decision=.={decision};.;{DECISIONS}",
        tag_value(cluster)
    )
}

/// Tag values end at `;.;`; a value must not contain `;` or the extraction would cut it
/// short, nor whitespace, which Envoy's stat names do not allow.
fn tag_value(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c == ';' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The ids of one endpoint's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointMetricIds {
    pub requests: Option<u32>,
    pub failures: Option<u32>,
    pub latency: Option<u32>,
    pub ewma: Option<u32>,
    pub pending: Option<u32>,
}

impl EndpointMetricIds {
    pub fn define(metrics: &mut dyn Metrics, cluster: &str, endpoint: &str) -> Self {
        let mut def =
            |kind, metric| metrics.define(kind, &endpoint_metric_name(metric, cluster, endpoint));
        Self {
            requests: def(MetricKind::Counter, REQUESTS),
            failures: def(MetricKind::Counter, FAILURES),
            latency: def(MetricKind::Histogram, LATENCY),
            ewma: def(MetricKind::Gauge, EWMA),
            pending: def(MetricKind::Gauge, PENDING),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_extractable_tags() {
        assert_eq!(
            endpoint_metric_name(REQUESTS, "greeter", "127.0.0.1:50051"),
            "cluster=.=greeter;.;endpoint=.=127.0.0.1:50051;.;ewma_balancer_requests_total"
        );
        assert_eq!(
            decision_metric_name("greeter", "explore"),
            "cluster=.=greeter;.;decision=.=explore;.;ewma_balancer_decisions_total"
        );
    }

    #[test]
    fn hostile_values_cannot_break_the_tag_syntax() {
        assert_eq!(
            endpoint_metric_name(PENDING, "a;.;b c", "x\n"),
            "cluster=.=a_._b_c;.;endpoint=.=x_;.;ewma_balancer_pending"
        );
    }
}
