//! The greeting text, which doubles as backend attribution.
//!
//! Every reply reads `Hello <name> (Backend: <IP:port>)`, as in the
//! load-balancing walkthrough this project follows, so a client behind Envoy
//! can count which backend served each call without any extra metadata.

const BACKEND_PREFIX: &str = "(Backend: ";

/// The reply `backend` sends to `name`.
pub fn greeting(name: &str, backend: &str) -> String {
    format!("Hello {name} {BACKEND_PREFIX}{backend})")
}

/// The backend named by a greeting, if the reply carries one.
///
/// Looks at the last `(Backend: …)` so a name that itself contains the
/// marker cannot spoof the attribution.
pub fn backend_of(reply: &str) -> Option<&str> {
    let start = reply.rfind(BACKEND_PREFIX)? + BACKEND_PREFIX.len();
    let backend = reply[start..].strip_suffix(')')?;
    (!backend.is_empty()).then_some(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_matches_the_walkthrough_format() {
        assert_eq!(
            greeting("world", "10.0.0.7:50051"),
            "Hello world (Backend: 10.0.0.7:50051)"
        );
    }

    #[test]
    fn backend_is_parsed_from_a_greeting() {
        assert_eq!(
            backend_of("Hello world (Backend: 127.0.0.1:50052)"),
            Some("127.0.0.1:50052")
        );
        assert_eq!(
            backend_of("Hello  (Backend: [::1]:50051)"),
            Some("[::1]:50051")
        );
    }

    #[test]
    fn greeting_round_trips_through_backend_of() {
        let reply = greeting("Ada", "greeter-0.greeter:50051");
        assert_eq!(backend_of(&reply), Some("greeter-0.greeter:50051"));
    }

    #[test]
    fn last_marker_wins_over_one_inside_the_name() {
        let reply = greeting("x (Backend: evil:1)", "127.0.0.1:50051");
        assert_eq!(backend_of(&reply), Some("127.0.0.1:50051"));
    }

    #[test]
    fn replies_without_a_backend_have_none() {
        assert_eq!(backend_of("Hello world"), None);
        assert_eq!(backend_of("Hello world (Backend: )"), None);
        assert_eq!(backend_of("Hello world (Backend: 1.2.3.4:5"), None);
        assert_eq!(backend_of(""), None);
    }
}
