//! Stopping and waiting for child processes with bounded patience.

use std::{
    io,
    net::{SocketAddr, TcpStream},
    process::{Child, ExitStatus},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Waits up to `timeout` for `child` to exit; `None` if it is still running.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Asks `child` to stop with SIGTERM, then SIGKILLs it after `grace`, and
/// reaps it either way.
pub(crate) fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // Fails only if the child is already gone, which is what we want.
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        if matches!(wait_timeout(child, grace), Ok(Some(_))) {
            return;
        }
    }
    kill_now(child);
}

/// SIGKILLs `child` and reaps it.
pub(crate) fn kill_now(child: &mut Child) {
    // Errors mean the child already exited; `wait` then just reaps it.
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether something accepts TCP connections on `addr` right now.
pub(crate) fn accepts_connections(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}
