//! Plugin configuration: JSON from Envoy's `configuration` / Istio's `pluginConfig`,
//! validated into a typed [`Config`]. Empty or absent configuration means all defaults.
//!
//! Every error names the field, what is accepted and what was given, in one line; the
//! host logs it and refuses the configuration (`on_configure` returns false).

use crate::duration::{format_duration, parse_duration};
use crate::Nanos;
use serde_json::{Map, Value};
use std::fmt;

const MS: Nanos = 1_000_000;
const SEC: Nanos = 1_000 * MS;

/// Linkerd's default: an endpoint we know nothing about is assumed to answer in 30 ms.
pub const DEFAULT_RTT: Nanos = 30 * MS;
/// An estimate forgets ~63 % of its past in 2 s. Linkerd uses 10 s; measured here, one
/// peak (a first request that pays for the upstream connection, a scheduling hiccup)
/// then kept a healthy endpoint at 0.2-0.4 % of the traffic for 10 s and more after a
/// start, against 2-4 s with 2 s. A slow endpoint is still probed only every few seconds
/// (40 ms decays to 1 ms in 2 s × ln 40 ≈ 7 s).
pub const DEFAULT_DECAY: Nanos = 2 * SEC;
pub const DEFAULT_FAILURE_PENALTY: Nanos = SEC;
pub const DEFAULT_FAILURE_DECAY: Nanos = SEC;
pub const DEFAULT_EXPLORE_RATIO: f64 = 0.01;
pub const DEFAULT_ENDPOINT_TTL: Nanos = 60 * SEC;
pub const DEFAULT_MAX_ENDPOINTS: u16 = 1024;
pub const DEFAULT_REFRESH_INTERVAL: Nanos = 250 * MS;
pub const DEFAULT_OVERRIDE_HEADER: &str = "x-ewma-balancer-host";
/// The cluster Istio's sidecar bootstrap defines to the admin interface (for its
/// `/stats/prometheus` route): membership from Envoy needs no configuration there.
pub const DEFAULT_ADMIN_CLUSTER: &str = "prometheus_stats";
pub const DEFAULT_MEMBERSHIP_REFRESH: Nanos = SEC;
/// How long the last good membership is trusted while the admin interface fails, before
/// the filter falls back to learning endpoints from traffic.
pub const DEFAULT_MEMBERSHIP_MAX_AGE: Nanos = 10 * SEC;
/// RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE: the codes that say "this endpoint is in
/// trouble" rather than "this request was wrong".
pub const DEFAULT_FAILURE_GRPC_CODES: [u32; 3] = [8, 13, 14];

/// An RTT floor: below a millisecond the default would make unknown endpoints look
/// faster than most real ones on a LAN, which starves them of the probe they need.
const MIN_DEFAULT_RTT: Nanos = MS;
/// A decay floor: shorter than this, the estimate is just the last sample.
const MIN_DECAY: Nanos = 100 * MS;

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub override_header: String,
    pub default_rtt: Nanos,
    pub decay: Nanos,
    pub failure_penalty: Nanos,
    pub failure_decay: Nanos,
    pub explore_ratio: f64,
    pub endpoint_ttl: Nanos,
    pub max_endpoints: u16,
    pub refresh_interval: Nanos,
    pub balance_all_http: bool,
    pub failure_grpc_codes: Vec<u32>,
    /// The cluster to Envoy's admin interface; `None` (configured as `""`): learn
    /// membership from traffic only.
    pub admin_cluster: Option<String>,
    pub membership_refresh: Nanos,
    pub membership_max_age: Nanos,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            override_header: DEFAULT_OVERRIDE_HEADER.into(),
            default_rtt: DEFAULT_RTT,
            decay: DEFAULT_DECAY,
            failure_penalty: DEFAULT_FAILURE_PENALTY,
            failure_decay: DEFAULT_FAILURE_DECAY,
            explore_ratio: DEFAULT_EXPLORE_RATIO,
            endpoint_ttl: DEFAULT_ENDPOINT_TTL,
            max_endpoints: DEFAULT_MAX_ENDPOINTS,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            balance_all_http: false,
            failure_grpc_codes: DEFAULT_FAILURE_GRPC_CODES.to_vec(),
            admin_cluster: Some(DEFAULT_ADMIN_CLUSTER.into()),
            membership_refresh: DEFAULT_MEMBERSHIP_REFRESH,
            membership_max_age: DEFAULT_MEMBERSHIP_MAX_AGE,
        }
    }
}

/// What is wrong with a configuration, naming the field.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Messages echo the operator's text: clipped, so that a huge value cannot make
        // a huge log line. An unknown field's name is also Debug-quoted, so that it
        // cannot break the line either (`{"\nx":1}`); values are echoed as JSON.
        let message = clip(&self.message, MAX_ECHO);
        if self.field.is_empty() {
            write!(f, "invalid plugin configuration: {message}")
        } else {
            let field = format!("{:?}", self.field);
            let field = clip(&field, MAX_ECHO);
            write!(f, "invalid plugin configuration: field {field}: {message}")
        }
    }
}

/// The most of a message or field name an error line shows, in bytes.
const MAX_ECHO: usize = 256;

/// `text`, cut at a character boundary at most `max` bytes in, marked when cut.
fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len()).into()
}

/// The accepted fields, in the order the README documents them.
pub const FIELDS: [&str; 14] = [
    "overrideHeader",
    "defaultRtt",
    "decay",
    "failurePenalty",
    "failureDecay",
    "exploreRatio",
    "endpointTtl",
    "maxEndpoints",
    "refreshInterval",
    "balanceAllHttp",
    "failureGrpcCodes",
    "adminCluster",
    "membershipRefresh",
    "membershipMaxAge",
];

impl Config {
    /// Parses plugin configuration bytes. `None`, empty or all-whitespace means defaults.
    pub fn parse(bytes: Option<&[u8]>) -> Result<Self, ConfigError> {
        let bytes = bytes.unwrap_or_default();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| ConfigError {
            field: String::new(),
            message: format!("not valid JSON: {e}"),
        })?;
        let Value::Object(map) = value else {
            return Err(ConfigError {
                field: String::new(),
                message: format!("expected a JSON object, got {}", json_type(&value)),
            });
        };
        Self::from_map(&map)
    }

    /// Every field with its value, in [`FIELDS`]' order, as the JSON would spell it
    /// (durations as duration strings): `configured` log lines and the config checker
    /// print this, so that what they show cannot drift from what is parsed.
    pub fn values(&self) -> [(&'static str, String); FIELDS.len()] {
        let codes: Vec<String> = self.failure_grpc_codes.iter().map(u32::to_string).collect();
        let values = [
            format!("{:?}", self.override_header),
            format!("{:?}", format_duration(self.default_rtt)),
            format!("{:?}", format_duration(self.decay)),
            format!("{:?}", format_duration(self.failure_penalty)),
            format!("{:?}", format_duration(self.failure_decay)),
            self.explore_ratio.to_string(),
            format!("{:?}", format_duration(self.endpoint_ttl)),
            self.max_endpoints.to_string(),
            format!("{:?}", format_duration(self.refresh_interval)),
            self.balance_all_http.to_string(),
            format!("[{}]", codes.join(",")),
            format!("{:?}", self.admin_cluster.as_deref().unwrap_or_default()),
            format!("{:?}", format_duration(self.membership_refresh)),
            format!("{:?}", format_duration(self.membership_max_age)),
        ];
        let mut i = 0;
        values.map(|value| {
            let name = FIELDS.get(i).copied().unwrap_or_default();
            i += 1;
            (name, value)
        })
    }

    /// `field=value` for every field, space-separated.
    pub fn describe(&self) -> String {
        self.values()
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn from_map(map: &Map<String, Value>) -> Result<Self, ConfigError> {
        if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(ConfigError {
                field: unknown.clone(),
                message: format!("unknown field; accepted fields are {}", FIELDS.join(", ")),
            });
        }
        let d = Self::default();
        let f = Fields(map);
        Ok(Self {
            override_header: f.header("overrideHeader", d.override_header)?,
            default_rtt: f.duration("defaultRtt", d.default_rtt, MIN_DEFAULT_RTT, 60 * SEC)?,
            decay: f.duration("decay", d.decay, MIN_DECAY, 3600 * SEC)?,
            failure_penalty: f.duration("failurePenalty", d.failure_penalty, MS, 3600 * SEC)?,
            failure_decay: f.duration("failureDecay", d.failure_decay, 10 * MS, 3600 * SEC)?,
            explore_ratio: f.ratio("exploreRatio", d.explore_ratio, 0.0, 0.5)?,
            endpoint_ttl: f.duration("endpointTtl", d.endpoint_ttl, SEC, 24 * 3600 * SEC)?,
            max_endpoints: u16::try_from(f.integer(
                "maxEndpoints",
                d.max_endpoints.into(),
                2,
                65_535,
            )?)
            .unwrap_or(u16::MAX),
            refresh_interval: f.duration(
                "refreshInterval",
                d.refresh_interval,
                10 * MS,
                60 * SEC,
            )?,
            balance_all_http: f.boolean("balanceAllHttp", d.balance_all_http)?,
            failure_grpc_codes: f.grpc_codes("failureGrpcCodes", d.failure_grpc_codes)?,
            admin_cluster: f.cluster_name("adminCluster", d.admin_cluster)?,
            membership_refresh: f.duration(
                "membershipRefresh",
                d.membership_refresh,
                100 * MS,
                60 * SEC,
            )?,
            membership_max_age: f.duration(
                "membershipMaxAge",
                d.membership_max_age,
                SEC,
                3600 * SEC,
            )?,
        })
    }
}

/// Typed access to the fields of the JSON object, each error naming its field.
struct Fields<'a>(&'a Map<String, Value>);

/// A non-negative whole number, also when written as a float: Istio hands `pluginConfig`
/// over as a protobuf `Struct`, whose numbers are doubles, so `1024` may arrive as
/// `1024.0`. `1024.5`, negatives and non-numbers are not whole numbers.
fn as_whole_number(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        let f = v.as_f64()?;
        // A whole number within u64's range, checked first: the cast is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        (f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f)).then_some(f as u64)
    })
}

fn err(field: &str, message: String) -> ConfigError {
    ConfigError {
        field: field.into(),
        message,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Fields<'_> {
    fn duration(
        &self,
        name: &str,
        default: Nanos,
        min: Nanos,
        max: Nanos,
    ) -> Result<Nanos, ConfigError> {
        let Some(v) = self.0.get(name) else {
            return Ok(default);
        };
        let range = format!(
            "a duration string between {} and {}",
            format_duration(min),
            format_duration(max)
        );
        let Value::String(text) = v else {
            return Err(err(
                name,
                format!(
                    "expected {range} (like \"{}\"), got {}",
                    format_duration(default),
                    json_type(v)
                ),
            ));
        };
        match parse_duration(text) {
            Ok(ns) if (min..=max).contains(&ns) => Ok(ns),
            Ok(_) => Err(err(name, format!("expected {range}, got {text:?}"))),
            Err(why) => Err(err(name, format!("expected {range}, got {text:?}: {why}"))),
        }
    }

    fn ratio(&self, name: &str, default: f64, min: f64, max: f64) -> Result<f64, ConfigError> {
        let Some(v) = self.0.get(name) else {
            return Ok(default);
        };
        match v.as_f64() {
            Some(x) if (min..=max).contains(&x) => Ok(x),
            _ => Err(err(
                name,
                format!("expected a number between {min} and {max}, got {v}"),
            )),
        }
    }

    fn integer(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        let Some(v) = self.0.get(name) else {
            return Ok(default);
        };
        match as_whole_number(v) {
            Some(x) if (min..=max).contains(&x) => Ok(x),
            _ => Err(err(
                name,
                format!("expected an integer between {min} and {max}, got {v}"),
            )),
        }
    }

    fn boolean(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.0.get(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(err(name, format!("expected true or false, got {v}"))),
        }
    }

    fn header(&self, name: &str, default: String) -> Result<String, ConfigError> {
        let Some(v) = self.0.get(name) else {
            return Ok(default);
        };
        let expected = "expected a lowercase HTTP header name of 1 to 100 characters from a-z, 0-9, '-' and '_', not starting with ':'";
        match v {
            Value::String(s)
                if !s.is_empty()
                    && s.len() <= 100
                    && s.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    }) =>
            {
                Ok(s.clone())
            }
            _ => Err(err(name, format!("{expected}, got {v}"))),
        }
    }

    /// An Envoy cluster name, or `""` for none.
    fn cluster_name(
        &self,
        name: &str,
        default: Option<String>,
    ) -> Result<Option<String>, ConfigError> {
        let Some(v) = self.0.get(name) else {
            return Ok(default);
        };
        match v {
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) if s.len() <= 255 && !s.chars().any(char::is_control) => {
                Ok(Some(s.clone()))
            }
            _ => Err(err(
                name,
                format!(
                    "expected an Envoy cluster name of at most 255 characters without control characters, or \"\" for none, got {v}"
                ),
            )),
        }
    }

    fn grpc_codes(&self, name: &str, default: Vec<u32>) -> Result<Vec<u32>, ConfigError> {
        let Some(v) = self.0.get(name) else {
            return Ok(default);
        };
        let expected =
            "expected an array of distinct gRPC status codes between 1 and 16 (at most 16 entries)";
        let Value::Array(items) = v else {
            return Err(err(name, format!("{expected}, got {v}")));
        };
        let mut codes = Vec::with_capacity(items.len());
        for item in items {
            match as_whole_number(item).and_then(|c| u32::try_from(c).ok()) {
                Some(c @ 1..=16) if !codes.contains(&c) && codes.len() < 16 => codes.push(c),
                _ => return Err(err(name, format!("{expected}, got {v}"))),
            }
        }
        Ok(codes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invalid_configs::INVALID_CONFIGS;

    fn parse(json: &str) -> Result<Config, String> {
        Config::parse(Some(json.as_bytes())).map_err(|e| e.to_string())
    }

    #[test]
    fn absent_empty_and_empty_object_mean_defaults() {
        assert_eq!(Config::parse(None), Ok(Config::default()));
        assert_eq!(Config::parse(Some(b"")), Ok(Config::default()));
        assert_eq!(Config::parse(Some(b"  \n")), Ok(Config::default()));
        assert_eq!(parse("{}"), Ok(Config::default()));
    }

    #[test]
    fn defaults_are_linkerds_but_for_a_shorter_decay() {
        let c = Config::default();
        assert_eq!(c.default_rtt, 30_000_000);
        assert_eq!(c.decay, 2_000_000_000);
        assert_eq!(c.override_header, "x-ewma-balancer-host");
        assert_eq!(c.failure_grpc_codes, vec![8, 13, 14]);
    }

    #[test]
    fn every_field_is_read() {
        let c = parse(
            r#"{"overrideHeader":"x-pick","defaultRtt":"5ms","decay":"2s","failurePenalty":"3s",
                "failureDecay":"500ms","exploreRatio":0.05,"endpointTtl":"2m","maxEndpoints":10,
                "refreshInterval":"1s","balanceAllHttp":true,"failureGrpcCodes":[14],
                "adminCluster":"admin","membershipRefresh":"2s","membershipMaxAge":"30s"}"#,
        );
        assert_eq!(
            c,
            Ok(Config {
                override_header: "x-pick".into(),
                default_rtt: 5_000_000,
                decay: 2_000_000_000,
                failure_penalty: 3_000_000_000,
                failure_decay: 500_000_000,
                explore_ratio: 0.05,
                endpoint_ttl: 120_000_000_000,
                max_endpoints: 10,
                refresh_interval: 1_000_000_000,
                balance_all_http: true,
                failure_grpc_codes: vec![14],
                admin_cluster: Some("admin".into()),
                membership_refresh: 2_000_000_000,
                membership_max_age: 30_000_000_000,
            })
        );
    }

    #[test]
    fn each_invalid_config_is_rejected_with_its_exact_message() {
        for (input, expected) in INVALID_CONFIGS {
            assert_eq!(
                parse(input).err().as_deref(),
                Some(*expected),
                "input {input}"
            );
        }
    }

    #[test]
    fn hostile_text_is_escaped_and_cut_so_the_error_stays_one_short_line() {
        for input in [
            "{\"\\nx\":1}".to_string(),
            "{\"decay\":\"1\\n2s\"}".to_string(),
            format!("{{\"overrideHeader\":\"{}\"}}", "x".repeat(1 << 20)),
            format!("{{\"{}\":1}}", "y".repeat(1 << 20)),
        ] {
            let line = parse(&input).err().unwrap_or_default();
            assert!(line.starts_with("invalid plugin configuration: "), "{line}");
            assert!(!line.contains('\n'), "{line}");
            assert!(line.len() <= 600, "{} bytes", line.len());
        }
    }

    #[test]
    fn whole_numbers_written_as_floats_are_integers_as_istio_sends_them() {
        let c = parse(r#"{"maxEndpoints":1024.0,"failureGrpcCodes":[14.0,8]}"#);
        assert_eq!(c.as_ref().map(|c| c.max_endpoints), Ok(1024));
        assert_eq!(c.map(|c| c.failure_grpc_codes), Ok(vec![14, 8]));
        assert!(parse(r#"{"maxEndpoints":1024.5}"#).is_err());
        assert!(parse(r#"{"failureGrpcCodes":[14.5]}"#).is_err());
    }

    #[test]
    fn describe_names_every_field_with_a_value_that_parses_back() {
        let c = parse(r#"{"decay":"3s","failureGrpcCodes":[14,8],"maxEndpoints":7}"#)
            .unwrap_or_default();
        assert_eq!(
            c.describe(),
            "overrideHeader=\"x-ewma-balancer-host\" defaultRtt=\"30ms\" decay=\"3s\" \
             failurePenalty=\"1s\" failureDecay=\"1s\" exploreRatio=0.01 endpointTtl=\"1m\" \
             maxEndpoints=7 refreshInterval=\"250ms\" balanceAllHttp=false failureGrpcCodes=[14,8] \
             adminCluster=\"prometheus_stats\" membershipRefresh=\"1s\" membershipMaxAge=\"10s\""
        );
        let json = format!(
            "{{{}}}",
            c.values()
                .iter()
                .map(|(name, value)| format!("{name:?}:{value}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(parse(&json), Ok(c), "{json}");
    }

    #[test]
    fn an_empty_admin_cluster_means_learned_membership_only() {
        assert_eq!(
            parse(r#"{"adminCluster":""}"#).map(|c| c.admin_cluster),
            Ok(None)
        );
        assert_eq!(
            Config::default().admin_cluster.as_deref(),
            Some("prometheus_stats")
        );
    }

    #[test]
    fn ranges_are_inclusive() {
        assert!(parse(r#"{"decay":"100ms","exploreRatio":0.5,"maxEndpoints":2}"#).is_ok());
        assert!(parse(r#"{"decay":"1h","exploreRatio":0,"maxEndpoints":65535}"#).is_ok());
    }
}
