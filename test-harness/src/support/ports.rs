//! The fixed ports of the Envoy configurations, and the lock that keeps tests
//! using them from overlapping.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Envoy's admin interface in every configuration.
pub const ADMIN_PORT: u16 = 9901;

/// Envoy's gRPC listener in every configuration.
pub const LISTENER_PORT: u16 = 10000;

/// Greeter ports the configurations route to.
pub const BACKEND_PORTS: [u16; 3] = [50051, 50052, 50053];

static FIXED_PORTS: Mutex<()> = Mutex::new(());

/// Serializes tests that bind the fixed ports within this test binary.
///
/// Hold the guard for the whole test. A test that panicked while holding it
/// poisons nothing that matters (its processes are stopped by their guards),
/// so poisoning is ignored. Separate test binaries run one after another
/// under `cargo test`, so they do not need this.
pub fn fixed_ports_lock() -> MutexGuard<'static, ()> {
    FIXED_PORTS.lock().unwrap_or_else(PoisonError::into_inner)
}
