//! The `helloworld.Greeter` backend the tests, the benchmark and the Kubernetes examples
//! balance across, as the `greeter-server` binary ships it:
//!
//! - [`pb`]: the protocol, generated from `proto/helloworld.proto`;
//! - [`greeting`]: the reply text, `Hello <name> (Backend: <IP:port>)`, and reading the
//!   backend back out of it (how clients count calls per backend);
//! - [`behaviour`]: how a call is treated (delay, jitter, failures, hangs), a pure
//!   function of the configuration and an injected random source;
//! - [`capacity`]: a limited number of calls served at once, the rest queued in FIFO
//!   order, each holding a slot for its service time (fixed or exponential);
//! - [`service`]: the gRPC service answering as one backend;
//! - [`server`]: binding and serving it until told to stop;
//! - [`grpc_code`]: gRPC status codes by name or number.

#![forbid(unsafe_code)]

/// Code generated from `proto/helloworld.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("helloworld");
}

pub mod behaviour;
pub mod capacity;
pub mod greeting;
pub mod grpc_code;
pub mod server;
pub mod service;
