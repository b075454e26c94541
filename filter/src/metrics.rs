//! Per-endpoint metrics: names, kinds, and the host's metric API as the core sees it.
//!
//! Envoy has no labels on Wasm metrics; labels come from `stats_config.stats_tags`
//! regexes that cut `<tag>=.=<value>;.;` segments out of the name (the convention Istio's
//! bootstrap already extracts). Tags come first and the metric name last, so that what is
//! left after extraction is exactly the metric name: `ewma_balancer_requests_total` for
//! cluster `greeter` and endpoint `127.0.0.1:50051` is defined as
//! `cluster_name=.=greeter;.;endpoint=.=127.0.0.1:50051;.;ewma_balancer_requests_total` and
//! scraped as `ewma_balancer_requests_total{cluster_name="greeter",endpoint="127.0.0.1:50051"}`.
//! The cluster's tag is `cluster_name`, Istio's own tag for Envoy's cluster stats, not
//! `cluster`, which multi-cluster Prometheus setups reserve for the Kubernetes cluster.

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
/// Per endpoint and `grpc_status`: the failures of [`FAILURES`] by the status they ended with.
pub const FAILURES_BY_STATUS: &str = "ewma_balancer_failures_by_status_total";
pub const LATENCY: &str = "ewma_balancer_latency_us";
pub const EWMA: &str = "ewma_balancer_ewma_us";
pub const PENDING: &str = "ewma_balancer_pending";
pub const DECISIONS: &str = "ewma_balancer_decisions_total";
/// Requests to clusters beyond a worker's `MAX_CLUSTERS` (no labels).
pub const CLUSTERS_OVER_LIMIT: &str = "ewma_balancer_clusters_over_limit_total";

/// Per cluster: endpoints the worker's view holds.
pub const MEMBERS_KNOWN: &str = "ewma_balancer_members_known";
/// Per cluster: endpoints picks choose among (Envoy's balancers would use them).
pub const MEMBERS_USABLE: &str = "ewma_balancer_members_usable";
/// Per cluster: 1 when the membership comes from Envoy's admin interface, 0 when learned.
pub const MEMBERSHIP_ADMIN: &str = "ewma_balancer_membership_admin";
/// Per cluster: milliseconds since the admin membership in use was read (0 when learned).
pub const MEMBERSHIP_AGE: &str = "ewma_balancer_membership_age_ms";
/// Per endpoint: 1 when picks may choose it, 0 when Envoy's balancers would not use it.
pub const USABLE: &str = "ewma_balancer_usable";

/// The metric name carrying a `cluster_name` tag only.
pub fn cluster_metric_name(metric: &str, cluster: &str) -> String {
    format!("cluster_name=.={};.;{metric}", tag_value(cluster))
}

/// The ids of one cluster's membership gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterMetricIds {
    pub known: Option<u32>,
    pub usable: Option<u32>,
    pub admin: Option<u32>,
    pub age: Option<u32>,
}

impl ClusterMetricIds {
    pub fn define(metrics: &mut dyn Metrics, cluster: &str) -> Self {
        let mut def =
            |metric| metrics.define(MetricKind::Gauge, &cluster_metric_name(metric, cluster));
        Self {
            known: def(MEMBERS_KNOWN),
            usable: def(MEMBERS_USABLE),
            admin: def(MEMBERSHIP_ADMIN),
            age: def(MEMBERSHIP_AGE),
        }
    }

    /// Sets the gauges: endpoints known and usable, whether the membership is the admin
    /// interface's, and its age in milliseconds.
    pub fn record(
        &self,
        metrics: &mut dyn Metrics,
        known: usize,
        usable: usize,
        admin_age_ms: Option<u64>,
    ) {
        let values = [
            (self.known, u64::try_from(known).unwrap_or(u64::MAX)),
            (self.usable, u64::try_from(usable).unwrap_or(u64::MAX)),
            (self.admin, u64::from(admin_age_ms.is_some())),
            (self.age, admin_age_ms.unwrap_or(0)),
        ];
        for (id, value) in values {
            if let Some(id) = id {
                metrics.record(id, value);
            }
        }
    }
}

/// The metric name carrying `cluster_name` and `endpoint` tags.
pub fn endpoint_metric_name(metric: &str, cluster: &str, endpoint: &str) -> String {
    format!(
        "cluster_name=.={};.;endpoint=.={};.;{metric}",
        tag_value(cluster),
        tag_value(endpoint)
    )
}

/// The metric name carrying `cluster_name` and `decision` tags.
pub fn decision_metric_name(cluster: &str, decision: &str) -> String {
    format!(
        "cluster_name=.={};.;decision=.={decision};.;{DECISIONS}",
        tag_value(cluster)
    )
}

/// The metric name carrying `cluster_name`, `endpoint` and `grpc_status` tags.
pub fn status_metric_name(cluster: &str, endpoint: &str, status: StatusLabel) -> String {
    format!(
        "cluster_name=.={};.;endpoint=.={};.;grpc_status=.={};.;{FAILURES_BY_STATUS}",
        tag_value(cluster),
        tag_value(endpoint),
        status.as_str()
    )
}

/// The `grpc_status` label of a failure: one of 20 values, so an endpoint has at most 20
/// such counters whatever its answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusLabel {
    /// A gRPC status code, 0 (OK) to 16 (UNAUTHENTICATED).
    Code(u8),
    /// A code above 16: not one gRPC defines.
    Other,
    /// No gRPC status: a plain HTTP request.
    None,
    /// An attempt Envoy retried on another endpoint: the filter sees only the final
    /// answer, not the failed attempt's status.
    Retried,
}

impl StatusLabel {
    /// The highest status code gRPC defines (UNAUTHENTICATED).
    pub const MAX_CODE: u32 = 16;

    pub fn of(grpc_status: Option<u32>) -> Self {
        match grpc_status {
            None => Self::None,
            Some(code) => u8::try_from(code)
                .ok()
                .filter(|c| u32::from(*c) <= Self::MAX_CODE)
                .map_or(Self::Other, Self::Code),
        }
    }

    pub fn as_str(self) -> &'static str {
        const CODES: [&str; 17] = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
            "16",
        ];
        match self {
            Self::Code(c) => CODES.get(usize::from(c)).copied().unwrap_or("other"),
            Self::Other => "other",
            Self::None => "none",
            Self::Retried => "retried",
        }
    }
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
    pub usable: Option<u32>,
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
            usable: def(MetricKind::Gauge, USABLE),
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
            "cluster_name=.=greeter;.;endpoint=.=127.0.0.1:50051;.;ewma_balancer_requests_total"
        );
        assert_eq!(
            decision_metric_name("greeter", "explore"),
            "cluster_name=.=greeter;.;decision=.=explore;.;ewma_balancer_decisions_total"
        );
    }

    #[test]
    fn failures_by_status_carry_a_bounded_grpc_status_tag() {
        assert_eq!(
            status_metric_name(
                "outbound|8000||g.default.svc.cluster.local",
                "10.0.0.1:80",
                StatusLabel::of(Some(14))
            ),
            "cluster_name=.=outbound|8000||g.default.svc.cluster.local;.;endpoint=.=10.0.0.1:80;.;\
             grpc_status=.=14;.;ewma_balancer_failures_by_status_total"
        );
        let labels: Vec<&str> = [Some(0), Some(16), Some(17), Some(u32::MAX), None]
            .into_iter()
            .map(|s| StatusLabel::of(s).as_str())
            .collect();
        assert_eq!(labels, ["0", "16", "other", "other", "none"]);
        let mut all: Vec<&str> = (0..=100)
            .map(|c| StatusLabel::of(Some(c)).as_str())
            .collect();
        all.push(StatusLabel::None.as_str());
        all.push(StatusLabel::Retried.as_str());
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 20);
    }

    #[test]
    fn hostile_values_cannot_break_the_tag_syntax() {
        assert_eq!(
            endpoint_metric_name(PENDING, "a;.;b c", "x\n"),
            "cluster_name=.=a_._b_c;.;endpoint=.=x_;.;ewma_balancer_pending"
        );
    }
}
