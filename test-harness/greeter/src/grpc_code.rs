//! gRPC status codes by their canonical names.
//!
//! `tonic::Code` knows its numbers and prose descriptions but not the
//! upper-snake-case names that the gRPC spec, `grpcurl` and Envoy stats use
//! (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, …). Reports and command-line flags speak
//! those names, so the mapping lives here, once.

use tonic::Code;

/// Every status code in numeric order, with its canonical name.
const CODES: [(Code, &str); 17] = [
    (Code::Ok, "OK"),
    (Code::Cancelled, "CANCELLED"),
    (Code::Unknown, "UNKNOWN"),
    (Code::InvalidArgument, "INVALID_ARGUMENT"),
    (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (Code::NotFound, "NOT_FOUND"),
    (Code::AlreadyExists, "ALREADY_EXISTS"),
    (Code::PermissionDenied, "PERMISSION_DENIED"),
    (Code::ResourceExhausted, "RESOURCE_EXHAUSTED"),
    (Code::FailedPrecondition, "FAILED_PRECONDITION"),
    (Code::Aborted, "ABORTED"),
    (Code::OutOfRange, "OUT_OF_RANGE"),
    (Code::Unimplemented, "UNIMPLEMENTED"),
    (Code::Internal, "INTERNAL"),
    (Code::Unavailable, "UNAVAILABLE"),
    (Code::DataLoss, "DATA_LOSS"),
    (Code::Unauthenticated, "UNAUTHENTICATED"),
];

/// The canonical name of `code`, e.g. `"UNAVAILABLE"` for `Code::Unavailable`.
pub fn code_name(code: Code) -> &'static str {
    CODES
        .iter()
        .find(|(known, _)| *known == code)
        .map_or("UNKNOWN", |(_, name)| name)
}

/// Parses a status code given by name in any case (`UNAVAILABLE`,
/// `unavailable`) or by number (`14`).
pub fn parse_code(text: &str) -> Result<Code, String> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i32>() {
        return CODES
            .iter()
            .map(|(code, _)| *code)
            .find(|code| *code as i32 == number)
            .ok_or_else(|| format!("gRPC code {number} is out of range; expected 0..=16"));
    }
    CODES
        .iter()
        .find(|(_, name)| name.eq_ignore_ascii_case(text))
        .map(|(code, _)| *code)
        .ok_or_else(|| {
            format!(
                "unknown gRPC code `{text}`; expected a name like UNAVAILABLE or a number 0..=16"
            )
        })
}

/// Like [`parse_code`], but rejects `OK`: a call told to fail must fail.
pub fn parse_failure_code(text: &str) -> Result<Code, String> {
    match parse_code(text)? {
        Code::Ok => Err("fail code must not be OK (0); pick an error such as UNAVAILABLE".into()),
        code => Ok(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_in_any_case() {
        assert_eq!(parse_code("UNAVAILABLE"), Ok(Code::Unavailable));
        assert_eq!(parse_code("unavailable"), Ok(Code::Unavailable));
        assert_eq!(parse_code("Deadline_Exceeded"), Ok(Code::DeadlineExceeded));
        assert_eq!(parse_code(" internal "), Ok(Code::Internal));
    }

    #[test]
    fn parses_numbers() {
        assert_eq!(parse_code("0"), Ok(Code::Ok));
        assert_eq!(parse_code("8"), Ok(Code::ResourceExhausted));
        assert_eq!(parse_code("14"), Ok(Code::Unavailable));
        assert_eq!(parse_code("16"), Ok(Code::Unauthenticated));
    }

    #[test]
    fn rejects_unknown_names_and_out_of_range_numbers() {
        assert!(parse_code("NOPE").is_err());
        assert!(parse_code("").is_err());
        assert!(parse_code("17").is_err());
        assert!(parse_code("-1").is_err());
    }

    #[test]
    fn failure_code_must_not_be_ok() {
        assert!(parse_failure_code("OK").is_err());
        assert!(parse_failure_code("0").is_err());
        assert_eq!(parse_failure_code("aborted"), Ok(Code::Aborted));
    }

    #[test]
    fn names_round_trip_through_parse() {
        for (code, name) in CODES {
            assert_eq!(code_name(code), name);
            assert_eq!(parse_code(name), Ok(code));
            assert_eq!(parse_code(&(code as i32).to_string()), Ok(code));
        }
    }
}
