//! `loadgen`: greeter calls at a fixed rate, one line per interval, like slow_cooker.
//!
//! ```text
//! loadgen --qps 400 --concurrency 64 --duration 30s
//! loadgen --qps 1000 --total 50000 --interval 5s --header x-tenant:acme
//! loadgen --qps 400 --duration 10s --json | tail -n 1   # machine-readable summary
//! ```
//!
//! Each line: time, good/bad/failed calls, the interval's goal and how much of it was
//! met, latency min [p50 p95 p99 p999] max in ms (good calls, from each call's intended
//! send time), and each backend's share as named in the replies.

#![forbid(unsafe_code)]

use std::{io::Write, process::ExitCode, time::Duration};

use clap::Parser;
use loadgen::{
    closed::DEFAULT_TARGET,
    header::MetadataHeader,
    open::{header_line, interval_line, run_loadgen, LoadgenSpec, Pace, Stop},
};

/// Runs without --duration or --total stop after this long.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Open-loop greeter load: a fixed total rate, latency from intended send time.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// gRPC endpoint to call.
    #[arg(long, default_value = DEFAULT_TARGET)]
    target: String,
    /// Calls per second in total, across all connections.
    #[arg(long, default_value_t = 100.0, value_parser = parse_qps)]
    qps: f64,
    /// Calls in flight at most; when all are busy, due calls wait (and their latency
    /// keeps counting from when they were due).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: u64,
    /// How long to send, e.g. `30s` (10s if neither --duration nor --total is given).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// How many calls to send (with --duration: whichever comes first).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    total: Option<u64>,
    /// Reporting interval.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    interval: Duration,
    /// HTTP/2 connections to spread calls over (1 = the usual gRPC client).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    connections: u64,
    /// Per-call deadline from sending, e.g. `500ms`; expired calls count as failed.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Extra request metadata as key:value (repeatable).
    #[arg(long = "header", value_name = "KEY:VALUE")]
    headers: Vec<MetadataHeader>,
    /// Name to greet.
    #[arg(long, default_value = "world")]
    name: String,
    /// Also print the summary as JSON, on the last line.
    #[arg(long)]
    json: bool,
}

fn parse_qps(text: &str) -> Result<f64, String> {
    let qps: f64 = text
        .parse()
        .map_err(|_| format!("qps must be a number, got `{text}`"))?;
    Pace::open(qps).map(|_| qps)
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    if interval.is_zero() {
        Err("interval must be longer than zero".to_owned())
    } else {
        Ok(interval)
    }
}

impl Args {
    fn spec(&self) -> LoadgenSpec {
        let stop = match (self.duration, self.total) {
            (None, None) => Stop::after(DEFAULT_DURATION),
            (duration, total) => Stop { duration, total },
        };
        LoadgenSpec {
            target: self.target.as_str().into(),
            pace: Pace::Open { qps: self.qps },
            stop,
            concurrency: usize::try_from(self.concurrency).unwrap_or(usize::MAX),
            connections: usize::try_from(self.connections).unwrap_or(usize::MAX),
            interval: self.interval,
            timeout: self.timeout,
            name: self.name.clone(),
            headers: self.headers.clone(),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    println!("{}", header_line());
    let report = match run_loadgen(&args.spec(), |interval| {
        println!("{}", interval_line(interval));
        // Lines must show up as they happen, also through a pipe.
        let _ = std::io::stdout().flush();
    })
    .await
    {
        Ok(report) => report,
        Err(error) => {
            eprintln!("loadgen: {error}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.summary);
    if args.json {
        match serde_json::to_string(&report.summary) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("loadgen: cannot encode summary: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
