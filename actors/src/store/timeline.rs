//! A task's timeline for the admin console, put together from what the store keeps anyway: the
//! task row (posted, submitted, credited), one claim row per attempt (claimed by whom), the lot
//! (settled, unfrozen or reversed), the QA group and its verdict, and `task_events` — the one
//! table written only for the timeline, and only off the hot path: expiries, releases, undone
//! claims and sweep failures. A lifecycle that goes post → claim → submit → unfreeze writes
//! nothing extra for its timeline.
//!
//! Offers the Dispatcher made that no worker took leave no trace: an offer changes nothing
//! until its claim commits, and the claim is what is shown.

use serde::Serialize;
use serde_json::{Value, json};

/// The task's own facts.
#[derive(Debug, Clone, Default)]
pub struct TimelineTask {
    pub task_id: String,
    pub buyer_id: String,
    pub task_type: String,
    pub price_cents: i64,
    pub status: String,
    pub worker_id: Option<String>,
    pub timeout_seconds: i64,
    pub created_ms: i64,
    pub completed_ms: Option<i64>,
    pub credited_ms: Option<i64>,
    pub earned_cents: Option<i64>,
    pub commission_cents: Option<i64>,
    /// `buyer`, or `platform` for a QA copy or benchmark.
    pub funded_by: String,
    pub qa_group: Option<String>,
    pub qa_role: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ClaimRow {
    pub attempt: i64,
    pub worker_id: String,
    pub claimed_ms: i64,
}

/// A row of `task_events`.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub at_ms: i64,
    pub event: String,
    pub actor: String,
    pub details: Value,
}

#[derive(Debug, Clone)]
pub struct LotRow {
    pub worker_id: String,
    pub amount_cents: i64,
    pub commission_cents: i64,
    pub deducted_cents: i64,
    pub created_ms: i64,
    pub release_ms: i64,
    pub status: String,
}

#[derive(Debug, Clone)]
pub struct GroupRow {
    pub group_id: String,
    pub qa_type: String,
    pub task_id: String,
    pub qa_task_id: String,
    pub tiebreak_task_id: Option<String>,
    pub state: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone)]
pub struct VerdictRow {
    pub verdict: String,
    pub similarity: f64,
    pub blamed_worker_id: Option<String>,
    pub decided_ms: i64,
}

/// Everything a store reads for one task's timeline.
#[derive(Debug, Clone, Default)]
pub struct TimelineParts {
    pub task: TimelineTask,
    pub claims: Vec<ClaimRow>,
    pub events: Vec<StoredEvent>,
    pub lot: Option<LotRow>,
    pub group: Option<GroupRow>,
    pub verdict: Option<VerdictRow>,
}

/// One event of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TimelineEvent {
    #[serde(skip)]
    pub at_ms: i64,
    /// RFC 3339.
    pub at: String,
    /// posted, claimed, expired, released, unclaimed, failed, submitted, unfrozen, credited,
    /// held, qa_copy, qa_verdict, qa_deduction.
    pub event: String,
    /// Who or what did it: a buyer, worker or admin id, or an actor (Dispatcher, Supervisor,
    /// QaComparator).
    pub actor: String,
    #[schema(value_type = Object)]
    pub details: Value,
}

fn ev(at_ms: i64, event: &str, actor: &str, details: Value) -> TimelineEvent {
    TimelineEvent {
        at_ms,
        at: crate::clock::rfc3339(at_ms),
        event: event.to_string(),
        actor: actor.to_string(),
        details,
    }
}

/// The events in time order (ties keep the order of the task's life).
pub fn assemble(p: TimelineParts) -> Vec<TimelineEvent> {
    let t = &p.task;
    let mut out = Vec::new();
    let poster = if t.funded_by == "buyer" {
        t.buyer_id.as_str()
    } else {
        "QaComparator"
    };
    out.push(ev(
        t.created_ms,
        "posted",
        poster,
        json!({
            "type": t.task_type, "price_cents": t.price_cents, "timeout_seconds": t.timeout_seconds,
            "funded_by": t.funded_by, "qa_role": t.qa_role,
            "escrowed_cents": t.price_cents,
        }),
    ));
    for c in &p.claims {
        out.push(ev(
            c.claimed_ms,
            "claimed",
            &c.worker_id,
            json!({
                "attempt": c.attempt,
                "deadline": crate::clock::rfc3339(c.claimed_ms + t.timeout_seconds * 1000),
                "offered_by": "Dispatcher",
            }),
        ));
    }
    for e in &p.events {
        out.push(ev(e.at_ms, &e.event, &e.actor, e.details.clone()));
    }
    if let Some(done) = t.completed_ms {
        out.push(ev(
            done,
            "submitted",
            t.worker_id.as_deref().unwrap_or(""),
            json!({
                "settled": true,
                "earned_cents": t.earned_cents, "commission_cents": t.commission_cents,
            }),
        ));
    }
    if let Some(g) = &p.group {
        let role = if g.qa_task_id == t.task_id || g.tiebreak_task_id.as_deref() == Some(&t.task_id)
        {
            "copy"
        } else {
            "original"
        };
        out.push(ev(
            g.created_ms,
            "qa_copy",
            "QaComparator",
            json!({
                "group_id": g.group_id, "qa_type": g.qa_type, "this_task_is": role,
                "original_task_id": g.task_id, "copy_task_id": g.qa_task_id,
                "tiebreak_task_id": g.tiebreak_task_id, "state": g.state,
            }),
        ));
    }
    if let Some(v) = &p.verdict {
        out.push(ev(
            v.decided_ms,
            "qa_verdict",
            "QaComparator",
            json!({
                "verdict": v.verdict, "similarity": v.similarity,
                "blamed_worker_id": v.blamed_worker_id,
            }),
        ));
    }
    if let Some(lot) = &p.lot {
        if lot.deducted_cents > 0 {
            let at = p.verdict.as_ref().map_or(lot.created_ms, |v| v.decided_ms);
            out.push(ev(
                at,
                "qa_deduction",
                "QaComparator",
                json!({ "deducted_cents": lot.deducted_cents, "worker_id": lot.worker_id }),
            ));
        }
        match lot.status.as_str() {
            "released" => out.push(ev(
                lot.release_ms,
                "unfrozen",
                "Supervisor",
                json!({
                    "worker_id": lot.worker_id,
                    "released_cents": lot.amount_cents - lot.deducted_cents,
                }),
            )),
            "held" => out.push(ev(
                lot.release_ms,
                "held",
                "QaComparator",
                json!({ "worker_id": lot.worker_id, "why": "the worker was banned" }),
            )),
            _ => {}
        }
    }
    if let Some(at) = t.credited_ms {
        out.push(ev(
            at,
            "credited",
            &t.buyer_id,
            json!({ "credited_cents": t.price_cents, "reversed_earning_cents": p.lot.as_ref().map(|l| l.amount_cents) }),
        ));
    }
    out.sort_by_key(|e| e.at_ms);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lifecycle_reads_in_order_from_the_rows_it_left() {
        let parts = TimelineParts {
            task: TimelineTask {
                task_id: "t1".into(),
                buyer_id: "b1".into(),
                task_type: "chat".into(),
                price_cents: 2,
                status: "completed".into(),
                worker_id: Some("w2".into()),
                timeout_seconds: 60,
                created_ms: 1_000,
                completed_ms: Some(90_000),
                earned_cents: Some(1),
                commission_cents: Some(1),
                funded_by: "buyer".into(),
                ..TimelineTask::default()
            },
            claims: vec![
                ClaimRow {
                    attempt: 1,
                    worker_id: "w1".into(),
                    claimed_ms: 2_000,
                },
                ClaimRow {
                    attempt: 2,
                    worker_id: "w2".into(),
                    claimed_ms: 63_000,
                },
            ],
            events: vec![StoredEvent {
                at_ms: 62_000,
                event: "expired".into(),
                actor: "w1".into(),
                details: json!({"attempt": 1, "requeued": true}),
            }],
            lot: Some(LotRow {
                worker_id: "w2".into(),
                amount_cents: 1,
                commission_cents: 1,
                deducted_cents: 0,
                created_ms: 90_000,
                release_ms: 90_000 + 86_400_000,
                status: "released".into(),
            }),
            group: None,
            verdict: None,
        };
        let events: Vec<_> = assemble(parts)
            .into_iter()
            .map(|e| format!("{} {}", e.event, e.actor))
            .collect();
        assert_eq!(
            events,
            [
                "posted b1",
                "claimed w1",
                "expired w1",
                "claimed w2",
                "submitted w2",
                "unfrozen Supervisor"
            ]
        );
    }
}
