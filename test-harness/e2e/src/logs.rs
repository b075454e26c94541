//! Log files of processes started by tests, under `target/e2e-logs/`.
//!
//! Each child writes stdout and stderr to its own file, so a failing test can
//! show the tail of exactly the process that misbehaved, and the full log is
//! still there afterwards.

use std::{
    fs::{self, File, OpenOptions},
    path::{Path, PathBuf},
};

use super::repo_root;

/// Lines of a log shown in error messages.
pub const TAIL_LINES: usize = 40;

/// Where the log named `name` lives: `<repo>/target/e2e-logs/<name>.log`.
pub fn log_path(name: &str) -> PathBuf {
    repo_root()
        .join("target")
        .join("e2e-logs")
        .join(format!("{name}.log"))
}

/// Opens `path` for a child's output: truncated for a fresh start, appended
/// to for a restart so earlier runs stay visible.
pub(crate) fn open_log(path: &Path, append: bool) -> Result<File, String> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map_err(|error| format!("cannot open log {}: {error}", path.display()))
}

/// The whole log, or an empty string if it cannot be read.
pub fn read_log(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// The last [`TAIL_LINES`] lines of a log, introduced by its path.
pub fn log_tail(path: &Path) -> String {
    let log = read_log(path);
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    format!("--- last lines of {} ---\n{tail}", path.display())
}
