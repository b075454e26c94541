//! An open-loop gRPC load generator in the manner of slow_cooker: calls go out at a
//! fixed rate whatever the target does, and each call's latency is measured from the
//! time it was **due**, so a proxy that stalls cannot hide the queue it built (no
//! coordinated omission). A closed loop (each slot sends again as soon as it is
//! answered) is available for saturation measurements.
//!
//! - [`schedule`]: when call `n` is due; how many calls a run plans; interval goals.
//! - [`tally`]: good / bad / failed calls, an HDR histogram of good calls' latency
//!   (1 µs – 1 h, 3 significant digits, so p999 is exact to 0.1 %), backend shares.
//! - [`line`]: the per-interval line and its header.
//! - [`summary`]: the end-of-run summary, as text and JSON.
//! - [`target`]: where the calls go (one URI, or tower's p2c over PeakEwma).
//! - [`run`]: the run itself, used by the `loadgen` binary and by `bench`.
//!
//! The older [`crate::load`] module is a closed loop over a fixed number of calls,
//! used by the end-to-end tests.

pub mod line;
pub mod run;
pub mod schedule;
pub mod summary;
pub mod tally;
pub mod target;

pub use line::{header_line, interval_line, IntervalReport};
pub use run::{run_loadgen, LoadgenReport, LoadgenSpec};
pub use schedule::{Pace, Stop};
pub use summary::LoadgenSummary;
pub use tally::{Finished, Tally, Verdict};
pub use target::Target;
