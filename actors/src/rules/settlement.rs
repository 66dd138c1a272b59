//! An accepted submit: what the worker earns, what the platform keeps, the lot, the journal
//! entry, the worker's stats and tier after it, and whether a spot-check copy is made.

use serde_json::Value;

use crate::config::PlatformConfig;
use crate::domain::{TaskStatus, TaskType};
use crate::economics;
use crate::error::EngineError;
use crate::ledger::{self, Entry, EntryKind};
use crate::store::WorkerStats;

/// What settlement needs to know, read by the store inside the submit's transaction.
#[derive(Debug, Clone)]
pub struct Submitted<'a> {
    pub task_id: &'a str,
    pub task_type: &'a TaskType,
    pub price_cents: i64,
    /// A QA copy or a benchmark: paid by the QA fund, and its "commission" goes back there.
    pub platform_paid: bool,
    /// Already part of a QA group (a copy, or an original with a twin): never spot-checked.
    pub in_qa_group: bool,
    pub worker_id: &'a str,
    /// The worker's record before this task.
    pub stats: WorkerStats,
    pub tier: &'a str,
    /// Levels QA downgrades hold the worker below what its record earns.
    pub tier_penalty: u32,
    pub now_ms: i64,
    /// A uniform draw in [0, 10000): a spot-check copy is made when it falls under the rate.
    pub spot_roll_bp: u32,
}

/// What the store writes for an accepted submit.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub earned_cents: i64,
    pub commission_cents: i64,
    /// When the lot (the earning) is released to the worker.
    pub release_at_ms: i64,
    /// escrow → the worker's frozen earning + revenue (or the QA fund).
    pub entry: Entry,
    /// The worker's record with this task counted.
    pub stats: WorkerStats,
    pub tier: String,
    /// Whether a spot-check copy of this buyer's task enters the queue.
    pub spot_check: bool,
}

/// Where a submit stands before anything is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The worker's task is done already: answer as before, pay nothing more.
    Repeat,
    /// The worker holds the task and its deadline has not passed: settle it.
    Open,
    /// The worker's deadline passed (the task went back to the queue).
    Expired,
    /// The worker does not hold the task now: `TASK_EXPIRED` if it held it once, else 403.
    NotHeld,
}

pub fn standing(status: TaskStatus, mine: bool, deadline_ms: Option<i64>, now_ms: i64) -> Standing {
    match status {
        TaskStatus::Completed | TaskStatus::Credited if mine => Standing::Repeat,
        TaskStatus::Assigned if mine && deadline_ms.is_some_and(|d| now_ms > d) => {
            Standing::Expired
        }
        TaskStatus::Assigned if mine => Standing::Open,
        _ => Standing::NotHeld,
    }
}

/// The answer to a submit for a task the worker does not hold.
pub fn not_held(held_before: bool) -> EngineError {
    if held_before {
        EngineError::TaskExpired
    } else {
        EngineError::Forbidden("this task is not assigned to you".into())
    }
}

/// An output must have at least the task's `min_output_length` characters of text.
pub fn check_output(min_output_length: u32, output_json: &str) -> Result<(), EngineError> {
    let min = min_output_length as usize;
    if min > 0 && output_text_chars(output_json) < min {
        return Err(EngineError::validation_field(
            "output",
            format!("output is shorter than the task's min_output_length of {min} characters"),
        ));
    }
    Ok(())
}

/// Characters of an output's text: its `text` field when it has one, else the whole JSON.
pub fn output_text_chars(output_json: &str) -> usize {
    match serde_json::from_str::<Value>(output_json) {
        Ok(Value::Object(o)) => match o.get("text") {
            Some(Value::String(s)) => s.chars().count(),
            _ => output_json.chars().count(),
        },
        Ok(Value::String(s)) => s.chars().count(),
        _ => output_json.chars().count(),
    }
}

pub fn settle(cfg: &PlatformConfig, s: &Submitted<'_>) -> Settled {
    let rate = economics::commission_bp(cfg, s.tier, s.task_type, s.stats.tasks_completed);
    let (earned_cents, commission_cents) = economics::split(s.price_cents, rate);
    let commission_to = if s.platform_paid {
        ledger::QA_FUND
    } else {
        ledger::REVENUE
    };
    let entry = Entry::new(EntryKind::TaskSettle, s.task_id)
        .for_task(s.task_id)
        .post(ledger::ESCROW, -s.price_cents)
        .post(ledger::frozen(s.worker_id), earned_cents)
        .post(commission_to, commission_cents);
    // A buyer's task outside QA may get a copy, at the rate of the worker's tier as it was when
    // it did the task (`suspicious` when its credit rate is above what that tier allows).
    let spot_check = !s.platform_paid && !s.in_qa_group && {
        let suspicious = economics::suspicious(cfg, s.tier, &s.stats.tier_stats());
        s.spot_roll_bp < cfg.qa.spot_check_bp(s.tier, suspicious)
    };
    let mut stats = s.stats;
    stats.tasks_completed += 1;
    stats.consecutive_expires = 0;
    stats.total_earned_cents += earned_cents;
    let tier = economics::placement_penalised(cfg, &stats.tier_stats(), s.tier_penalty).to_string();
    Settled {
        earned_cents,
        commission_cents,
        release_at_ms: s.now_ms + (cfg.commissions.freeze_seconds as i64).saturating_mul(1000),
        entry,
        stats,
        tier,
        spot_check,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submitted<'a>(t: &'a TaskType, stats: WorkerStats) -> Submitted<'a> {
        Submitted {
            task_id: "t",
            task_type: t,
            price_cents: 5,
            platform_paid: false,
            in_qa_group: false,
            worker_id: "w",
            stats,
            tier: "new",
            tier_penalty: 0,
            now_ms: 1_000,
            spot_roll_bp: 9_999,
        }
    }

    #[test]
    fn a_new_worker_earns_its_share_frozen_for_the_window() {
        let cfg = PlatformConfig::builtin();
        let code = TaskType::parse("code").unwrap();
        let s = settle(&cfg, &submitted(&code, WorkerStats::default()));
        // 25 % commission at the new tier: floor(5 × 0.75) = 3, the platform keeps 2.
        assert_eq!((s.earned_cents, s.commission_cents), (3, 2));
        assert_eq!(s.release_at_ms, 1_000 + 86_400_000);
        assert!(s.entry.check().is_ok());
        assert!(
            s.entry
                .postings
                .iter()
                .any(|p| p.account == ledger::REVENUE && p.amount_cents == 2)
        );
        assert_eq!(s.stats.tasks_completed, 1);
        assert_eq!(s.stats.total_earned_cents, 3);
        assert!(!s.spot_check, "a roll above every rate");
    }

    #[test]
    fn a_qa_copy_pays_as_any_task_and_its_commission_stays_in_the_fund() {
        let cfg = PlatformConfig::builtin();
        let code = TaskType::parse("code").unwrap();
        let mut sub = submitted(&code, WorkerStats::default());
        sub.platform_paid = true;
        sub.spot_roll_bp = 0;
        let s = settle(&cfg, &sub);
        assert_eq!(s.earned_cents, 3);
        assert!(
            s.entry
                .postings
                .iter()
                .any(|p| p.account == ledger::QA_FUND && p.amount_cents == 2)
        );
        assert!(!s.spot_check, "copies are never spot-checked");
    }

    #[test]
    fn the_spot_check_roll_uses_the_tier_rate_and_skips_qa_groups() {
        let cfg = PlatformConfig::builtin();
        let code = TaskType::parse("code").unwrap();
        let rate = cfg.qa.spot_check_bp("new", false);
        assert!(rate > 0);
        let mut sub = submitted(&code, WorkerStats::default());
        sub.spot_roll_bp = rate - 1;
        assert!(settle(&cfg, &sub).spot_check);
        sub.spot_roll_bp = rate;
        assert!(!settle(&cfg, &sub).spot_check);
        sub.spot_roll_bp = 0;
        sub.in_qa_group = true;
        assert!(!settle(&cfg, &sub).spot_check);
    }

    #[test]
    fn a_submit_stands_by_status_ownership_and_deadline() {
        use TaskStatus::*;
        assert_eq!(standing(Assigned, true, Some(100), 100), Standing::Open);
        assert_eq!(standing(Assigned, true, Some(100), 101), Standing::Expired);
        assert_eq!(standing(Completed, true, None, 0), Standing::Repeat);
        assert_eq!(standing(Credited, true, None, 0), Standing::Repeat);
        assert_eq!(standing(Assigned, false, Some(100), 0), Standing::NotHeld);
        assert_eq!(standing(Pending, false, None, 0), Standing::NotHeld);
        assert!(matches!(not_held(true), EngineError::TaskExpired));
        assert!(matches!(not_held(false), EngineError::Forbidden(_)));
    }

    #[test]
    fn the_output_length_counts_the_text_field_in_characters() {
        assert_eq!(output_text_chars(r#"{"text": "héllo"}"#), 5);
        assert!(check_output(5, r#"{"text": "héllo"}"#).is_ok());
        assert!(check_output(6, r#"{"text": "héllo"}"#).is_err());
        assert!(check_output(0, r#"{}"#).is_ok());
        // Without a text field, the whole JSON counts.
        assert_eq!(output_text_chars(r#"{"a":1}"#), 7);
    }

    #[test]
    fn completed_work_moves_the_tier_up_unless_qa_holds_it_down() {
        let cfg = PlatformConfig::builtin();
        let code = TaskType::parse("code").unwrap();
        let record = WorkerStats {
            tasks_claimed: 50,
            tasks_completed: 49,
            ..WorkerStats::default()
        };
        assert_eq!(settle(&cfg, &submitted(&code, record)).tier, "proven");
        let mut held = submitted(&code, record);
        held.tier_penalty = 1;
        assert_eq!(settle(&cfg, &held).tier, "new");
    }
}
