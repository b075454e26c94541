//! One scrape of `/stats/prometheus`, reduced to the filter's per-endpoint series.

use std::collections::BTreeMap;

use ewma_balancer::metrics::{EWMA, FAILURES, LATENCY, PENDING, REQUESTS, USABLE};

use super::{
    histogram::Buckets,
    prometheus::{parse_samples, sample_names, Sample},
};

/// An endpoint of a cluster, as the filter labels its series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointKey {
    pub cluster: String,
    pub endpoint: String,
}

/// The filter's series for one endpoint at one moment; `None` where the
/// scrape had no such series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointSeries {
    /// `ewma_balancer_requests_total`.
    pub requests: Option<f64>,
    /// `ewma_balancer_failures_total`.
    pub failures: Option<f64>,
    /// `ewma_balancer_latency_us` buckets, µs.
    pub latency_us: Option<Buckets>,
    /// `ewma_balancer_ewma_us`.
    pub ewma_us: Option<f64>,
    /// `ewma_balancer_pending`.
    pub pending: Option<f64>,
    /// `ewma_balancer_usable`: 0 when Envoy's balancers would not use the endpoint.
    pub usable: Option<f64>,
}

/// Per-endpoint series of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub endpoints: BTreeMap<EndpointKey, EndpointSeries>,
    /// The scrape has the filter's request counters, but with the tags still in
    /// the metric name (`cluster_name___greeter___endpoint___…_ewma_balancer_requests_total`):
    /// the Envoy config lacks the filter's `stats_tags`.
    pub untagged: bool,
}

impl Snapshot {
    /// Reads the filter's series from a `/stats/prometheus` body. Series
    /// without `cluster_name` (or, from filters before 0.2, `cluster`) and `endpoint`
    /// labels are ignored.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bucket = format!("{LATENCY}_bucket");
        let wanted = |name: &str| {
            [REQUESTS, FAILURES, EWMA, PENDING, USABLE].contains(&name) || name == bucket
        };
        let mut snapshot = Snapshot {
            untagged: sample_names(text).any(|name| name != REQUESTS && name.ends_with(REQUESTS)),
            ..Snapshot::default()
        };
        let mut buckets: BTreeMap<EndpointKey, Vec<(f64, f64)>> = BTreeMap::new();
        for sample in parse_samples(text, wanted)? {
            let Some(key) = endpoint_key(&sample) else {
                continue;
            };
            if sample.name == bucket {
                let le = sample
                    .label("le")
                    .ok_or_else(|| format!("{bucket} sample without an `le` label"))?;
                let le = parse_bound(le)
                    .ok_or_else(|| format!("{bucket} has a non-numeric bound le=\"{le}\""))?;
                buckets.entry(key).or_default().push((le, sample.value));
                continue;
            }
            let series = snapshot.endpoints.entry(key).or_default();
            let slot = match sample.name.as_str() {
                REQUESTS => &mut series.requests,
                FAILURES => &mut series.failures,
                EWMA => &mut series.ewma_us,
                USABLE => &mut series.usable,
                _ => &mut series.pending,
            };
            *slot = Some(sample.value);
        }
        for (key, pairs) in buckets {
            snapshot.endpoints.entry(key).or_default().latency_us = Some(Buckets::new(pairs));
        }
        Ok(snapshot)
    }

    /// Whether the scrape has any endpoint's request counter.
    pub fn has_filter_metrics(&self) -> bool {
        self.endpoints.values().any(|s| s.requests.is_some())
    }

    /// The clusters seen, sorted.
    pub fn clusters(&self) -> Vec<&str> {
        let mut clusters: Vec<&str> = self.endpoints.keys().map(|k| k.cluster.as_str()).collect();
        clusters.dedup();
        clusters
    }
}

/// The cluster's label: `cluster_name` (since 0.2), or `cluster` from a filter built
/// before, so that one `ewma-stat` reads a fleet in the middle of an upgrade.
fn cluster_label(sample: &Sample) -> Option<&str> {
    sample
        .label("cluster_name")
        .or_else(|| sample.label("cluster"))
}

fn endpoint_key(sample: &Sample) -> Option<EndpointKey> {
    Some(EndpointKey {
        cluster: cluster_label(sample)?.to_owned(),
        endpoint: sample.label("endpoint")?.to_owned(),
    })
}

fn parse_bound(le: &str) -> Option<f64> {
    if le == "+Inf" {
        Some(f64::INFINITY)
    } else {
        le.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = include_str!("testdata/before.prom");

    fn key(endpoint: &str) -> EndpointKey {
        EndpointKey {
            cluster: "greeter".into(),
            endpoint: endpoint.into(),
        }
    }

    #[test]
    fn reads_every_endpoint_series_of_a_real_scrape() {
        let snapshot = Snapshot::parse(BEFORE).unwrap();
        assert!(!snapshot.untagged);
        assert_eq!(snapshot.clusters(), ["greeter"]);
        assert_eq!(
            snapshot.endpoints.keys().cloned().collect::<Vec<_>>(),
            [
                key("127.0.0.1:51051"),
                key("127.0.0.1:51052"),
                key("127.0.0.1:51053")
            ]
        );
        let slow = &snapshot.endpoints[&key("127.0.0.1:51053")];
        assert_eq!(slow.requests, Some(1384.0));
        assert_eq!(slow.failures, Some(1.0));
        assert_eq!(slow.ewma_us, Some(43_351.0));
        assert_eq!(slow.pending, Some(5.0));
        let latency = slow.latency_us.as_ref().unwrap();
        assert_eq!(latency.cumulative().len(), 17);
        assert_eq!(latency.cumulative()[8], (50_000.0, 1000.0));
        assert_eq!(latency.count(), 1042.0);
        assert!(snapshot.has_filter_metrics());
    }

    #[test]
    fn ignores_other_metrics_and_series_without_endpoint_labels() {
        let text = "envoy_wasm_ewma_balancer_vm_reload{} 0\n\
            ewma_balancer_decisions_total{cluster_name=\"greeter\",decision=\"explore\"} 91\n\
            ewma_balancer_requests_total{cluster_name=\"greeter\"} 5\n";
        let snapshot = Snapshot::parse(text).unwrap();
        assert_eq!(snapshot, Snapshot::default());
        assert!(!snapshot.has_filter_metrics());
    }

    #[test]
    fn reads_the_cluster_label_of_filters_from_before_cluster_name() {
        let text = "ewma_balancer_requests_total{cluster=\"old\",endpoint=\"10.0.0.1:80\"} 3\n\
            ewma_balancer_requests_total{cluster_name=\"outbound|8000||g.default.svc.cluster.local\",endpoint=\"10.0.0.2:80\"} 4\n";
        let snapshot = Snapshot::parse(text).unwrap();
        assert_eq!(
            snapshot.clusters(),
            ["old", "outbound|8000||g.default.svc.cluster.local"]
        );
    }

    #[test]
    fn notices_metrics_whose_tags_were_not_extracted() {
        // From an Envoy whose config lacks the filter's stats_tags.
        let text = "# TYPE cluster___greeter___endpoint___127_0_0_1_51051___ewma_balancer_requests_total counter\n\
            cluster___greeter___endpoint___127_0_0_1_51051___ewma_balancer_requests_total{} 32\n";
        let snapshot = Snapshot::parse(text).unwrap();
        assert!(snapshot.untagged);
        assert!(!snapshot.has_filter_metrics());
    }

    #[test]
    fn a_bucket_without_a_numeric_bound_is_an_error() {
        let text =
            "ewma_balancer_latency_us_bucket{cluster_name=\"c\",endpoint=\"e\",le=\"x\"} 1\n";
        assert_eq!(
            Snapshot::parse(text),
            Err("ewma_balancer_latency_us_bucket has a non-numeric bound le=\"x\"".into())
        );
    }
}
