//! `ewma-stat`: what the filter sees per endpoint, from Envoy's admin
//! `/stats/prometheus`, in the manner of `linkerd viz stat`.
//!
//! [`collect`] scrapes twice, a window apart ([`admin`]), reduces each scrape to
//! the filter's per-endpoint series ([`snapshot`], over a small
//! [`prometheus`] text parser), and turns the two into one row per endpoint
//! ([`window`]): success rate and RPS from counter deltas, p50/p95/p99 from
//! histogram bucket deltas interpolated as PromQL's `histogram_quantile` does
//! ([`histogram`]), the EWMA and pending gauges as of the second scrape, and
//! the endpoint's share of its cluster's requests. [`format`](mod@format) prints them.
//!
//! Envoy merges histograms into what the admin interface shows only on its
//! stats flush (every 5 s unless the bootstrap sets `stats_flush_interval`), so
//! a window shorter than the flush interval may see no latency at all: such
//! windows are refused, as are windows under [`MIN_WINDOW`].

pub mod admin;
pub mod format;
pub mod histogram;
pub mod http;
pub mod prometheus;
pub mod snapshot;
pub mod window;

use std::{
    fmt,
    time::{Duration, Instant},
};

pub use admin::{AdminError, AdminUrl, ENVOY_DEFAULT_FLUSH_INTERVAL};
pub use snapshot::Snapshot;
pub use window::EndpointStat;

/// The shortest window: below it, rates of a few requests are noise.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);

/// `ewma-stat`'s default window: two of Envoy's default flush intervals.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// What to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatOptions {
    pub admin: AdminUrl,
    pub window: Duration,
    /// Only this cluster's endpoints.
    pub cluster: Option<String>,
}

/// Why there is no table; each renders as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatError {
    WindowTooShort {
        window: Duration,
        minimum: Duration,
        why: &'static str,
    },
    Unreachable {
        admin: String,
        reason: String,
    },
    AdminStatus {
        admin: String,
        status: u16,
        first_line: String,
    },
    Malformed {
        admin: String,
        reason: String,
    },
    /// The filter's counters are there but carry their tags in the name.
    Untagged {
        admin: String,
    },
    NoFilterMetrics {
        admin: String,
    },
    NoSuchCluster {
        cluster: String,
        seen: Vec<String>,
    },
}

impl fmt::Display for StatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let human = |d: &Duration| humantime::format_duration(*d).to_string();
        match self {
            Self::WindowTooShort {
                window,
                minimum,
                why,
            } => write!(
                f,
                "window {} is too short: {why}; use --window {} or longer",
                human(window),
                human(minimum)
            ),
            Self::Unreachable { admin, reason } => {
                write!(f, "cannot reach Envoy's admin interface at {admin}: {reason}")
            }
            Self::AdminStatus {
                admin,
                status,
                first_line,
            } => write!(
                f,
                "Envoy's admin interface at {admin} answered /stats/prometheus with HTTP {status}: {first_line}"
            ),
            Self::Malformed { admin, reason } => {
                write!(f, "cannot read /stats/prometheus from {admin}: {reason}")
            }
            Self::Untagged { admin } => write!(
                f,
                "ewma-balancer metrics at {admin} have no cluster_name/endpoint labels: add the filter's \
                 stats_tags to Envoy's stats_config (see envoy-configs/static/ewma.yaml), or \
                 extraStatTags on Istio (see istio/patches/proxy-config.yaml)"
            ),
            Self::NoFilterMetrics { admin } => write!(
                f,
                "no ewma-balancer metrics at {admin}: is the filter loaded and has it served a \
                 request? (on Istio, include them with proxyStatsMatcher: see istio/patches/proxy-config.yaml)"
            ),
            Self::NoSuchCluster { cluster, seen } => write!(
                f,
                "no ewma-balancer metrics for cluster `{cluster}`; clusters seen: {}",
                seen.join(", ")
            ),
        }
    }
}

impl std::error::Error for StatError {}

/// Scrapes `options.admin` twice, `options.window` apart, and returns one row
/// per endpoint. Fails fast (before waiting) when the window is too short, the
/// admin interface is unreachable or has no filter metrics.
pub fn collect(options: &StatOptions) -> Result<Vec<EndpointStat>, StatError> {
    collect_with(options, std::thread::sleep)
}

/// [`collect`] with the wait between the scrapes supplied, for tests.
pub fn collect_with(
    options: &StatOptions,
    wait: impl FnOnce(Duration),
) -> Result<Vec<EndpointStat>, StatError> {
    if options.window < MIN_WINDOW {
        return Err(StatError::WindowTooShort {
            window: options.window,
            minimum: MIN_WINDOW,
            why: "rates over less than a second are noise",
        });
    }
    let (before, started) = scrape(options)?;
    if let Some(flush) = options.admin.flush_interval() {
        if options.window < flush {
            return Err(StatError::WindowTooShort {
                window: options.window,
                minimum: flush,
                why: "it is shorter than Envoy's stats flush interval, so latency histograms may not change",
            });
        }
    }
    wait(options.window.saturating_sub(started.elapsed()));
    let (after, ended) = scrape(options)?;
    let mut rows = window::endpoint_stats(&before, &after, ended.duration_since(started));
    if let Some(cluster) = &options.cluster {
        rows.retain(|row| &row.cluster == cluster);
    }
    Ok(rows)
}

/// One scrape, checked for the filter's metrics (and the cluster asked for),
/// with the moment it was requested.
fn scrape(options: &StatOptions) -> Result<(Snapshot, Instant), StatError> {
    let admin = options.admin.to_string();
    let requested = Instant::now();
    let body = options
        .admin
        .get("/stats/prometheus")
        .map_err(|error| match error {
            AdminError::Unreachable(reason) => StatError::Unreachable {
                admin: admin.clone(),
                reason,
            },
            AdminError::Status { status, first_line } => StatError::AdminStatus {
                admin: admin.clone(),
                status,
                first_line,
            },
        })?;
    let snapshot = Snapshot::parse(&body).map_err(|reason| StatError::Malformed {
        admin: admin.clone(),
        reason,
    })?;
    if !snapshot.has_filter_metrics() {
        return Err(if snapshot.untagged {
            StatError::Untagged { admin }
        } else {
            StatError::NoFilterMetrics { admin }
        });
    }
    if let Some(cluster) = &options.cluster {
        let seen = snapshot.clusters();
        if !seen.contains(&cluster.as_str()) {
            return Err(StatError::NoSuchCluster {
                cluster: cluster.clone(),
                seen: seen.into_iter().map(str::to_owned).collect(),
            });
        }
    }
    Ok((snapshot, requested))
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader, Write},
        net::TcpListener,
        sync::{Arc, Mutex},
        thread,
    };

    use super::*;

    const BEFORE: &str = include_str!("testdata/before.prom");
    const AFTER: &str = include_str!("testdata/after.prom");
    const CONFIG_DUMP_DEFAULT: &str = r#"{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.BootstrapConfigDump","bootstrap":{}}]}"#;

    /// A stand-in admin interface on loopback: `/stats/prometheus` serves the
    /// next body of `scrapes` (the last one again when they run out),
    /// `/config_dump` serves `config_dump` or 404 without one.
    fn fake_admin(scrapes: &[&str], config_dump: Option<&str>) -> AdminUrl {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let scrapes: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(
            scrapes.iter().rev().map(|s| (*s).to_owned()).collect(),
        ));
        let config_dump = config_dump.map(str::to_owned);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut request_line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                reader.read_line(&mut request_line).unwrap();
                let (status, body) = if request_line.contains("/stats/prometheus") {
                    let mut scrapes = scrapes.lock().unwrap();
                    let body = if scrapes.len() > 1 {
                        scrapes.pop().unwrap()
                    } else {
                        scrapes.last().cloned().unwrap_or_default()
                    };
                    (200, body)
                } else if let (true, Some(dump)) =
                    (request_line.contains("/config_dump"), &config_dump)
                {
                    (200, dump.clone())
                } else {
                    (404, "invalid path\n".to_owned())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url.parse().unwrap()
    }

    fn options(admin: AdminUrl, window: Duration) -> StatOptions {
        StatOptions {
            admin,
            window,
            cluster: None,
        }
    }

    #[test]
    fn two_scrapes_give_one_row_per_endpoint() {
        let admin = fake_admin(&[BEFORE, AFTER], Some(CONFIG_DUMP_DEFAULT));
        let mut waited = None;
        let rows = collect_with(&options(admin, Duration::from_secs(6)), |d| {
            waited = Some(d)
        })
        .unwrap();
        assert!(
            waited.is_some_and(|d| d > Duration::from_secs(5)),
            "{waited:?}"
        );
        let endpoints: Vec<&str> = rows.iter().map(|r| r.endpoint.as_str()).collect();
        assert_eq!(
            endpoints,
            ["127.0.0.1:51051", "127.0.0.1:51052", "127.0.0.1:51053"]
        );
        assert_eq!(rows[2].latency_p50_ms, Some(37.5));
        assert_eq!(rows[0].share, Some(2454.0 / 3779.0));
    }

    #[test]
    fn a_cluster_filter_keeps_that_cluster_or_names_the_ones_seen() {
        let admin = fake_admin(&[BEFORE, AFTER], None);
        let mut asked = options(admin, Duration::from_secs(6));
        asked.cluster = Some("greeter".into());
        assert_eq!(collect_with(&asked, |_| {}).unwrap().len(), 3);
        asked.cluster = Some("other".into());
        let error = collect_with(&asked, |_| {}).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no ewma-balancer metrics for cluster `other`; clusters seen: greeter"
        );
    }

    #[test]
    fn a_window_under_a_second_is_refused_before_any_request() {
        let admin: AdminUrl = "http://127.0.0.1:1".parse().unwrap();
        let error = collect(&options(admin, Duration::from_millis(500))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "window 500ms is too short: rates over less than a second are noise; use --window 1s or longer"
        );
    }

    #[test]
    fn a_window_shorter_than_the_flush_interval_is_refused() {
        let admin = fake_admin(&[BEFORE, AFTER], Some(CONFIG_DUMP_DEFAULT));
        let error = collect_with(&options(admin, Duration::from_secs(2)), |_| {}).unwrap_err();
        assert_eq!(
            error.to_string(),
            "window 2s is too short: it is shorter than Envoy's stats flush interval, so latency \
             histograms may not change; use --window 5s or longer"
        );
    }

    #[test]
    fn without_a_config_dump_only_the_minimum_window_applies() {
        let admin = fake_admin(&[BEFORE, AFTER], None);
        assert!(collect_with(&options(admin, Duration::from_secs(2)), |_| {}).is_ok());
    }

    #[test]
    fn an_envoy_without_the_filter_is_told_apart_from_one_without_its_tags() {
        let plain = "# TYPE envoy_server_live gauge\nenvoy_server_live{} 1\n";
        let admin = fake_admin(&[plain], None);
        let error = collect_with(&options(admin.clone(), DEFAULT_WINDOW), |_| {}).unwrap_err();
        assert_eq!(
            error,
            StatError::NoFilterMetrics {
                admin: admin.to_string()
            }
        );
        assert!(error
            .to_string()
            .starts_with("no ewma-balancer metrics at http://127.0.0.1:"));

        let untagged =
            "cluster___greeter___endpoint___127_0_0_1_51051___ewma_balancer_requests_total{} 32\n";
        let admin = fake_admin(&[untagged], None);
        let error = collect_with(&options(admin.clone(), DEFAULT_WINDOW), |_| {}).unwrap_err();
        assert_eq!(
            error,
            StatError::Untagged {
                admin: admin.to_string()
            }
        );
    }

    #[test]
    fn an_unreachable_admin_is_one_line() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let admin: AdminUrl = format!("http://127.0.0.1:{port}").parse().unwrap();
        let error = collect(&options(admin, DEFAULT_WINDOW))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!(
                "cannot reach Envoy's admin interface at http://127.0.0.1:{port}: GET http://127.0.0.1:{port}/stats/prometheus: connect:"
            )),
            "{error}"
        );
        assert_eq!(error.lines().count(), 1);
    }

    #[test]
    fn an_admin_error_status_is_reported_with_its_first_line() {
        // Like an admin port behind a proxy that refuses the request.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let admin: AdminUrl = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        thread::spawn(move || {
            if let Some(Ok(mut stream)) = listener.incoming().next() {
                let mut line = String::new();
                BufReader::new(stream.try_clone().unwrap())
                    .read_line(&mut line)
                    .unwrap();
                let _ = write!(
                    stream,
                    "HTTP/1.1 403 Forbidden\r\ncontent-length: 10\r\n\r\nforbidden\n"
                );
            }
        });
        let error = collect(&options(admin.clone(), DEFAULT_WINDOW)).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("Envoy's admin interface at {admin} answered /stats/prometheus with HTTP 403: forbidden")
        );
    }
}
