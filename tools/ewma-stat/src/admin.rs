//! Envoy's admin interface as `ewma-stat` reads it: `--admin http://host:port`,
//! `/stats/prometheus`, and the stats flush interval from `/config_dump`.

use std::{
    fmt,
    net::{SocketAddr, ToSocketAddrs},
    str::FromStr,
    time::Duration,
};

use crate::http::http_get;

/// Envoy's stats flush interval when the bootstrap does not set one; Istio's
/// bootstrap does not.
pub const ENVOY_DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// Bound on each connect and read.
const TIMEOUT: Duration = Duration::from_secs(5);

/// An admin address given as `http://host:port` (a trailing `/` is allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUrl {
    host: String,
    port: u16,
}

impl FromStr for AdminUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| format!("invalid admin URL `{url}`: {why}");
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| invalid("expected http://host:port"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') {
            return Err(invalid("expected no path after host:port"));
        }
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected a port, like http://127.0.0.1:9901"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid("expected a host"));
        }
        let port = port
            .parse()
            .map_err(|_| invalid(&format!("port `{port}` is not a number from 0 to 65535")))?;
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for AdminUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "http://{}:{}", self.host, self.port)
        }
    }
}

/// Why a GET on the admin interface gave no body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// Nothing answered (name not resolved, connection refused, timeout).
    Unreachable(String),
    /// It answered with another status than 200.
    Status { status: u16, first_line: String },
}

impl AdminUrl {
    /// `GET path`; the body if the status is 200. Each resolved address is
    /// tried in turn (`localhost` may be `::1` or `127.0.0.1`, as with
    /// `kubectl port-forward`).
    pub fn get(&self, path: &str) -> Result<String, AdminError> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| AdminError::Unreachable(format!("cannot resolve {}: {e}", self.host)))?
            .collect();
        let mut last = format!("{} resolves to no address", self.host);
        for addr in addrs {
            match http_get(addr, path, TIMEOUT) {
                Ok(response) if response.status == 200 => return Ok(response.body),
                Ok(response) => {
                    return Err(AdminError::Status {
                        status: response.status,
                        first_line: response.body.lines().next().unwrap_or_default().to_owned(),
                    })
                }
                Err(error) => last = error,
            }
        }
        Err(AdminError::Unreachable(last))
    }

    /// The histogram flush interval of this Envoy: `stats_flush_interval` from
    /// its bootstrap, or Envoy's default of 5 s. `None` if it cannot be told:
    /// `/config_dump` is not served (Istio's `:15090` serves only
    /// `/stats/prometheus`) or the bootstrap flushes on admin requests instead.
    pub fn flush_interval(&self) -> Option<Duration> {
        let body = self
            .get("/config_dump?mask=bootstrap.stats_flush_interval,bootstrap.stats_flush_on_admin")
            .ok()?;
        flush_interval_from_config_dump(&body)
    }
}

/// Reads the flush interval from a masked `/config_dump` body.
pub fn flush_interval_from_config_dump(body: &str) -> Option<Duration> {
    let dump: serde_json::Value = serde_json::from_str(body).ok()?;
    let bootstrap = dump
        .get("configs")?
        .as_array()?
        .iter()
        .find_map(|config| config.get("bootstrap"))?;
    if bootstrap.get("stats_flush_on_admin") == Some(&serde_json::Value::Bool(true)) {
        return None;
    }
    match bootstrap.get("stats_flush_interval") {
        None => Some(ENVOY_DEFAULT_FLUSH_INTERVAL),
        Some(interval) => parse_proto_duration(interval.as_str()?),
    }
}

/// A protobuf JSON duration: decimal seconds with an `s`, e.g. `"1s"`, `"0.500s"`.
fn parse_proto_duration(text: &str) -> Option<Duration> {
    let seconds: f64 = text.strip_suffix('s')?.parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_admin_urls() {
        let url: AdminUrl = "http://127.0.0.1:9901".parse().unwrap();
        assert_eq!(
            url,
            AdminUrl {
                host: "127.0.0.1".into(),
                port: 9901
            }
        );
        assert_eq!(url.to_string(), "http://127.0.0.1:9901");
        let url: AdminUrl = "http://localhost:15000/".parse().unwrap();
        assert_eq!(url.to_string(), "http://localhost:15000");
        let url: AdminUrl = "http://[::1]:15000".parse().unwrap();
        assert_eq!(
            url,
            AdminUrl {
                host: "::1".into(),
                port: 15000
            }
        );
        assert_eq!(url.to_string(), "http://[::1]:15000");
    }

    #[test]
    fn refuses_admin_urls_it_cannot_use() {
        let error = |url: &str| url.parse::<AdminUrl>().unwrap_err();
        assert_eq!(
            error("127.0.0.1:9901"),
            "invalid admin URL `127.0.0.1:9901`: expected http://host:port"
        );
        assert_eq!(
            error("https://127.0.0.1:9901"),
            "invalid admin URL `https://127.0.0.1:9901`: expected http://host:port"
        );
        assert_eq!(
            error("http://127.0.0.1"),
            "invalid admin URL `http://127.0.0.1`: expected a port, like http://127.0.0.1:9901"
        );
        assert_eq!(
            error("http://127.0.0.1:99999"),
            "invalid admin URL `http://127.0.0.1:99999`: port `99999` is not a number from 0 to 65535"
        );
        assert_eq!(
            error("http://127.0.0.1:9901/stats"),
            "invalid admin URL `http://127.0.0.1:9901/stats`: expected no path after host:port"
        );
        assert_eq!(
            error("http://:9901"),
            "invalid admin URL `http://:9901`: expected a host"
        );
    }

    #[test]
    fn reads_the_flush_interval_from_the_bootstrap() {
        // Envoy 1.40's answers to the masked /config_dump.
        let unset = r#"{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.BootstrapConfigDump","bootstrap":{}}]}"#;
        assert_eq!(
            flush_interval_from_config_dump(unset),
            Some(Duration::from_secs(5))
        );
        let set = r#"{"configs":[{"bootstrap":{"stats_flush_interval":"1s"}}]}"#;
        assert_eq!(
            flush_interval_from_config_dump(set),
            Some(Duration::from_secs(1))
        );
        let fraction = r#"{"configs":[{"bootstrap":{"stats_flush_interval":"0.500s"}}]}"#;
        assert_eq!(
            flush_interval_from_config_dump(fraction),
            Some(Duration::from_millis(500))
        );
        let on_admin = r#"{"configs":[{"bootstrap":{"stats_flush_on_admin":true}}]}"#;
        assert_eq!(flush_interval_from_config_dump(on_admin), None);
        assert_eq!(flush_interval_from_config_dump("not json"), None);
        assert_eq!(flush_interval_from_config_dump(r#"{"configs":[]}"#), None);
    }

    #[test]
    fn an_unreachable_admin_says_so() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url: AdminUrl = format!("http://127.0.0.1:{port}").parse().unwrap();
        match url.get("/stats/prometheus") {
            Err(AdminError::Unreachable(reason)) => {
                assert!(reason.contains("connect"), "{reason}");
            }
            other => panic!("expected unreachable, got {other:?}"),
        }
    }
}
