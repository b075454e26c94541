//! How a completed request is judged.
//!
//! Success is HTTP 200 with `grpc-status: 0`. Envoy turns its local replies to gRPC
//! requests (connection failure, timeout, no healthy host) into trailers-only gRPC
//! responses with HTTP 200, so the gRPC status decides, never the HTTP code alone.
//! Only some codes say the *endpoint* is in trouble (by default RESOURCE_EXHAUSTED,
//! INTERNAL, UNAVAILABLE); others such as NOT_FOUND say the request was wrong and must not
//! push traffic away from a healthy endpoint, although they still count against the
//! success rate that the metrics report (as `linkerd viz stat` does).

/// What the host could read about a completed request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseFacts {
    /// `:status` of the response, if one came (upstream or local reply).
    pub http_status: Option<u32>,
    /// `grpc-status` from trailers, or from headers of a trailers-only response.
    pub grpc_status: Option<u32>,
    /// The request was gRPC (`content-type: application/grpc*`).
    pub grpc: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Not a success, but no sign of an unhealthy endpoint (e.g. NOT_FOUND).
    RequestError,
    /// The endpoint failed: a failure code, HTTP 5xx, a reset, no response.
    EndpointFailure,
}

impl Outcome {
    /// A gRPC status decides by itself (a response arrived; the host need not read the
    /// HTTP code, one hostcall saved per request), unless the HTTP code is known to be 5xx.
    pub fn judge(facts: ResponseFacts, failure_grpc_codes: &[u32]) -> Self {
        if facts.http_status.is_some_and(|h| h >= 500) {
            return Self::EndpointFailure;
        }
        match (facts.grpc_status, facts.http_status) {
            (Some(0), _) => Self::Success,
            (Some(code), _) if failure_grpc_codes.contains(&code) => Self::EndpointFailure,
            (Some(_), _) => Self::RequestError,
            // No response at all: a reset or a connection failure.
            (None, None) => Self::EndpointFailure,
            // A gRPC response without any status was cut short.
            (None, Some(_)) if facts.grpc => Self::EndpointFailure,
            (None, Some(http)) if (200..400).contains(&http) => Self::Success,
            (None, Some(_)) => Self::RequestError,
        }
    }

    pub fn is_success(self) -> bool {
        self == Self::Success
    }

    pub fn is_endpoint_failure(self) -> bool {
        self == Self::EndpointFailure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODES: [u32; 3] = [8, 13, 14];

    fn grpc(http: Option<u32>, status: Option<u32>) -> Outcome {
        Outcome::judge(
            ResponseFacts {
                http_status: http,
                grpc_status: status,
                grpc: true,
            },
            &CODES,
        )
    }

    #[test]
    fn ok_is_success() {
        assert_eq!(grpc(Some(200), Some(0)), Outcome::Success);
        assert_eq!(
            grpc(None, Some(0)),
            Outcome::Success,
            "the gRPC status alone decides"
        );
    }

    #[test]
    fn unavailable_resource_exhausted_and_internal_are_endpoint_failures() {
        for code in CODES {
            assert_eq!(
                grpc(Some(200), Some(code)),
                Outcome::EndpointFailure,
                "{code}"
            );
        }
    }

    #[test]
    fn application_errors_are_not_endpoint_failures() {
        assert_eq!(grpc(Some(200), Some(5)), Outcome::RequestError);
        assert_eq!(grpc(Some(200), Some(3)), Outcome::RequestError);
    }

    #[test]
    fn resets_5xx_and_missing_status_are_endpoint_failures() {
        assert_eq!(grpc(None, None), Outcome::EndpointFailure);
        assert_eq!(grpc(Some(503), None), Outcome::EndpointFailure);
        assert_eq!(grpc(Some(503), Some(0)), Outcome::EndpointFailure);
        assert_eq!(grpc(Some(200), None), Outcome::EndpointFailure);
    }

    #[test]
    fn plain_http_is_judged_by_status_code() {
        let http = |code| {
            Outcome::judge(
                ResponseFacts {
                    http_status: Some(code),
                    grpc_status: None,
                    grpc: false,
                },
                &CODES,
            )
        };
        assert_eq!(http(200), Outcome::Success);
        assert_eq!(http(304), Outcome::Success);
        assert_eq!(http(404), Outcome::RequestError);
        assert_eq!(http(502), Outcome::EndpointFailure);
    }
}
