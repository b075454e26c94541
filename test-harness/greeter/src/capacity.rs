//! A backend with a limited capacity, like a CPU-bound pod: `slots` calls are served at
//! once, each occupying one slot for its service time, and the rest wait in FIFO order,
//! so latency grows with load.
//!
//! [`ServiceTime`] draws each call's work (fixed, or exponential with the given mean) from
//! an injected random source; [`CapacityGate`] queues calls for a slot on a fair
//! (FIFO) [`tokio::sync::Semaphore`] and can change its number of slots while calls are
//! waiting ([`CapacityGate::set_slots`]), e.g. to halve a pod's speed at a given time.

use std::{
    fmt,
    str::FromStr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::Duration,
};

use rand::{Rng, RngExt};
use tokio::sync::Semaphore;

/// How a call's service time is distributed around its mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServiceDist {
    /// Every call takes exactly the mean.
    #[default]
    Fixed,
    /// Exponentially distributed with the given mean (an M/M/c server).
    Exp,
}

impl FromStr for ServiceDist {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "fixed" => Ok(Self::Fixed),
            "exp" | "exponential" => Ok(Self::Exp),
            _ => Err(format!(
                "service distribution must be `fixed` or `exp`, got `{text}`"
            )),
        }
    }
}

impl fmt::Display for ServiceDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fixed => "fixed",
            Self::Exp => "exp",
        })
    }
}

/// Each call's work: a mean and a distribution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceTime {
    /// The mean service time (the exact one for [`ServiceDist::Fixed`]).
    pub mean: Duration,
    pub dist: ServiceDist,
}

impl ServiceTime {
    /// One call's service time.
    pub fn draw(&self, rng: &mut impl Rng) -> Duration {
        match self.dist {
            ServiceDist::Fixed => self.mean,
            ServiceDist::Exp => {
                // Inverse transform: u in [0, 1), so 1 - u in (0, 1] and ln(1 - u) is finite.
                let u: f64 = rng.random_range(0.0..1.0);
                self.mean.mul_f64(-(1.0 - u).ln())
            }
        }
    }
}

/// A capacity that changes once, at a given time after the server started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityChange {
    /// When, from the start of the server.
    pub at: Duration,
    /// The number of slots from then on.
    pub slots: usize,
}

/// How much work a greeter can do at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Calls served at once (at least 1).
    pub slots: usize,
    pub service_time: ServiceTime,
    pub change: Option<CapacityChange>,
}

/// Calls waiting for and occupying the slots of one backend. Cheap to clone: clones
/// share the slots.
#[derive(Debug, Clone)]
pub struct CapacityGate {
    semaphore: Arc<Semaphore>,
    /// The configured number of slots.
    slots: Arc<Mutex<usize>>,
    /// Slots to take away when calls release them (a decrease while they are busy).
    debt: Arc<AtomicUsize>,
}

impl CapacityGate {
    /// A gate with `slots` slots (0 is taken as 1: a backend serves at least one call).
    pub fn new(slots: usize) -> Self {
        let slots = slots.max(1);
        Self {
            semaphore: Arc::new(Semaphore::new(slots)),
            slots: Arc::new(Mutex::new(slots)),
            debt: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The number of slots now.
    pub fn slots(&self) -> usize {
        *self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a slot (behind every call that came first), holds it for `work`, and
    /// releases it.
    pub async fn serve(&self, work: Duration) {
        let Ok(permit) = self.semaphore.acquire().await else {
            // The semaphore is never closed; serve without a slot if it ever were.
            tokio::time::sleep(work).await;
            return;
        };
        tokio::time::sleep(work).await;
        let repaid = self
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok();
        if repaid {
            permit.forget();
        }
    }

    /// Changes the number of slots (0 is taken as 1). More slots serve waiting calls at
    /// once; fewer take free slots away now and busy ones as their calls finish.
    pub fn set_slots(&self, slots: usize) {
        let slots = slots.max(1);
        let mut current = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots > *current {
            let mut more = slots - *current;
            // Cancel a decrease not yet carried out before adding slots.
            while more > 0
                && self
                    .debt
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
                    .is_ok()
            {
                more -= 1;
            }
            self.semaphore.add_permits(more);
        } else {
            let fewer = *current - slots;
            let taken = self.semaphore.forget_permits(fewer);
            self.debt.fetch_add(fewer - taken, Ordering::AcqRel);
        }
        *current = slots;
    }

    /// Applies `change` at its time from now (call it when the server starts).
    pub fn schedule(&self, change: CapacityChange) -> tokio::task::JoinHandle<()> {
        let gate = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(change.at).await;
            gate.set_slots(change.slots);
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::{rngs::StdRng, SeedableRng};
    use tokio::time::Instant;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Starts `calls` calls of `work` at once, in order, on `gate`; returns each call's
    /// finish time in ms from the start, in the order they finished, with its index.
    async fn finish_times(gate: &CapacityGate, calls: usize, work: Duration) -> Vec<(usize, u64)> {
        let start = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for index in 0..calls {
            let (gate, tx) = (gate.clone(), tx.clone());
            tokio::spawn(async move {
                gate.serve(work).await;
                let ms = u64::try_from(start.elapsed().as_millis()).unwrap();
                tx.send((index, ms)).unwrap();
            });
        }
        drop(tx);
        let mut done = Vec::new();
        while let Some(finished) = rx.recv().await {
            done.push(finished);
        }
        done
    }

    #[tokio::test(start_paused = true)]
    async fn two_slots_serve_five_calls_in_fifo_pairs() {
        let gate = CapacityGate::new(2);
        assert_eq!(
            finish_times(&gate, 5, 10 * MS).await,
            [(0, 10), (1, 10), (2, 20), (3, 20), (4, 30)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_slot_serves_calls_one_after_another_in_arrival_order() {
        let gate = CapacityGate::new(1);
        assert_eq!(
            finish_times(&gate, 4, 5 * MS).await,
            [(0, 5), (1, 10), (2, 15), (3, 20)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn zero_slots_is_one_slot() {
        let gate = CapacityGate::new(0);
        assert_eq!(gate.slots(), 1);
        assert_eq!(finish_times(&gate, 2, 10 * MS).await, [(0, 10), (1, 20)]);
    }

    #[tokio::test(start_paused = true)]
    async fn more_slots_serve_waiting_calls_at_once() {
        let gate = CapacityGate::new(1);
        gate.schedule(CapacityChange {
            at: 5 * MS,
            slots: 3,
        });
        // Call 0 holds the slot 0-10 ms; at 5 ms calls 1 and 2 get the new slots.
        assert_eq!(
            finish_times(&gate, 4, 10 * MS).await,
            [(0, 10), (1, 15), (2, 15), (3, 20)]
        );
        assert_eq!(gate.slots(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn fewer_slots_take_busy_slots_away_as_their_calls_finish() {
        let gate = CapacityGate::new(4);
        gate.schedule(CapacityChange {
            at: 5 * MS,
            slots: 1,
        });
        // Calls 0-3 started at 0 and finish at 10; from then on one slot serves 4, 5, 6.
        assert_eq!(
            finish_times(&gate, 7, 10 * MS).await,
            [
                (0, 10),
                (1, 10),
                (2, 10),
                (3, 10),
                (4, 20),
                (5, 30),
                (6, 40)
            ]
        );
        assert_eq!(gate.slots(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_decrease_takes_free_slots_away_at_once() {
        let gate = CapacityGate::new(3);
        gate.set_slots(1);
        assert_eq!(
            finish_times(&gate, 3, 10 * MS).await,
            [(0, 10), (1, 20), (2, 30)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_increase_cancels_a_pending_decrease() {
        let gate = CapacityGate::new(2);
        let busy = {
            let gate = gate.clone();
            tokio::spawn(async move { finish_times(&gate, 2, 10 * MS).await })
        };
        tokio::time::sleep(MS).await;
        gate.set_slots(1); // both slots busy: one is owed
        gate.set_slots(2); // and no longer
        assert_eq!(busy.await.unwrap(), [(0, 10), (1, 10)]);
        assert_eq!(finish_times(&gate, 2, 10 * MS).await, [(0, 10), (1, 10)]);
    }

    #[test]
    fn fixed_service_time_is_the_mean() {
        let time = ServiceTime {
            mean: 31 * MS,
            dist: ServiceDist::Fixed,
        };
        let mut rng = StdRng::seed_from_u64(7);
        assert!((0..100).all(|_| time.draw(&mut rng) == 31 * MS));
    }

    #[test]
    fn exponential_service_times_average_to_the_mean() {
        let time = ServiceTime {
            mean: 10 * MS,
            dist: ServiceDist::Exp,
        };
        let mut rng = StdRng::seed_from_u64(7);
        let samples: Vec<f64> = (0..100_000)
            .map(|_| time.draw(&mut rng).as_secs_f64() * 1e3)
            .collect();
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((mean - 10.0).abs() < 0.2, "mean {mean} ms");
        // The exponential's median is ln 2 × the mean: 6.93 ms.
        let below = samples.iter().filter(|&&ms| ms < 6.931).count();
        assert!(
            (49_000..=51_000).contains(&below),
            "{below} below the median"
        );
        assert!(samples.iter().all(|&ms| ms.is_finite() && ms >= 0.0));
    }

    #[test]
    fn distributions_parse_by_name() {
        assert_eq!("fixed".parse(), Ok(ServiceDist::Fixed));
        assert_eq!("exp".parse(), Ok(ServiceDist::Exp));
        assert_eq!("Exponential".parse(), Ok(ServiceDist::Exp));
        assert_eq!(
            "normal".parse::<ServiceDist>(),
            Err("service distribution must be `fixed` or `exp`, got `normal`".to_owned())
        );
        assert_eq!(ServiceDist::Exp.to_string(), "exp");
    }
}
