//! Polling until a condition holds, instead of sleeping and hoping.
//!
//! Like linkerd2-proxy's `assert_eventually!`: retry a check until it passes
//! or the patience runs out, then report the last reason it failed.

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// Pause between attempts.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Runs `check` until it returns `Ok` or `patience` has passed, and returns
/// its value or its last error. `check` always runs at least once.
pub fn eventually<T>(
    patience: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + patience;
    let mut attempts = 0_u32;
    loop {
        attempts += 1;
        match check() {
            Ok(value) => return Ok(value),
            Err(reason) if Instant::now() >= deadline => {
                return Err(gave_up(patience, attempts, &reason));
            }
            Err(_) => std::thread::sleep(POLL_INTERVAL),
        }
    }
}

/// [`eventually`] for checks that need to `.await`, e.g. running a load.
pub async fn eventually_async<T, Check, Attempt>(
    patience: Duration,
    mut check: Check,
) -> Result<T, String>
where
    Check: FnMut() -> Attempt,
    Attempt: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + patience;
    let mut attempts = 0_u32;
    loop {
        attempts += 1;
        match check().await {
            Ok(value) => return Ok(value),
            Err(reason) if Instant::now() >= deadline => {
                return Err(gave_up(patience, attempts, &reason));
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

fn gave_up(patience: Duration, attempts: u32, reason: &str) -> String {
    format!(
        "still failing after {} ({attempts} attempts): {reason}",
        humantime::format_duration(patience)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_the_check_passes() {
        let mut calls = 0;
        let result = eventually(Duration::from_secs(5), || {
            calls += 1;
            if calls < 3 {
                Err(format!("attempt {calls}"))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(result, Ok(3));
    }

    #[test]
    fn reports_the_last_failure_when_patience_runs_out() {
        let mut calls = 0;
        let result: Result<(), _> = eventually(Duration::from_millis(120), || {
            calls += 1;
            Err(format!("attempt {calls}"))
        });
        let error = result.unwrap_err();
        assert!(error.starts_with("still failing after 120ms"), "{error}");
        assert!(error.ends_with(&format!("attempt {calls}")), "{error}");
        assert!(calls >= 2, "{calls}");
    }

    #[test]
    fn zero_patience_still_checks_once() {
        let mut calls = 0;
        let result = eventually(Duration::ZERO, || {
            calls += 1;
            Ok::<_, String>(())
        });
        assert_eq!(result, Ok(()));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn async_checks_are_retried_too() {
        let mut calls = 0;
        let result = eventually_async(Duration::from_secs(5), || {
            calls += 1;
            let attempt = calls;
            async move {
                if attempt < 2 {
                    Err("not yet".to_owned())
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(result, Ok(2));
    }
}
