//! `greeter-server`: a `helloworld.Greeter` backend that can be told to be
//! slow, jittery, failing or silent, for exercising the balancer.
//!
//! ```text
//! greeter-server --port 50052 --delay 40ms --jitter 10ms
//! greeter-server --port 50053 --fail-rate 0.5 --fail-code RESOURCE_EXHAUSTED
//! greeter-server --port 50051 --capacity 8 --service-time 30ms --service-dist exp
//! greeter-server --port 50051 --capacity 8 --service-time 30ms --capacity-after 4 --capacity-change-at 60s
//! ```
//!
//! SIGUSR1 heals it: from then on every call is answered at once (its --capacity, if
//! any, stays: that is the backend's size, not a fault).

#![forbid(unsafe_code)]

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use greeter::{
    behaviour::{Behaviour, FailRate},
    capacity::{Capacity, CapacityChange, ServiceDist, ServiceTime},
    grpc_code::parse_failure_code,
    server::{BoundGreeter, ServerOptions},
};
use tonic::Code;

/// A helloworld Greeter backend replying `Hello <name> (Backend: <IP:port>)`.
///
/// SIGUSR1 heals it: from then on every call is answered at once (a failing, slow or
/// hanging backend recovers).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Port to listen on.
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// Host or IP to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Time to wait before each reply, e.g. `40ms`.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    delay: Duration,
    /// Extra uniformly random wait in 0..=JITTER added to each reply.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    jitter: Duration,
    /// Share of calls (0.0..=1.0) that fail at once with --fail-code.
    #[arg(long, default_value = "0")]
    fail_rate: FailRate,
    /// gRPC status of failing calls, by name (UNAVAILABLE) or number (14).
    #[arg(long, default_value = "UNAVAILABLE", value_parser = parse_failure_code)]
    fail_code: Code,
    /// Accept calls but never answer them.
    #[arg(long)]
    hang: bool,
    /// Close each HTTP/2 connection after it has lived this long, e.g. `30s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_connection_age: Option<Duration>,
    /// Address to name in replies instead of the listen address.
    #[arg(long, env = "BACKEND_ADDR")]
    backend_addr: Option<String>,
    /// Serve at most N calls at once; the rest wait in FIFO order (unlimited if unset).
    /// Each call holds a slot for --service-time; --delay comes on top without a slot.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    capacity: Option<u32>,
    /// Each call's work with --capacity, holding one slot, e.g. `30ms` (the mean with
    /// `--service-dist exp`).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration, requires = "capacity")]
    service_time: Duration,
    /// How service times are distributed: `fixed` (every call takes --service-time) or
    /// `exp` (exponential with mean --service-time).
    #[arg(long, default_value = "fixed", requires = "capacity")]
    service_dist: ServiceDist,
    /// Change the capacity to N slots at --capacity-change-at after start.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..),
          requires_all = ["capacity", "capacity_change_at"])]
    capacity_after: Option<u32>,
    /// When --capacity-after takes effect, from the start of serving, e.g. `30s`.
    #[arg(long, value_parser = humantime::parse_duration, requires = "capacity_after")]
    capacity_change_at: Option<Duration>,
}

impl Args {
    fn server_options(&self) -> ServerOptions {
        ServerOptions {
            behaviour: Behaviour {
                delay: self.delay,
                jitter: self.jitter,
                fail_rate: self.fail_rate,
                fail_code: self.fail_code,
                hang: self.hang,
            },
            backend_addr: self.backend_addr.clone(),
            max_connection_age: self.max_connection_age,
            capacity: self.capacity.map(|slots| Capacity {
                slots: slots as usize,
                service_time: ServiceTime {
                    mean: self.service_time,
                    dist: self.service_dist,
                },
                change: self
                    .capacity_after
                    .zip(self.capacity_change_at)
                    .map(|(slots, at)| CapacityChange {
                        at,
                        slots: slots as usize,
                    }),
            }),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let server =
        match BoundGreeter::bind((args.host.as_str(), args.port), args.server_options()).await {
            Ok(server) => server,
            Err(error) => {
                eprintln!(
                    "greeter-server: cannot listen on {}:{}: {error}",
                    args.host, args.port
                );
                return ExitCode::FAILURE;
            }
        };
    println!("greeter-server listening on {}", server.local_addr());
    let healed = server.heal_switch();
    if let Ok(mut usr1) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
    {
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                healed.store(true, std::sync::atomic::Ordering::Relaxed);
                println!("greeter-server healed (SIGUSR1): answering every call at once");
            }
        });
    }

    match server.serve_until(shutdown_requested()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("greeter-server: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on ctrl-c or SIGTERM (how Kubernetes and the test support stop us).
async fn shutdown_requested() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let sigterm = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = sigterm => {}
    }
}
