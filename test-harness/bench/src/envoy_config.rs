//! The Envoy configuration of one scenario run: the policy's own configuration file with
//! the `greeter` cluster's endpoints set to the scenario's greeters (ten in `many-slow`,
//! the healthy ones for the oracle), everything else (the filter, its plugin
//! configuration, the `prometheus_stats` admin cluster, stats settings) kept as it is.
//!
//! The copy is written by parsing the YAML and serialising it again, so it carries no
//! comments; the bench writes it under `target/bench/configs/`.

use serde_json::json;
use serde_norway::Value;

/// The cluster every configuration routes the greeter's calls to.
pub const GREETER_CLUSTER: &str = "greeter";

/// `yaml` (read from `source`, named in the header comment) with the `greeter`
/// cluster's `load_assignment.endpoints` replaced by one locality holding
/// `127.0.0.1:<port>` for each of `ports`.
pub fn with_greeter_endpoints(yaml: &str, source: &str, ports: &[u16]) -> Result<String, String> {
    let mut config: Value =
        serde_norway::from_str(yaml).map_err(|error| format!("{source}: not YAML: {error}"))?;
    let cluster = config
        .get_mut("static_resources")
        .and_then(|resources| resources.get_mut("clusters"))
        .and_then(Value::as_sequence_mut)
        .and_then(|clusters| {
            clusters
                .iter_mut()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(GREETER_CLUSTER))
        })
        .ok_or_else(|| format!("{source}: no static cluster named {GREETER_CLUSTER:?}"))?;
    let assignment = cluster
        .get_mut("load_assignment")
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| format!("{source}: cluster {GREETER_CLUSTER:?} has no load_assignment"))?;
    assignment.insert("endpoints".into(), endpoints(ports)?);
    let body = serde_norway::to_string(&config)
        .map_err(|error| format!("{source}: cannot write YAML: {error}"))?;
    let listed: Vec<String> = ports.iter().map(u16::to_string).collect();
    Ok(format!(
        "# Written by the bench from {source}, with the {GREETER_CLUSTER:?} cluster's endpoints \
         set to 127.0.0.1:{{{}}}.\n{body}",
        listed.join(",")
    ))
}

/// `[{lb_endpoints: [{endpoint: {address: {socket_address: …}}}, …]}]`.
fn endpoints(ports: &[u16]) -> Result<Value, String> {
    let lb_endpoints: Vec<_> = ports
        .iter()
        .map(|port| {
            json!({"endpoint": {"address": {"socket_address":
                {"address": "127.0.0.1", "port_value": port}}}})
        })
        .collect();
    serde_norway::to_value(json!([{ "lb_endpoints": lb_endpoints }]))
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn yaml(text: &str) -> Value {
        serde_norway::from_str(text).unwrap()
    }

    fn repo_file(path: &str) -> String {
        fs::read_to_string(e2e::repo_root().join(path)).unwrap()
    }

    fn greeter_ports(config: &Value) -> Vec<u64> {
        let clusters = config["static_resources"]["clusters"]
            .as_sequence()
            .unwrap();
        let greeter = clusters
            .iter()
            .find(|c| c["name"].as_str() == Some("greeter"))
            .unwrap();
        greeter["load_assignment"]["endpoints"][0]["lb_endpoints"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| e["endpoint"]["address"]["socket_address"]["port_value"].as_u64())
            .map(Option::unwrap)
            .collect()
    }

    const TWO_CLUSTERS: &str = r#"
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 9901 } } }
static_resources:
  clusters:
  - name: greeter
    type: STATIC
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: greeter
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 50051 } } }
  - name: prometheus_stats
    load_assignment:
      cluster_name: prometheus_stats
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 9901 } } }
"#;

    #[test]
    fn only_the_greeter_endpoints_change() {
        let written = with_greeter_endpoints(TWO_CLUSTERS, "two.yaml", &[50051, 50052]).unwrap();
        assert!(
            written.starts_with(
                "# Written by the bench from two.yaml, with the \"greeter\" cluster's endpoints \
                 set to 127.0.0.1:{50051,50052}.\n"
            ),
            "{written}"
        );
        let (mut written, mut original) = (yaml(&written), yaml(TWO_CLUSTERS));
        assert_eq!(greeter_ports(&written), [50051, 50052]);
        assert_eq!(greeter_ports(&original), [50051]);
        let endpoints = |config: &mut Value| {
            config["static_resources"]["clusters"][0]["load_assignment"]["endpoints"] = Value::Null;
        };
        endpoints(&mut written);
        endpoints(&mut original);
        assert_eq!(written, original, "nothing else differs");
    }

    #[test]
    fn a_config_without_the_greeter_cluster_is_refused() {
        let admin_only = "static_resources: { clusters: [{ name: prometheus_stats }] }";
        assert_eq!(
            with_greeter_endpoints(admin_only, "x.yaml", &[50051]),
            Err("x.yaml: no static cluster named \"greeter\"".to_owned())
        );
        assert_eq!(
            with_greeter_endpoints(
                "static_resources: { clusters: [{ name: greeter }] }",
                "y.yaml",
                &[1]
            ),
            Err("y.yaml: cluster \"greeter\" has no load_assignment".to_owned())
        );
        assert!(with_greeter_endpoints("[", "z.yaml", &[1])
            .unwrap_err()
            .starts_with("z.yaml: not YAML: "));
    }

    #[test]
    fn ten_endpoints_for_every_policy_config_keep_the_filter_setup() {
        for path in [
            "envoy-configs/static/round-robin.yaml",
            "envoy-configs/static/least-request.yaml",
            "envoy-configs/static/ewma.yaml",
            "envoy-configs/bench/ewma-retry.yaml",
            "envoy-configs/bench/oracle.yaml",
            "envoy-configs/bench/least-request-full-scan.yaml",
        ] {
            let text = repo_file(path);
            let ports: Vec<u16> = (50051..=50060).collect();
            let written = yaml(&with_greeter_endpoints(&text, path, &ports).unwrap());
            assert_eq!(
                greeter_ports(&written),
                (50051..=50060).collect::<Vec<u64>>(),
                "{path}"
            );
            let original = yaml(&text);
            let listeners = |c: &Value| c["static_resources"]["listeners"].clone();
            assert_eq!(listeners(&written), listeners(&original), "{path}");
            assert_eq!(written["admin"], original["admin"], "{path}");
            assert_eq!(written["stats_config"], original["stats_config"], "{path}");
            let admin_cluster = |c: &Value| {
                c["static_resources"]["clusters"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .find(|c| c["name"].as_str() == Some("prometheus_stats"))
                    .cloned()
            };
            assert_eq!(admin_cluster(&written), admin_cluster(&original), "{path}");
        }
    }

    /// `text` with the commented-out block that starts with the line `# <first>` (and
    /// goes on with the lines commented at the same column and indented deeper)
    /// uncommented; `None` if there is no such block.
    fn uncommented(text: &str, first: &str) -> Option<String> {
        let mut out = String::new();
        let mut column: Option<usize> = None;
        let mut found = false;
        for line in text.lines() {
            let hash = line.len() - line.trim_start().len();
            let starts = line.trim_start() == format!("# {first}");
            let inside = column.is_some_and(|c| {
                hash == c && line[c..].starts_with("#  ") && !line[c + 1..].trim().is_empty()
            });
            if starts || inside {
                column = Some(hash);
                found = true;
                out.push_str(&line[..hash]);
                out.push_str(&line[hash + 2..]);
            } else {
                column = None;
                out.push_str(line);
            }
            out.push('\n');
        }
        found.then_some(out)
    }

    #[test]
    fn ewma_retry_is_ewma_with_its_documented_retry_policy_switched_on() {
        let ewma = repo_file("envoy-configs/static/ewma.yaml");
        let switched_on = uncommented(&ewma, "retry_policy:")
            .expect("ewma.yaml documents a retry_policy block in a comment");
        let expected = yaml(&switched_on);
        let retry = yaml(&repo_file("envoy-configs/bench/ewma-retry.yaml"));
        let route = |c: &Value| {
            c["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
                ["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
                .clone()
        };
        assert_eq!(
            route(&retry)["retry_policy"]["retry_on"].as_str(),
            Some("connect-failure,refused-stream,reset,unavailable")
        );
        assert_eq!(
            route(&retry)["retry_policy"]["num_retries"].as_u64(),
            Some(2)
        );
        assert_eq!(
            retry, expected,
            "envoy-configs/bench/ewma-retry.yaml drifted from envoy-configs/static/ewma.yaml \
             (apart from comments it must be ewma.yaml with the retry block uncommented)"
        );
        assert_ne!(yaml(&ewma), expected, "ewma.yaml itself has no retries");
    }

    #[test]
    fn least_request_full_scan_is_least_request_scanning_every_host() {
        let mut expected = yaml(&repo_file("envoy-configs/static/least-request.yaml"));
        let full_scan = yaml(&repo_file(
            "envoy-configs/bench/least-request-full-scan.yaml",
        ));
        let greeter = expected["static_resources"]["clusters"][0]
            .as_mapping_mut()
            .unwrap();
        assert_eq!(
            greeter
                .remove("lb_policy")
                .and_then(|p| p.as_str().map(str::to_owned)),
            Some("LEAST_REQUEST".to_owned())
        );
        greeter.insert(
            "load_balancing_policy".into(),
            yaml(
                r#"
policies:
- typed_extension_config:
    name: envoy.load_balancing_policies.least_request
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest
      selection_method: FULL_SCAN
"#,
            ),
        );
        assert_eq!(
            full_scan, expected,
            "envoy-configs/bench/least-request-full-scan.yaml drifted from \
             envoy-configs/static/least-request.yaml (apart from comments it must be \
             least-request.yaml with the LeastRequest extension's FULL_SCAN in lb_policy's place)"
        );
    }

    #[test]
    fn uncommenting_takes_the_whole_block_and_nothing_after_it() {
        let text = "a:\n  # b:\n  #   c: 1\n  #   d:\n  #   - 2\n  # not yaml: [\ne: 3\n";
        assert_eq!(
            uncommented(text, "b:").unwrap(),
            "a:\n  b:\n    c: 1\n    d:\n    - 2\n  # not yaml: [\ne: 3\n"
        );
        assert_eq!(uncommented(text, "x:"), None);
    }
}
