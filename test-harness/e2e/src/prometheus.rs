//! A real Prometheus as a process: Debian's `prometheus` package (`make prometheus`
//! installs it), scraping Envoy's `/stats/prometheus`, queried through its HTTP API,
//! stopped and its storage removed on drop.
//!
//! It listens on a free loopback port, never 9090, and keeps its data in a fresh
//! directory under `target/e2e-prometheus/`, so it neither conflicts with a Prometheus
//! the machine runs nor keeps anything between runs. Its output goes to
//! `target/e2e-logs/<name>.log`.

use std::{
    collections::BTreeMap,
    fs,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{
    http::http_get,
    logs::{log_path, log_tail, open_log},
    ports::ADMIN_PORT,
    process::{terminate, wait_timeout},
    repo_root,
};

/// How long Prometheus may take to answer `/-/ready`.
pub const PROMETHEUS_READY_TIMEOUT: Duration = Duration::from_secs(20);

const STOP_GRACE: Duration = Duration::from_secs(5);
const API_TIMEOUT: Duration = Duration::from_secs(5);

/// The `prometheus` and `promtool` binaries on `PATH`, or why they are missing.
pub fn prometheus_bins() -> Result<(PathBuf, PathBuf), String> {
    let find = |name: &str| {
        std::env::var_os("PATH")
            .and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
            })
            .ok_or_else(|| {
                format!(
                    "`{name}` is not on PATH: run `make prometheus` (Debian's prometheus package)"
                )
            })
    };
    Ok((find("prometheus")?, find("promtool")?))
}

/// What to scrape, and how often.
#[derive(Debug, Clone)]
pub struct PrometheusOptions {
    name: String,
    scrape_interval: Duration,
    targets: Vec<String>,
    metrics_path: String,
    rule_files: Vec<PathBuf>,
    port: Option<u16>,
}

impl PrometheusOptions {
    /// Scrapes Envoy's admin `/stats/prometheus` (127.0.0.1:9901) every second, logging
    /// to `target/e2e-logs/<name>.log`.
    pub fn envoy(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            scrape_interval: Duration::from_secs(1),
            targets: vec![format!("127.0.0.1:{ADMIN_PORT}")],
            metrics_path: "/stats/prometheus".to_owned(),
            rule_files: Vec::new(),
            port: None,
        }
    }

    /// The scrape (and rule evaluation) interval, in whole seconds, at least 1.
    pub fn scrape_interval(mut self, interval: Duration) -> Self {
        self.scrape_interval = interval.max(Duration::from_secs(1));
        self
    }

    /// A rule file to load (alerting or recording rules), evaluated every scrape interval.
    pub fn rule_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.rule_files.push(path.into());
        self
    }

    /// Listen on this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The configuration file's text.
    pub fn config_yaml(&self) -> String {
        let secs = self.scrape_interval.as_secs().max(1);
        let mut yaml = format!(
            "global:\n  scrape_interval: {secs}s\n  scrape_timeout: {secs}s\n  evaluation_interval: {secs}s\n"
        );
        if !self.rule_files.is_empty() {
            yaml.push_str("rule_files:\n");
            for file in &self.rule_files {
                yaml.push_str(&format!("- {:?}\n", file.display().to_string()));
            }
        }
        yaml.push_str(&format!(
            "scrape_configs:\n- job_name: envoy\n  metrics_path: {:?}\n  static_configs:\n  - targets: [{}]\n",
            self.metrics_path,
            self.targets
                .iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        yaml
    }
}

/// One series of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, or "" when the series lacks it.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// A running Prometheus; stopped (SIGTERM, then SIGKILL) and reaped on drop, its
/// storage directory removed.
#[derive(Debug)]
pub struct PrometheusProcess {
    child: Option<Child>,
    addr: SocketAddr,
    dir: PathBuf,
    log_path: PathBuf,
}

impl PrometheusProcess {
    /// Starts Prometheus and waits until `/-/ready` answers 200.
    pub fn start(options: &PrometheusOptions) -> Result<Self, String> {
        let (bin, _) = prometheus_bins()?;
        let port = match options.port {
            Some(port) => port,
            None => free_port()?,
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let dir = repo_root().join("target/e2e-prometheus").join(format!(
            "{}-{}-{port}",
            options.name,
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("data"))
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let config = dir.join("prometheus.yml");
        fs::write(&config, options.config_yaml())
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let log_path = log_path(&options.name);
        let log = open_log(&log_path, false)?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot share log {}: {e}", log_path.display()))?;
        let child = Command::new(&bin)
            .current_dir(repo_root())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let mut prometheus = Self {
            child: Some(child),
            addr,
            dir,
            log_path,
        };
        prometheus.wait_ready(PROMETHEUS_READY_TIMEOUT)?;
        Ok(prometheus)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = wait_timeout(child, Duration::ZERO) {
                    return Err(format!(
                        "prometheus exited ({status}) before it was ready\n{}",
                        log_tail(&self.log_path)
                    ));
                }
            }
            if matches!(http_get(self.addr, "/-/ready", API_TIMEOUT), Ok(r) if r.status == 200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "prometheus on {} not ready after {timeout:?}\n{}",
                    self.addr,
                    log_tail(&self.log_path)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where it listens, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address of a page of its web UI (`graph`, `alerts`, `config`): Debian's
    /// package serves only the classic UI, under `/classic/`.
    pub fn ui_url(&self, page: &str) -> String {
        let classic = matches!(
            http_get(self.addr, "/classic/graph", API_TIMEOUT),
            Ok(r) if r.status == 200
        );
        let prefix = if classic { "/classic" } else { "" };
        format!("{}{prefix}/{page}", self.url())
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// `GET path` of the HTTP API; the `data` field of a `"status": "success"` answer.
    pub fn api(&self, path: &str) -> Result<serde_json::Value, String> {
        let response = http_get(self.addr, path, API_TIMEOUT)?;
        let body: serde_json::Value = serde_json::from_str(&response.body)
            .map_err(|e| format!("GET {path}: not JSON ({e}): {}", response.body))?;
        if response.status != 200 || body["status"] != "success" {
            return Err(format!(
                "GET {path}: HTTP {}: {}",
                response.status, response.body
            ));
        }
        Ok(body["data"].clone())
    }

    /// Evaluates `expr` now (`/api/v1/query`); it must give an instant vector.
    pub fn query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        self.evaluate(expr, None)
    }

    /// Evaluates `expr` at `time` (seconds since the Unix epoch), so that several
    /// queries see the same window.
    pub fn query_at(&self, expr: &str, time: f64) -> Result<Vec<Sample>, String> {
        self.evaluate(expr, Some(time))
    }

    fn evaluate(&self, expr: &str, time: Option<f64>) -> Result<Vec<Sample>, String> {
        let at = time.map(|t| format!("&time={t:.3}")).unwrap_or_default();
        let data = self.api(&format!("/api/v1/query?query={}{at}", url_encode(expr)))?;
        if data["resultType"] != "vector" {
            return Err(format!(
                "`{expr}` gives a {}, not a vector",
                data["resultType"]
            ));
        }
        let mut samples = Vec::new();
        for series in data["result"].as_array().into_iter().flatten() {
            let labels = series["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            let value = series["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| format!("`{expr}`: no value in {series}"))?;
            samples.push(Sample { labels, value });
        }
        Ok(samples)
    }

    /// The values of label `name` on the series `selector` matches (what Grafana's
    /// `label_values(selector, name)` lists).
    pub fn label_values(&self, selector: &str, name: &str) -> Result<Vec<String>, String> {
        let data = self.api(&format!(
            "/api/v1/label/{name}/values?match[]={}",
            url_encode(selector)
        ))?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect())
    }

    /// Whether every scrape target is up and has been scraped at least once.
    pub fn targets_up(&self) -> Result<bool, String> {
        let data = self.api("/api/v1/targets")?;
        let active = data["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(!active.is_empty() && active.iter().all(|t| t["health"] == "up"))
    }
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, STOP_GRACE);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on right now (the kernel's pick for 127.0.0.1:0).
fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encode_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(
            url_encode(r#"sum by (a) (x{b=~"c|d"}[1s])"#),
            "sum%20by%20%28a%29%20%28x%7Bb%3D~%22c%7Cd%22%7D%5B1s%5D%29"
        );
    }

    #[test]
    fn the_config_scrapes_envoy_every_second_with_the_rules() {
        let yaml = PrometheusOptions::envoy("p")
            .rule_file("/r/alerts.yaml")
            .config_yaml();
        assert_eq!(
            yaml,
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n- \"/r/alerts.yaml\"\n\
             scrape_configs:\n- job_name: envoy\n  metrics_path: \"/stats/prometheus\"\n  \
             static_configs:\n  - targets: [\"127.0.0.1:9901\"]\n"
        );
    }
}
