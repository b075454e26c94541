//! Where a run's calls go: one gRPC endpoint (Envoy's listener, say) over
//! `connections` connections, or a client-side balancer over several.

use std::fmt;

/// Where a run's calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One gRPC endpoint URI, e.g. `http://127.0.0.1:10000`; the run's `connections`
    /// connections to it take the calls in turn.
    Uri(String),
    /// Tower's p2c over PeakEwma with Linkerd's defaults
    /// ([`crate::tower_peak_ewma`]), one connection per URI; the run's `connections` is
    /// not used.
    TowerPeakEwma(Vec<String>),
}

impl Target {
    /// The HTTP/2 connections a run opens, given the spec's `connections`.
    pub fn connections(&self, connections: usize) -> usize {
        match self {
            Self::Uri(_) => connections,
            Self::TowerPeakEwma(backends) => backends.len(),
        }
    }
}

impl From<&str> for Target {
    fn from(uri: &str) -> Self {
        Self::Uri(uri.to_owned())
    }
}

impl From<String> for Target {
    fn from(uri: String) -> Self {
        Self::Uri(uri)
    }
}

impl fmt::Display for Target {
    /// The URI, or `tower p2c PeakEwma [uri, …]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uri(uri) => f.write_str(uri),
            Self::TowerPeakEwma(backends) => {
                write!(f, "tower p2c PeakEwma [{}]", backends.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_is_shown_as_itself_and_keeps_its_connections() {
        let target = Target::from("http://127.0.0.1:10000");
        assert_eq!(target.to_string(), "http://127.0.0.1:10000");
        assert_eq!(target.connections(3), 3);
    }

    #[test]
    fn a_balanced_target_opens_one_connection_per_backend() {
        let target = Target::TowerPeakEwma(vec![
            "http://127.0.0.1:50051".into(),
            "http://127.0.0.1:50052".into(),
        ]);
        assert_eq!(
            target.to_string(),
            "tower p2c PeakEwma [http://127.0.0.1:50051, http://127.0.0.1:50052]"
        );
        assert_eq!(target.connections(1), 2);
    }
}
