//! A process's CPU time, from `/proc/<pid>/stat`.
//!
//! Envoy's CPU time per request served is the overhead figure of the benchmark: on a
//! small shared machine throughput and latency move with whatever else runs, but the
//! CPU Envoy spends on a request barely does.

use std::{fs, time::Duration};

/// Clock ticks per second of `/proc` times (`USER_HZ`). Linux fixes it at 100 for
/// user space on every architecture it exports `/proc` to, whatever the kernel's HZ.
pub const USER_HZ: u64 = 100;

/// User plus system CPU time of process `pid` so far, all threads included.
pub fn process_cpu_time(pid: u32) -> Result<Duration, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).map_err(|error| format!("cannot read {path}: {error}"))?;
    let ticks = cpu_ticks(&stat).map_err(|reason| format!("{path}: {reason}"))?;
    Ok(Duration::from_millis(ticks * 1_000 / USER_HZ))
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks.
///
/// The command name (field 2) is in parentheses and may itself contain spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn cpu_ticks(stat: &str) -> Result<u64, String> {
    let after_name = stat
        .rfind(')')
        .map(|end| &stat[end + 1..])
        .ok_or("no `)` closing the command name")?;
    // After the name come field 3 (state) onwards: utime is field 14, stime 15.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| -> Result<u64, String> {
        let text = fields
            .get(number - 3)
            .ok_or_else(|| format!("only {} fields after the name", fields.len()))?;
        text.parse()
            .map_err(|_| format!("field {number} is not a number: `{text}`"))
    };
    Ok(field(14)? + field(15)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_user_and_system_ticks() {
        let stat =
            "4242 (envoy) S 1 4242 4242 0 -1 4194560 5120 0 0 0 250 75 0 0 20 0 14 0 9000 1 2";
        assert_eq!(cpu_ticks(stat), Ok(325));
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_fields() {
        let stat = "7 (my (odd) name) R 1 7 7 0 -1 0 0 0 0 0 12 3 0 0 20 0 1 0 5";
        assert_eq!(cpu_ticks(stat), Ok(15));
    }

    #[test]
    fn rejects_truncated_or_garbled_lines() {
        assert!(cpu_ticks("4242 envoy S 1").is_err());
        assert!(cpu_ticks("4242 (envoy) S 1 2 3").is_err());
        assert!(cpu_ticks("4242 (envoy) S 1 4242 4242 0 -1 0 0 0 0 0 x 75 0").is_err());
    }

    #[test]
    fn reads_this_process() {
        let spent = process_cpu_time(std::process::id()).unwrap();
        assert!(spent < Duration::from_secs(3_600), "{spent:?}");
    }
}
