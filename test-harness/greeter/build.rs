//! Generates the `helloworld` gRPC client and server with tonic.
//!
//! `protoc` comes from `protoc-bin-vendored`, so a fresh machine needs neither
//! a system `protoc` nor a network download to build this crate.

use std::error::Error;

const PROTO: &str = "proto/helloworld.proto";

fn main() -> Result<(), Box<dyn Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // Build scripts are single-threaded; prost-build reads `PROTOC` to find the compiler.
    std::env::set_var("PROTOC", protoc);

    println!("cargo:rerun-if-changed={PROTO}");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&[PROTO], &["proto"])?;
    Ok(())
}
