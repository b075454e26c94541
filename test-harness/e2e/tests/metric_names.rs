//! The filter's metric names, wherever the repository depends on them: the Grafana
//! dashboard's PromQL, the tag extraction in every Envoy config that loads the filter
//! and in the Istio proxy config, and the README. The names come from the filter's own
//! constants, so renaming a metric there fails here until everything follows.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::{fs, path::Path};

use e2e::repo_root;
use ewma_balancer::metrics::{
    CLUSTERS_OVER_LIMIT, DECISIONS, EWMA, FAILURES, FAILURES_BY_STATUS, LATENCY, MEMBERSHIP_ADMIN,
    MEMBERSHIP_AGE, MEMBERS_KNOWN, MEMBERS_USABLE, PENDING, REQUESTS, USABLE,
};

/// Every Prometheus series name the filter's metrics produce.
fn emitted_series() -> Vec<String> {
    let mut names: Vec<String> = [
        REQUESTS,
        FAILURES,
        FAILURES_BY_STATUS,
        EWMA,
        PENDING,
        DECISIONS,
        CLUSTERS_OVER_LIMIT,
        USABLE,
        MEMBERS_KNOWN,
        MEMBERS_USABLE,
        MEMBERSHIP_ADMIN,
        MEMBERSHIP_AGE,
    ]
    .iter()
    .map(|name| (*name).to_owned())
    .collect();
    for suffix in ["_bucket", "_sum", "_count"] {
        names.push(format!("{LATENCY}{suffix}"));
    }
    names
}

/// The labels the filter's series carry in Prometheus.
const EMITTED_LABELS: [&str; 5] = ["cluster_name", "endpoint", "decision", "grpc_status", "le"];

/// The labels Prometheus adds to every scraped series: its own, and those Istio's sample
/// scrape config (samples/addons/prometheus.yaml) relabels from Kubernetes.
const TARGET_LABELS: [&str; 4] = ["instance", "job", "namespace", "pod"];

const AGGREGATIONS: [&str; 14] = [
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
];
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: [&str; 6] = ["bool", "and", "or", "unless", "offset", "atan2"];

/// What a PromQL expression refers to: metric names, and label names in
/// grouping clauses and matchers. Skips functions, aggregations, keywords,
/// numbers, strings, durations and Grafana `$variables`.
#[derive(Debug, Default, PartialEq)]
struct References {
    metrics: Vec<String>,
    labels: Vec<String>,
}

fn references(expr: &str) -> References {
    let chars: Vec<char> = expr.chars().collect();
    let mut refs = References::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            i = skip_string(&chars, i);
        } else if c == '[' {
            i = skip_past(&chars, i, ']');
        } else if c == '{' {
            let end = skip_past(&chars, i, '}');
            refs.labels.extend(matcher_labels(&chars[i + 1..end - 1]));
            i = end;
        } else if c.is_ascii_digit() || c == '$' {
            while i < chars.len() && (chars[i].is_alphanumeric() || "._$".contains(chars[i])) {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if GROUPING.contains(&word.as_str()) {
                if next == Some(&'(') {
                    let open = i + chars[i..].iter().position(|&c| c == '(').unwrap();
                    let close = skip_past(&chars, open, ')');
                    let list: String = chars[open + 1..close - 1].iter().collect();
                    refs.labels.extend(
                        list.split(',')
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned),
                    );
                    i = close;
                }
            } else if AGGREGATIONS.contains(&word.as_str())
                || KEYWORDS.contains(&word.as_str())
                || next == Some(&'(')
                || ["Inf", "NaN"].contains(&word.as_str())
            {
                // A function, aggregation, keyword or literal.
            } else {
                refs.metrics.push(word);
            }
        } else {
            i += 1;
        }
    }
    refs
}

fn skip_string(chars: &[char], open: usize) -> usize {
    let quote = chars[open];
    let mut i = open + 1;
    while i < chars.len() && chars[i] != quote {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// The index after the `close` that matches the bracket at `open`, skipping strings.
fn skip_past(chars: &[char], open: usize, close: char) -> usize {
    let opening = chars[open];
    let mut depth = 0;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == opening => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!(
        "unbalanced `{opening}` in {}",
        chars.iter().collect::<String>()
    );
}

/// Label names of `name="v", other=~"w"` matchers.
fn matcher_labels(inside: &[char]) -> Vec<String> {
    let text: String = inside.iter().collect();
    let mut labels = Vec::new();
    let mut rest = text.as_str();
    while let Some(op) = rest.find(['=', '!']) {
        labels.push(rest[..op].trim().trim_start_matches(',').trim().to_owned());
        let Some(open) = rest[op..].find('"') else {
            break;
        };
        let chars: Vec<char> = rest[op + open..].chars().collect();
        let after = skip_string(&chars, 0);
        let consumed: usize = chars[..after].iter().map(|c| c.len_utf8()).sum();
        rest = &rest[op + open + consumed..];
    }
    labels
}

fn dashboard() -> serde_json::Value {
    let path = repo_root().join("dashboards/ewma-balancer.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every PromQL string in the dashboard: panel targets and templating queries.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<String> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(definition) = variable["definition"].as_str() {
            queries.push(definition.to_owned());
        }
    }
    queries
}

#[test]
fn the_reference_reader_finds_metrics_and_labels_only() {
    assert_eq!(
        references(
            r#"histogram_quantile(0.95, sum by (cluster, endpoint, le) (rate(ewma_balancer_latency_us_bucket{cluster=~"$cluster"}[$__rate_interval]))) / 1000"#
        ),
        References {
            metrics: vec!["ewma_balancer_latency_us_bucket".into()],
            labels: vec![
                "cluster".into(),
                "endpoint".into(),
                "le".into(),
                "cluster".into()
            ],
        }
    );
    assert_eq!(
        references(
            r#"a / on (cluster) group_left () sum without(x) (b{y!="}", z="q\"r"}) > bool 2 offset 5m"#
        ),
        References {
            metrics: vec!["a".into(), "b".into()],
            labels: vec!["cluster".into(), "x".into(), "y".into(), "z".into()],
        }
    );
    assert_eq!(
        references("label_values(ewma_balancer_requests_total, cluster)").metrics,
        ["ewma_balancer_requests_total", "cluster"]
    );
}

#[test]
fn the_dashboard_queries_only_series_and_labels_the_filter_emits() {
    let dashboard = dashboard();
    let emitted = emitted_series();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 9, "{queries:?}");
    let mut used = Vec::new();
    for query in &queries {
        let refs = references(query);
        for metric in &refs.metrics {
            // label_values(metric, label): its second argument is a label.
            let is_label_values_label = query.starts_with("label_values(")
                && query
                    .trim_end_matches(')')
                    .ends_with(&format!(", {metric}"));
            assert!(
                emitted.contains(metric)
                    || is_label_values_label
                        && (EMITTED_LABELS.contains(&metric.as_str())
                            || TARGET_LABELS.contains(&metric.as_str())),
                "`{metric}` is not a series the filter emits, in: {query}"
            );
            used.push(metric.clone());
        }
        for label in &refs.labels {
            assert!(
                EMITTED_LABELS.contains(&label.as_str()) || TARGET_LABELS.contains(&label.as_str()),
                "label `{label}` is not one the filter's series carry, in: {query}"
            );
        }
    }
    for needed in [
        REQUESTS,
        FAILURES,
        EWMA,
        PENDING,
        &format!("{LATENCY}_bucket"),
    ] {
        assert!(used.iter().any(|m| m == needed), "no panel uses {needed}");
    }
}

#[test]
fn the_dashboard_has_the_per_endpoint_panels() {
    let dashboard = dashboard();
    let titles: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for wanted in [
        "Success rate",
        "Requests per second",
        "p50",
        "p95",
        "p99",
        "EWMA",
        "Pending",
        "Share",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "no panel titled *{wanted}*: {titles:?}"
        );
    }
}

/// The tag regexes and bucket bounds every filter config must carry, as written in YAML.
const TAG_REGEXES: [&str; 4] = [
    r#""(cluster_name=\\.=(.*?);\\.;)""#,
    r#""(endpoint=\\.=(.*?);\\.;)""#,
    r#""(decision=\\.=(.*?);\\.;)""#,
    r#""(grpc_status=\\.=(.*?);\\.;)""#,
];
const LATENCY_BUCKETS: &str = "[100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000]";

fn yaml_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            found.push(path);
        }
    }
}

#[test]
fn every_envoy_config_that_loads_the_filter_extracts_its_labels_and_buckets() {
    let mut configs = Vec::new();
    yaml_files(&repo_root().join("envoy-configs"), &mut configs);
    let mut checked = 0;
    for path in configs {
        let text = fs::read_to_string(&path).unwrap();
        if !text.contains("ewma_balancer.wasm") {
            continue;
        }
        // A file of xDS resources (envoy-configs/dynamic/lds.yaml) gets its stats
        // settings from the bootstrap beside it.
        let is_bootstrap = text
            .lines()
            .any(|l| l.starts_with("static_resources:") || l.starts_with("dynamic_resources:"));
        let (path, text) = if is_bootstrap {
            (path, text)
        } else {
            let bootstrap = path.with_file_name("envoy.yaml");
            let text = fs::read_to_string(&bootstrap)
                .unwrap_or_else(|e| panic!("{}: no bootstrap beside it: {e}", path.display()));
            (bootstrap, text)
        };
        for regex in TAG_REGEXES {
            assert!(
                text.contains(regex),
                "{} lacks the stats_tags regex {regex}",
                path.display()
            );
        }
        assert!(
            text.contains(&format!("suffix: {LATENCY}")) && text.contains(LATENCY_BUCKETS),
            "{} lacks the latency histogram buckets {LATENCY_BUCKETS}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 1, "no Envoy config loads the filter");
}

#[test]
fn the_istio_proxy_config_includes_and_tags_every_metric() {
    let text = fs::read_to_string(repo_root().join("istio/patches/proxy-config.yaml")).unwrap();
    for name in [
        REQUESTS,
        FAILURES,
        FAILURES_BY_STATUS,
        LATENCY,
        EWMA,
        PENDING,
        DECISIONS,
        CLUSTERS_OVER_LIMIT,
        USABLE,
        MEMBERS_KNOWN,
        MEMBERS_USABLE,
        MEMBERSHIP_ADMIN,
        MEMBERSHIP_AGE,
    ] {
        assert!(
            text.contains(&format!("- {name}\n")),
            "proxyStatsMatcher lacks {name}"
        );
    }
    for tag in ["cluster_name", "endpoint", "decision", "grpc_status"] {
        assert!(
            text.contains(&format!("- {tag}\n")),
            "extraStatTags lacks {tag}"
        );
    }
    let buckets = LATENCY_BUCKETS.replace(' ', "");
    assert!(
        text.contains(&format!(
            r#"sidecar.istio.io/statsHistogramBuckets: '{{"wasmcustom.cluster_name=.=":{buckets}}}'"#
        )),
        "the histogram buckets annotation differs from the Envoy configs'"
    );
}

#[test]
fn the_readme_documents_every_metric() {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    for name in [
        REQUESTS,
        FAILURES,
        FAILURES_BY_STATUS,
        LATENCY,
        EWMA,
        PENDING,
        DECISIONS,
        CLUSTERS_OVER_LIMIT,
        USABLE,
        MEMBERS_KNOWN,
        MEMBERS_USABLE,
        MEMBERSHIP_ADMIN,
        MEMBERSHIP_AGE,
    ] {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README does not document `{name}`"
        );
    }
}
