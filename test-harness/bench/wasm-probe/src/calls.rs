//! The probe's configuration: which host calls to make per request, and how often.

use std::fmt::{self, Write as _};

/// The most repetitions of one call per request.
pub const MAX_COUNT: u32 = 1_000;

/// ewma-balancer's host calls on a balanced gRPC request in steady state (its `fuel`
/// binary counts 7.1 per request: these seven, and `upstream.address` on every 8th pick
/// of an endpoint, which this list leaves out).
pub const FILTER_CALLS: &str = "request_header=1 cluster_name=1 override_header=1 \
                                body_clock=1 \
                                response_clock=1 grpc_status=1 histogram=1";

/// One host call the probe can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    /// Request headers: read `content-type` (is it gRPC?).
    RequestHeader,
    /// Request headers: the `xds.cluster_name` property (the routed cluster).
    ClusterName,
    /// Request headers: the clock.
    Clock,
    /// Request headers: set the override header to the next of `endpoints`, which the
    /// cluster's `override_host` policy then reads.
    OverrideHeader,
    /// Request headers: set a header nobody reads (`x-wasm-probe`).
    SetHeader,
    /// Request body, at its end: the clock (when the request was whole).
    BodyClock,
    /// Response headers: the clock.
    ResponseClock,
    /// Response trailers: read `grpc-status`.
    ResponseTrailer,
    /// Log: the `response.grpc_status` property.
    GrpcStatus,
    /// Log: the `upstream.address` property.
    UpstreamAddress,
    /// Log: record a histogram sample.
    Histogram,
    /// Log: increment a counter.
    Counter,
}

impl Call {
    /// Every call, in the order `make bench-hostcalls` shows them.
    pub const ALL: [Call; 12] = [
        Self::RequestHeader,
        Self::ClusterName,
        Self::Clock,
        Self::OverrideHeader,
        Self::SetHeader,
        Self::BodyClock,
        Self::ResponseClock,
        Self::ResponseTrailer,
        Self::GrpcStatus,
        Self::UpstreamAddress,
        Self::Histogram,
        Self::Counter,
    ];

    /// Its name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::RequestHeader => "request_header",
            Self::ClusterName => "cluster_name",
            Self::Clock => "clock",
            Self::OverrideHeader => "override_header",
            Self::SetHeader => "set_header",
            Self::BodyClock => "body_clock",
            Self::ResponseClock => "response_clock",
            Self::ResponseTrailer => "response_trailer",
            Self::GrpcStatus => "grpc_status",
            Self::UpstreamAddress => "upstream_address",
            Self::Histogram => "histogram",
            Self::Counter => "counter",
        }
    }

    /// What the call is, in the host's terms.
    pub fn description(self) -> &'static str {
        match self {
            Self::RequestHeader => "read a request header (`content-type`)",
            Self::ClusterName => "read the property `xds.cluster_name`",
            Self::Clock => "read the clock (request headers)",
            Self::OverrideHeader => "set the override header (`override_host` reads it)",
            Self::SetHeader => "set a request header nobody reads",
            Self::BodyClock => "read the clock (end of the request body)",
            Self::ResponseClock => "read the clock (response headers)",
            Self::ResponseTrailer => "read a response trailer (`grpc-status`)",
            Self::GrpcStatus => "read the property `response.grpc_status`",
            Self::UpstreamAddress => "read the property `upstream.address`",
            Self::Histogram => "record a histogram sample",
            Self::Counter => "increment a counter",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|call| call.name() == name)
    }
}

/// How often to make each call per request, and the endpoints to name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calls {
    counts: [u32; Call::ALL.len()],
    /// `IP:port`s the override header names in turn.
    pub endpoints: Vec<String>,
    /// `trap_at=N`: the VM traps (executes Wasm `unreachable`) on its Nth request,
    /// counting from 1 in each VM instance, to show what Envoy's `failure_policy` does
    /// with a VM that fails at runtime (test-harness `e2e_failure_policy`).
    pub trap_at: Option<u64>,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid wasm-probe configuration: {}", self.0)
    }
}

impl Calls {
    /// Reads `call=count …` (see the crate documentation); empty means no calls.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut calls = Self::default();
        let known = || {
            Call::ALL
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for item in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
        {
            let Some((name, value)) = item.split_once('=') else {
                return Err(ConfigError(format!(
                    "{:?}: expected call=count, endpoints=IP:port|… or trap_at=N",
                    clip(item)
                )));
            };
            if name == "trap_at" {
                calls.trap_at = Some(value.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(
                    || {
                        ConfigError(format!(
                            "trap_at: expected a request number from 1, got {:?}",
                            clip(value)
                        ))
                    },
                )?);
                continue;
            }
            if name == "endpoints" {
                calls.endpoints = value
                    .split('|')
                    .filter(|e| !e.is_empty())
                    .map(str::to_owned)
                    .collect();
                continue;
            }
            let Some(call) = Call::from_name(name) else {
                return Err(ConfigError(format!(
                    "unknown call {:?}; known calls are {}",
                    clip(name),
                    known()
                )));
            };
            let count = value
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= MAX_COUNT)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "{name}: expected a whole number from 0 to {MAX_COUNT}, got {:?}",
                        clip(value)
                    ))
                })?;
            calls.counts[call as usize] = count;
        }
        if calls.count(Call::OverrideHeader) > 0 && calls.endpoints.is_empty() {
            return Err(ConfigError(
                "override_header needs endpoints=IP:port|IP:port|…".to_owned(),
            ));
        }
        Ok(calls)
    }

    /// How often `call` is made per request.
    pub fn count(&self, call: Call) -> u32 {
        self.counts[call as usize]
    }
}

/// `yaml` (envoy-configs/bench/hostcalls.yaml) with the probe's configuration replaced
/// by `calls`. The file must hold exactly one `value: "…"` line: the probe's.
pub fn with_probe_calls(yaml: &str, calls: &str) -> Result<String, String> {
    let is_value = |line: &str| line.trim_start().starts_with("value: \"");
    match yaml.lines().filter(|l| is_value(l)).count() {
        1 => {}
        n => return Err(format!("expected one `value: \"…\"` line, found {n}")),
    }
    let mut out = String::with_capacity(yaml.len());
    for line in yaml.lines() {
        if is_value(line) {
            let indent = &line[..line.len() - line.trim_start().len()];
            let _ = writeln!(out, "{indent}value: \"{calls}\"");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// Echoed input is clipped, so a configuration cannot flood the log.
fn clip(text: &str) -> &str {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_counts_and_endpoints_separated_by_spaces_or_commas() {
        let calls =
            Calls::parse("clock=2, override_header=1 endpoints=127.0.0.1:1|127.0.0.1:2").unwrap();
        assert_eq!(calls.count(Call::Clock), 2);
        assert_eq!(calls.count(Call::OverrideHeader), 1);
        assert_eq!(calls.count(Call::GrpcStatus), 0);
        assert_eq!(calls.endpoints, ["127.0.0.1:1", "127.0.0.1:2"]);
    }

    #[test]
    fn empty_means_no_calls() {
        let calls = Calls::parse("  ").unwrap();
        assert!(Call::ALL.iter().all(|&c| calls.count(c) == 0));
    }

    #[test]
    fn the_filters_calls_are_eight_calls_once_each() {
        let calls = Calls::parse(&format!("{FILTER_CALLS} endpoints=127.0.0.1:1")).unwrap();
        let made: Vec<_> = Call::ALL
            .iter()
            .filter(|&&c| calls.count(c) > 0)
            .map(|c| (c.name(), calls.count(*c)))
            .collect();
        assert_eq!(
            made,
            [
                ("request_header", 1),
                ("cluster_name", 1),
                ("override_header", 1),
                ("body_clock", 1),
                ("response_clock", 1),
                ("grpc_status", 1),
                ("histogram", 1)
            ]
        );
    }

    #[test]
    fn refuses_unknown_calls_bad_counts_and_an_override_without_endpoints() {
        let error = |text: &str| Calls::parse(text).unwrap_err().to_string();
        assert_eq!(
            error("clocks=1"),
            "invalid wasm-probe configuration: unknown call \"clocks\"; known calls are \
             request_header, cluster_name, clock, override_header, set_header, body_clock, response_clock, \
             response_trailer, grpc_status, upstream_address, histogram, counter"
        );
        assert_eq!(
            error("clock=-1"),
            "invalid wasm-probe configuration: clock: expected a whole number from 0 to 1000, got \"-1\""
        );
        assert_eq!(
            error("clock=1001"),
            "invalid wasm-probe configuration: clock: expected a whole number from 0 to 1000, got \"1001\""
        );
        assert_eq!(
            error("clock"),
            "invalid wasm-probe configuration: \"clock\": expected call=count, endpoints=IP:port|… or trap_at=N"
        );
        assert_eq!(
            error("override_header=1"),
            "invalid wasm-probe configuration: override_header needs endpoints=IP:port|IP:port|…"
        );
        assert_eq!(
            error("trap_at=0"),
            "invalid wasm-probe configuration: trap_at: expected a request number from 1, got \"0\""
        );
        assert_eq!(Calls::parse("trap_at=3").unwrap().trap_at, Some(3));
        let long = error(&"x".repeat(500));
        assert!(long.contains(&format!("\"{}\"", "x".repeat(64))), "{long}");
    }
}
