//! `greeter-client`: calls `helloworld.Greeter/SayHello` and shows who answered.
//!
//! ```text
//! greeter-client --count 5                         # one greeting per line
//! greeter-client --count 10000 --concurrency 32 --summary
//! greeter-client --count 1000 --json | tail -n 1   # machine-readable report
//! # gRPC's round_robin over a headless Service, re-resolved every 5 s:
//! greeter-client --target http://greeter-server:8000 --lb round_robin --dns-refresh 5s
//! ```

#![forbid(unsafe_code)]

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use greeter::grpc_code::code_name;
use loadgen::{
    client_lb::{run_load_balanced, ClientLb, LbPolicy},
    closed::{LoadSpec, DEFAULT_TARGET},
    header::MetadataHeader,
    report::CallOutcome,
};

/// Greeter load client: prints each greeting, or a per-backend summary.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// gRPC endpoint to call.
    #[arg(long, default_value = DEFAULT_TARGET, env = "GREETER_SERVICE_TARGET")]
    target: String,
    /// Load-balancing policy: `pick_first` connects to the target once (the usual
    /// gRPC client, which a proxy has to balance); `round_robin` connects to every
    /// address the target's name resolves to and sends calls to each in turn.
    #[arg(long, value_enum, default_value_t = LbPolicy::PickFirst, env = "GREETER_LB_POLICY")]
    lb: LbPolicy,
    /// With `--lb round_robin`: resolve the name again this often, adding and
    /// dropping addresses, e.g. `5s`.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    dns_refresh: Duration,
    /// Pause after each call (per concurrent worker), e.g. `1s`.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    interval: Duration,
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

    fn client_lb(&self) -> ClientLb {
        ClientLb {
            policy: self.lb,
            dns_refresh: self.dns_refresh,
            interval: self.interval,
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
    let report = match run_load_balanced(&args.load_spec(), &args.client_lb(), |outcome| {
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
