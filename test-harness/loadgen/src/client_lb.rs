//! The greeter client's own load-balancing policy, as gRPC clients name them:
//! `pick_first` (one connection to whatever the target resolves to first: the case a
//! proxy has to balance) or `round_robin` (one connection per address the target
//! resolves to, calls in turn, re-resolved periodically; see [`DnsRoundRobin`]).
//!
//! [`run_load_balanced`] runs a [`LoadSpec`] under either policy. With `pick_first` it
//! behaves exactly like [`run_load_observed`](crate::closed::run_load_observed)
//! (`spec.connections` connections, shared by the workers), plus an optional pause
//! between a worker's calls, so a client in a pod can run for hours at a readable rate.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::{sync::mpsc, task::JoinSet};
use tonic::{transport::Channel, Status};

use crate::{
    closed::{collect_report, connect, say_hello, LoadError, LoadSpec},
    dns_round_robin::DnsRoundRobin,
    pb::greeter_client::GreeterClient,
    report::{CallOutcome, LoadReport},
};

/// Default period of DNS re-resolution under `round_robin`.
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(5);

/// How the client spreads its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LbPolicy {
    /// One target, `connections` connections to it (gRPC's default).
    #[default]
    #[value(name = "pick_first")]
    PickFirst,
    /// One connection per resolved address, calls in turn.
    #[value(name = "round_robin")]
    RoundRobin,
}

/// Policy options besides the [`LoadSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLb {
    pub policy: LbPolicy,
    /// Re-resolution period under `round_robin`.
    pub dns_refresh: Duration,
    /// Pause after each call, per worker (zero: none).
    pub interval: Duration,
}

impl Default for ClientLb {
    fn default() -> Self {
        Self {
            policy: LbPolicy::PickFirst,
            dns_refresh: DEFAULT_DNS_REFRESH,
            interval: Duration::ZERO,
        }
    }
}

/// Where each call's channel comes from.
enum Channels {
    /// A fixed set; worker `i` always uses channel `i % len`.
    Fixed(Vec<Channel>),
    /// The next in the DNS rotation, per call.
    RoundRobin(DnsRoundRobin),
}

impl Channels {
    fn for_call(&self, worker: usize) -> Option<Channel> {
        match self {
            Self::Fixed(channels) => channels.get(worker % channels.len().max(1)).cloned(),
            Self::RoundRobin(pool) => pool.next(),
        }
    }
}

/// Runs `spec` under `lb`, handing each call's outcome to `observe` as it completes.
pub async fn run_load_balanced(
    spec: &LoadSpec,
    lb: &ClientLb,
    observe: impl FnMut(&CallOutcome),
) -> Result<LoadReport, LoadError> {
    if spec.concurrency == 0 || spec.connections == 0 {
        return Err(LoadError::InvalidSpec(
            "concurrency and connections must be at least 1".into(),
        ));
    }
    let channels = Arc::new(match lb.policy {
        LbPolicy::PickFirst => Channels::Fixed(connect(&spec.target, spec.connections).await?),
        LbPolicy::RoundRobin => {
            Channels::RoundRobin(DnsRoundRobin::connect(&spec.target, lb.dns_refresh).await?)
        }
    });
    let issued = Arc::new(AtomicU64::new(0));
    let (outcomes_tx, outcomes) = mpsc::channel(spec.concurrency);
    let mut workers = JoinSet::new();

    let started = Instant::now();
    for worker in 0..spec.concurrency {
        let (issued, outcomes_tx, spec, channels) = (
            issued.clone(),
            outcomes_tx.clone(),
            spec.clone(),
            channels.clone(),
        );
        let interval = lb.interval;
        workers.spawn(async move {
            while issued.fetch_add(1, Ordering::Relaxed) < spec.count {
                let outcome = match channels.for_call(worker) {
                    Some(channel) => say_hello(&mut GreeterClient::new(channel), &spec).await,
                    None => CallOutcome {
                        latency: Duration::ZERO,
                        result: Err(Status::unavailable("no address to call")),
                    },
                };
                if outcomes_tx.send(outcome).await.is_err() {
                    break;
                }
                if !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
            }
        });
    }
    drop(outcomes_tx);

    Ok(collect_report(outcomes, started, observe).await)
}
