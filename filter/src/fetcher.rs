//! The worker's side of membership from Envoy's admin interface: which worker asks (the
//! holder of a lease in shared data), when (every `membershipRefresh`, backing off after
//! failures), for which clusters (every cluster any worker balances, from a registry in
//! shared data), and what an answer does (each cluster's members written to shared
//! data, where every worker reads them on its tick).
//!
//! It never blocks: the host sends the request the fetcher asks for and hands the answer
//! back when Envoy delivers it. A failure (the admin cluster unreachable, a non-200, an
//! answer over the bound or not parsable) keeps the last good membership, which workers
//! trust for `membershipMaxAge`; the fetcher logs once per change of state, never per
//! poll, and waits longer after each failure in a row (up to 16 refresh intervals).

use crate::membership::{admin_path, parse_answer, AnswerError, Members};
use crate::record::{CodecError, Reader};
use crate::store::{SharedStore, StoreError, CAS_RETRIES};
use crate::Nanos;
use std::fmt;

/// The most failures in a row the wait doubles for (2⁴ refresh intervals).
const MAX_BACKOFF_SHIFT: u32 = 4;

/// Key of the lease on fetching.
pub fn lease_key(prefix: &str) -> String {
    format!("{prefix}|membership|lease")
}

/// Key of the registry of balanced clusters.
pub fn registry_key(prefix: &str) -> String {
    format!("{prefix}|membership|clusters")
}

/// Key of a cluster's members.
pub fn members_key(prefix: &str, cluster: &str) -> String {
    format!("{prefix}|{cluster}|members")
}

/// A request the host should send to the admin cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    pub cluster: String,
    pub path: String,
    pub timeout_ms: u32,
}

/// How the last fetch went, for one log line per change and for metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchState {
    NotYet,
    Ok,
    /// The host could not send to the admin cluster (it does not exist): learned
    /// membership only, for good.
    NoAdminCluster,
    Failed(FetchFailure),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchFailure {
    /// No answer: refused, reset or timed out.
    Unreachable,
    Status(u32),
    Answer(AnswerError),
}

impl fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable => write!(f, "no answer"),
            Self::Status(s) => write!(f, "HTTP status {s}"),
            Self::Answer(e) => write!(f, "{e}"),
        }
    }
}

pub struct Fetcher {
    admin_cluster: Option<String>,
    refresh: Nanos,
    prefix: String,
    /// This worker's id in the lease.
    me: u64,
    /// The clusters of the request in flight, and when it was sent.
    in_flight: Option<(Nanos, Vec<String>)>,
    next_at: Nanos,
    failures_in_a_row: u32,
    state: FetchState,
    /// When the last answer was written (by this worker).
    last_good: Option<Nanos>,
}

impl Fetcher {
    pub fn new(admin_cluster: Option<String>, refresh: Nanos, prefix: &str, me: u64) -> Self {
        Self {
            admin_cluster,
            refresh,
            prefix: prefix.into(),
            me,
            in_flight: None,
            next_at: 0,
            failures_in_a_row: 0,
            state: FetchState::NotYet,
            last_good: None,
        }
    }

    /// Whether membership may come from the admin interface at all.
    pub fn enabled(&self) -> bool {
        self.admin_cluster.is_some() && self.state != FetchState::NoAdminCluster
    }

    pub fn state(&self) -> &FetchState {
        &self.state
    }

    /// On each tick: renews or takes the lease, and returns the request to send if this
    /// worker holds it and a fetch is due. A request with no answer after three
    /// refresh intervals is given up (Envoy's own timeout should have answered).
    pub fn due(&mut self, store: &dyn SharedStore, now: Nanos) -> Option<FetchRequest> {
        let admin_cluster = self.admin_cluster.as_ref()?;
        let ttl = self.refresh.saturating_mul(3);
        if !crate::lease::hold(store, &lease_key(&self.prefix), self.me, now, ttl) {
            return None;
        }
        // The holder keeps the lease even when the admin cluster is missing, so that no
        // other worker tries (and warns) again while it lives.
        if self.state == FetchState::NoAdminCluster {
            return None;
        }
        if let Some((sent, _)) = &self.in_flight {
            if now.saturating_sub(*sent) < ttl {
                return None;
            }
            self.in_flight = None;
        }
        if now < self.next_at {
            return None;
        }
        let clusters = registered(store, &registry_key(&self.prefix));
        if clusters.is_empty() {
            return None;
        }
        let names: Vec<&str> = clusters.iter().map(String::as_str).collect();
        let path = admin_path(&names);
        self.in_flight = Some((now, clusters));
        Some(FetchRequest {
            cluster: admin_cluster.clone(),
            path,
            timeout_ms: u32::try_from(self.refresh / 1_000_000)
                .unwrap_or(u32::MAX)
                .max(100),
        })
    }

    /// The host could not send the request: the admin cluster does not exist.
    pub fn cannot_send(&mut self) {
        self.in_flight = None;
        self.set_state(FetchState::NoAdminCluster);
    }

    /// The answer to the request in flight: `status` is its `:status` (`None` when no
    /// answer came), `body` its body. Writes each cluster's members to shared data.
    pub fn answered(
        &mut self,
        store: &dyn SharedStore,
        status: Option<u32>,
        body: &[u8],
        max_members: usize,
        now: Nanos,
    ) {
        let Some((_, clusters)) = self.in_flight.take() else {
            return;
        };
        let names: Vec<&str> = clusters.iter().map(String::as_str).collect();
        let result = match status {
            None => Err(FetchFailure::Unreachable),
            Some(200) => parse_answer(body, &names, max_members, now).map_err(FetchFailure::Answer),
            Some(s) => Err(FetchFailure::Status(s)),
        };
        match result {
            Ok(found) => {
                for (cluster, members) in &found {
                    let _ = store.set(&members_key(&self.prefix, cluster), &members.encode(), 0);
                }
                // A cluster Envoy no longer knows: no members (the view falls back once
                // its last members are too old).
                self.failures_in_a_row = 0;
                self.next_at = now.saturating_add(self.refresh);
                self.last_good = Some(now);
                self.set_state(FetchState::Ok);
            }
            Err(failure) => self.failed(failure, now),
        }
    }

    /// The answer to the request in flight was refused before it was read.
    pub fn refused(&mut self, why: AnswerError, now: Nanos) {
        if self.in_flight.take().is_some() {
            self.failed(FetchFailure::Answer(why), now);
        }
    }

    fn failed(&mut self, failure: FetchFailure, now: Nanos) {
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        let shift = self.failures_in_a_row.min(MAX_BACKOFF_SHIFT);
        self.next_at = now.saturating_add(self.refresh.saturating_mul(1 << shift));
        self.set_state(FetchState::Failed(failure));
    }

    fn set_state(&mut self, state: FetchState) {
        if state == self.state {
            return;
        }
        let admin = self.admin_cluster.as_deref().unwrap_or_default();
        match &state {
            FetchState::Ok => log::info!("membership from Envoy's admin interface (cluster {admin})"),
            FetchState::NoAdminCluster => log::warn!(
                "admin cluster {admin} cannot be reached (is it defined?): membership is learned from traffic only"
            ),
            FetchState::Failed(why) => log::warn!(
                "membership from cluster {admin} failed ({why}): keeping the last good one, then learning from traffic; retrying with backoff"
            ),
            FetchState::NotYet => {}
        }
        self.state = state;
    }
}

const MAGIC: u8 = b'C';
const VERSION: u8 = 1;

/// The clusters in the registry (empty if absent or unreadable).
pub fn registered(store: &dyn SharedStore, key: &str) -> Vec<String> {
    store
        .get(key)
        .and_then(|(bytes, _)| decode_registry(&bytes).ok())
        .unwrap_or_default()
}

/// Adds `cluster` to the registry (bounded by `max`). Returns false when shared data
/// refused or the registry is full.
pub fn register(store: &dyn SharedStore, key: &str, cluster: &str, max: usize) -> bool {
    for _ in 0..CAS_RETRIES {
        let (mut names, cas) = match store.get(key) {
            Some((bytes, cas)) => (decode_registry(&bytes).unwrap_or_default(), cas),
            None => (Vec::new(), 0),
        };
        if names.iter().any(|n| n == cluster) {
            return true;
        }
        if names.len() >= max || cluster.len() > usize::from(u16::MAX) {
            return false;
        }
        names.push(cluster.to_owned());
        match store.set(key, &encode_registry(&names), cas) {
            Ok(()) => return true,
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Failed) => return false,
        }
    }
    false
}

fn encode_registry(names: &[String]) -> Vec<u8> {
    let mut out = vec![MAGIC, VERSION];
    let names: Vec<&String> = names
        .iter()
        .filter(|n| n.len() <= usize::from(u16::MAX))
        .collect();
    out.extend_from_slice(&u16::try_from(names.len()).unwrap_or(u16::MAX).to_le_bytes());
    for n in names.iter().take(usize::from(u16::MAX)) {
        out.extend_from_slice(&u16::try_from(n.len()).unwrap_or(u16::MAX).to_le_bytes());
        out.extend_from_slice(n.as_bytes());
    }
    out
}

fn decode_registry(bytes: &[u8]) -> Result<Vec<String>, CodecError> {
    let mut r = Reader::after_header(bytes, MAGIC, VERSION)?;
    let count = r.u16()?;
    let mut names = Vec::with_capacity(usize::from(count).min(r.0.len() / 2));
    for _ in 0..count {
        let len = usize::from(r.u16()?);
        let name = std::str::from_utf8(r.take(len)?).map_err(|_| CodecError::BadAddress)?;
        names.push(name.to_owned());
    }
    r.finish()?;
    Ok(names)
}

/// The members of `cluster` in shared data, if any and readable.
pub fn read_members(store: &dyn SharedStore, prefix: &str, cluster: &str) -> Option<Members> {
    let (bytes, _) = store.get(&members_key(prefix, cluster))?;
    Members::decode(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Health;
    use crate::store::MemoryStore;

    const SEC: Nanos = 1_000_000_000;
    const ANSWER: &[u8] = include_bytes!("testdata/admin-clusters.json");
    const CLUSTER: &str = "outbound|8000||greeter.default.svc.cluster.local";

    fn fetcher(me: u64) -> Fetcher {
        Fetcher::new(Some("prometheus_stats".into()), SEC, "p", me)
    }

    #[test]
    fn one_worker_fetches_the_registered_clusters_and_every_worker_reads_the_answer() {
        let store = MemoryStore::default();
        let (mut a, mut b) = (fetcher(1), fetcher(2));
        assert_eq!(a.due(&store, SEC), None, "nothing registered yet");
        assert!(register(&store, &registry_key("p"), CLUSTER, 256));
        let request = a.due(&store, 2 * SEC);
        assert_eq!(
            request.as_ref().map(|r| (r.cluster.as_str(), r.timeout_ms)),
            Some(("prometheus_stats", 1000))
        );
        assert!(request.is_some_and(|r| r
            .path
            .starts_with("/clusters?format=json&filter=%5E%28outbound")));
        assert_eq!(b.due(&store, 2 * SEC), None, "b does not hold the lease");
        a.answered(&store, Some(200), ANSWER, 1024, 2 * SEC);
        assert_eq!(a.state(), &FetchState::Ok);
        let members = read_members(&store, "p", CLUSTER).unwrap_or_default();
        assert_eq!(members.fetched_at, 2 * SEC);
        assert_eq!(members.members.len(), 5);
        assert_eq!(members.members[1].health, Health::Unusable);
        assert_eq!(
            a.due(&store, 2 * SEC + SEC / 2),
            None,
            "not due before the refresh"
        );
        assert!(a.due(&store, 3 * SEC).is_some());
    }

    #[test]
    fn failures_keep_the_last_good_members_and_back_off() {
        let store = MemoryStore::default();
        register(&store, &registry_key("p"), CLUSTER, 256);
        let mut a = fetcher(1);
        a.due(&store, SEC);
        a.answered(&store, Some(200), ANSWER, 1024, SEC);
        let mut t = 2 * SEC;
        for (answer, state) in [
            (
                (Some(503), &b"no"[..]),
                FetchState::Failed(FetchFailure::Status(503)),
            ),
            (
                (None, &b""[..]),
                FetchState::Failed(FetchFailure::Unreachable),
            ),
            (
                (Some(200), &b"{"[..]),
                FetchState::Failed(FetchFailure::Answer(AnswerError::NotJson(
                    "EOF while parsing an object at line 1 column 1".into(),
                ))),
            ),
        ] {
            assert!(a.due(&store, t).is_some(), "due at {t}");
            a.answered(&store, answer.0, answer.1, 1024, t);
            assert_eq!(a.state(), &state);
            t += SEC << a.failures_in_a_row.min(MAX_BACKOFF_SHIFT);
            assert_eq!(a.due(&store, t - 1), None, "backing off");
        }
        assert_eq!(
            read_members(&store, "p", CLUSTER).map(|m| m.fetched_at),
            Some(SEC),
            "the last good members stay"
        );
    }

    #[test]
    fn another_worker_takes_over_when_the_holder_stops() {
        let store = MemoryStore::default();
        register(&store, &registry_key("p"), CLUSTER, 256);
        let (mut a, mut b) = (fetcher(1), fetcher(2));
        assert!(a.due(&store, SEC).is_some());
        assert_eq!(b.due(&store, 2 * SEC), None);
        // a stops ticking; its lease (3 refresh intervals) runs out.
        assert!(b.due(&store, 4 * SEC).is_some());
    }

    #[test]
    fn an_admin_cluster_that_cannot_be_sent_to_disables_fetching() {
        let store = MemoryStore::default();
        register(&store, &registry_key("p"), CLUSTER, 256);
        let mut a = fetcher(1);
        assert!(a.due(&store, SEC).is_some());
        a.cannot_send();
        assert!(!a.enabled());
        assert_eq!(a.due(&store, 10 * SEC), None);
        assert!(!Fetcher::new(None, SEC, "p", 3).enabled());
    }

    #[test]
    fn the_registry_is_bounded_and_round_trips() {
        let store = MemoryStore::default();
        let key = registry_key("p");
        assert!(register(&store, &key, "a", 2));
        assert!(register(&store, &key, "b|c", 2));
        assert!(register(&store, &key, "a", 2), "already there");
        assert!(!register(&store, &key, "d", 2), "full");
        assert_eq!(registered(&store, &key), ["a", "b|c"]);
        assert_eq!(
            decode_registry(b"C\x01\x05\x00"),
            Err(CodecError::Truncated)
        );
    }
}
