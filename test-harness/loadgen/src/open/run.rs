//! Running a load: the schedule on its own OS thread, the calls on tokio, the tallies
//! per interval and for the whole run.
//!
//! The schedule runs on a blocking thread and waits with `std::thread::sleep`
//! (nanosleep, about 50 µs of slack on Linux) rather than tokio's timer, whose 1 ms
//! granularity would add up to a millisecond to every latency measured from the due
//! time. When all `concurrency` slots are busy the schedule waits for one; the calls it
//! sends late still count their latency from when they were due.
//!
//! The calls go to a [`Target`]: one URI over `connections` connections taken in turn,
//! or tower's p2c over PeakEwma over one connection per backend
//! ([`crate::tower_peak_ewma`]), which every call shares through its buffer.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio::{
    runtime::Handle,
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
    time::MissedTickBehavior,
};
use tonic::{
    body::Body,
    client::GrpcService,
    codegen::{Bytes, StdError},
    transport::Channel,
    Code, Request,
};

use super::{
    line::IntervalReport,
    schedule::{due_between, due_offset, planned_calls, Pace, Stop},
    summary::{LoadgenSummary, RunShape},
    tally::{Finished, Tally, Verdict},
    target::Target,
};
use crate::{
    closed::{connect, LoadError, DEFAULT_TARGET},
    greeting::backend_of,
    header::MetadataHeader,
    pb::{greeter_client::GreeterClient, HelloRequest},
    report::UNKNOWN_BACKEND,
    tower_peak_ewma::{connect_tower_peak_ewma, TowerPeakEwma},
};

/// What to send, where, how fast and for how long.
#[derive(Debug, Clone)]
pub struct LoadgenSpec {
    /// Where the calls go: a gRPC endpoint URI, e.g. `http://127.0.0.1:10000`, or a
    /// client-side balancer over several.
    pub target: Target,
    pub pace: Pace,
    pub stop: Stop,
    /// Calls in flight at most.
    pub concurrency: usize,
    /// HTTP/2 connections to a [`Target::Uri`]; calls take them in turn. A balanced
    /// target opens one per backend instead.
    pub connections: usize,
    /// Length of a reporting interval.
    pub interval: Duration,
    /// Per-call deadline, from when the call is sent, enforced by this client.
    pub timeout: Duration,
    /// `name` field of every request.
    pub name: String,
    /// Extra metadata sent with every call.
    pub headers: Vec<MetadataHeader>,
}

impl LoadgenSpec {
    /// `qps` calls per second at `target` for `duration`, at most 64 in flight, over
    /// one connection, reporting every second.
    pub fn open(target: impl Into<Target>, qps: f64, duration: Duration) -> Self {
        Self {
            target: target.into(),
            pace: Pace::Open { qps },
            stop: Stop::after(duration),
            concurrency: 64,
            connections: 1,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            name: "world".to_owned(),
            headers: Vec::new(),
        }
    }

    /// `concurrency` calls back to back at `target` for `duration`.
    pub fn closed(target: impl Into<Target>, concurrency: usize, duration: Duration) -> Self {
        Self {
            pace: Pace::Closed,
            concurrency,
            ..Self::open(target, 1.0, duration)
        }
    }

    fn check(&self) -> Result<(), LoadError> {
        let invalid = |reason: &str| Err(LoadError::InvalidSpec(reason.to_owned()));
        if let Pace::Open { qps } = self.pace {
            if let Err(reason) = Pace::open(qps) {
                return invalid(&reason);
            }
        }
        if !self.stop.is_bounded() {
            return invalid("give a duration or a total number of calls");
        }
        if self.concurrency == 0 {
            return invalid("concurrency must be at least 1");
        }
        if self.connections == 0 {
            return invalid("connections must be at least 1");
        }
        if self.interval.is_zero() {
            return invalid("interval must be longer than zero");
        }
        if matches!(&self.target, Target::TowerPeakEwma(backends) if backends.is_empty()) {
            return invalid("a balanced target needs at least one backend");
        }
        Ok(())
    }
}

impl Default for LoadgenSpec {
    /// 100 qps for 10 s at Envoy's listener in the example configurations.
    fn default() -> Self {
        Self::open(DEFAULT_TARGET, 100.0, Duration::from_secs(10))
    }
}

/// What a run observed.
#[derive(Debug, Clone)]
pub struct LoadgenReport {
    /// Every call of the run.
    pub tally: Tally,
    pub summary: LoadgenSummary,
}

/// Runs `spec`, handing each reporting interval to `on_interval` as it ends (the last
/// one may be shorter), and reports the whole run.
pub async fn run_loadgen(
    spec: &LoadgenSpec,
    mut on_interval: impl FnMut(&IntervalReport),
) -> Result<LoadgenReport, LoadError> {
    spec.check()?;
    let clients = Clients::connect(spec).await?;
    let planned = spec
        .pace
        .qps()
        .and_then(|qps| planned_calls(qps, spec.stop));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();

    let start = Instant::now();
    let schedule = Schedule {
        pace: spec.pace,
        stop: spec.stop,
        start,
        clients,
        slots: Arc::new(Semaphore::new(spec.concurrency)),
        call: Arc::new(CallTemplate {
            name: spec.name.clone(),
            headers: spec.headers.clone(),
            timeout: spec.timeout,
        }),
        done: done_tx,
        handle: Handle::current(),
    };
    let scheduler = tokio::task::spawn_blocking(move || schedule.run());

    let goal = |from: Instant, to: Instant| {
        spec.pace
            .qps()
            .map(|qps| due_between(from - start, to - start, qps, planned))
    };
    let mut ticker = tokio::time::interval_at((start + spec.interval).into(), spec.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut current, mut total) = (Tally::new(), Tally::new());
    let (mut from, mut last_answer) = (start, start);
    loop {
        tokio::select! {
            finished = done_rx.recv() => match finished {
                Some(finished) => {
                    last_answer = Instant::now();
                    current.record(&finished);
                }
                None => break,
            },
            tick = ticker.tick() => {
                let to = tick.into_std();
                let report = IntervalReport {
                    ended_at: SystemTime::now(),
                    length: to - from,
                    goal: goal(from, to),
                    tally: std::mem::take(&mut current),
                };
                on_interval(&report);
                total.merge(&report.tally);
                from = to;
            }
        }
    }
    let end = Instant::now();
    if current.total() > 0 {
        let report = IntervalReport {
            ended_at: SystemTime::now(),
            length: end - from,
            goal: goal(from, end),
            tally: current,
        };
        on_interval(&report);
        total.merge(&report.tally);
    }
    let sent = scheduler.await.unwrap_or_default();
    let shape = RunShape {
        target: spec.target.to_string(),
        qps: spec.pace.qps(),
        concurrency: u64::try_from(spec.concurrency).unwrap_or(u64::MAX),
        connections: u64::try_from(spec.target.connections(spec.connections)).unwrap_or(u64::MAX),
        planned,
        sent,
        elapsed: last_answer - start,
    };
    Ok(LoadgenReport {
        summary: LoadgenSummary::new(&shape, &total),
        tally: total,
    })
}

/// The request every call sends.
#[derive(Debug)]
struct CallTemplate {
    name: String,
    headers: Vec<MetadataHeader>,
    timeout: Duration,
}

/// What the calls are sent through.
enum Clients {
    /// Connections to one URI, taken in turn.
    InTurn(Vec<GreeterClient<Channel>>),
    /// One balancer every call shares.
    TowerPeakEwma(GreeterClient<TowerPeakEwma>),
}

impl Clients {
    async fn connect(spec: &LoadgenSpec) -> Result<Self, LoadError> {
        Ok(match &spec.target {
            Target::Uri(uri) => Self::InTurn(
                connect(uri, spec.connections)
                    .await?
                    .into_iter()
                    .map(GreeterClient::new)
                    .collect(),
            ),
            Target::TowerPeakEwma(backends) => Self::TowerPeakEwma(GreeterClient::new(
                connect_tower_peak_ewma(backends, spec.concurrency).await?,
            )),
        })
    }
}

/// The sending side of a run, on its own thread.
struct Schedule {
    pace: Pace,
    stop: Stop,
    start: Instant,
    clients: Clients,
    slots: Arc<Semaphore>,
    call: Arc<CallTemplate>,
    done: mpsc::UnboundedSender<Finished>,
    handle: Handle,
}

impl Schedule {
    /// Sends calls until the stop condition; returns how many were sent.
    fn run(self) -> u64 {
        let mut sent = 0_u64;
        while self.stop.total.is_none_or(|total| sent < total) && !self.done.is_closed() {
            let due = match self.pace {
                Pace::Open { qps } => {
                    let offset = due_offset(sent, qps);
                    if self.stop.duration.is_some_and(|d| offset >= d) {
                        break;
                    }
                    let due = self.start + offset;
                    sleep_until(due);
                    Some(due)
                }
                Pace::Closed => None,
            };
            let Ok(slot) = self.handle.block_on(self.slots.clone().acquire_owned()) else {
                break;
            };
            let due = match due {
                Some(due) => due,
                None => {
                    let now = Instant::now();
                    if self.stop.duration.is_some_and(|d| now >= self.start + d) {
                        break;
                    }
                    now
                }
            };
            let (template, done) = (self.call.clone(), self.done.clone());
            match &self.clients {
                Clients::InTurn(clients) => {
                    let index = usize::try_from(sent).unwrap_or_default() % clients.len().max(1);
                    if let Some(client) = clients.get(index) {
                        self.handle
                            .spawn(call(client.clone(), template, due, slot, done));
                    }
                }
                Clients::TowerPeakEwma(client) => {
                    self.handle
                        .spawn(call(client.clone(), template, due, slot, done));
                }
            }
            sent += 1;
        }
        sent
    }
}

fn sleep_until(due: Instant) {
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

/// One call through `client`'s transport; reports how it ended and its latency from
/// `due`.
async fn call<T>(
    mut client: GreeterClient<T>,
    template: Arc<CallTemplate>,
    due: Instant,
    slot: OwnedSemaphorePermit,
    done: mpsc::UnboundedSender<Finished>,
) where
    T: GrpcService<Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<StdError> + Send,
{
    let mut request = Request::new(HelloRequest {
        name: template.name.clone(),
    });
    for header in &template.headers {
        header.append_to(request.metadata_mut());
    }
    let result = tokio::time::timeout(template.timeout, client.say_hello(request)).await;
    let answered = Instant::now();
    drop(slot);
    let (verdict, backend) = match result {
        Ok(Ok(reply)) => {
            let message = reply.into_inner().message;
            let backend = backend_of(&message).unwrap_or(UNKNOWN_BACKEND).to_owned();
            (Verdict::Good, Some(backend))
        }
        Ok(Err(status)) => (Verdict::of::<()>(&Err(status)), None),
        Err(_elapsed) => (Verdict::Failed(Code::DeadlineExceeded), None),
    };
    // The receiver is gone only if the run was abandoned.
    let _ = done.send(Finished {
        latency: answered.saturating_duration_since(due),
        verdict,
        backend,
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[tokio::test]
    async fn a_balanced_target_without_backends_is_refused_before_any_call() {
        let spec = LoadgenSpec::open(
            Target::TowerPeakEwma(Vec::new()),
            10.0,
            Duration::from_secs(1),
        );
        match run_loadgen(&spec, |_| {}).await {
            Err(LoadError::InvalidSpec(reason)) => {
                assert_eq!(reason, "a balanced target needs at least one backend");
            }
            other => panic!("expected an invalid spec, got {other:?}"),
        }
    }
}
