//! One endpoint as a queueing station: `capacity` calls in service at once, the rest
//! waiting in FIFO order, each call's work drawn from an exponential distribution around
//! the station's mean service time (times its slowdown), and pauses (a GC: no work
//! progresses) at given times. Latency grows with load, as a CPU-bound pod's does.

use std::collections::VecDeque;

use ewma_balancer::rng::SplitMix64;

use crate::Nanos;

/// What a station is.
#[derive(Clone, Debug, PartialEq)]
pub struct StationSpec {
    pub addr: String,
    /// Calls served at once.
    pub capacity: u32,
    /// Mean work of a call at full speed.
    pub service: Nanos,
    /// Work is multiplied by this (2.0: a pod on a busy node serving at half speed).
    pub slowdown: f64,
    /// `[start, end)` windows, sorted and disjoint, in which no work progresses.
    pub pauses: Vec<(Nanos, Nanos)>,
}

impl StationSpec {
    pub fn new(addr: impl Into<String>, capacity: u32, service: Nanos) -> Self {
        Self {
            addr: addr.into(),
            capacity,
            service,
            slowdown: 1.0,
            pauses: Vec::new(),
        }
    }

    /// Calls per second it completes when busy.
    pub fn throughput(&self) -> f64 {
        f64::from(self.capacity) * 1e9 / (self.service as f64 * self.slowdown)
    }

    /// Mean work of one call, with the slowdown.
    pub fn mean_work(&self) -> f64 {
        self.service as f64 * self.slowdown
    }

    /// When a call whose service starts at `start` with `work` ns of work is done: work
    /// progresses only outside the pauses.
    pub fn done_at(&self, start: Nanos, work: Nanos) -> Nanos {
        let (mut t, mut left) = (start, work);
        for &(from, to) in &self.pauses {
            if to <= t {
                continue;
            }
            if from >= t.saturating_add(left) {
                break;
            }
            left -= from.saturating_sub(t);
            t = to;
        }
        t.saturating_add(left)
    }

    pub fn paused_at(&self, t: Nanos) -> bool {
        self.pauses.iter().any(|&(from, to)| from <= t && t < to)
    }
}

/// A station's live state.
pub struct Station {
    pub spec: StationSpec,
    busy: u32,
    waiting: VecDeque<u64>,
    rng: SplitMix64,
}

impl Station {
    pub fn new(spec: StationSpec, seed: u64) -> Self {
        Self {
            spec,
            busy: 0,
            waiting: VecDeque::new(),
            rng: SplitMix64::new(seed),
        }
    }

    /// Calls waiting or in service.
    pub fn in_system(&self) -> usize {
        self.busy as usize + self.waiting.len()
    }

    /// The mean latency a call arriving now would see, knowing the whole queue: the
    /// global knowledge `jsq` has.
    pub fn expected_latency(&self) -> f64 {
        let ahead = (self.in_system() + 1).saturating_sub(self.spec.capacity as usize);
        self.spec.mean_work() * (1.0 + ahead as f64 / f64::from(self.spec.capacity.max(1)))
    }

    /// `call` arrives at `now`: `Some(done)` when its service starts at once.
    pub fn arrive(&mut self, call: u64, now: Nanos) -> Option<Nanos> {
        if self.busy < self.spec.capacity {
            self.busy += 1;
            Some(self.start(now))
        } else {
            self.waiting.push_back(call);
            None
        }
    }

    /// A call in service finished at `now`: the next waiting call, if any, starts, and
    /// this returns it with when it is done.
    pub fn depart(&mut self, now: Nanos) -> Option<(u64, Nanos)> {
        match self.waiting.pop_front() {
            Some(next) => Some((next, self.start(now))),
            None => {
                self.busy = self.busy.saturating_sub(1);
                None
            }
        }
    }

    fn start(&mut self, now: Nanos) -> Nanos {
        // Exponential work: -ln(1 - u) × mean, u in [0, 1).
        let u = self.rng.unit();
        let work = -(1.0 - u).ln() * self.spec.mean_work();
        self.spec.done_at(now, work.max(1.0) as Nanos)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use crate::mesh::MS;

    fn spec(capacity: u32) -> StationSpec {
        StationSpec::new("10.0.0.1:8080", capacity, 10 * MS)
    }

    #[test]
    fn work_stops_during_a_pause() {
        let mut s = spec(1);
        s.pauses = vec![(20 * MS, 220 * MS), (300 * MS, 310 * MS)];
        assert_eq!(s.done_at(0, 10 * MS), 10 * MS);
        // 5 ms before the pause, 5 ms after it.
        assert_eq!(s.done_at(15 * MS, 10 * MS), 225 * MS);
        // Starting inside the pause: all work after it.
        assert_eq!(s.done_at(100 * MS, 10 * MS), 230 * MS);
        // Across both pauses: 5 + (200 pause) + 80 + (10 pause) + 15.
        assert_eq!(s.done_at(15 * MS, 100 * MS), 325 * MS);
        assert!(s.paused_at(20 * MS) && !s.paused_at(220 * MS));
    }

    #[test]
    fn capacity_calls_run_at_once_and_the_rest_wait_in_order() {
        let mut s = Station::new(spec(2), 1);
        assert!(s.arrive(1, 0).is_some());
        assert!(s.arrive(2, 0).is_some());
        assert_eq!(s.arrive(3, 0), None);
        assert_eq!(s.arrive(4, 0), None);
        assert_eq!(s.in_system(), 4);
        assert_eq!(s.depart(5 * MS).map(|(c, _)| c), Some(3));
        assert_eq!(s.depart(6 * MS).map(|(c, _)| c), Some(4));
        assert_eq!(s.depart(7 * MS), None);
        assert_eq!(s.depart(8 * MS), None);
        assert_eq!(s.in_system(), 0);
        assert!(s.arrive(5, 9 * MS).is_some());
    }

    #[test]
    fn work_is_exponential_around_the_mean_times_the_slowdown() {
        let mut half = spec(1);
        half.slowdown = 2.0;
        assert_eq!(half.throughput(), 50.0);
        let mut s = Station::new(half, 7);
        let n = 20_000;
        let total: Nanos = (0..n)
            .map(|i| {
                let done = s.arrive(i, 0).unwrap();
                s.depart(done);
                done
            })
            .sum();
        let mean = total as f64 / n as f64 / MS as f64;
        assert!((mean - 20.0).abs() < 0.5, "{mean}");
    }

    #[test]
    fn expected_latency_counts_the_calls_ahead_per_slot() {
        let mut s = Station::new(spec(2), 1);
        assert_eq!(s.expected_latency(), 10.0 * MS as f64);
        s.arrive(1, 0);
        assert_eq!(s.expected_latency(), 10.0 * MS as f64);
        s.arrive(2, 0);
        // The next call waits for one of two slots: half a service time on average.
        assert_eq!(s.expected_latency(), 15.0 * MS as f64);
    }
}
