//! Wall-clock helpers. Times are kept as milliseconds since the Unix epoch and shown as RFC 3339.

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
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
