//! `greeter-client`: calls `helloworld.Greeter/SayHello` and shows who answered.
//!
//! ```text
//! greeter-client --count 5                         # one greeting per line
//! greeter-client --count 10000 --concurrency 32 --summary
//! greeter-client --count 1000 --json | tail -n 1   # machine-readable report
//! ```

#![forbid(unsafe_code)]

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use test_harness::{
    grpc_code::code_name,
    header::MetadataHeader,
    load::{run_load_observed, LoadSpec, DEFAULT_TARGET},
    report::CallOutcome,
};

/// Greeter load client: prints each greeting, or a per-backend summary.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// gRPC endpoint to call.
    #[arg(long, default_value = DEFAULT_TARGET)]
    target: String,
    /// Calls to make.
    #[arg(long, default_value_t = 10)]
    count: u64,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: u64,
    /// HTTP/2 connections to spread calls over (1 = the usual gRPC client).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    connections: u64,
    /// Name to greet.
    #[arg(long, default_value = "world")]
    name: String,
    /// Per-call deadline, e.g. `500ms`.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Extra request metadata as key:value (repeatable).
    #[arg(long = "header", value_name = "KEY:VALUE")]
    headers: Vec<MetadataHeader>,
    /// Print per-backend counts and shares, failures and latency percentiles
    /// instead of each greeting.
    #[arg(long)]
    summary: bool,
    /// Print the report as JSON on the last line instead of each greeting.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn load_spec(&self) -> LoadSpec {
        LoadSpec {
            target: self.target.clone(),
            count: self.count,
            concurrency: usize::try_from(self.concurrency).unwrap_or(usize::MAX),
            connections: usize::try_from(self.connections).unwrap_or(usize::MAX),
            name: self.name.clone(),
            timeout: self.timeout,
            headers: self.headers.clone(),
        }
    }

    fn prints_each_greeting(&self) -> bool {
        !self.summary && !self.json
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let print_each = args.prints_each_greeting();
    let report = match run_load_observed(&args.load_spec(), |outcome| {
        if print_each {
            print_outcome(outcome);
        }
    })
    .await
    {
        Ok(report) => report,
        Err(error) => {
            eprintln!("greeter-client: {error}");
            return ExitCode::FAILURE;
        }
    };

    if args.summary {
        println!("target {}", args.target);
        println!("{report}");
    }
    if args.json {
        match serde_json::to_string(&report) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("greeter-client: cannot encode report: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn print_outcome(outcome: &CallOutcome) {
    match &outcome.result {
        Ok(greeting) => println!("{greeting}"),
        Err(status) => println!("error: {}: {}", code_name(status.code()), status.message()),
    }
}
