//! A task's timeline: the rows it left (see `store/timeline.rs`), and the `task_events` written
//! off the hot path.

use super::*;
use crate::store::timeline::*;

impl Tx<'_> {
    /// Notes what happened to a task for its timeline.
    pub(super) fn task_event(
        &self,
        task_id: &str,
        event: &str,
        actor: &str,
        details: Value,
        now_ms: i64,
    ) -> Result<(), EngineError> {
        self.conn
            .prepare_cached(
                "INSERT INTO task_events (task_id, at, event, actor, details) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![task_id, now_ms, event, actor, details.to_string()]))
            .map_err(db_err)?;
        Ok(())
    }
}

pub(super) fn read(c: &Connection, task_id: String) -> Result<Option<TimelineParts>, EngineError> {
    let task = c
        .prepare_cached(
            "SELECT id, buyer_id, type, price_cents, status, worker_id, timeout_seconds, created_at,
                    completed_at, credited_at, earned_cents, commission_cents, funded_by, qa_group, qa_role
             FROM tasks WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.query_row(params![task_id], |r| {
                Ok(TimelineTask {
                    task_id: r.get(0)?,
                    buyer_id: r.get(1)?,
                    task_type: r.get(2)?,
                    price_cents: r.get(3)?,
                    status: r.get(4)?,
                    worker_id: r.get(5)?,
                    timeout_seconds: r.get(6)?,
                    created_ms: r.get(7)?,
                    completed_ms: r.get(8)?,
                    credited_ms: r.get(9)?,
                    earned_cents: r.get(10)?,
                    commission_cents: r.get(11)?,
                    funded_by: r.get(12)?,
                    qa_group: r.get(13)?,
                    qa_role: r.get(14)?,
                })
            })
            .optional()
        })
        .map_err(db_err)?;
    let Some(task) = task else {
        return Ok(None);
    };
    let claims = c
        .prepare_cached(
            "SELECT attempt, worker_id, claimed_at FROM claims WHERE task_id = ?1 ORDER BY attempt",
        )
        .and_then(|mut s| {
            s.query_map(params![task_id], |r| {
                Ok(ClaimRow {
                    attempt: r.get(0)?,
                    worker_id: r.get(1)?,
                    claimed_ms: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(db_err)?;
    let events = c
        .prepare_cached(
            "SELECT at, event, actor, details FROM task_events WHERE task_id = ?1 ORDER BY id",
        )
        .and_then(|mut s| {
            s.query_map(params![task_id], |r| {
                let details: String = r.get(3)?;
                Ok(StoredEvent {
                    at_ms: r.get(0)?,
                    event: r.get(1)?,
                    actor: r.get(2)?,
                    details: serde_json::from_str(&details).unwrap_or(Value::Null),
                })
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(db_err)?;
    let lot = c
        .prepare_cached(
            "SELECT worker_id, amount_cents, commission_cents, deducted_cents, created_at, release_at, status
             FROM lots WHERE task_id = ?1",
        )
        .and_then(|mut s| {
            s.query_row(params![task_id], |r| {
                Ok(LotRow {
                    worker_id: r.get(0)?,
                    amount_cents: r.get(1)?,
                    commission_cents: r.get(2)?,
                    deducted_cents: r.get(3)?,
                    created_ms: r.get(4)?,
                    release_ms: r.get(5)?,
                    status: r.get(6)?,
                })
            })
            .optional()
        })
        .map_err(db_err)?;
    let (group, verdict) = match &task.qa_group {
        None => (None, None),
        Some(g) => (qa_group(c, g)?, qa_verdict(c, g)?),
    };
    Ok(Some(TimelineParts {
        task,
        claims,
        events,
        lot,
        group,
        verdict,
    }))
}

fn qa_group(c: &Connection, group_id: &str) -> Result<Option<GroupRow>, EngineError> {
    c.prepare_cached(
        "SELECT id, qa_type, task_id, qa_task_id, tiebreak_task_id, state, created_at FROM qa_groups WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.query_row(params![group_id], |r| {
            Ok(GroupRow {
                group_id: r.get(0)?,
                qa_type: r.get(1)?,
                task_id: r.get(2)?,
                qa_task_id: r.get(3)?,
                tiebreak_task_id: r.get(4)?,
                state: r.get(5)?,
                created_ms: r.get(6)?,
            })
        })
        .optional()
    })
    .map_err(db_err)
}

fn qa_verdict(c: &Connection, group_id: &str) -> Result<Option<VerdictRow>, EngineError> {
    c.prepare_cached(
        "SELECT verdict, similarity, blamed_worker_id, decided_at FROM qa_results WHERE group_id = ?1",
    )
    .and_then(|mut s| {
        s.query_row(params![group_id], |r| {
            Ok(VerdictRow {
                verdict: r.get(0)?,
                similarity: r.get(1)?,
                blamed_worker_id: r.get(2)?,
                decided_ms: r.get(3)?,
            })
        })
        .optional()
    })
    .map_err(db_err)
}
