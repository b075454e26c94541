//! `ewma-stat`: per-endpoint success, RPS, latency percentiles, EWMA, pending and
//! share as the ewma-balancer filter sees them, from Envoy's admin interface.
//!
//! ```text
//! ewma-stat --admin http://127.0.0.1:9901                 # 10 s window, a table
//! ewma-stat --admin http://127.0.0.1:9901 --window 5s -o json --cluster greeter
//! kubectl port-forward deploy/client 15000 &  ewma-stat --admin http://localhost:15000
//! ```

#![forbid(unsafe_code)]

use std::{process::ExitCode, time::Duration};

use clap::{Parser, ValueEnum};
use ewma_stat::{collect, format, AdminUrl, StatOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

/// Scrapes Envoy's /stats/prometheus twice, --window apart, and prints one row per
/// endpoint of the ewma-balancer filter.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Envoy's admin interface (Istio sidecar: port-forward 15000 and use http://localhost:15000).
    #[arg(long, default_value = "http://127.0.0.1:9901")]
    admin: AdminUrl,
    /// Time between the two scrapes, e.g. `10s`: at least 1s and at least Envoy's stats
    /// flush interval (5s unless the bootstrap sets stats_flush_interval).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Only this cluster's endpoints.
    #[arg(long)]
    cluster: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = StatOptions {
        admin: args.admin,
        window: args.window,
        cluster: args.cluster,
    };
    match collect(&options) {
        Ok(rows) => {
            match args.output {
                Output::Table => print!("{}", format::table(&rows)),
                Output::Json => println!("{}", format::json(&rows)),
            }
            if rows
                .iter()
                .any(|r| r.rps > 0.0 && r.latency_p50_ms.is_none())
            {
                eprintln!(
                    "ewma-stat: note: some endpoints served requests but no latency reached the \
                     admin interface in this window; use a longer --window"
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ewma-stat: {error}");
            ExitCode::FAILURE
        }
    }
}
