//! The engine's clock. Times are kept as milliseconds since the Unix epoch and shown as RFC 3339.
//!
//! `now_ms` is the wall clock read once, at the first call, moved on by tokio's clock since: the
//! same clock the actors' timers (deadlines, sweeps) run on. So time only goes forward while the
//! process runs (a wall-clock jump does not move deadlines), and a test that pauses tokio's clock
//! (`tokio::time::pause`, then `advance`) drives every timer and every `now_ms` together: a 60 s
//! deadline is tested in no time. Rules never read the clock: they are given `now_ms`.

use std::sync::LazyLock;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};

/// The wall clock and the monotonic clock read at the same moment.
static ORIGIN: LazyLock<(i64, Instant)> =
    LazyLock::new(|| (Utc::now().timestamp_millis(), Instant::now()));

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let (wall_ms, at) = *ORIGIN;
    let since =
        tokio::time::Instant::now().saturating_duration_since(tokio::time::Instant::from_std(at));
    wall_ms + since.as_millis() as i64
}

/// RFC 3339 UTC with millisecond precision, e.g. `2026-11-22T19:23:22.123Z`.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Start of the UTC day that contains `ms`.
pub fn day_start_ms(ms: i64) -> i64 {
    ms - ms.rem_euclid(86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_follows_the_wall_clock() {
        let wall = Utc::now().timestamp_millis();
        assert!((now_ms() - wall).abs() < 1_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_test_drives_now() {
        let before = now_ms();
        tokio::time::advance(std::time::Duration::from_secs(3_600)).await;
        let after = now_ms();
        assert!(
            (after - before - 3_600_000).abs() < 50,
            "{}",
            after - before
        );
    }
}
