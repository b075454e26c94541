//! Support for end-to-end tests against real processes.
//!
//! Tests read like the scenario they check:
//!
//! ```no_run
//! use std::time::Duration;
//! use test_harness::support::{fixed_ports_lock, EnvoyOptions, EnvoyProcess, Greeter};
//!
//! # fn scenario() -> Result<(), String> {
//! let _ports = fixed_ports_lock();
//! # let bin = "target/debug/greeter-server";
//! // In an integration test: let bin = env!("CARGO_BIN_EXE_greeter-server");
//! let _fast = Greeter::on(50051).spawn(bin)?;
//! let _slow = Greeter::on(50052).delay(Duration::from_millis(40)).spawn(bin)?;
//! let envoy = EnvoyProcess::start("envoy-configs/static/p2c.yaml", EnvoyOptions::default())?;
//! // … run load at test_harness::load::DEFAULT_TARGET and check the report …
//! # Ok(()) }
//! ```
//!
//! Every process is stopped when its guard drops, including when the test
//! fails, and logs to `target/e2e-logs/`.

mod envoy;
mod eventually;
mod greeter_process;
pub mod http;
pub mod logs;
mod ports;
mod process;

use std::path::{Path, PathBuf};

pub use envoy::{
    envoy_bin, envoy_validate, EnvoyOptions, EnvoyProcess, ENVOY_READY_TIMEOUT, ENVOY_STOP_GRACE,
};
pub use eventually::{eventually, eventually_async, POLL_INTERVAL};
pub use greeter_process::{Greeter, GreeterProcess, GREETER_READY_TIMEOUT};
pub use ports::{
    fixed_ports_lock, FixedPortsGuard, ADMIN_PORT, BACKEND_PORTS, LISTENER_PORT, LOCK_FILE,
};

/// The repository root (the workspace directory above `test-harness/`).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}
