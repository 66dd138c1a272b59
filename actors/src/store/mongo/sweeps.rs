//! What the Supervisor sweeps: overdue and stale tasks, lots due for release, task content due
//! for the purge. Every node's Supervisor sweeps; the writes are guarded, so each task and lot is
//! handled once.

use super::*;

pub(super) async fn overdue(tx: &mut Tx<'_>, now_ms: i64, limit: u32) -> R<Vec<LiveTask>> {
    let db = tx.db;
    let found = tx
        .many(
            &db.tasks,
            doc! { "status": "assigned", "deadline": { "$lt": now_ms } },
            doc! { "deadline": 1 },
            Some(i64::from(limit)),
        )
        .await?;
    Ok(found.iter().map(TaskDoc::live).collect())
}

pub(super) async fn fail_stale(
    tx: &mut Tx<'_>,
    created_before_ms: i64,
    limit: u32,
) -> R<Vec<FailedTask>> {
    let db = tx.db;
    let stale = tx
        .many(
            &db.tasks,
            doc! { "status": "pending", "created_at": { "$lt": created_before_ms } },
            doc! { "status": 1, "seq": 1 },
            Some(i64::from(limit)),
        )
        .await?;
    let now_ms = crate::clock::now_ms();
    let mut failed = Vec::with_capacity(stale.len());
    for task in stale {
        if let Some(buyer_id) = tx.refund(&task.id, now_ms).await? {
            tx.task_event(
                &task.id,
                "failed",
                "Supervisor",
                serde_json::json!({ "why": "nobody took it within dispatch.pending_ttl_seconds", "refunded": true }),
                now_ms,
            )
            .await?;
            failed.push(FailedTask {
                task_id: task.id,
                buyer_id,
            });
        }
    }
    Ok(failed)
}

pub(super) async fn unfreeze_due(tx: &mut Tx<'_>, now_ms: i64, limit: u32) -> R<u64> {
    let db = tx.db;
    let due = tx
        .many(
            &db.lots,
            doc! { "status": "frozen", "release_at": { "$lte": now_ms } },
            doc! { "release_at": 1 },
            Some(i64::from(limit)),
        )
        .await?;
    let mut released = 0;
    for lot in &due {
        // Guarded: a lot released (or reversed) by another node meanwhile is left alone.
        let moved = tx
            .update(
                &db.lots,
                doc! { "_id": lot.id, "status": "frozen" },
                doc! { "$set": { "status": "released" } },
            )
            .await?;
        if !moved {
            continue;
        }
        if let Some(entry) = rules::money::unfreeze(&lot.task_id, &lot.worker_id, lot.amount_cents)
        {
            tx.apply(&entry, now_ms).await?;
        }
        super::referrals::share_on_release(tx, lot, now_ms).await?;
        released += 1;
    }
    Ok(released)
}

pub(super) async fn next_unfreeze_ms(tx: &mut Tx<'_>) -> R<Option<i64>> {
    let db = tx.db;
    let first = tx
        .many(
            &db.lots,
            doc! { "status": "frozen" },
            doc! { "release_at": 1 },
            Some(1),
        )
        .await?;
    Ok(first.first().map(|l| l.release_at))
}

/// Candidates read per page of the purge: undecided QA groups cannot be filtered out in the query
/// (they are another collection), so the purge reads on past them.
const PURGE_PAGE: i64 = 500;
/// At most this many candidates read per pass, due or held back.
const PURGE_SCAN: usize = 10_000;

/// Empties the input and output of up to `limit` tasks due for the purge at `now_ms` (see
/// [`rules::retention`]), oldest first, passing over the tasks an undecided QA group holds.
/// `purge_after` is removed with the content, so the partial index on it holds only what is
/// still to purge. Old versions of a document are WiredTiger's to reclaim (see the README).
pub(super) async fn purge_task_data(
    tx: &mut Tx<'_>,
    now_ms: i64,
    grace_ms: i64,
    limit: u32,
) -> R<PurgedTasks> {
    let db = tx.db;
    let due_by = rules::retention::due_by(grace_ms, now_ms);
    let limit = limit as usize;
    let mut due: Vec<String> = Vec::new();
    let mut after: Option<(i64, String)> = None;
    let mut scanned = 0;
    let mut more = false;
    loop {
        let filter = match &after {
            None => doc! { "purge_after": { "$lte": due_by } },
            Some((at, id)) => doc! { "$or": [
                { "purge_after": { "$gt": at, "$lte": due_by } },
                { "purge_after": at, "_id": { "$gt": id } },
            ] },
        };
        let page = tx
            .fields(
                &db.tasks,
                filter,
                doc! { "purge_after": 1, "_id": 1 },
                PURGE_PAGE,
                doc! { "_id": 1, "purge_after": 1, "qa_group": 1 },
            )
            .await?;
        let full = page.len() as i64 == PURGE_PAGE;
        scanned += page.len();
        let groups: Vec<&str> = page
            .iter()
            .filter_map(|d| d.get_str("qa_group").ok())
            .collect();
        let undecided: Vec<String> = if groups.is_empty() {
            Vec::new()
        } else {
            tx.many(
                &db.qa_groups,
                doc! { "_id": { "$in": groups }, "state": { "$in": ["open", "tiebreak"] } },
                doc! {},
                None,
            )
            .await?
            .into_iter()
            .map(|g| g.id)
            .collect()
        };
        for d in &page {
            let (Ok(id), Ok(at)) = (d.get_str("_id"), d.get_i64("purge_after")) else {
                continue;
            };
            after = Some((at, id.to_string()));
            let held = d
                .get_str("qa_group")
                .is_ok_and(|g| undecided.iter().any(|u| u == g));
            if held {
                continue;
            }
            if due.len() == limit {
                more = true;
                break;
            }
            due.push(id.to_string());
        }
        if more || !full || scanned >= PURGE_SCAN {
            more |= full && due.len() < limit;
            break;
        }
    }
    // The feed's shared log carries the outputs it told buyers of (for an hour, its TTL):
    // whatever is as old as the cutoff goes too. The change streams that delivered them do not
    // read this collection back.
    // (A date past year 9999 is refused by some servers and drivers.)
    let before = mongodb::bson::DateTime::from_millis(due_by.clamp(0, 253_402_300_799_999));
    tx.delete(&db.events, doc! { "at": { "$lte": before } })
        .await?;
    if due.is_empty() {
        return Ok(PurgedTasks { purged: 0, more });
    }
    let purged = tx
        .update_many(
            &db.tasks,
            doc! { "_id": { "$in": &due }, "purge_after": { "$exists": true } },
            doc! {
                "$set": { "input": "", "purged_at": now_ms },
                "$unset": { "output": "", "purge_after": "" },
            },
        )
        .await?;
    Ok(PurgedTasks { purged, more })
}

/// Up to `limit` tasks that ended without a `purge_after` (before the purge existed) get theirs,
/// as if they ended now: the end of their lot's window, or their end. Returns how many.
pub(super) async fn schedule_unscheduled(tx: &mut Tx<'_>, limit: u32) -> R<u64> {
    let db = tx.db;
    let found = tx
        .fields(
            &db.tasks,
            doc! {
                "completed_at": { "$type": "long" },
                "purge_after": { "$exists": false },
                "purged_at": { "$exists": false },
            },
            doc! { "_id": 1 },
            i64::from(limit),
            doc! { "_id": 1, "seq": 1, "completed_at": 1 },
        )
        .await?;
    let mut scheduled = 0;
    for d in &found {
        let (Ok(id), Ok(seq), Ok(ended)) = (
            d.get_str("_id"),
            d.get_i64("seq"),
            d.get_i64("completed_at"),
        ) else {
            continue;
        };
        let lot = tx.one(&db.lots, doc! { "_id": seq }).await?;
        let after = rules::retention::purge_after_ms(ended, lot.map(|l| l.release_at));
        if tx
            .update(
                &db.tasks,
                doc! { "_id": id, "purge_after": { "$exists": false }, "purged_at": { "$exists": false } },
                doc! { "$set": { "purge_after": after } },
            )
            .await?
        {
            scheduled += 1;
        }
    }
    Ok(scheduled)
}
