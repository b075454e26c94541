//! Invalid plugin configurations and the exact line the filter logs for each: the
//! README's table. Checked natively (`config` tests) and in a real Envoy, which refuses
//! each as a listener update and keeps serving (test-harness `e2e_dynamic`).

/// `(plugin configuration, error line)`.
#[rustfmt::skip]
pub const INVALID_CONFIGS: &[(&str, &str)] = &[
    ("[1,2]", "invalid plugin configuration: expected a JSON object, got an array"),
    ("{\"decay\":", "invalid plugin configuration: not valid JSON: EOF while parsing a value at line 1 column 9"),
    ("{\"dcay\":\"10s\"}", "invalid plugin configuration: field \"dcay\": unknown field; accepted fields are overrideHeader, defaultRtt, decay, failurePenalty, failureDecay, exploreRatio, endpointTtl, maxEndpoints, refreshInterval, balanceAllHttp, failureGrpcCodes, adminCluster, membershipRefresh, membershipMaxAge"),
    ("{\"decay\":10}", "invalid plugin configuration: field \"decay\": expected a duration string between 100ms and 1h (like \"2s\"), got a number"),
    ("{\"decay\":\"-5s\"}", "invalid plugin configuration: field \"decay\": expected a duration string between 100ms and 1h, got \"-5s\": expected a number followed by a unit, like \"30ms\""),
    ("{\"decay\":\"0s\"}", "invalid plugin configuration: field \"decay\": expected a duration string between 100ms and 1h, got \"0s\""),
    ("{\"defaultRtt\":\"NaNms\"}", "invalid plugin configuration: field \"defaultRtt\": expected a duration string between 1ms and 1m, got \"NaNms\": expected a number followed by a unit, like \"30ms\""),
    ("{\"defaultRtt\":\"500us\"}", "invalid plugin configuration: field \"defaultRtt\": expected a duration string between 1ms and 1m, got \"500us\""),
    ("{\"exploreRatio\":\"0.1\"}", "invalid plugin configuration: field \"exploreRatio\": expected a number between 0 and 0.5, got \"0.1\""),
    ("{\"exploreRatio\":1.5}", "invalid plugin configuration: field \"exploreRatio\": expected a number between 0 and 0.5, got 1.5"),
    ("{\"maxEndpoints\":100000000}", "invalid plugin configuration: field \"maxEndpoints\": expected an integer between 2 and 65535, got 100000000"),
    ("{\"maxEndpoints\":-1}", "invalid plugin configuration: field \"maxEndpoints\": expected an integer between 2 and 65535, got -1"),
    ("{\"overrideHeader\":\"\"}", "invalid plugin configuration: field \"overrideHeader\": expected a lowercase HTTP header name of 1 to 100 characters from a-z, 0-9, '-' and '_', not starting with ':', got \"\""),
    ("{\"overrideHeader\":\":authority\"}", "invalid plugin configuration: field \"overrideHeader\": expected a lowercase HTTP header name of 1 to 100 characters from a-z, 0-9, '-' and '_', not starting with ':', got \":authority\""),
    ("{\"balanceAllHttp\":\"yes\"}", "invalid plugin configuration: field \"balanceAllHttp\": expected true or false, got \"yes\""),
    ("{\"failureGrpcCodes\":[0]}", "invalid plugin configuration: field \"failureGrpcCodes\": expected an array of distinct gRPC status codes between 1 and 16 (at most 16 entries), got [0]"),
    ("{\"refreshInterval\":null}", "invalid plugin configuration: field \"refreshInterval\": expected a duration string between 10ms and 1m (like \"250ms\"), got null"),
    ("{\"adminCluster\":7}", "invalid plugin configuration: field \"adminCluster\": expected an Envoy cluster name of at most 255 characters without control characters, or \"\" for none, got 7"),
    ("{\"membershipRefresh\":\"10ms\"}", "invalid plugin configuration: field \"membershipRefresh\": expected a duration string between 100ms and 1m, got \"10ms\""),
    ("{\"membershipMaxAge\":\"500ms\"}", "invalid plugin configuration: field \"membershipMaxAge\": expected a duration string between 1s and 1h, got \"500ms\""),
];
