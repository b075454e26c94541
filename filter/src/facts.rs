//! The facts of a completed request, read on demand: what `outcome.rs` judges and
//! which endpoint Envoy used. The host reads them from Envoy's properties
//! (`host/request.rs`); [`FixedFacts`] gives them from values set in advance, for native
//! tests, the fuzzer and simulations.

use crate::outcome::{flags, Outcome, ResponseFacts};
use crate::Nanos;

/// The facts of a completed request the host can read on demand: the response, and
/// which endpoint Envoy used.
pub trait CompletionFacts: ResponseFacts {
    /// `upstream.address`: the endpoint Envoy actually used, if any.
    fn upstream_address(&mut self) -> Option<String>;
    /// `upstream.request_attempt_count`: how many attempts Envoy made (read only when
    /// the endpoint used is not the one named first, to tell a retry from a skip).
    fn attempts(&mut self) -> Option<u64>;
}

/// Facts set in advance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FixedFacts {
    pub grpc_status: Option<u32>,
    pub http_status: Option<u32>,
    pub flags: Option<u64>,
    pub details: String,
    pub grpc_timeout: Option<Nanos>,
    pub upstream_address: Option<String>,
    pub attempts: Option<u64>,
}

impl FixedFacts {
    /// Facts of a gRPC request that the judge finds to be `outcome`, served by
    /// `upstream_address`, as Envoy reports such requests.
    pub fn of(outcome: Outcome, upstream_address: Option<&str>) -> Self {
        let (grpc_status, flags) = match outcome {
            Outcome::Success => (Some(0), 0),
            // NOT_FOUND
            Outcome::RequestError => (Some(5), 0),
            // UNAVAILABLE from the backend
            Outcome::EndpointFailure => (Some(14), 0),
            Outcome::Abandoned => (None, flags::DOWNSTREAM_REMOTE_RESET),
            Outcome::NotSent => (Some(14), flags::UPSTREAM_OVERFLOW),
        };
        Self {
            grpc_status,
            http_status: grpc_status.map(|_| 200),
            flags: Some(flags),
            details: String::new(),
            grpc_timeout: None,
            upstream_address: upstream_address.map(str::to_owned),
            attempts: upstream_address.map(|_| 1),
        }
    }
}

impl ResponseFacts for FixedFacts {
    fn grpc_status(&mut self) -> Option<u32> {
        self.grpc_status
    }
    fn http_status(&mut self) -> Option<u32> {
        self.http_status
    }
    fn flags(&mut self) -> Option<u64> {
        self.flags
    }
    fn details_are(&mut self, details: &str) -> bool {
        self.details == details
    }
    fn grpc_timeout(&mut self) -> Option<Nanos> {
        self.grpc_timeout
    }
}

impl CompletionFacts for FixedFacts {
    fn upstream_address(&mut self) -> Option<String> {
        self.upstream_address.clone()
    }
    fn attempts(&mut self) -> Option<u64> {
        self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_is_judged_as_itself() {
        for outcome in [
            Outcome::Success,
            Outcome::RequestError,
            Outcome::EndpointFailure,
            Outcome::Abandoned,
            Outcome::NotSent,
        ] {
            let mut facts = FixedFacts::of(outcome, None);
            assert_eq!(Outcome::judge(&mut facts, true, 1, &[8, 13, 14]), outcome);
        }
    }
}
