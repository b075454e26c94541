//! The text `loadgen` prints: one line per reporting interval, as slow_cooker does, and
//! the summary at the end.
//!
//! ```text
//! # time                     good/bad/failed   goal  goal%  interval      min [      p50       p95       p99      p999 ]      max ms  share
//! 2026-11-23T18:30:01Z               400/0/0    400   100%        1s    0.301 [    0.812     1.530     2.911     9.700 ]   12.030 ms  127.0.0.1:50051 50.2%  127.0.0.1:50052 49.8%
//! ```
//!
//! Latencies are milliseconds with microsecond resolution, measured from each call's
//! intended send time; `goal` is the number of calls due in the interval and `goal%`
//! the calls completed in it over that number (a closed loop has no goal: `-`).

use std::{
    fmt::Write as _,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::tally::Tally;

/// One reporting interval, as handed to the caller of a run.
#[derive(Debug, Clone)]
pub struct IntervalReport {
    /// Wall-clock time at the end of the interval.
    pub ended_at: SystemTime,
    /// Its length (the last interval of a run may be shorter).
    pub length: Duration,
    /// Calls due in it (open loop only).
    pub goal: Option<u64>,
    /// What completed in it.
    pub tally: Tally,
}

/// The column heads printed above the interval lines.
pub fn header_line() -> String {
    format!(
        "# {:<22} {:>17} {:>6} {:>6} {:>9} {:>8} [ {:>8}  {:>8}  {:>8}  {:>8} ] {:>8} ms  share",
        "time",
        "good/bad/failed",
        "goal",
        "goal%",
        "interval",
        "min",
        "p50",
        "p95",
        "p99",
        "p999",
        "max"
    )
}

/// One interval as a line of text.
pub fn interval_line(report: &IntervalReport) -> String {
    let tally = &report.tally;
    let counts = format!("{}/{}/{}", tally.good(), tally.bad(), tally.failed());
    let (goal, percent) = match report.goal {
        Some(goal) => (goal.to_string(), percent_of(tally.total(), goal)),
        None => ("-".to_owned(), "-".to_owned()),
    };
    format!(
        "{:<24} {:>17} {:>6} {:>6} {:>9} {}  {}",
        rfc3339_utc(report.ended_at),
        counts,
        goal,
        percent,
        humantime::format_duration(round_to_ms(report.length)).to_string(),
        latency_columns(tally),
        shares(tally)
    )
}

/// `min [p50 p95 p99 p999] max ms`, in milliseconds.
pub fn latency_columns(tally: &Tally) -> String {
    format!(
        "{} [ {}  {}  {}  {} ] {} ms",
        ms(tally.min()),
        ms(tally.latency_at(0.50)),
        ms(tally.latency_at(0.95)),
        ms(tally.latency_at(0.99)),
        ms(tally.latency_at(0.999)),
        ms(tally.max())
    )
}

/// Each backend's share of the good calls, `-` if there were none.
pub fn shares(tally: &Tally) -> String {
    let shares = tally.shares();
    if shares.is_empty() {
        return "-".to_owned();
    }
    let mut text = String::new();
    for (backend, share) in shares {
        if !text.is_empty() {
            text.push_str("  ");
        }
        let _ = write!(text, "{backend} {:.1}%", 100.0 * share);
    }
    text
}

/// A latency in milliseconds, 8 characters wide, to the microsecond.
pub fn ms(latency: Duration) -> String {
    format!("{:>8.3}", latency.as_micros() as f64 / 1_000.0)
}

/// `part` as a whole percentage of `whole` (`-` of nothing).
pub fn percent_of(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_owned()
    } else {
        format!("{:.0}%", 100.0 * part as f64 / whole as f64)
    }
}

fn round_to_ms(duration: Duration) -> Duration {
    Duration::from_millis(u64::try_from((duration.as_micros() + 500) / 1_000).unwrap_or(u64::MAX))
}

/// `time` as an RFC 3339 UTC timestamp to the second, e.g. `2023-11-14T22:13:20Z`.
pub fn rfc3339_utc(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3_600,
        of_day % 3_600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::open::tally::{Finished, Verdict};

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn sample() -> Tally {
        let mut tally = Tally::new();
        for (backend, micros) in [
            ("127.0.0.1:50051", 301),
            ("127.0.0.1:50051", 812),
            ("127.0.0.1:50052", 1_530),
            ("127.0.0.1:50053", 41_200),
        ] {
            tally.record(&Finished {
                latency: Duration::from_micros(micros),
                verdict: Verdict::Good,
                backend: Some(backend.to_owned()),
            });
        }
        tally.record(&Finished {
            latency: Duration::from_millis(1),
            verdict: Verdict::Bad(Code::Unavailable),
            backend: None,
        });
        tally
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_utc(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(at(1_700_000_000)), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(at(4_107_542_399)), "2100-02-28T23:59:59Z");
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn an_interval_line_has_counts_goal_percentiles_and_shares() {
        let line = interval_line(&IntervalReport {
            ended_at: at(1_700_000_000),
            length: Duration::from_micros(1_000_400),
            goal: Some(4),
            tally: sample(),
        });
        assert_eq!(
            line,
            "2023-11-14T22:13:20Z                 4/1/0      4   125%        1s    \
             0.301 [    0.812    41.215    41.215    41.215 ]   41.215 ms  \
             127.0.0.1:50051 50.0%  127.0.0.1:50052 25.0%  127.0.0.1:50053 25.0%"
        );
    }

    #[test]
    fn a_closed_loop_interval_has_no_goal_and_an_empty_one_no_shares() {
        let line = interval_line(&IntervalReport {
            ended_at: at(0),
            length: Duration::from_millis(500),
            goal: None,
            tally: Tally::new(),
        });
        assert_eq!(
            line,
            "1970-01-01T00:00:00Z                 0/0/0      -      -     500ms    \
             0.000 [    0.000     0.000     0.000     0.000 ]    0.000 ms  -"
        );
    }

    #[test]
    fn header_names_every_column() {
        assert_eq!(
            header_line(),
            "# time                     good/bad/failed   goal  goal%  interval      min [      p50       p95       p99      p999 ]      max ms  share"
        );
    }

    #[test]
    fn percentages_round_and_survive_a_zero_goal() {
        assert_eq!(percent_of(398, 400), "100%");
        assert_eq!(percent_of(390, 400), "98%");
        assert_eq!(percent_of(5, 0), "-");
    }
}
