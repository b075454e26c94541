//! Arbitrary bytes as plugin configuration (what Envoy hands `on_configure`).
//!
//! Invariants: parsing never panics; an accepted configuration has every field within
//! the range that `config.rs` documents and the README's table promises; it survives
//! being written back as JSON and parsed again unchanged; a refusal names a known field
//! (or none, for malformed JSON), and its one-line message says which.

#![no_main]
// A fuzz target reports a broken invariant by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ewma_balancer::config::{Config, FIELDS};
use ewma_balancer::duration::format_duration;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000 * MS;

fuzz_target!(|data: &[u8]| {
    match Config::parse(Some(data)) {
        Ok(c) => {
            check_ranges(&c);
            let mut again = Config::parse(Some(to_json(&c).as_bytes()))
                .unwrap_or_else(|e| panic!("{c:?} written back is refused: {e}"));
            // serde_json parses floats fast rather than exactly (no `float_roundtrip`
            // feature): a ratio written back may come back one ulp off.
            let ratio_error = (again.explore_ratio - c.explore_ratio).abs();
            assert!(
                ratio_error <= 2.0 * f64::EPSILON * c.explore_ratio,
                "{c:?} {again:?}"
            );
            again.explore_ratio = c.explore_ratio;
            assert_eq!(again, c, "written back and parsed again");
        }
        Err(e) => {
            let line = e.to_string();
            assert!(line.starts_with("invalid plugin configuration: "), "{line}");
            // One line, of bounded length, whatever the input (an unknown field's name
            // and echoed values are escaped and clipped; regressions/config/).
            assert!(!line.contains('\n'), "one line: {line:?}");
            assert!(line.len() <= 1024, "{} bytes", line.len());
            if !e.field.is_empty() && !FIELDS.contains(&e.field.as_str()) {
                assert!(e.message.starts_with("unknown field"), "{line}");
            }
        }
    }
});

fn check_ranges(c: &Config) {
    let within = |name: &str, v: u64, lo: u64, hi: u64| {
        assert!((lo..=hi).contains(&v), "{name} = {v} outside {lo}..={hi}");
    };
    within("defaultRtt", c.default_rtt, MS, 60 * SEC);
    within("decay", c.decay, 100 * MS, 3600 * SEC);
    within("failurePenalty", c.failure_penalty, MS, 3600 * SEC);
    within("failureDecay", c.failure_decay, 10 * MS, 3600 * SEC);
    within("endpointTtl", c.endpoint_ttl, SEC, 24 * 3600 * SEC);
    within("refreshInterval", c.refresh_interval, 10 * MS, 60 * SEC);
    assert!(
        c.decay > 0 && c.failure_decay > 0,
        "decays must be positive"
    );
    assert!(c.max_endpoints >= 2, "maxEndpoints {}", c.max_endpoints);
    assert!(
        c.explore_ratio.is_finite() && (0.0..=0.5).contains(&c.explore_ratio),
        "exploreRatio {}",
        c.explore_ratio
    );
    let h = &c.override_header;
    assert!(!h.is_empty() && h.len() <= 100, "overrideHeader {h:?}");
    assert!(
        h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'),
        "overrideHeader {h:?}"
    );
    let codes = &c.failure_grpc_codes;
    assert!(codes.len() <= 16, "failureGrpcCodes {codes:?}");
    for (i, code) in codes.iter().enumerate() {
        assert!((1..=16).contains(code), "failureGrpcCodes {codes:?}");
        assert!(!codes[..i].contains(code), "duplicate in {codes:?}");
    }
}

/// The configuration as a user would write it.
fn to_json(c: &Config) -> String {
    json!({
        "overrideHeader": c.override_header,
        "defaultRtt": format_duration(c.default_rtt),
        "decay": format_duration(c.decay),
        "failurePenalty": format_duration(c.failure_penalty),
        "failureDecay": format_duration(c.failure_decay),
        "exploreRatio": c.explore_ratio,
        "endpointTtl": format_duration(c.endpoint_ttl),
        "maxEndpoints": c.max_endpoints,
        "refreshInterval": format_duration(c.refresh_interval),
        "balanceAllHttp": c.balance_all_http,
        "failureGrpcCodes": c.failure_grpc_codes,
    })
    .to_string()
}
