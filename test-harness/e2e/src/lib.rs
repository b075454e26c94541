//! Support for end-to-end tests against real processes, and the tests themselves
//! (`tests/`): a real Envoy, real greeters on loopback, the built filter.
//!
//! Tests read like the scenario they check:
//!
//! ```no_run
//! use std::time::Duration;
//! use e2e::{fixed_ports_lock, greeter_server, EnvoyOptions, EnvoyProcess, Greeter};
//!
//! # fn scenario() -> Result<(), String> {
//! let _ports = fixed_ports_lock();
//! let _fast = Greeter::on(50051).spawn(greeter_server())?;
//! let _slow = Greeter::on(50052).delay(Duration::from_millis(40)).spawn(greeter_server())?;
//! let envoy = EnvoyProcess::start("envoy-configs/static/ewma.yaml", EnvoyOptions::default())?;
//! // … run load at loadgen::closed::DEFAULT_TARGET and check the report …
//! # Ok(()) }
//! ```
//!
//! Every process is stopped when its guard drops, including when the test
//! fails, and logs to `target/e2e-logs/`.

mod envoy;
mod eventually;
mod greeter_process;
pub mod logs;
mod ports;
mod process;
mod prometheus;

use std::path::{Path, PathBuf};

pub use envoy::{
    envoy_bin, envoy_validate, EnvoyOptions, EnvoyProcess, ENVOY_READY_TIMEOUT, ENVOY_STOP_GRACE,
};
pub use eventually::{eventually, eventually_async, POLL_INTERVAL};
pub use greeter_process::{Greeter, GreeterProcess, GREETER_READY_TIMEOUT};
pub use ports::{
    fixed_ports_lock, FixedPortsGuard, ADMIN_PORT, BACKEND_PORTS, LISTENER_PORT, LOCK_FILE,
};
pub use prometheus::{
    prometheus_bins, url_encode, PrometheusOptions, PrometheusProcess, Sample,
    PROMETHEUS_READY_TIMEOUT,
};

/// Envoy's admin interface is read with `ewma-stat`'s small HTTP/1.1 client.
pub use ewma_stat::http;

/// The repository root (two levels above this crate, `test-harness/e2e`).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .unwrap_or(manifest_dir)
        .to_path_buf()
}

/// A binary of another crate of the workspace (`greeter-server`, `greeter-client`,
/// `ewma-stat`), built in the same profile as the running test or program: beside it,
/// or one level up from a test's `deps/`. Panics, saying how to build it, when it is
/// missing (`make build` and `cargo test --workspace` build them all).
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|d| d == "deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first with `make build`",
        path.display()
    );
    path
}

/// The `greeter-server` binary (crate `greeter`).
pub fn greeter_server() -> PathBuf {
    built_binary("greeter-server")
}
