//! How a completed request is judged: whose doing was its end?
//!
//! Only what the *endpoint* did may move traffic. A client that resets its own streams,
//! disconnects or lets its deadline expire says nothing about the endpoint, and if such
//! ends counted as failures any client could push traffic off the endpoints it is given
//! (measured: a flood of self-reset streams moved the slow backend's share from 0.3 % to
//! 7.7 %). So the judge reads, in this order and only as far as it needs:
//!
//! 1. the status: `response.grpc_status` for gRPC (Envoy infers it from the HTTP code of
//!    local replies, so it is present whenever any response is), `response.code` for
//!    plain HTTP. A success ends the judging: the common case costs one read;
//! 2. `response.flags`, Envoy's record of who ended the stream (see [`flags`]): upstream
//!    connection failure, reset or timeout are the endpoint's; a downstream reset or
//!    disconnect is the client's; overflow, no healthy host or no route mean the request
//!    never reached an endpoint;
//! 3. for a status that can be a deadline (gRPC DEADLINE_EXCEEDED, HTTP 408/504) without
//!    flags, `response.code_details`: `max_duration_timeout` is the connection manager
//!    enforcing the client's `grpc-timeout` (or its own `max_stream_duration`);
//! 4. for an upstream timeout (`UT`), the request's `grpc-timeout`: with the router's
//!    legacy `max_grpc_timeout`, the client's deadline surfaces as an upstream timeout,
//!    and it is the client's when the call lasted no longer than that deadline.
//!
//! A request the client gave up on ([`Outcome::Abandoned`]) is no failure, but it still
//! says something true: the endpoint had not answered `t` after it had the whole request.
//! The balancer counts that as a lower bound on the endpoint's latency (see
//! `peak_ewma.rs`), so an endpoint that hangs becomes dear without any failure being
//! invented, and a client cannot make a fast endpoint look slow: the bound runs from the
//! time the request was complete (`request.duration`), and a request never completed
//! gives no bound at all.

use crate::Nanos;

/// Envoy's response flags as `response.flags` gives them: the legacy bitmask of
/// `StreamInfo`'s core flags, bit `1 << n` for the n-th `CoreResponseFlag` (stable since
/// Envoy 1.34 added the last, `UDO`). Short names as in access logs.
pub mod flags {
    /// `UH`: no healthy upstream host.
    pub const NO_HEALTHY_UPSTREAM: u64 = 0x2;
    /// `UT`: upstream request timeout (route `timeout`, per-try timeout, or legacy
    /// `max_grpc_timeout` applying the client's `grpc-timeout`).
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4;
    /// `LR`: Envoy reset the upstream stream itself.
    pub const LOCAL_RESET: u64 = 0x8;
    /// `UR`: the upstream reset the stream.
    pub const UPSTREAM_REMOTE_RESET: u64 = 0x10;
    /// `UF`: upstream connection failure.
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20;
    /// `UC`: upstream connection terminated.
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40;
    /// `UO`: upstream overflow (the cluster's circuit breaker).
    pub const UPSTREAM_OVERFLOW: u64 = 0x80;
    /// `NR`: no route.
    pub const NO_ROUTE_FOUND: u64 = 0x100;
    /// `DC`: downstream connection terminated.
    pub const DOWNSTREAM_CONNECTION_TERMINATION: u64 = 0x4000;
    /// `URX`: upstream retry limit exceeded.
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: u64 = 0x8000;
    /// `SI`: stream idle timeout.
    pub const STREAM_IDLE_TIMEOUT: u64 = 0x10000;
    /// `DPE`: downstream protocol error.
    pub const DOWNSTREAM_PROTOCOL_ERROR: u64 = 0x40000;
    /// `UMSDR`: upstream max stream duration reached.
    pub const UPSTREAM_MAX_STREAM_DURATION_REACHED: u64 = 0x80000;
    /// `DT`: a duration timeout (`max_stream_duration` on the connection manager).
    pub const DURATION_TIMEOUT: u64 = 0x40_0000;
    /// `UPE`: upstream protocol error.
    pub const UPSTREAM_PROTOCOL_ERROR: u64 = 0x80_0000;
    /// `NC`: no cluster.
    pub const NO_CLUSTER_FOUND: u64 = 0x100_0000;
    /// `OM`: the overload manager refused.
    pub const OVERLOAD_MANAGER: u64 = 0x200_0000;
    /// `DO`: dropped by EDS drop overload.
    pub const DROP_OVERLOAD: u64 = 0x800_0000;
    /// `DR`: the downstream (client) reset the stream, e.g. HTTP/2 `RST_STREAM CANCEL`.
    pub const DOWNSTREAM_REMOTE_RESET: u64 = 0x1000_0000;
    /// `UDO`: unconditional drop overload.
    pub const UNCONDITIONAL_DROP_OVERLOAD: u64 = 0x2000_0000;

    /// The endpoint's doing.
    pub const ENDPOINT: u64 = UPSTREAM_REQUEST_TIMEOUT
        | UPSTREAM_REMOTE_RESET
        | UPSTREAM_CONNECTION_FAILURE
        | UPSTREAM_CONNECTION_TERMINATION
        | UPSTREAM_RETRY_LIMIT_EXCEEDED
        | UPSTREAM_MAX_STREAM_DURATION_REACHED
        | UPSTREAM_PROTOCOL_ERROR;
    /// The client's doing, or Envoy giving up waiting on the client's behalf.
    pub const GAVE_UP: u64 = DOWNSTREAM_REMOTE_RESET
        | DOWNSTREAM_CONNECTION_TERMINATION
        | DOWNSTREAM_PROTOCOL_ERROR
        | STREAM_IDLE_TIMEOUT
        | DURATION_TIMEOUT;
    /// The request never reached an endpoint, or Envoy ended it for reasons of its own.
    pub const NOT_SENT: u64 = NO_HEALTHY_UPSTREAM
        | LOCAL_RESET
        | UPSTREAM_OVERFLOW
        | NO_ROUTE_FOUND
        | NO_CLUSTER_FOUND
        | OVERLOAD_MANAGER
        | DROP_OVERLOAD
        | UNCONDITIONAL_DROP_OVERLOAD;
}

/// `response.code_details` of the connection manager's deadline: the client's
/// `grpc-timeout` (with `max_stream_duration.grpc_timeout_header_max`) or its own
/// `max_stream_duration` expired.
pub const MAX_DURATION_TIMEOUT: &str = "max_duration_timeout";

/// gRPC DEADLINE_EXCEEDED.
const DEADLINE_EXCEEDED: u32 = 4;

/// What the host can read about a completed request, each read made only if the judge
/// asks for it (every read is a host call, and the common case needs one).
pub trait ResponseFacts {
    /// `response.grpc_status`.
    fn grpc_status(&mut self) -> Option<u32>;
    /// `response.code` (`:status`), if a response came.
    fn http_status(&mut self) -> Option<u32>;
    /// `response.flags`.
    fn flags(&mut self) -> Option<u64>;
    /// Whether `response.code_details` is exactly `details`.
    fn details_are(&mut self, details: &str) -> bool;
    /// The request's `grpc-timeout`, parsed (see [`parse_grpc_timeout`]).
    fn grpc_timeout(&mut self) -> Option<Nanos>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The endpoint answered, but not with success, and not in a way that says it is in
    /// trouble (e.g. NOT_FOUND): counted against the success rate, not against the
    /// endpoint's cost.
    RequestError,
    /// The endpoint failed: connection failure, upstream reset or timeout, a configured
    /// failure code, HTTP 5xx.
    EndpointFailure,
    /// The client gave up (reset, disconnect, deadline), or Envoy gave up waiting for it
    /// (idle or duration timeout): no failure, at most a lower bound on the latency.
    Abandoned,
    /// The request never reached an endpoint (overflow, no healthy host, no route,
    /// Envoy's own reset): nothing is learned.
    NotSent,
}

impl Outcome {
    /// Judges a completed request. `grpc` says the request was gRPC; `elapsed` is the
    /// time from the request's headers to its end; `failure_grpc_codes` the codes that
    /// count against the endpoint.
    pub fn judge(
        facts: &mut dyn ResponseFacts,
        grpc: bool,
        elapsed: Nanos,
        failure_grpc_codes: &[u32],
    ) -> Self {
        let (grpc_status, http_status) = if grpc {
            (facts.grpc_status(), None)
        } else {
            (None, facts.http_status())
        };
        if grpc_status == Some(0) || http_status.is_some_and(|h| (200..400).contains(&h)) {
            return Self::Success;
        }
        let flags = facts.flags().unwrap_or(0);
        if flags & flags::ENDPOINT != 0 {
            let only_timeout = flags & flags::ENDPOINT == flags::UPSTREAM_REQUEST_TIMEOUT;
            // The legacy `max_grpc_timeout` applies the client's deadline as the route's:
            // a call that lasted no longer than the deadline it asked for was ended by it.
            // A millisecond of slack covers Envoy's timer resolution.
            if only_timeout
                && grpc
                && facts
                    .grpc_timeout()
                    .is_some_and(|deadline| elapsed <= deadline.saturating_add(1_000_000))
            {
                return Self::Abandoned;
            }
            return Self::EndpointFailure;
        }
        if flags & flags::GAVE_UP != 0 {
            return Self::Abandoned;
        }
        if flags & flags::NOT_SENT != 0 {
            return Self::NotSent;
        }
        let may_be_deadline = grpc_status == Some(DEADLINE_EXCEEDED)
            || http_status.is_some_and(|h| h == 408 || h == 504);
        if may_be_deadline && facts.details_are(MAX_DURATION_TIMEOUT) {
            return Self::Abandoned;
        }
        match (grpc_status, http_status) {
            (Some(code), _) if failure_grpc_codes.contains(&code) => Self::EndpointFailure,
            (Some(_), _) => Self::RequestError,
            (None, Some(http)) if http >= 500 => Self::EndpointFailure,
            (None, Some(_)) => Self::RequestError,
            // No response and no flag naming anyone: nobody is known to have failed, and
            // a failure must never be invented.
            (None, None) => Self::Abandoned,
        }
    }

    pub fn is_success(self) -> bool {
        self == Self::Success
    }

    pub fn is_endpoint_failure(self) -> bool {
        self == Self::EndpointFailure
    }

    /// Whether the endpoint produced this end (an answer or a failure), so that its
    /// latency is a real sample and the failure score learns from it.
    pub fn is_the_endpoints(self) -> bool {
        matches!(
            self,
            Self::Success | Self::RequestError | Self::EndpointFailure
        )
    }

    /// Whether the metrics count it against the endpoint's success rate (as `linkerd
    /// viz stat` does for application errors; a call the client gave up on or that
    /// never reached the endpoint is not the endpoint's).
    pub fn counts_as_unsuccessful(self) -> bool {
        matches!(self, Self::RequestError | Self::EndpointFailure)
    }
}

/// The `grpc-timeout` header's value in nanoseconds: 1 to 8 ASCII digits and a unit
/// (`H`, `M`, `S`, `m`, `u`, `n`), as the gRPC HTTP/2 protocol defines it. Anything else
/// is `None`.
pub fn parse_grpc_timeout(value: &[u8]) -> Option<Nanos> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    let per_unit: u64 = match unit {
        b'H' => 3_600_000_000_000,
        b'M' => 60_000_000_000,
        b'S' => 1_000_000_000,
        b'm' => 1_000_000,
        b'u' => 1_000,
        b'n' => 1,
        _ => return None,
    };
    Some(amount.saturating_mul(per_unit))
}

/// Whether a request's `content-type` makes it gRPC: the media type, compared without
/// regard to case, is `application/grpc`, optionally with a `+format` suffix
/// (`application/grpc+proto`) and parameters (`; charset=…`), or gRPC-Web's
/// `application/grpc-web` and `application/grpc-web-text`, with the same options
/// (Envoy's `grpc_web` filter, when present, turns those into gRPC before this filter).
/// `application/grpcfoo` is not gRPC.
pub fn is_grpc_content_type(value: &[u8]) -> bool {
    let media_type = value
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let base = match media_type.iter().position(|&b| b == b'+') {
        Some(plus) => media_type.get(..plus).unwrap_or_default(),
        None => media_type,
    };
    [
        "application/grpc",
        "application/grpc-web",
        "application/grpc-web-text",
    ]
    .iter()
    .any(|known| base.eq_ignore_ascii_case(known.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::flags::*;
    use super::*;

    const CODES: [u32; 3] = [8, 13, 14];
    const MS: Nanos = 1_000_000;

    /// Facts as Envoy would give them, counting the reads the judge makes.
    #[derive(Default)]
    struct Facts {
        grpc_status: Option<u32>,
        http_status: Option<u32>,
        flags: u64,
        details: &'static str,
        grpc_timeout: Option<Nanos>,
        reads: Vec<&'static str>,
    }

    impl ResponseFacts for Facts {
        fn grpc_status(&mut self) -> Option<u32> {
            self.reads.push("grpc_status");
            self.grpc_status
        }
        fn http_status(&mut self) -> Option<u32> {
            self.reads.push("code");
            self.http_status
        }
        fn flags(&mut self) -> Option<u64> {
            self.reads.push("flags");
            Some(self.flags)
        }
        fn details_are(&mut self, details: &str) -> bool {
            self.reads.push("details");
            self.details == details
        }
        fn grpc_timeout(&mut self) -> Option<Nanos> {
            self.reads.push("grpc-timeout");
            self.grpc_timeout
        }
    }

    fn grpc(status: Option<u32>, flags: u64, details: &'static str) -> Facts {
        Facts {
            grpc_status: status,
            http_status: status.map(|_| 200),
            flags,
            details,
            ..Facts::default()
        }
    }

    fn judge(facts: &mut Facts) -> Outcome {
        Outcome::judge(facts, true, 10 * MS, &CODES)
    }

    /// Each row: what Envoy reports, and whose doing the judge says it was. The rows
    /// marked (seen) were read off Envoy 1.40's access log for the same stream.
    #[test]
    fn every_end_is_judged_by_who_ended_it() {
        use Outcome::*;
        let rows: [(&str, Facts, Outcome); 20] = [
            ("OK (seen)", grpc(Some(0), 0, "via_upstream"), Success),
            (
                "NOT_FOUND from the backend",
                grpc(Some(5), 0, "via_upstream"),
                RequestError,
            ),
            (
                "UNAVAILABLE from the backend (seen)",
                grpc(Some(14), 0, "via_upstream"),
                EndpointFailure,
            ),
            (
                "INTERNAL from the backend",
                grpc(Some(13), 0, "via_upstream"),
                EndpointFailure,
            ),
            (
                "RESOURCE_EXHAUSTED from the backend",
                grpc(Some(8), 0, "via_upstream"),
                EndpointFailure,
            ),
            (
                "connection refused, UF (seen)",
                grpc(
                    Some(14),
                    UPSTREAM_CONNECTION_FAILURE,
                    "upstream_reset_before_response_started{remote_connection_failure}",
                ),
                EndpointFailure,
            ),
            (
                "upstream reset, UR",
                grpc(
                    Some(14),
                    UPSTREAM_REMOTE_RESET,
                    "upstream_reset_before_response_started{remote_reset}",
                ),
                EndpointFailure,
            ),
            (
                "upstream connection terminated, UC",
                grpc(
                    Some(14),
                    UPSTREAM_CONNECTION_TERMINATION,
                    "upstream_reset_before_response_started{connection_termination}",
                ),
                EndpointFailure,
            ),
            (
                "route timeout, UT",
                grpc(Some(14), UPSTREAM_REQUEST_TIMEOUT, "response_timeout"),
                EndpointFailure,
            ),
            (
                "per-try timeout, UT",
                grpc(
                    Some(14),
                    UPSTREAM_REQUEST_TIMEOUT,
                    "upstream_per_try_timeout",
                ),
                EndpointFailure,
            ),
            (
                "upstream protocol error, UPE",
                grpc(Some(14), UPSTREAM_PROTOCOL_ERROR, ""),
                EndpointFailure,
            ),
            (
                "retries exhausted, UF|URX",
                grpc(
                    Some(14),
                    UPSTREAM_CONNECTION_FAILURE | UPSTREAM_RETRY_LIMIT_EXCEEDED,
                    "",
                ),
                EndpointFailure,
            ),
            (
                "client RST_STREAM before a response, DR (seen)",
                grpc(None, DOWNSTREAM_REMOTE_RESET, "http2.remote_reset"),
                Abandoned,
            ),
            (
                "client disconnected, DC",
                grpc(
                    None,
                    DOWNSTREAM_CONNECTION_TERMINATION,
                    "downstream_remote_disconnect",
                ),
                Abandoned,
            ),
            (
                "client protocol error, DPE",
                grpc(None, DOWNSTREAM_PROTOCOL_ERROR, ""),
                Abandoned,
            ),
            (
                "client's grpc-timeout enforced by the connection manager (seen)",
                grpc(Some(4), 0, "max_duration_timeout"),
                Abandoned,
            ),
            (
                "stream idle timeout, SI",
                grpc(Some(14), STREAM_IDLE_TIMEOUT, "stream_idle_timeout"),
                Abandoned,
            ),
            (
                "circuit breaker, UO",
                grpc(
                    Some(14),
                    UPSTREAM_OVERFLOW,
                    "upstream_reset_before_response_started{overflow}",
                ),
                NotSent,
            ),
            (
                "no healthy upstream, UH",
                grpc(Some(14), NO_HEALTHY_UPSTREAM, "no_healthy_upstream"),
                NotSent,
            ),
            ("no response and no flag", grpc(None, 0, ""), Abandoned),
        ];
        for (what, mut facts, expected) in rows {
            assert_eq!(judge(&mut facts), expected, "{what}");
        }
    }

    #[test]
    fn a_success_costs_one_read() {
        let mut facts = grpc(Some(0), 0, "via_upstream");
        judge(&mut facts);
        assert_eq!(facts.reads, ["grpc_status"]);
    }

    #[test]
    fn a_backend_failure_costs_two_reads_and_details_are_read_only_for_deadlines() {
        let mut facts = grpc(Some(14), 0, "via_upstream");
        judge(&mut facts);
        assert_eq!(facts.reads, ["grpc_status", "flags"]);
        let mut facts = grpc(Some(4), 0, "via_upstream");
        assert_eq!(judge(&mut facts), Outcome::RequestError);
        assert_eq!(facts.reads, ["grpc_status", "flags", "details"]);
    }

    #[test]
    fn deadline_exceeded_from_the_backend_is_the_backends_answer() {
        let codes = [4];
        let mut facts = grpc(Some(4), 0, "via_upstream");
        assert_eq!(
            Outcome::judge(&mut facts, true, MS, &codes),
            Outcome::EndpointFailure
        );
        let mut facts = grpc(Some(4), 0, "max_duration_timeout");
        assert_eq!(
            Outcome::judge(&mut facts, true, MS, &codes),
            Outcome::Abandoned,
            "the client's deadline, even when DEADLINE_EXCEEDED is a failure code"
        );
    }

    #[test]
    fn an_upstream_timeout_within_the_clients_deadline_is_the_clients() {
        let timeout = |deadline: Option<Nanos>, elapsed: Nanos| {
            let mut facts = Facts {
                grpc_timeout: deadline,
                ..grpc(Some(14), UPSTREAM_REQUEST_TIMEOUT, "response_timeout")
            };
            Outcome::judge(&mut facts, true, elapsed, &CODES)
        };
        assert_eq!(timeout(Some(20 * MS), 20 * MS), Outcome::Abandoned);
        assert_eq!(
            timeout(Some(20 * MS), 21 * MS),
            Outcome::Abandoned,
            "1 ms slack"
        );
        assert_eq!(timeout(Some(20 * MS), 50 * MS), Outcome::EndpointFailure);
        assert_eq!(timeout(None, 5_000 * MS), Outcome::EndpointFailure);
    }

    #[test]
    fn an_upstream_failure_outweighs_the_client_giving_up() {
        let mut facts = grpc(
            Some(14),
            UPSTREAM_CONNECTION_FAILURE | DOWNSTREAM_REMOTE_RESET,
            "",
        );
        assert_eq!(judge(&mut facts), Outcome::EndpointFailure);
    }

    #[test]
    fn unreadable_flags_never_invent_a_failure() {
        struct NoFlags;
        impl ResponseFacts for NoFlags {
            fn grpc_status(&mut self) -> Option<u32> {
                None
            }
            fn http_status(&mut self) -> Option<u32> {
                None
            }
            fn flags(&mut self) -> Option<u64> {
                None
            }
            fn details_are(&mut self, _: &str) -> bool {
                false
            }
            fn grpc_timeout(&mut self) -> Option<Nanos> {
                None
            }
        }
        assert_eq!(
            Outcome::judge(&mut NoFlags, true, MS, &CODES),
            Outcome::Abandoned
        );
    }

    #[test]
    fn plain_http_is_judged_by_status_code() {
        let http = |code: Option<u32>, flags: u64| {
            let mut facts = Facts {
                http_status: code,
                flags,
                ..Facts::default()
            };
            Outcome::judge(&mut facts, false, MS, &CODES)
        };
        assert_eq!(http(Some(200), 0), Outcome::Success);
        assert_eq!(http(Some(304), 0), Outcome::Success);
        assert_eq!(http(Some(404), 0), Outcome::RequestError);
        assert_eq!(http(Some(502), 0), Outcome::EndpointFailure);
        assert_eq!(
            http(Some(503), UPSTREAM_CONNECTION_FAILURE),
            Outcome::EndpointFailure
        );
        assert_eq!(http(Some(503), UPSTREAM_OVERFLOW), Outcome::NotSent);
        assert_eq!(http(None, DOWNSTREAM_REMOTE_RESET), Outcome::Abandoned);
    }

    #[test]
    fn only_the_endpoints_ends_teach_latency_and_count_against_it() {
        use Outcome::*;
        for (o, theirs, unsuccessful) in [
            (Success, true, false),
            (RequestError, true, true),
            (EndpointFailure, true, true),
            (Abandoned, false, false),
            (NotSent, false, false),
        ] {
            assert_eq!(o.is_the_endpoints(), theirs, "{o:?}");
            assert_eq!(o.counts_as_unsuccessful(), unsuccessful, "{o:?}");
        }
    }

    #[test]
    fn grpc_timeouts_parse_as_the_protocol_defines_them() {
        assert_eq!(parse_grpc_timeout(b"10m"), Some(10 * MS));
        assert_eq!(parse_grpc_timeout(b"1S"), Some(1_000 * MS));
        assert_eq!(parse_grpc_timeout(b"2M"), Some(120_000 * MS));
        assert_eq!(parse_grpc_timeout(b"1H"), Some(3_600_000 * MS));
        assert_eq!(parse_grpc_timeout(b"500u"), Some(500_000));
        assert_eq!(parse_grpc_timeout(b"99999999n"), Some(99_999_999));
        assert_eq!(
            parse_grpc_timeout(b"99999999H"),
            Some(u64::MAX),
            "saturates"
        );
        for bad in [
            &b""[..],
            b"m",
            b"123456789m",
            b"10",
            b"10x",
            b"-1m",
            b"1.5S",
            b" 1m",
            "１m".as_bytes(),
        ] {
            assert_eq!(
                parse_grpc_timeout(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn content_type_is_grpc_by_media_type_without_regard_to_case() {
        for yes in [
            "application/grpc",
            "Application/GRPC",
            "application/grpc+proto",
            "application/grpc+json",
            "application/grpc; charset=utf-8",
            "application/grpc+proto;x=1",
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpc-web-text",
            "application/grpc-web-text+proto",
            " application/grpc ",
        ] {
            assert!(is_grpc_content_type(yes.as_bytes()), "{yes}");
        }
        for no in [
            "application/grpcfoo",
            "application/grpc-webx",
            "application/json",
            "text/plain",
            "",
            "application/grp",
            "application/grpc\u{0}",
        ] {
            assert!(!is_grpc_content_type(no.as_bytes()), "{no:?}");
        }
    }
}
