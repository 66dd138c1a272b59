//! How long a task's input and output are kept. A task's content is the buyer's and the worker's
//! business, not the platform's: once nobody can act on it any more it is purged, and the task
//! keeps only what the books need (status, price, times, ledger entries).
//!
//! Nobody can act on a task's content once
//! - the task has ended (completed, failed or credited: no worker holds it, none will),
//! - its refund window is over: the release time of the worker's lot, fixed when the task
//!   completed with the `commissions.freeze_seconds` then in force (a failed task has no window),
//! - `retention.grace_seconds` more have passed (time for a buyer to fetch an output it was
//!   credited for, or for an admin to look at a case; read when the purge runs, so a changed grace
//!   applies to every task), and
//! - no QA comparison still needs it: an undecided group (`open`, `tiebreak`) compares the
//!   outputs of its tasks and copies a tiebreaker from the original's input.
//!
//! A store writes [`purge_after_ms`] beside a task in the transaction that ends it, keeps an index
//! on it, and purges the tasks [`due_by`] the cutoff that no undecided QA group holds.

/// Written when a task ends: the end of its refund window. `release_at_ms` is its lot's release
/// time when the task completed with one; a task that failed ends without a window.
pub fn purge_after_ms(ended_at_ms: i64, release_at_ms: Option<i64>) -> i64 {
    release_at_ms.map_or(ended_at_ms, |r| r.max(ended_at_ms))
}

/// Tasks whose `purge_after` is at or before this are due at `now_ms`.
pub fn due_by(grace_ms: i64, now_ms: i64) -> i64 {
    now_ms.saturating_sub(grace_ms.max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn a_completed_task_is_kept_through_its_refund_window_and_the_grace() {
        let ended = 1_000;
        let after = purge_after_ms(ended, Some(ended + 24 * H));
        assert_eq!(after, ended + 24 * H);
        // Due once the grace has passed too, not a millisecond before.
        assert!(after > due_by(H, ended + 25 * H - 1));
        assert!(after <= due_by(H, ended + 25 * H));
        // A window shortened after the task completed does not shorten its lot's: the time was
        // fixed when it ended.
        assert!(after > due_by(0, ended + H));
    }

    #[test]
    fn a_failed_task_is_kept_for_the_grace_only() {
        let after = purge_after_ms(5_000, None);
        assert_eq!(after, 5_000);
        assert!(after > due_by(H, 5_000 + H - 1));
        assert!(after <= due_by(H, 5_000 + H));
    }

    #[test]
    fn a_lot_released_early_never_moves_the_time_before_the_end() {
        assert_eq!(purge_after_ms(9_000, Some(1_000)), 9_000);
    }

    #[test]
    fn a_negative_grace_counts_as_none_and_extreme_times_do_not_overflow() {
        assert_eq!(due_by(-5, 100), 100);
        assert_eq!(due_by(i64::MAX, i64::MIN), i64::MIN);
    }
}
