//! What the store keeps of notifications: one row per user and thing that happened to them,
//! written in the same transaction as the thing itself, and handed to the commit observer once
//! committed (which pushes it live).

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRecord {
    pub seq: i64,
    pub notification_id: String,
    pub user_id: String,
    /// What happened: `bounty.submission`, `submission.approved`, `auto_release_warning`…
    pub kind: String,
    /// The objects it is about, with their ids.
    pub data: Value,
    pub created_at_ms: i64,
    pub read_at_ms: Option<i64>,
}

impl NotificationRecord {
    /// As clients see it, over HTTP and live.
    pub fn wire(&self) -> Value {
        serde_json::json!({
            "notification_id": self.notification_id,
            "kind": self.kind,
            "data": self.data,
            "created_at": crate::clock::rfc3339(self.created_at_ms),
            "read": self.read_at_ms.is_some(),
            "read_at": self.read_at_ms.map(crate::clock::rfc3339),
        })
    }
}

/// Which of a user's notifications to list, newest first.
#[derive(Debug, Clone)]
pub struct NotificationFilter {
    pub user_id: String,
    pub unread_only: bool,
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// A live event of one bounty's stream (`GET /api/bounties/{id}/events`): told to the commit
/// observer, not stored. It names submissions by id and position, never by worker, and carries
/// no content or reasons: everyone who submitted watches the same stream.
#[derive(Debug, Clone, PartialEq)]
pub struct BountyEvent {
    pub bounty_id: String,
    pub data: Value,
}

/// What a step of the bounty flow tells: notifications to store, the event of the bounty's
/// stream, and the event for the buyer's webhooks.
#[derive(Debug, Clone, PartialEq)]
pub struct Told {
    pub notices: Vec<Notice>,
    pub event: Option<BountyEvent>,
    pub hook: Option<super::HookEvent>,
}

/// A notification to store, before it has an id.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub user_id: String,
    pub kind: &'static str,
    pub data: Value,
}

/// The notifications of the bounty flow, the same from every store.
pub mod bounty {
    use serde_json::json;

    use super::{Notice, Told};
    use crate::clock::rfc3339;
    use crate::store::HookEvent;
    use crate::store::{BountyRecord, DisputeRecord, SubmissionRecord};

    fn notice(user_id: &str, kind: &'static str, data: serde_json::Value) -> Notice {
        Notice {
            user_id: user_id.to_string(),
            kind,
            data,
        }
    }

    /// A worker submitted: the buyer is told. `b` is the bounty after it.
    pub fn submitted(b: &BountyRecord, s: &SubmissionRecord) -> Told {
        let data = json!({
            "bounty_id": b.bounty_id, "title": b.title, "submission_id": s.submission_id,
            "position": s.position, "auto_release_at": s.review_due_ms.map(rfc3339),
        });
        Told {
            hook: Some(HookEvent::new(
                &b.buyer_id,
                "bounty.submission",
                data.clone(),
            )),
            notices: vec![notice(&b.buyer_id, "bounty.submission", data)],
            event: Some(event(b, "submission", Some(s), json!({}))),
        }
    }

    /// A review, as it left the bounty and the submission: an approval tells the winner (and the
    /// buyer, when it was the Supervisor's), a rejection tells the worker the buyer's reason and
    /// until when it may dispute.
    pub fn reviewed(b: &BountyRecord, s: &SubmissionRecord) -> Told {
        if s.status == crate::rules::bounty::SubmissionStatus::Approved {
            let data = json!({
                "bounty_id": b.bounty_id, "title": b.title, "submission_id": s.submission_id,
                "paid_cents": s.paid_cents, "auto_approved": s.auto_approved,
            });
            let mut notices = vec![notice(&s.worker_id, "submission.approved", data.clone())];
            // The buyer did not decide: it is told who did.
            if s.auto_approved || b.review == crate::rules::bounty::Review::Consensus {
                notices.push(notice(&b.buyer_id, "bounty.completed", data.clone()));
            }
            let extra = json!({ "auto_approved": s.auto_approved });
            return Told {
                // The buyer's systems hear of every approval, theirs too.
                hook: Some(HookEvent::new(&b.buyer_id, "bounty.completed", data)),
                notices,
                event: Some(event(b, "approved", Some(s), extra)),
            };
        }
        let data = json!({
            "bounty_id": b.bounty_id, "title": b.title, "submission_id": s.submission_id,
            "reason": s.reason, "dispute_until": s.dispute_due_ms.map(rfc3339),
        });
        let mut notices = vec![notice(&s.worker_id, "submission.rejected", data.clone())];
        if b.review == crate::rules::bounty::Review::Consensus {
            notices.push(notice(&b.buyer_id, "submission.rejected", data));
        }
        Told {
            notices,
            event: Some(event(b, "rejected", Some(s), json!({}))),
            hook: None,
        }
    }

    /// To a validator asked to vote on a submission (it reads the bounty and the content with
    /// `GET /api/worker/votes`).
    pub fn vote_requested(b: &BountyRecord, s: &SubmissionRecord, validator_id: &str) -> Notice {
        notice(
            validator_id,
            "vote.requested",
            json!({
                "bounty_id": b.bounty_id, "title": b.title, "submission_id": s.submission_id,
                "position": s.position, "fee_cents": b.terms.validator_fee_cents,
            }),
        )
    }

    /// To a validator, once the vote it took part in is decided: whether it sided with the
    /// majority, and what it was paid. `s` is the submission after the decision.
    pub fn vote_decided(
        b: &BountyRecord,
        s: &SubmissionRecord,
        validator_id: &str,
        with_majority: bool,
        paid_cents: i64,
    ) -> Notice {
        notice(
            validator_id,
            "vote.decided",
            json!({
                "bounty_id": b.bounty_id, "submission_id": s.submission_id,
                "decision": s.status, "with_majority": with_majority, "paid_cents": paid_cents,
            }),
        )
    }

    /// To a worker whose submission the bounty's end closed.
    pub fn closed(b: &BountyRecord, worker_id: &str, submission_id: &str) -> Notice {
        notice(
            worker_id,
            "submission.closed",
            json!({
                "bounty_id": b.bounty_id, "title": b.title, "submission_id": submission_id,
            }),
        )
    }

    /// A worker disputes a rejection: the buyer is told.
    pub fn dispute_opened(b: &BountyRecord, d: &DisputeRecord) -> Told {
        let data = json!({
            "dispute_id": d.dispute_id, "bounty_id": d.bounty_id,
            "submission_id": d.submission_id, "reason": d.reason,
        });
        let extra = json!({ "submission_id": d.submission_id, "dispute_id": d.dispute_id });
        Told {
            hook: Some(HookEvent::new(&d.buyer_id, "dispute.opened", data.clone())),
            notices: vec![notice(&d.buyer_id, "dispute.opened", data)],
            event: Some(event(b, "disputed", None, extra)),
        }
    }

    /// An admin resolved a dispute: both sides are told how. `b` is the bounty after it.
    pub fn dispute_resolved(b: &BountyRecord, d: &DisputeRecord) -> Told {
        let data = json!({
            "dispute_id": d.dispute_id, "bounty_id": d.bounty_id, "submission_id": d.submission_id,
            "outcome": d.outcome.map(|o| o.as_str()), "worker_pct": d.worker_pct,
            "worker_cents": d.worker_cents, "refund_cents": d.refund_cents,
        });
        let extra = json!({
            "submission_id": d.submission_id, "dispute_id": d.dispute_id,
            "outcome": d.outcome.map(|o| o.as_str()),
        });
        Told {
            hook: Some(HookEvent::new(
                &d.buyer_id,
                "dispute.resolved",
                data.clone(),
            )),
            notices: vec![
                notice(&d.worker_id, "dispute.resolved", data.clone()),
                notice(&d.buyer_id, "dispute.resolved", data),
            ],
            event: Some(event(b, "resolved", None, extra)),
        }
    }

    /// To the buyer, a day before a submission is approved automatically.
    pub fn auto_release_warning(
        buyer_id: &str,
        bounty_id: &str,
        submission_id: &str,
        at_ms: i64,
    ) -> Notice {
        notice(
            buyer_id,
            "auto_release_warning",
            json!({
                "bounty_id": bounty_id, "submission_id": submission_id,
                "auto_release_at": rfc3339(at_ms),
            }),
        )
    }

    /// An event of the bounty's own stream: `kind` (submission, approved, rejected, disputed,
    /// resolved, expired, cancelled), the bounty's status after it, and the submission it is
    /// about, if any.
    pub fn event(
        b: &BountyRecord,
        kind: &str,
        s: Option<&SubmissionRecord>,
        extra: serde_json::Value,
    ) -> super::BountyEvent {
        let mut data = json!({
            "bounty_id": b.bounty_id, "kind": kind, "status": b.status,
            "submissions": b.submissions,
        });
        if let (Some(d), Some(s)) = (data.as_object_mut(), s) {
            d.insert("submission_id".into(), json!(s.submission_id));
            d.insert("position".into(), json!(s.position));
            d.insert("submission_status".into(), json!(s.status));
        }
        if let (Some(d), serde_json::Value::Object(e)) = (data.as_object_mut(), extra) {
            d.extend(e);
        }
        super::BountyEvent {
            bounty_id: b.bounty_id.clone(),
            data,
        }
    }

    /// Nobody won before the deadline and the escrow is back: the buyer is told.
    pub fn expired(b: &BountyRecord) -> Told {
        let data = json!({
            "bounty_id": b.bounty_id, "title": b.title, "refund_cents": b.reward_cents,
        });
        Told {
            hook: Some(HookEvent::new(&b.buyer_id, "bounty.expired", data.clone())),
            notices: vec![notice(&b.buyer_id, "bounty.expired", data)],
            event: Some(event(b, "expired", None, json!({}))),
        }
    }

    /// The buyer cancelled (nobody had submitted, so nobody else is told).
    pub fn cancelled(b: &BountyRecord) -> Told {
        Told {
            notices: Vec::new(),
            event: Some(event(b, "cancelled", None, json!({}))),
            hook: None,
        }
    }
}
