//! What the simulated Envoy process shares between its workers: shared data (with
//! Envoy's compare-and-swap semantics), shared queues, stats, and the fake clock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// proxy-wasm ABI status codes the host returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    CasMismatch = 8,
    InternalFailure = 10,
}

/// Envoy's shared data: the filter's own fake, with Envoy's semantics.
pub use ewma_balancer::store::SharedData;

/// Envoy's shared queues (registered by name, resolved by VM id and name).
#[derive(Debug, Default)]
pub struct SharedQueues {
    queues: Vec<(String, VecDeque<Vec<u8>>)>,
}

impl SharedQueues {
    pub fn register(&mut self, name: &str) -> u32 {
        self.resolve(name).unwrap_or_else(|| {
            self.queues.push((name.to_string(), VecDeque::new()));
            self.queues.len() as u32
        })
    }

    pub fn resolve(&self, name: &str) -> Option<u32> {
        self.queues
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| i as u32 + 1)
    }

    pub fn queue(&mut self, id: u32) -> Option<&mut VecDeque<Vec<u8>>> {
        self.queues
            .get_mut((id as usize).checked_sub(1)?)
            .map(|(_, q)| q)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    pub fn from_abi(value: i32) -> Option<Self> {
        match value {
            0 => Some(Self::Counter),
            1 => Some(Self::Gauge),
            2 => Some(Self::Histogram),
            _ => None,
        }
    }
}

/// One stat, shared by name across workers as in Envoy's stats store.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub kind: MetricType,
    pub name: String,
    pub value: u64,
    pub samples: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct Stats {
    metrics: Vec<Metric>,
}

impl Stats {
    pub fn define(&mut self, kind: MetricType, name: &str) -> u32 {
        if let Some(i) = self
            .metrics
            .iter()
            .position(|m| m.name == name && m.kind == kind)
        {
            return i as u32;
        }
        self.metrics.push(Metric {
            kind,
            name: name.to_string(),
            value: 0,
            samples: Vec::new(),
        });
        self.metrics.len() as u32 - 1
    }

    pub fn increment(&mut self, id: u32, offset: i64) -> Status {
        let Some(m) = self.metrics.get_mut(id as usize) else {
            return Status::NotFound;
        };
        match m.kind {
            MetricType::Counter if offset < 0 => Status::BadArgument,
            MetricType::Counter | MetricType::Gauge => {
                m.value = m.value.saturating_add_signed(offset);
                Status::Ok
            }
            MetricType::Histogram => Status::BadArgument,
        }
    }

    pub fn record(&mut self, id: u32, value: u64) -> Status {
        let Some(m) = self.metrics.get_mut(id as usize) else {
            return Status::NotFound;
        };
        match m.kind {
            MetricType::Counter => Status::BadArgument,
            MetricType::Gauge => {
                m.value = value;
                Status::Ok
            }
            MetricType::Histogram => {
                m.samples.push(value);
                Status::Ok
            }
        }
    }

    pub fn get(&self, id: u32) -> Option<u64> {
        self.metrics.get(id as usize).map(|m| m.value)
    }

    pub fn by_name(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }

    pub fn all(&self) -> &[Metric] {
        &self.metrics
    }
}

/// The process-wide state every VM of a host sees.
#[derive(Debug, Default)]
pub struct HostEnv {
    shared: Mutex<SharedData>,
    queues: Mutex<SharedQueues>,
    stats: Mutex<Stats>,
    clock_ns: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HostEnv {
    pub fn shared(&self) -> MutexGuard<'_, SharedData> {
        lock(&self.shared)
    }

    pub fn queues(&self) -> MutexGuard<'_, SharedQueues> {
        lock(&self.queues)
    }

    pub fn stats(&self) -> MutexGuard<'_, Stats> {
        lock(&self.stats)
    }

    pub fn now_ns(&self) -> u64 {
        self.clock_ns.load(Ordering::SeqCst)
    }

    /// Sets the fake clock (it may go backwards: Envoy's clock is the wall clock).
    pub fn set_now_ns(&self, ns: u64) {
        self.clock_ns.store(ns, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_shared_by_name_and_typed() {
        let mut st = Stats::default();
        let c = st.define(MetricType::Counter, "c");
        assert_eq!(st.define(MetricType::Counter, "c"), c);
        assert_eq!(st.increment(c, 3), Status::Ok);
        assert_eq!(st.increment(c, -1), Status::BadArgument);
        assert_eq!(st.record(c, 1), Status::BadArgument);
        let h = st.define(MetricType::Histogram, "h");
        assert_eq!(st.record(h, 7), Status::Ok);
        assert_eq!(st.by_name("h").map(|m| m.samples.clone()), Some(vec![7]));
        assert_eq!(st.get(c), Some(3));
        assert_eq!(st.increment(99, 1), Status::NotFound);
    }
}
