//! A missed deadline: the worker's count, its suspension, its tier, and whether the task goes
//! back to the queue or fails (and is refunded).

use crate::config::PlatformConfig;
use crate::economics;
use crate::store::WorkerStats;

/// What the store knows when a held task's deadline passes.
#[derive(Debug, Clone, Copy)]
pub struct Lapse<'a> {
    /// The worker's record before this expiry.
    pub stats: WorkerStats,
    pub tier: &'a str,
    pub tier_penalty: u32,
    /// Claims of the task so far, this one included.
    pub attempts: u32,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lapsed {
    /// The worker's record with this expiry counted.
    pub stats: WorkerStats,
    /// Set when this expiry suspends the worker (its run of expiries then starts again).
    pub suspended_until_ms: Option<i64>,
    /// The worker's tier after it.
    pub tier: String,
    /// Out of attempts: the task fails and its escrow is refunded; else it is pending again.
    pub fails: bool,
}

pub fn lapse(cfg: &PlatformConfig, l: &Lapse<'_>) -> Lapsed {
    let d = &cfg.dispatch;
    let mut stats = l.stats;
    stats.tasks_expired += 1;
    stats.consecutive_expires += 1;
    let suspended_until_ms = (stats.consecutive_expires >= u64::from(d.expiries_before_suspension))
        .then(|| l.now_ms + (d.suspension_seconds as i64).saturating_mul(1000));
    if suspended_until_ms.is_some() {
        stats.consecutive_expires = 0;
    }
    let tier = economics::placement_penalised(cfg, &stats.tier_stats(), l.tier_penalty).to_string();
    Lapsed {
        stats,
        suspended_until_ms,
        tier,
        fails: l.attempts >= d.max_attempts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lapse_n(cfg: &PlatformConfig, before: u64, attempts: u32) -> Lapsed {
        lapse(
            cfg,
            &Lapse {
                stats: WorkerStats {
                    tasks_claimed: 10,
                    consecutive_expires: before,
                    ..WorkerStats::default()
                },
                tier: "new",
                tier_penalty: 0,
                attempts,
                now_ms: 1_000,
            },
        )
    }

    #[test]
    fn a_run_of_expiries_suspends_and_starts_again() {
        let cfg = PlatformConfig::builtin();
        let n = cfg.dispatch.expiries_before_suspension as u64;
        let first = lapse_n(&cfg, 0, 1);
        assert_eq!(
            (first.stats.tasks_expired, first.stats.consecutive_expires),
            (1, 1)
        );
        assert_eq!(first.suspended_until_ms, None);
        let last = lapse_n(&cfg, n - 1, 1);
        assert_eq!(
            last.suspended_until_ms,
            Some(1_000 + cfg.dispatch.suspension_seconds as i64 * 1000)
        );
        assert_eq!(last.stats.consecutive_expires, 0);
    }

    #[test]
    fn a_task_out_of_attempts_fails() {
        let cfg = PlatformConfig::builtin();
        let max = cfg.dispatch.max_attempts;
        assert!(!lapse_n(&cfg, 0, max - 1).fails);
        assert!(lapse_n(&cfg, 0, max).fails);
    }
}
