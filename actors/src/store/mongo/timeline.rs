//! A task's timeline: the documents it left (see `store/timeline.rs`), and the `task_events`
//! written off the hot path.

use super::*;
use crate::store::timeline::*;

/// One `task_events` document.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(super) struct TaskEventDoc {
    #[serde(rename = "_id")]
    pub id: mongodb::bson::oid::ObjectId,
    pub task_id: String,
    pub at: i64,
    pub event: String,
    pub actor: String,
    /// JSON text.
    pub details: String,
}

impl Tx<'_> {
    /// Notes what happened to a task for its timeline.
    pub(super) async fn task_event(
        &mut self,
        task_id: &str,
        event: &str,
        actor: &str,
        details: Value,
        now_ms: i64,
    ) -> R<()> {
        let db = self.db;
        let doc = TaskEventDoc {
            id: mongodb::bson::oid::ObjectId::new(),
            task_id: task_id.to_string(),
            at: now_ms,
            event: event.to_string(),
            actor: actor.to_string(),
            details: details.to_string(),
        };
        self.insert(&db.task_events, &doc).await
    }
}

pub(super) async fn read(tx: &mut Tx<'_>, task_id: &str) -> R<Option<TimelineParts>> {
    let db = tx.db;
    let Some(t) = tx.one(&db.tasks, doc! { "_id": task_id }).await? else {
        return Ok(None);
    };
    let task = TimelineTask {
        task_id: t.id.clone(),
        buyer_id: t.buyer_id.clone(),
        task_type: t.task_type.clone(),
        price_cents: t.price_cents,
        status: t.status.clone(),
        worker_id: t.worker_id.clone(),
        timeout_seconds: t.timeout_seconds,
        created_ms: t.created_at,
        completed_ms: t.completed_at,
        credited_ms: t.credited_at,
        earned_cents: t.earned_cents,
        commission_cents: t.commission_cents,
        funded_by: t.funded_by.clone(),
        qa_group: t.qa_group.clone(),
        qa_role: t.qa_role.clone(),
    };
    let claims = tx
        .many(
            &db.claims,
            doc! { "task_id": task_id },
            doc! { "attempt": 1 },
            None,
        )
        .await?
        .into_iter()
        .map(|c| ClaimRow {
            attempt: c.attempt,
            worker_id: c.worker_id,
            claimed_ms: c.claimed_at,
        })
        .collect();
    let events = tx
        .many(
            &db.task_events,
            doc! { "task_id": task_id },
            doc! { "_id": 1 },
            None,
        )
        .await?
        .into_iter()
        .map(|e| StoredEvent {
            at_ms: e.at,
            event: e.event,
            actor: e.actor,
            details: serde_json::from_str(&e.details).unwrap_or(Value::Null),
        })
        .collect();
    let lot = tx
        .one(&db.lots, doc! { "task_id": task_id })
        .await?
        .map(|l| LotRow {
            worker_id: l.worker_id,
            amount_cents: l.amount_cents,
            commission_cents: l.commission_cents,
            deducted_cents: l.deducted_cents,
            created_ms: l.created_at,
            release_ms: l.release_at,
            status: l.status,
        });
    let (group, verdict) = match &task.qa_group {
        None => (None, None),
        Some(g) => {
            let group = tx
                .one(&db.qa_groups, doc! { "_id": g.as_str() })
                .await?
                .map(|q| GroupRow {
                    group_id: q.id,
                    qa_type: q.qa_type,
                    task_id: q.task_id,
                    qa_task_id: q.qa_task_id,
                    tiebreak_task_id: q.tiebreak_task_id,
                    state: q.state,
                    created_ms: q.created_at,
                });
            let verdict = tx
                .one(&db.qa_results, doc! { "group_id": g.as_str() })
                .await?
                .map(|r| VerdictRow {
                    verdict: r.verdict,
                    similarity: r.similarity,
                    blamed_worker_id: r.blamed_worker_id,
                    decided_ms: r.decided_at,
                });
            (group, verdict)
        }
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
