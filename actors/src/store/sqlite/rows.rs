//! Reading rows into the store's types.

use super::*;

/// `tasks.funded_by` of QA copies and benchmarks.
pub(super) const FUNDED_BY_PLATFORM: &str = "platform";

pub(super) fn stats_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<WorkerStats> {
    Ok(WorkerStats {
        tasks_claimed: r.get::<_, i64>(at)? as u64,
        tasks_completed: r.get::<_, i64>(at + 1)? as u64,
        tasks_expired: r.get::<_, i64>(at + 2)? as u64,
        consecutive_expires: r.get::<_, i64>(at + 3)? as u64,
        credit_requests: r.get::<_, i64>(at + 4)? as u64,
        total_earned_cents: r.get(at + 5)?,
    })
}

pub(super) const BALANCE_COLS: &str = "user_id, available_cents, frozen_cents, total_deposited_cents, total_earned_cents, total_withdrawn_cents, version";

pub(super) fn balance_from_row(r: &Row<'_>) -> rusqlite::Result<BalanceSnapshot> {
    Ok(BalanceSnapshot {
        user_id: r.get(0)?,
        available_cents: r.get(1)?,
        frozen_cents: r.get(2)?,
        total_deposited_cents: r.get(3)?,
        total_earned_cents: r.get(4)?,
        total_withdrawn_cents: r.get(5)?,
        version: r.get(6)?,
    })
}

pub(super) fn read_balance(
    c: &Connection,
    user_id: &str,
) -> Result<Option<BalanceSnapshot>, EngineError> {
    c.prepare_cached(&format!(
        "SELECT {BALANCE_COLS} FROM balances WHERE user_id = ?1"
    ))
    .and_then(|mut s| s.query_row(params![user_id], balance_from_row).optional())
    .map_err(db_err)
}

pub(super) const WORKER_COLS: &str =
    "id, worker_type, model_info, profile, tier, tasks_claimed, tasks_completed, tasks_expired,
    consecutive_expires, credit_requests, total_earned_cents, suspended_until, created_at, claims_day, claims_today,
    (SELECT count(*) FROM tasks t WHERE t.worker_id = workers.id AND t.status = 'assigned'), banned_at";

pub(super) fn worker_from_row(r: &Row<'_>) -> rusqlite::Result<(WorkerRecord, String, String)> {
    Ok((
        WorkerRecord {
            worker_id: r.get(0)?,
            worker_type: r.get(1)?,
            model_info: Value::Null,
            profile: WorkerProfile::default(),
            tier: r.get(4)?,
            stats: stats_from_row(r, 5)?,
            suspended_until_ms: r.get(11)?,
            created_at_ms: r.get(12)?,
            claims_day_ms: r.get(13)?,
            claims_today: r.get(14)?,
            held: r.get(15)?,
            banned_at_ms: r.get(16)?,
        },
        r.get(2)?,
        r.get(3)?,
    ))
}

pub(super) fn read_worker(
    c: &Connection,
    worker_id: &str,
) -> Result<Option<WorkerRecord>, EngineError> {
    let found = c
        .prepare_cached(&format!("SELECT {WORKER_COLS} FROM workers WHERE id = ?1"))
        .and_then(|mut s| s.query_row(params![worker_id], worker_from_row).optional())
        .map_err(db_err)?;
    let Some((mut w, model_info, profile)) = found else {
        return Ok(None);
    };
    w.model_info = serde_json::from_str(&model_info).map_err(json_err)?;
    w.profile = serde_json::from_str(&profile).map_err(json_err)?;
    Ok(Some(w))
}

pub(super) const TASK_COLS: &str =
    "seq, id, buyer_id, type, input, timeout_seconds, min_output_length, price_cents, status,
    worker_id, attempts, deadline, output, earned_cents, created_at, completed_at, purged_at, input_preview";

pub(super) fn task_from_row(r: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    let status: String = r.get(8)?;
    Ok(TaskRecord {
        seq: r.get(0)?,
        task_id: r.get(1)?,
        buyer_id: r.get(2)?,
        task_type: r.get(3)?,
        input: r.get(4)?,
        constraints: Constraints {
            timeout_seconds: r.get(5)?,
            min_output_length: r.get(6)?,
        },
        price_cents: r.get(7)?,
        status: TaskStatus::parse(&status).unwrap_or(TaskStatus::Failed),
        worker_id: r.get(9)?,
        attempts: r.get(10)?,
        deadline_ms: r.get(11)?,
        output: r.get(12)?,
        earned_cents: r.get(13)?,
        created_at_ms: r.get(14)?,
        completed_at_ms: r.get(15)?,
        purged_at_ms: r.get(16)?,
        input_preview: r.get(17)?,
    })
}

pub(super) const LIVE_COLS: &str = "seq, id, type, price_cents, created_at, status, worker_id, attempts, deadline, buyer_id, qa_key";

pub(super) fn live_from_row(r: &Row<'_>) -> rusqlite::Result<LiveTask> {
    let status: String = r.get(5)?;
    let assigned = if status == "assigned" {
        Some(Assignment {
            worker_id: r.get(6)?,
            attempt: r.get(7)?,
            deadline_ms: r.get(8)?,
        })
    } else {
        None
    };
    Ok(LiveTask {
        seq: r.get(0)?,
        task_id: r.get(1)?,
        task_type: r.get(2)?,
        price_cents: r.get(3)?,
        created_at_ms: r.get(4)?,
        buyer_id: r.get(9)?,
        assigned,
        qa_key: r.get(10)?,
    })
}

pub(super) fn read_task(c: &Connection, task_id: &str) -> Result<Option<TaskRecord>, EngineError> {
    c.prepare_cached(&format!("SELECT {TASK_COLS} FROM tasks WHERE id = ?1"))
        .and_then(|mut s| s.query_row(params![task_id], task_from_row).optional())
        .map_err(db_err)
}

/// The hidden QA side of a task, read only inside the store.
pub(super) struct QaTag {
    /// A QA copy or benchmark: paid from the QA fund.
    pub(super) platform_paid: bool,
    pub(super) group: Option<String>,
}

/// A task with its hidden QA side, in one read (settlement needs both).
pub(super) fn read_task_tagged(
    c: &Connection,
    task_id: &str,
) -> Result<Option<(TaskRecord, QaTag)>, EngineError> {
    c.prepare_cached(&format!(
        "SELECT {TASK_COLS}, funded_by, qa_group FROM tasks WHERE id = ?1"
    ))
    .and_then(|mut s| {
        s.query_row(params![task_id], |r| {
            let tag = QaTag {
                platform_paid: r.get::<_, String>(18)? == FUNDED_BY_PLATFORM,
                group: r.get(19)?,
            };
            Ok((task_from_row(r)?, tag))
        })
        .optional()
    })
    .map_err(db_err)
}

/// A stored text that does not parse as what its column holds.
pub(super) fn invalid(i: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Text,
        format!("{what} is not valid").into(),
    )
}
