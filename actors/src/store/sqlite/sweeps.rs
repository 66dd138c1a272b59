//! What the Supervisor sweeps: overdue and stale tasks, lots due for release.

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
