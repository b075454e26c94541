//! Driving `SayHello` calls at a target with fixed concurrency.
//!
//! A run opens `connections` HTTP/2 connections up front and shares them
//! round-robin among `concurrency` workers, which pull call numbers from a
//! common counter until `count` calls have been made. With the default single
//! connection every call is a stream on one long-lived HTTP/2 connection: the
//! case where connection-level (L4) balancing sends everything to one backend
//! and a request-level balancer like ours has to do the work.

use std::{
    error::Error,
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::{sync::mpsc, task::JoinSet};
use tonic::{
    transport::{Channel, Endpoint},
    Request, Status,
};

use crate::{
    header::MetadataHeader,
    pb::{greeter_client::GreeterClient, HelloRequest},
    report::{CallOutcome, LoadReport},
};

/// Envoy's listener in the example configurations.
pub const DEFAULT_TARGET: &str = "http://127.0.0.1:10000";

/// What to send, where, and how hard.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// gRPC endpoint URI, e.g. `http://127.0.0.1:10000`.
    pub target: String,
    /// Calls to make in total.
    pub count: u64,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// HTTP/2 connections to spread the calls over.
    pub connections: usize,
    /// `name` field of every request.
    pub name: String,
    /// Per-call deadline, enforced by this client.
    pub timeout: Duration,
    /// Extra metadata sent with every call.
    pub headers: Vec<MetadataHeader>,
}

impl Default for LoadSpec {
    fn default() -> Self {
        Self {
            target: DEFAULT_TARGET.to_owned(),
            count: 10,
            concurrency: 1,
            connections: 1,
            name: "world".to_owned(),
            timeout: Duration::from_secs(5),
            headers: Vec::new(),
        }
    }
}

impl LoadSpec {
    /// The defaults, aimed at `target`.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            ..Self::default()
        }
    }

    fn check(&self) -> Result<(), LoadError> {
        if self.concurrency == 0 {
            return Err(LoadError::InvalidSpec(
                "concurrency must be at least 1".into(),
            ));
        }
        if self.connections == 0 {
            return Err(LoadError::InvalidSpec(
                "connections must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Why a run could not start. Failing calls are not errors: they are counted
/// in the report.
#[derive(Debug)]
pub enum LoadError {
    /// A spec field is out of range.
    InvalidSpec(String),
    /// The target is not a valid URI.
    InvalidTarget {
        target: String,
        source: tonic::transport::Error,
    },
    /// The target's name did not resolve, or none of its addresses accepted a
    /// connection (client-side round robin).
    Resolve(String),
    /// A connection to the target could not be established.
    Connect {
        target: String,
        source: tonic::transport::Error,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidSpec(reason) => write!(f, "invalid load spec: {reason}"),
            Self::Resolve(reason) => f.write_str(reason),
            Self::InvalidTarget { target, source } => {
                write!(f, "invalid target `{target}`: {source}")
            }
            Self::Connect { target, source } => {
                write!(f, "cannot connect to {target}: {source}")?;
                if let Some(cause) = source.source() {
                    write!(f, ": {cause}")?;
                }
                Ok(())
            }
        }
    }
}

impl Error for LoadError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::InvalidSpec(_) | Self::Resolve(_) => None,
            Self::InvalidTarget { source, .. } | Self::Connect { source, .. } => Some(source),
        }
    }
}

/// Runs `spec` and reports what happened.
pub async fn run_load(spec: &LoadSpec) -> Result<LoadReport, LoadError> {
    run_load_observed(spec, |_| {}).await
}

/// Runs `spec`, handing each call's outcome to `observe` as it completes
/// (in completion order), and reports what happened.
pub async fn run_load_observed(
    spec: &LoadSpec,
    observe: impl FnMut(&CallOutcome),
) -> Result<LoadReport, LoadError> {
    spec.check()?;
    let channels = connect(&spec.target, spec.connections).await?;
    let issued = Arc::new(AtomicU64::new(0));
    let (outcomes_tx, outcomes) = mpsc::channel(spec.concurrency);
    let mut workers = JoinSet::new();

    let started = Instant::now();
    for worker in 0..spec.concurrency {
        let mut client = GreeterClient::new(channels[worker % channels.len()].clone());
        let (issued, outcomes_tx, spec) = (issued.clone(), outcomes_tx.clone(), spec.clone());
        workers.spawn(async move {
            while issued.fetch_add(1, Ordering::Relaxed) < spec.count {
                let outcome = say_hello(&mut client, &spec).await;
                if outcomes_tx.send(outcome).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(outcomes_tx);

    Ok(collect_report(outcomes, started, observe).await)
}

/// Drains `outcomes` until every sender is gone, handing each to `observe`, into a
/// report that lasted from `started` until then.
pub(crate) async fn collect_report(
    mut outcomes: mpsc::Receiver<CallOutcome>,
    started: Instant,
    mut observe: impl FnMut(&CallOutcome),
) -> LoadReport {
    let mut report = LoadReport::new();
    while let Some(outcome) = outcomes.recv().await {
        observe(&outcome);
        report.record(&outcome);
    }
    report.set_duration(started.elapsed());
    report
}

/// Opens `connections` independent HTTP/2 connections to `target`.
pub async fn connect(target: &str, connections: usize) -> Result<Vec<Channel>, LoadError> {
    let endpoint = Endpoint::from_shared(target.to_owned())
        .map_err(|source| LoadError::InvalidTarget {
            target: target.to_owned(),
            source,
        })?
        .tcp_nodelay(true);
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| LoadError::Connect {
                target: target.to_owned(),
                source,
            })?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Makes one call as `spec` describes (name, headers, timeout).
///
/// A call not answered within `spec.timeout` is cancelled and ends with
/// `DEADLINE_EXCEEDED`. The deadline is deliberately not sent as
/// `grpc-timeout`: tonic servers report an expired one as `CANCELLED` and
/// proxies map it their own way, so the recorded code would depend on who
/// noticed first.
pub async fn say_hello(client: &mut GreeterClient<Channel>, spec: &LoadSpec) -> CallOutcome {
    let mut request = Request::new(HelloRequest {
        name: spec.name.clone(),
    });
    for header in &spec.headers {
        header.append_to(request.metadata_mut());
    }

    let started = Instant::now();
    let result = match tokio::time::timeout(spec.timeout, client.say_hello(request)).await {
        Ok(Ok(response)) => Ok(response.into_inner().message),
        Ok(Err(status)) => Err(status),
        Err(_elapsed) => Err(Status::deadline_exceeded(format!(
            "no reply within {}",
            humantime::format_duration(spec.timeout)
        ))),
    };
    CallOutcome {
        latency: started.elapsed(),
        result,
    }
}
