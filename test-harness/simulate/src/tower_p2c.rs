//! Linkerd's balancer, the real code: per proxy a `tower::balance::p2c::Balance` over
//! `tower::load::PeakEwma` services (Linkerd's defaults: 30 ms default RTT, 10 s decay,
//! RTT to the response), one per endpoint.
//!
//! How it runs on the simulator's fake clock: tower reads `tokio::time::Instant`, so
//! the policy owns a current-thread tokio runtime with a paused clock
//! (`start_paused`, tokio's `test-util`) and moves it to each event's time with
//! `tokio::time::advance` before calling into tower. A simulated endpoint is a
//! `Service` whose response future waits on a oneshot channel; when the simulator says
//! the call is answered, the channel is filled and the balancer's response future is
//! polled once: it completes, and `PeakEwma`'s completion handle records the RTT at
//! that instant, as it would in a proxy. Nothing sleeps; the run is deterministic (the
//! balancer's RNG is seeded per proxy).

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, DefaultHasher, Hasher};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::oneshot;
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwma};
use tower::util::rng::HasherRng;
use tower::{BoxError, Service};

use crate::policy::{Origin, Outcome, Policy};
use crate::station::Station;
use crate::Nanos;

/// Linkerd's default RTT for an endpoint with no sample.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// Linkerd's decay.
pub const DECAY: Duration = Duration::from_secs(10);

/// A simulated endpoint as a tower service: the request is the call's id.
struct Endpoint {
    index: usize,
    /// Which endpoint the balancer called last (read right after `call`).
    called: Rc<Cell<Option<usize>>>,
    answers: Rc<std::cell::RefCell<HashMap<u64, oneshot::Sender<()>>>>,
}

type Reply = Pin<Box<dyn Future<Output = Result<(), BoxError>>>>;

impl Service<u64> for Endpoint {
    type Response = ();
    type Error = BoxError;
    type Future = Reply;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: u64) -> Reply {
        let (tx, rx) = oneshot::channel();
        self.answers.borrow_mut().insert(call, tx);
        self.called.set(Some(self.index));
        Box::pin(async move { rx.await.map_err(BoxError::from) })
    }
}

type ProxyBalancer = Balance<ServiceList<Vec<PeakEwma<Endpoint, CompleteOnResponse>>>, u64>;
type Pending = Pin<Box<dyn Future<Output = Result<(), BoxError>>>>;

/// A seed for tower's hasher-based RNG.
#[derive(Clone, Copy)]
struct Seeded(u64);

impl BuildHasher for Seeded {
    type Hasher = DefaultHasher;
    fn build_hasher(&self) -> DefaultHasher {
        let mut h = DefaultHasher::new();
        h.write_u64(self.0);
        h
    }
}

pub struct TowerPeakEwma {
    runtime: tokio::runtime::Runtime,
    /// The simulated time the paused tokio clock shows.
    clock: Nanos,
    balancers: Vec<ProxyBalancer>,
    called: Rc<Cell<Option<usize>>>,
    answers: Rc<std::cell::RefCell<HashMap<u64, oneshot::Sender<()>>>>,
    pending: HashMap<u64, Pending>,
}

impl TowerPeakEwma {
    pub fn new(proxies: usize, endpoints: usize, seed: u64) -> Outcome<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let called = Rc::new(Cell::new(None));
        let answers = Rc::new(std::cell::RefCell::new(HashMap::new()));
        let balancers = {
            let _clock = runtime.enter();
            (0..proxies)
                .map(|p| {
                    let services = (0..endpoints)
                        .map(|index| {
                            let endpoint = Endpoint {
                                index,
                                called: Rc::clone(&called),
                                answers: Rc::clone(&answers),
                            };
                            PeakEwma::new(
                                endpoint,
                                DEFAULT_RTT,
                                DECAY.as_nanos() as f64,
                                CompleteOnResponse::default(),
                            )
                        })
                        .collect::<Vec<_>>();
                    let rng = HasherRng::with_hasher(Seeded(seed ^ (p as u64 + 1)));
                    Balance::from_rng(ServiceList::new(services), rng)
                })
                .collect()
        };
        Ok(Self {
            runtime,
            clock: 0,
            balancers,
            called,
            answers,
            pending: HashMap::new(),
        })
    }

    /// Moves the paused tokio clock to simulated time `now`.
    fn set_clock(&mut self, now: Nanos) {
        if now > self.clock {
            let step = Duration::from_nanos(now - self.clock);
            self.runtime.block_on(tokio::time::advance(step));
            self.clock = now;
        }
    }
}

impl Drop for TowerPeakEwma {
    /// Calls still in flight record their round trip when dropped: with the runtime
    /// entered they read the paused clock, not the wall clock behind it (tower
    /// asserts that an answer never comes before its request).
    fn drop(&mut self) {
        let _clock = self.runtime.enter();
        self.pending.clear();
        self.balancers.clear();
    }
}

fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

impl Policy for TowerPeakEwma {
    fn key(&self) -> &'static str {
        "tower_peak_ewma"
    }

    fn pick(&mut self, call: u64, o: Origin, now: Nanos, _: &[Station]) -> Outcome<usize> {
        self.set_clock(now);
        let _clock = self.runtime.enter();
        let balancer = &mut self.balancers[o.proxy];
        match poll_once(Pin::new(&mut std::future::poll_fn(|cx| {
            balancer.poll_ready(cx)
        }))) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Err(format!("tower balancer: {e}")),
            Poll::Pending => return Err("tower balancer not ready".into()),
        }
        self.called.set(None);
        let mut reply: Pending = Box::pin(balancer.call(call));
        // The balancer calls the endpoint's service at once; its future waits.
        if let Poll::Ready(r) = poll_once(reply.as_mut()) {
            return Err(format!("a call answered before the endpoint did: {r:?}"));
        }
        let endpoint = self.called.get().ok_or("tower called no endpoint")?;
        self.pending.insert(call, reply);
        Ok(endpoint)
    }

    fn complete(&mut self, call: u64, _: Origin, _: usize, now: Nanos) -> Outcome<()> {
        self.set_clock(now);
        let _clock = self.runtime.enter();
        if let Some(tx) = self.answers.borrow_mut().remove(&call) {
            let _ = tx.send(());
        }
        let mut reply = self.pending.remove(&call).ok_or("no such tower call")?;
        match poll_once(reply.as_mut()) {
            Poll::Ready(Ok(())) => Ok(()),
            Poll::Ready(Err(e)) => Err(format!("tower call failed: {e}")),
            Poll::Pending => Err("tower call still pending after its answer".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use crate::mesh::MS;
    const O: Origin = Origin {
        proxy: 0,
        worker: 0,
    };

    #[test]
    fn tower_learns_the_slow_endpoint_on_the_fake_clock() {
        let mut t = TowerPeakEwma::new(1, 2, 1).unwrap();
        // Endpoint 1 answers in 100 ms, endpoint 0 in 1 ms: one call at a time, 200 calls.
        let mut now = 0;
        let mut picks = [0u32; 2];
        for call in 0..200 {
            let e = t.pick(call, O, now, &[]).unwrap();
            picks[e] += 1;
            now += if e == 1 { 100 * MS } else { MS };
            t.complete(call, O, e, now).unwrap();
        }
        // After its first 100 ms sample endpoint 1 costs 100× more: only decay toward
        // the 1 ms endpoint's cost brings it back now and then.
        assert!(picks[1] <= 3, "{picks:?}");
        assert!(picks[0] >= 197, "{picks:?}");
    }

    #[test]
    fn the_same_seed_makes_the_same_choices() {
        let run = |seed| {
            let mut t = TowerPeakEwma::new(1, 10, seed).unwrap();
            (0..50)
                .map(|call| t.pick(call, O, call * MS, &[]).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
