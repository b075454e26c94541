//! Greeter backends as real processes: `Greeter::on(50051).delay(ms(40)).spawn(bin)`.
//!
//! End-to-end tests run the `greeter-server` binary (pass
//! `e2e::greeter_server()`) so a backend can be killed,
//! restarted and made slow exactly as in production. The returned
//! [`GreeterProcess`] kills the server when dropped, also when a test fails.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{
    logs::{log_path, log_tail, open_log, read_log},
    process::{accepts_connections, kill_now},
};

/// Default bound on how long a greeter may take to accept connections.
pub const GREETER_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How a greeter backend should behave; a builder for [`GreeterProcess`].
#[derive(Debug, Clone, PartialEq)]
pub struct Greeter {
    host: Ipv4Addr,
    port: u16,
    delay: Duration,
    jitter: Duration,
    fail_rate: f64,
    fail_code: Option<String>,
    hang: bool,
    backend_addr: Option<String>,
    max_connection_age: Option<Duration>,
    capacity: Option<u32>,
    service_time: Duration,
    service_dist_exp: bool,
    capacity_change: Option<(u32, Duration)>,
    ready_timeout: Duration,
}

impl Greeter {
    /// A healthy, instant greeter on `127.0.0.1:port`.
    pub fn on(port: u16) -> Self {
        Self {
            host: Ipv4Addr::LOCALHOST,
            port,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            fail_rate: 0.0,
            fail_code: None,
            hang: false,
            backend_addr: None,
            max_connection_age: None,
            capacity: None,
            service_time: Duration::ZERO,
            service_dist_exp: false,
            capacity_change: None,
            ready_timeout: GREETER_READY_TIMEOUT,
        }
    }

    /// Listen on this loopback address instead of `127.0.0.1` (all of `127.0.0.0/8`
    /// is loopback on Linux, so several greeters can share one port).
    pub fn host(mut self, host: Ipv4Addr) -> Self {
        self.host = host;
        self
    }

    /// Wait this long before each reply.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Add a uniformly random `0..=jitter` to each reply's delay.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Fail this share (`0.0..=1.0`) of calls at once.
    pub fn fail_rate(mut self, rate: f64) -> Self {
        self.fail_rate = rate;
        self
    }

    /// Fail with this gRPC code, by name (`"UNAVAILABLE"`) or number (`"14"`).
    pub fn fail_code(mut self, code: impl Into<String>) -> Self {
        self.fail_code = Some(code.into());
        self
    }

    /// Accept calls but never answer them.
    pub fn hang(mut self) -> Self {
        self.hang = true;
        self
    }

    /// Sign replies with this address instead of the listen address.
    pub fn backend_addr(mut self, addr: impl Into<String>) -> Self {
        self.backend_addr = Some(addr.into());
        self
    }

    /// Close each HTTP/2 connection after it has lived this long.
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.max_connection_age = Some(age);
        self
    }

    /// Serve at most `slots` calls at once, the rest waiting in FIFO order, each holding
    /// a slot for [`Greeter::service_time`] (`--capacity`).
    pub fn capacity(mut self, slots: u32) -> Self {
        self.capacity = Some(slots);
        self
    }

    /// Each call's work under [`Greeter::capacity`] (`--service-time`); the mean if
    /// [`Greeter::service_dist_exp`].
    pub fn service_time(mut self, work: Duration) -> Self {
        self.service_time = work;
        self
    }

    /// Exponentially distributed service times (`--service-dist exp`).
    pub fn service_dist_exp(mut self) -> Self {
        self.service_dist_exp = true;
        self
    }

    /// Change the capacity to `slots` at `at` after start (`--capacity-after`,
    /// `--capacity-change-at`).
    pub fn capacity_change(mut self, slots: u32, at: Duration) -> Self {
        self.capacity_change = Some((slots, at));
        self
    }

    /// Give up on the greeter if it does not accept connections within this.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// The port to listen on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts `greeter-server` at `bin` and waits until it accepts connections.
    pub fn spawn(self, bin: impl AsRef<Path>) -> Result<GreeterProcess, String> {
        let mut process = GreeterProcess {
            spec: self,
            bin: bin.as_ref().to_owned(),
            child: None,
        };
        process.start(false)?;
        Ok(process)
    }

    /// The `greeter-server` command line for this greeter.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--host".to_owned(),
            self.host.to_string(),
            "--port".to_owned(),
            self.port.to_string(),
            "--delay".to_owned(),
            humantime::format_duration(self.delay).to_string(),
            "--jitter".to_owned(),
            humantime::format_duration(self.jitter).to_string(),
            "--fail-rate".to_owned(),
            self.fail_rate.to_string(),
        ];
        if let Some(code) = &self.fail_code {
            args.extend(["--fail-code".to_owned(), code.clone()]);
        }
        if self.hang {
            args.push("--hang".to_owned());
        }
        if let Some(addr) = &self.backend_addr {
            args.extend(["--backend-addr".to_owned(), addr.clone()]);
        }
        if let Some(age) = self.max_connection_age {
            args.extend([
                "--max-connection-age".to_owned(),
                humantime::format_duration(age).to_string(),
            ]);
        }
        if let Some(slots) = self.capacity {
            args.extend([
                "--capacity".to_owned(),
                slots.to_string(),
                "--service-time".to_owned(),
                humantime::format_duration(self.service_time).to_string(),
            ]);
            if self.service_dist_exp {
                args.extend(["--service-dist".to_owned(), "exp".to_owned()]);
            }
            if let Some((slots, at)) = self.capacity_change {
                args.extend([
                    "--capacity-after".to_owned(),
                    slots.to_string(),
                    "--capacity-change-at".to_owned(),
                    humantime::format_duration(at).to_string(),
                ]);
            }
        }
        args
    }
}

/// A running `greeter-server`; killed and reaped on drop.
#[derive(Debug)]
pub struct GreeterProcess {
    spec: Greeter,
    bin: PathBuf,
    child: Option<Child>,
}

impl GreeterProcess {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.spec.port
    }

    /// The address to call it at directly, bypassing Envoy.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.spec.host, self.spec.port))
    }

    /// `http://127.0.0.1:<port>`, a target for the load client.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The address its replies name, as counted in a load report.
    pub fn backend(&self) -> String {
        self.spec
            .backend_addr
            .clone()
            .unwrap_or_else(|| self.addr().to_string())
    }

    /// How it was told to behave.
    pub fn spec(&self) -> &Greeter {
        &self.spec
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills it abruptly (SIGKILL), like a crashed backend. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_now(&mut child);
        }
    }

    /// Heals it (SIGUSR1): from then on it answers every call at once, without a restart.
    pub fn heal(&self) -> Result<(), String> {
        let child = self.child.as_ref().ok_or("the greeter is not running")?;
        let pid = i32::try_from(child.id()).map_err(|e| e.to_string())?;
        let pid = nix::unistd::Pid::from_raw(pid);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1)
            .map_err(|e| format!("SIGUSR1 to greeter {pid}: {e}"))
    }

    /// Kills it if running and starts it again on the same port.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.start(true)
    }

    /// Restarts it on the same port with changed behaviour, e.g.
    /// `greeter.restart_with(|g| g.delay(Duration::from_millis(200)))`.
    pub fn restart_with(&mut self, change: impl FnOnce(Greeter) -> Greeter) -> Result<(), String> {
        let spec = change(self.spec.clone());
        if spec.port != self.spec.port {
            return Err(format!(
                "restart_with must keep port {}, got {}",
                self.spec.port, spec.port
            ));
        }
        self.kill();
        self.spec = spec;
        self.start(true)
    }

    /// Everything it printed so far, across restarts.
    pub fn log_contents(&self) -> String {
        read_log(&self.log_path())
    }

    /// Its log file, `target/e2e-logs/greeter-<port>.log`
    /// (`greeter-<host>-<port>.log` off `127.0.0.1`).
    pub fn log_path(&self) -> PathBuf {
        if self.spec.host == Ipv4Addr::LOCALHOST {
            log_path(&format!("greeter-{}", self.spec.port))
        } else {
            log_path(&format!("greeter-{}-{}", self.spec.host, self.spec.port))
        }
    }

    fn start(&mut self, append_log: bool) -> Result<(), String> {
        let addr = self.addr();
        if accepts_connections(addr) {
            return Err(format!(
                "cannot start greeter on {addr}: something already listens there"
            ));
        }
        let log_path = self.log_path();
        let log = open_log(&log_path, append_log)?;
        let log_err = log
            .try_clone()
            .map_err(|error| format!("cannot share log {}: {error}", log_path.display()))?;
        let child = Command::new(&self.bin)
            .args(self.spec.args())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|error| format!("cannot run {}: {error}", self.bin.display()))?;
        self.child = Some(child);
        self.wait_until_accepting()
    }

    fn wait_until_accepting(&mut self) -> Result<(), String> {
        let addr = self.addr();
        let deadline = Instant::now() + self.spec.ready_timeout;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!(
                    "greeter on {addr} exited with {status} before accepting connections\n{}",
                    log_tail(&self.log_path())
                ));
            }
            if accepts_connections(addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "greeter on {addr} did not accept connections within {}\n{}",
                    humantime::format_duration(self.spec.ready_timeout),
                    log_tail(&self.log_path())
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for GreeterProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_greeter_is_healthy_on_localhost() {
        assert_eq!(
            Greeter::on(50061).args(),
            [
                "--host",
                "127.0.0.1",
                "--port",
                "50061",
                "--delay",
                "0s",
                "--jitter",
                "0s",
                "--fail-rate",
                "0"
            ]
        );
    }

    #[test]
    fn host_sets_the_listen_address() {
        let greeter = Greeter::on(50081).host(Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(
            greeter.args()[..4],
            ["--host", "127.0.0.2", "--port", "50081"]
        );
    }

    #[test]
    fn builder_options_become_flags() {
        let args = Greeter::on(50062)
            .delay(Duration::from_millis(40))
            .jitter(Duration::from_millis(5))
            .fail_rate(0.25)
            .fail_code("resource_exhausted")
            .hang()
            .backend_addr("10.0.0.2:50051")
            .max_connection_age(Duration::from_secs(30))
            .args();
        assert_eq!(
            args,
            [
                "--host",
                "127.0.0.1",
                "--port",
                "50062",
                "--delay",
                "40ms",
                "--jitter",
                "5ms",
                "--fail-rate",
                "0.25",
                "--fail-code",
                "resource_exhausted",
                "--hang",
                "--backend-addr",
                "10.0.0.2:50051",
                "--max-connection-age",
                "30s"
            ]
        );
    }

    #[test]
    fn capacity_options_become_flags() {
        let args = Greeter::on(50063)
            .capacity(8)
            .service_time(Duration::from_micros(31_500))
            .service_dist_exp()
            .capacity_change(4, Duration::from_secs(5))
            .args();
        assert_eq!(
            args[10..],
            [
                "--capacity",
                "8",
                "--service-time",
                "31ms 500us",
                "--service-dist",
                "exp",
                "--capacity-after",
                "4",
                "--capacity-change-at",
                "5s"
            ]
        );
    }

    #[test]
    fn service_options_without_a_capacity_pass_no_flags() {
        let greeter = Greeter::on(50064)
            .service_time(Duration::from_millis(10))
            .service_dist_exp();
        assert_eq!(greeter.args(), Greeter::on(50064).args());
    }
}
