//! `ewma-stat` output: a table formatted like `linkerd viz stat` (`100.00%`,
//! `2.0rps`, `12ms`, `-` for no data), or JSON.

use super::window::EndpointStat;

/// Spaces between columns.
const GAP: &str = "   ";

/// The table: a header and one row per endpoint. A `CLUSTER` column comes first
/// when the rows span more than one cluster, and a `STATE` column last when an
/// endpoint is `unusable` or `unsampled`.
pub fn table(rows: &[EndpointStat]) -> String {
    let several_clusters = rows.windows(2).any(|w| w[0].cluster != w[1].cluster);
    let states = rows.iter().any(|r| r.state != "ok");
    let mut header = vec![
        "ENDPOINT",
        "SUCCESS",
        "RPS",
        "LATENCY_P50",
        "LATENCY_P95",
        "LATENCY_P99",
        "EWMA",
        "PENDING",
        "SHARE",
    ];
    if states {
        header.push("STATE");
    }
    // Left-aligned name columns; the rest are right-aligned numbers.
    let mut names = 1;
    if several_clusters {
        header.insert(0, "CLUSTER");
        names = 2;
    }
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for row in rows {
        let mut line = vec![
            row.endpoint.clone(),
            percent(row.success_rate),
            format!("{:.1}rps", row.rps),
            millis(row.latency_p50_ms),
            millis(row.latency_p95_ms),
            millis(row.latency_p99_ms),
            millis(row.ewma_ms),
            row.pending
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
            percent(row.share),
        ];
        if states {
            line.push(row.state.to_owned());
        }
        if several_clusters {
            line.insert(0, row.cluster.clone());
        }
        cells.push(line);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            cells
                .iter()
                .map(|line| line[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &cells {
        let formatted: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(column, (cell, &width))| {
                // Names, and the STATE word, are left-aligned.
                if column < names || (states && column + 1 == widths.len()) {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        out.push_str(formatted.join(GAP).trim_end());
        out.push('\n');
    }
    out
}

/// The rows as a pretty-printed JSON array (`null` for no data).
pub fn json(rows: &[EndpointStat]) -> String {
    serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".to_owned())
}

/// `97.50%`, or `-` without data.
pub fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_owned(), |r| format!("{:.2}%", 100.0 * r))
}

/// `12ms` from 10 ms up, `2.5ms` below (loopback latencies are sub-ms to a few
/// ms, where whole milliseconds would hide the difference), `-` without data.
pub fn millis(ms: Option<f64>) -> String {
    match ms {
        None => "-".to_owned(),
        Some(ms) if ms < 10.0 => format!("{ms:.1}ms"),
        Some(ms) => format!("{ms:.0}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cluster: &str, endpoint: &str) -> EndpointStat {
        EndpointStat {
            cluster: cluster.into(),
            endpoint: endpoint.into(),
            success_rate: Some(1.0),
            rps: 409.0,
            latency_p50_ms: Some(0.306),
            latency_p95_ms: Some(0.878),
            latency_p99_ms: Some(1.535),
            ewma_ms: Some(16.815),
            pending: Some(2),
            share: Some(0.649_378),
            state: "ok",
        }
    }

    fn idle(cluster: &str, endpoint: &str) -> EndpointStat {
        EndpointStat {
            success_rate: None,
            rps: 0.0,
            latency_p50_ms: None,
            latency_p95_ms: None,
            latency_p99_ms: None,
            ewma_ms: None,
            pending: None,
            share: None,
            ..row(cluster, endpoint)
        }
    }

    #[test]
    fn formats_like_linkerd_viz_stat() {
        assert_eq!(percent(Some(1.0)), "100.00%");
        assert_eq!(percent(Some(216.0 / 230.0)), "93.91%");
        assert_eq!(percent(None), "-");
        assert_eq!(millis(Some(12.4)), "12ms");
        assert_eq!(millis(Some(37.5)), "38ms");
        assert_eq!(millis(Some(2.54)), "2.5ms");
        assert_eq!(millis(Some(0.04)), "0.0ms");
        assert_eq!(millis(Some(10_000.0)), "10000ms");
        assert_eq!(millis(None), "-");
    }

    #[test]
    fn one_cluster_gives_one_row_per_endpoint_without_a_cluster_column() {
        let rows = [
            row("greeter", "127.0.0.1:51051"),
            idle("greeter", "127.0.0.1:51053"),
        ];
        assert_eq!(
            table(&rows),
            "\
ENDPOINT          SUCCESS        RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99   EWMA   PENDING    SHARE
127.0.0.1:51051   100.00%   409.0rps         0.3ms         0.9ms         1.5ms   17ms         2   64.94%
127.0.0.1:51053         -     0.0rps             -             -             -      -         -        -
"
        );
    }

    #[test]
    fn unusable_or_unsampled_endpoints_add_a_state_column() {
        let rows = [
            row("greeter", "127.0.0.1:51051"),
            EndpointStat {
                state: "unusable",
                ..idle("greeter", "127.0.0.1:51052")
            },
            EndpointStat {
                state: "unsampled",
                ..idle("greeter", "127.0.0.1:51053")
            },
        ];
        let table = table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].ends_with("SHARE   STATE"), "{table}");
        assert!(lines[1].ends_with("64.94%   ok"), "{table}");
        assert!(lines[2].ends_with("-   unusable"), "{table}");
        assert!(lines[3].ends_with("-   unsampled"), "{table}");
    }

    #[test]
    fn several_clusters_add_a_cluster_column() {
        let rows = [row("a", "10.0.0.1:80"), row("bb", "10.0.0.2:80")];
        let table = table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("CLUSTER   ENDPOINT      SUCCESS"),
            "{table}"
        );
        assert!(
            lines[1].starts_with("a         10.0.0.1:80   100.00%"),
            "{table}"
        );
        assert!(
            lines[2].starts_with("bb        10.0.0.2:80   100.00%"),
            "{table}"
        );
    }

    #[test]
    fn json_has_the_documented_keys_and_null_for_no_data() {
        let value: serde_json::Value = serde_json::from_str(&json(&[
            row("greeter", "127.0.0.1:51051"),
            idle("greeter", "x"),
        ]))
        .unwrap();
        assert_eq!(
            value[0],
            serde_json::json!({
                "cluster": "greeter",
                "endpoint": "127.0.0.1:51051",
                "success_rate": 1.0,
                "rps": 409.0,
                "latency_p50_ms": 0.306,
                "latency_p95_ms": 0.878,
                "latency_p99_ms": 1.535,
                "ewma_ms": 16.815,
                "pending": 2,
                "share": 0.649378,
                "state": "ok"
            })
        );
        assert_eq!(value[1]["success_rate"], serde_json::Value::Null);
        assert_eq!(value[1]["latency_p99_ms"], serde_json::Value::Null);
        assert_eq!(json(&[]), "[]");
    }
}
