//! The fixed ports of the Envoy configurations, and the lock that keeps tests
//! and the benchmark using them from overlapping.

use std::{
    fs::{self, File, OpenOptions},
    sync::{Mutex, MutexGuard, PoisonError},
};

use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

use super::repo_root;

/// Envoy's admin interface in every configuration.
pub const ADMIN_PORT: u16 = 9901;

/// Envoy's gRPC listener in every configuration.
pub const LISTENER_PORT: u16 = 10000;

/// Greeter ports the configurations route to.
pub const BACKEND_PORTS: [u16; 3] = [50051, 50052, 50053];

/// The file locked across processes, relative to the repository root.
pub const LOCK_FILE: &str = "target/fixed-ports.lock";

static FIXED_PORTS: Mutex<()> = Mutex::new(());

/// Held while the fixed ports are in use; released on drop.
#[derive(Debug)]
pub struct FixedPortsGuard {
    _across_processes: Option<Flock<File>>,
    _in_process: MutexGuard<'static, ()>,
}

/// Serializes everything that binds the fixed ports: tests within a test binary
/// (a mutex), and test binaries, the benchmark and the demo of different `cargo`
/// invocations (an exclusive `flock` on [`LOCK_FILE`]; the kernel releases it if the
/// holder dies).
///
/// Hold the guard for the whole test. A test that panicked while holding it
/// poisons nothing that matters (its processes are stopped by their guards),
/// so poisoning is ignored. If the lock file cannot be opened or locked, only the
/// in-process lock is taken.
pub fn fixed_ports_lock() -> FixedPortsGuard {
    let in_process = FIXED_PORTS.lock().unwrap_or_else(PoisonError::into_inner);
    FixedPortsGuard {
        _across_processes: lock_file(),
        _in_process: in_process,
    }
}

fn lock_file() -> Option<Flock<File>> {
    let path = repo_root().join(LOCK_FILE);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).ok()?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .ok()?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Some(lock),
        Err((file, Errno::EWOULDBLOCK)) => {
            eprintln!(
                "waiting for the fixed ports: another process holds {}",
                path.display()
            );
            Flock::lock(file, FlockArg::LockExclusive).ok()
        }
        Err(_) => None,
    }
}
