//! What the Supervisor sweeps: overdue and stale tasks, lots due for release, task content due
//! for the purge.

use super::*;

pub(super) fn overdue(
    c: &Connection,
    now_ms: i64,
    limit: u32,
) -> Result<Vec<LiveTask>, EngineError> {
    let mut s = c
        .prepare_cached(&format!(
            "SELECT {LIVE_COLS} FROM tasks WHERE status = 'assigned' AND deadline < ?1 ORDER BY deadline LIMIT ?2"
        ))
        .map_err(db_err)?;
    let rows = s
        .query_map(params![now_ms, limit], live_from_row)
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

pub(super) fn fail_stale(
    tx: &mut Tx<'_>,
    created_before_ms: i64,
    limit: u32,
) -> Result<Vec<FailedTask>, EngineError> {
    let stale: Vec<String> = {
        let mut s = tx
            .conn
            .prepare_cached("SELECT id FROM tasks WHERE status = 'pending' AND created_at < ?1 ORDER BY seq LIMIT ?2")
            .map_err(db_err)?;
        let rows = s
            .query_map(params![created_before_ms, limit], |r| r.get(0))
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
    };
    let now_ms = crate::clock::now_ms();
    let mut failed = Vec::with_capacity(stale.len());
    for task_id in stale {
        if let Some(buyer_id) = tx.refund(&task_id, now_ms)? {
            tx.task_event(
                &task_id,
                "failed",
                "Supervisor",
                serde_json::json!({ "why": "nobody took it within dispatch.pending_ttl_seconds", "refunded": true }),
                now_ms,
            )?;
            failed.push(FailedTask { task_id, buyer_id });
        }
    }
    Ok(failed)
}

pub(super) fn unfreeze_due(tx: &mut Tx<'_>, now_ms: i64, limit: u32) -> Result<u64, EngineError> {
    type Due = (i64, String, String, i64, i64, i64);
    let due: Vec<Due> = {
        let mut s = tx
            .conn
            .prepare_cached(
                "SELECT id, worker_id, task_id, amount_cents, commission_cents, deducted_cents FROM lots
                 WHERE status = 'frozen' AND release_at <= ?1 ORDER BY release_at LIMIT ?2",
            )
            .map_err(db_err)?;
        let rows = s
            .query_map(params![now_ms, limit], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
    };
    for (lot_id, worker_id, task_id, amount, commission, deducted) in &due {
        if let Some(entry) = rules::money::unfreeze(task_id, worker_id, *amount) {
            tx.apply(&entry, now_ms)?;
        }
        let price = amount + commission + deducted;
        super::referrals::share_on_release(tx, worker_id, task_id, price, *commission, now_ms)?;
        tx.conn
            .prepare_cached("UPDATE lots SET status = 'released' WHERE id = ?1")
            .and_then(|mut s| s.execute(params![lot_id]))
            .map_err(db_err)?;
    }
    Ok(due.len() as u64)
}

pub(super) fn next_unfreeze_ms(c: &Connection) -> Result<Option<i64>, EngineError> {
    c.prepare_cached("SELECT min(release_at) FROM lots WHERE status = 'frozen'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db_err)
}

/// Empties the input and output of up to `limit` tasks due for the purge at `now_ms` (see
/// [`rules::retention`]), oldest first. The writer connection runs with `secure_delete`, so the
/// old bytes are overwritten in the pages they leave; the caller truncates the WAL after the
/// commit ([`checkpoint_truncate`]).
pub(super) fn purge_task_data(
    tx: &mut Tx<'_>,
    now_ms: i64,
    grace_ms: i64,
    limit: u32,
) -> Result<PurgedTasks, EngineError> {
    let due_by = rules::retention::due_by(grace_ms, now_ms);
    let due: Vec<String> = {
        // A task a QA group still compares is passed over, and stays in the index for later.
        let mut s = tx
            .conn
            .prepare_cached(
                "SELECT t.id FROM tasks t
                 WHERE t.purge_after IS NOT NULL AND t.purge_after <= ?1
                   AND NOT EXISTS (SELECT 1 FROM qa_groups g
                                   WHERE g.id = t.qa_group AND g.state IN ('open', 'tiebreak'))
                 ORDER BY t.purge_after LIMIT ?2",
            )
            .map_err(db_err)?;
        let rows = s
            .query_map(params![due_by, i64::from(limit) + 1], |r| r.get(0))
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
    };
    let more = due.len() > limit as usize;
    let mut purged = 0;
    let mut update = tx
        .conn
        .prepare_cached(
            "UPDATE tasks SET input = '', output = NULL, purge_after = NULL, purged_at = ?2
             WHERE id = ?1 AND purge_after IS NOT NULL",
        )
        .map_err(db_err)?;
    for task_id in due.iter().take(limit as usize) {
        purged += update.execute(params![task_id, now_ms]).map_err(db_err)? as u64;
    }
    Ok(PurgedTasks { purged, more })
}

/// Copies the WAL into the database file and truncates it to nothing, so that no old version of
/// a page (a purged task's content among them) is left in it. Runs on a connection of its own,
/// outside the writer's transactions; false when a reader or the writer kept it from finishing
/// (the next purge tries again).
pub(super) fn checkpoint_truncate(path: &Path) -> Result<bool, EngineError> {
    let conn = Connection::open(path).map_err(db_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db_err)?;
    let (busy, _log, _done): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(db_err)?;
    Ok(busy == 0)
}
