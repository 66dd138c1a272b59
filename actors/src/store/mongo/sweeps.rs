//! What the Supervisor sweeps: overdue and stale tasks, lots due for release. Every node's
//! Supervisor sweeps; the writes are guarded, so each task and lot is handled once.

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
