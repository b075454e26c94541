//! What one completed request teaches about its endpoint, and how that changes the
//! endpoint's record.

use crate::outcome::Outcome;
use crate::record::EndpointRecord;
use crate::tuning::Tuning;
use crate::Nanos;

/// When the things that matter about one request happened, on the host's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// Request headers seen (the pick). Not a clock read of its own when the request
    /// has a body: the worker's last reading, possibly a tick old.
    pub started: Nanos,
    /// The whole request was received (end of stream), if it was.
    pub request_done: Option<Nanos>,
    /// The first response headers, if any came.
    pub first_response: Option<Nanos>,
    /// The request ended (`on_log`).
    pub finished: Nanos,
}

impl Timing {
    /// From the whole request to the first response byte, or to the end when no
    /// response came: what the filter calls an endpoint's latency (Linkerd measures to
    /// the first response frame too, so that long streams do not poison the estimate).
    /// A unary call's body follows its headers at once; a stream answered before the
    /// client finished sending is measured from its headers.
    pub fn latency(&self) -> Nanos {
        let end = self.first_response.unwrap_or(self.finished);
        let from = self
            .request_done
            .filter(|&done| done <= end)
            .unwrap_or(self.started);
        end.saturating_sub(from)
    }

    /// When the request is considered over: the first response byte if one came (one
    /// clock read saved), otherwise its end.
    pub fn now(&self) -> Nanos {
        self.first_response.unwrap_or(self.finished)
    }
}

/// What a request says about its endpoint's latency.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Latency {
    /// The endpoint answered (or failed) after this long, in nanoseconds.
    Sample(f64),
    /// The endpoint had not answered this long after it had the whole request.
    AtLeast(f64),
}

/// One completed request, kept by the worker until its record is next written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    pub latency: Latency,
    /// Whether the endpoint failed, when its outcome was its own doing; `None` teaches
    /// the failure score nothing.
    pub failed: Option<bool>,
    /// The request probed an endpoint off the shortlist (see `choice.rs`): the
    /// shortlist's threshold then, under which an answer brings the endpoint back.
    pub probe: Option<f64>,
    /// Counted in the record's `failures` (see [`Outcome::counts_as_unsuccessful`]).
    pub unsuccessful: bool,
    pub now: Nanos,
}

impl Observation {
    /// What `outcome` teaches, or `None` when it teaches nothing: a request that never
    /// reached an endpoint, or one the client gave up on before the endpoint had all of
    /// it (a client that sends headers and resets cannot make an endpoint look slow).
    pub fn of(outcome: Outcome, timing: &Timing, probe: Option<f64>) -> Option<Self> {
        let now = timing.now();
        let (latency, failed) = match outcome {
            Outcome::NotSent => return None,
            Outcome::Abandoned => {
                let latency = match (timing.first_response, timing.request_done) {
                    (Some(_), _) => Latency::Sample(timing.latency() as f64),
                    (None, Some(done)) => {
                        Latency::AtLeast(timing.finished.saturating_sub(done) as f64)
                    }
                    (None, None) => return None,
                };
                (latency, None)
            }
            _ => (
                Latency::Sample(timing.latency() as f64),
                Some(outcome.is_endpoint_failure()),
            ),
        };
        Some(Self {
            latency,
            failed,
            // A probe the client gave up on proved nothing either way.
            probe: probe.filter(|_| failed.is_some()),
            unsuccessful: outcome.counts_as_unsuccessful(),
            now,
        })
    }

    /// An attempt the endpoint failed, seen because Envoy retried the request on
    /// another endpoint (when, and how fast, is unknown: the latency says nothing).
    pub fn failed_attempt(now: Nanos, probe: Option<f64>) -> Self {
        Self {
            latency: Latency::AtLeast(0.0),
            failed: Some(true),
            probe,
            unsuccessful: true,
            now,
        }
    }

    /// Applies this observation to a record.
    pub fn apply(&self, r: &mut EndpointRecord, tuning: &Tuning) {
        // A probe answered well within the threshold: the endpoint is back, and its
        // answer is the freshest word on it (the estimate it was left off with would
        // otherwise keep it off for seconds).
        let back = matches!(
            (self.failed, self.probe, self.latency),
            (Some(false), Some(threshold), Latency::Sample(ns)) if ns <= threshold
        );
        match self.latency {
            // A record that never had a sample holds a placeholder estimate.
            Latency::Sample(ns) if r.requests == 0 || back => r.latency.first(ns, self.now),
            Latency::Sample(ns) => r.latency.observe(ns, self.now, tuning.decay_ns),
            Latency::AtLeast(ns) => r.latency.observe_at_least(ns, self.now, tuning.decay_ns),
        }
        let decay = tuning.failure_decay_ns;
        match (self.failed, self.probe) {
            (Some(false), Some(_)) if !back => r.failure.record_slow_probe(self.now, decay),
            (Some(failed), Some(_)) => r.failure.record_probe(failed, self.now, decay),
            (Some(failed), None) => r.failure.record(failed, self.now, decay),
            (None, _) => {}
        }
        r.last_seen = r.last_seen.max(self.now);
        r.requests = r.requests.saturating_add(1);
        r.failures = r.failures.saturating_add(u64::from(self.unsuccessful));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const MS: Nanos = 1_000_000;

    fn timing(
        request_done: Option<Nanos>,
        first_response: Option<Nanos>,
        finished: Nanos,
    ) -> Timing {
        Timing {
            started: 100 * MS,
            request_done,
            first_response,
            finished,
        }
    }

    #[test]
    fn an_answer_is_a_sample_to_the_first_response_byte() {
        let t = timing(Some(100 * MS), Some(103 * MS), 110 * MS);
        let o = Observation::of(Outcome::Success, &t, None);
        assert_eq!(
            o,
            Some(Observation {
                latency: Latency::Sample(3e6),
                failed: Some(false),
                probe: None,
                unsuccessful: false,
                now: 103 * MS,
            })
        );
    }

    #[test]
    fn latency_runs_from_the_whole_request_or_from_the_headers_when_answered_sooner() {
        // The pick's time may be a tick old (the worker's last clock reading): the
        // request's end, read when it came, starts the sample.
        let stale_pick = Timing {
            started: 40 * MS,
            ..timing(Some(100 * MS), Some(103 * MS), 110 * MS)
        };
        assert_eq!(stale_pick.latency(), 3 * MS);
        // A stream answered before its client finished sending: from the headers.
        assert_eq!(
            timing(Some(105 * MS), Some(103 * MS), 110 * MS).latency(),
            3 * MS
        );
        // Not whole yet at its end: from the headers to the end.
        assert_eq!(timing(None, None, 107 * MS).latency(), 7 * MS);
    }

    #[test]
    fn a_failure_without_a_response_is_a_sample_to_its_end() {
        let t = timing(Some(100 * MS), None, 101 * MS);
        let o = Observation::of(Outcome::EndpointFailure, &t, Some(6e6));
        assert_eq!(
            o.map(|o| (o.latency, o.failed, o.probe)),
            Some((Latency::Sample(1e6), Some(true), Some(6e6)))
        );
    }

    #[test]
    fn a_request_abandoned_before_an_answer_is_a_bound_from_when_it_was_complete() {
        let t = timing(Some(102 * MS), None, 140 * MS);
        let o = Observation::of(Outcome::Abandoned, &t, Some(6e6));
        assert_eq!(
            o,
            Some(Observation {
                latency: Latency::AtLeast(38e6),
                failed: None,
                probe: None,
                unsuccessful: false,
                now: 140 * MS,
            })
        );
    }

    #[test]
    fn a_request_abandoned_before_it_was_complete_teaches_nothing() {
        let t = timing(None, None, 139 * MS);
        assert_eq!(Observation::of(Outcome::Abandoned, &t, None), None);
    }

    #[test]
    fn a_request_abandoned_after_the_answer_began_is_a_sample() {
        let t = timing(Some(100 * MS), Some(101 * MS), 139 * MS);
        let o = Observation::of(Outcome::Abandoned, &t, None);
        assert_eq!(
            o.map(|o| (o.latency, o.failed)),
            Some((Latency::Sample(1e6), None))
        );
    }

    #[test]
    fn a_request_that_never_reached_an_endpoint_teaches_nothing() {
        let t = timing(Some(100 * MS), None, 101 * MS);
        assert_eq!(Observation::of(Outcome::NotSent, &t, None), None);
    }

    #[test]
    fn the_first_sample_replaces_a_placeholder_estimate() {
        // A member taken in at a fair 30 ms: its first answer, 1 ms, is the estimate.
        let tuning = Tuning::from(&Config::default());
        let mut r = EndpointRecord::new("127.0.0.1:1", 30e6, 100 * MS);
        let o = Observation::of(
            Outcome::Success,
            &timing(Some(100 * MS), Some(101 * MS), 101 * MS),
            None,
        );
        if let Some(o) = o {
            o.apply(&mut r, &tuning);
        }
        assert_eq!((r.latency.raw_ns(), r.requests), (1e6, 1));
        // Later samples below it are averaged in, as always.
        let later = Observation::of(
            Outcome::Success,
            &timing(Some(101 * MS), Some(101 * MS + 500_000), 102 * MS),
            None,
        );
        if let Some(o) = later {
            o.apply(&mut r, &tuning);
        }
        assert!(r.latency.raw_ns() < 1e6 && r.latency.raw_ns() > 0.99e6);
    }

    #[test]
    fn applying_a_bound_raises_only_the_latency() {
        let tuning = Tuning::from(&Config::default());
        let mut r = EndpointRecord::new("127.0.0.1:1", 1e6, 0);
        let t = timing(Some(100 * MS), None, 140 * MS);
        let o = Observation::of(Outcome::Abandoned, &t, None);
        if let Some(o) = o {
            o.apply(&mut r, &tuning);
        }
        assert_eq!(r.latency.raw_ns(), 40e6);
        assert_eq!(r.failure.raw(), 0.0);
        assert_eq!((r.requests, r.failures), (1, 0));
    }

    #[test]
    fn a_probe_answered_under_the_threshold_brings_its_endpoint_back() {
        let tuning = Tuning::from(&Config::default());
        // Left off at 41 ms after a probe that found it slow; the threshold is 6 ms.
        let mut r = EndpointRecord::new("127.0.0.1:1", 41e6, 0);
        r.requests = 50;
        r.failure = crate::failure_score::FailureScore::from_parts(0.0, 0, 1);
        let good = Observation::of(
            Outcome::Success,
            &timing(Some(100 * MS), Some(102 * MS), 102 * MS),
            Some(6e6),
        );
        let mut back = r.clone();
        if let Some(o) = good {
            o.apply(&mut back, &tuning);
        }
        assert_eq!(back.latency.raw_ns(), 2e6);
        assert_eq!(back.failure.failed_probes(), 0);
        // The same answer 40 ms slower: a peak, and the next probe waits longer.
        let slow = Observation::of(
            Outcome::Success,
            &timing(Some(100 * MS), Some(142 * MS), 142 * MS),
            Some(6e6),
        );
        if let Some(o) = slow {
            o.apply(&mut r, &tuning);
        }
        assert_eq!(r.latency.raw_ns(), 42e6);
        assert_eq!((r.failure.failed_probes(), r.failure.raw()), (2, 0.0));
    }
}
