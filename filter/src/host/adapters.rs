//! The core's host interfaces implemented with the ABI calls of `abi.rs`, the host's
//! logger, and the few property and header reads the filter needs, each returning
//! `None` instead of failing.

use super::abi;
use crate::metrics::{MetricKind, Metrics};
use crate::store::{SharedStore, StoreError};
use crate::Nanos;
use std::sync::atomic::{AtomicU64, Ordering};

/// Envoy's shared data for this VM id.
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match abi::shared_data(key) {
            Ok(Some((value, cas))) if !value.is_empty() => Some((value, cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        match abi::set_shared_data(key, value, cas) {
            Ok(()) => Ok(()),
            Err(abi::CAS_MISMATCH) => Err(StoreError::CasMismatch),
            Err(_) => Err(StoreError::Failed),
        }
    }
}

/// Envoy's stats, through `define_metric` and friends.
pub struct HostMetrics;

impl Metrics for HostMetrics {
    fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => 0,
            MetricKind::Gauge => 1,
            MetricKind::Histogram => 2,
        };
        abi::define_metric(kind, name).ok()
    }

    fn increment(&mut self, id: u32, delta: u64) {
        let _ = abi::increment_metric(id, i64::try_from(delta).unwrap_or(i64::MAX));
    }

    fn record(&mut self, id: u32, value: u64) {
        let _ = abi::record_metric(id, value);
    }
}

/// The host's clock in nanoseconds since the epoch (0 if unreadable).
pub fn now() -> Nanos {
    let t = abi::now().unwrap_or(0);
    LAST_NOW.store(t, Ordering::Relaxed);
    t
}

/// The worker's last clock reading (any callback's), or a fresh one if there was
/// none: what a pick needs, without a host call of its own on every request.
pub fn last_now() -> Nanos {
    match LAST_NOW.load(Ordering::Relaxed) {
        0 => now(),
        t => t,
    }
}

/// One VM per worker, one thread per VM: a relaxed atomic is a plain cell here.
static LAST_NOW: AtomicU64 = AtomicU64::new(0);

/// A property as UTF-8 text (e.g. `upstream.address`), if present and valid. `path` is
/// serialized: parts separated by NUL.
pub fn property_text(path: &[u8]) -> Option<String> {
    let bytes = abi::property(path).ok().flatten()?;
    String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
}

/// A property's raw bytes.
pub fn property_bytes(path: &[u8]) -> Option<Vec<u8>> {
    abi::property(path).ok().flatten()
}

/// An integer property (Envoy encodes them as 8 little-endian bytes).
pub fn property_int(path: &[u8]) -> Option<i64> {
    let bytes = abi::property(path).ok().flatten()?;
    let array: [u8; 8] = bytes.as_slice().try_into().ok()?;
    Some(i64::from_le_bytes(array))
}

/// A request header as raw bytes (no UTF-8 requirement: a hostile client can send any).
pub fn request_header(name: &str) -> Option<Vec<u8>> {
    abi::header(abi::REQUEST_HEADERS, name).ok().flatten()
}

/// Sets (or with `None` removes) a request header; failures are ignored.
pub fn set_request_header(name: &str, value: Option<&str>) {
    let _ = match value {
        Some(value) => abi::replace_header(abi::REQUEST_HEADERS, name, value),
        None => abi::remove_header(abi::REQUEST_HEADERS, name),
    };
}

/// `log` records to Envoy's log, through `proxy_log`; a refused line is dropped.
struct HostLogger;

static LOGGER: HostLogger = HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        let _ = abi::log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

/// Installs the logger (once; later calls only set the level) and a panic hook that
/// logs the panic's message at critical level before the VM traps.
pub fn init_logging(proxy_level: u32) {
    if log::set_logger(&LOGGER).is_ok() {
        std::panic::set_hook(Box::new(|info| {
            let _ = abi::log(5, &info.to_string());
        }));
    }
    log::set_max_level(match proxy_level {
        0 => log::LevelFilter::Trace,
        1 => log::LevelFilter::Debug,
        2 => log::LevelFilter::Info,
        3 => log::LevelFilter::Warn,
        4 => log::LevelFilter::Error,
        _ => log::LevelFilter::Off,
    });
}

/// Sets the log level to the host's (Envoy's `--component-log-level wasm:…`).
pub fn follow_host_log_level() {
    if let Ok(level) = abi::log_level() {
        init_logging(level);
    }
}
