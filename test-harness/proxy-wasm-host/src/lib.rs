//! A proxy-wasm host on wasmtime for testing the built `ewma_balancer.wasm`
//! deterministically: several VMs (Envoy workers) sharing one shared-data store and one
//! stats store, a fake clock the test sets, fuel (Wasm instructions) and hostcalls
//! counted per callback, and a scenario driver that emulates Envoy's `override_host`
//! policy in front of simulated endpoints.
//!
//! The public proxy-wasm test framework answers shared data, metrics and properties with
//! InternalFailure and is unmaintained; this host implements them as Envoy does.

mod abi;
mod env;
pub mod scenario;
mod seed;
mod state;
mod vm;

pub use abi::KNOWN_IMPORTS;
pub use env::{HostEnv, Metric, MetricType, SharedData, Stats};
pub use seed::{endpoint_records, seed_endpoints};
pub use state::{HeaderMap, LogLine, LOG_CRITICAL};
pub use vm::{property_path, Cost, Vm, VmOptions, WasmHost, ROOT_CONTEXT};

/// Where `make wasm` puts the filter.
pub fn filter_wasm_path() -> std::path::PathBuf {
    repo_root().join("target/wasm32-wasip1/release/ewma_balancer.wasm")
}

/// A host running the built filter (`make wasm` first), for tests: the module's bytes
/// are read once per process.
pub fn filter_host() -> Result<WasmHost, String> {
    static BYTES: std::sync::OnceLock<Result<Vec<u8>, String>> = std::sync::OnceLock::new();
    let bytes = BYTES.get_or_init(|| {
        let path = filter_wasm_path();
        std::fs::read(&path)
            .map_err(|e| format!("{}: {e}: build it first with `make wasm`", path.display()))
    });
    let bytes = bytes.as_ref().map_err(Clone::clone)?;
    WasmHost::from_binary(bytes).map_err(|e| e.to_string())
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.ancestors().nth(2).unwrap_or(dir).to_path_buf()
}

/// A header map from text pairs.
pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}
