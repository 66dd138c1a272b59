//! Bounties: posting with the reward into escrow, reading, listing, cancelling; submissions,
//! reviews, disputes and their resolution.

use serde::{Deserialize, Serialize};

use super::*;
use crate::rules::bounty::{
    self, BountyStatus, DisputeStatus, Outcome, Payout, Review, SubmissionStatus, Terms,
};
use crate::store::notification::bounty as notice;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct BountyDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub seq: i64,
    pub buyer_id: String,
    pub title: String,
    pub description: String,
    #[serde(default)]
    pub criteria: Option<String>,
    pub reward_cents: i64,
    pub deadline: i64,
    pub max_submissions: i64,
    pub review: String,
    /// The terms in force when it was posted.
    pub terms: Terms,
    pub status: String,
    pub submissions: i64,
    pub created_at: i64,
    #[serde(default)]
    pub settled_at: Option<i64>,
}

impl BountyDoc {
    fn record(self) -> R<BountyRecord> {
        let bad =
            |what: &str| Fail::Engine(EngineError::internal(format!("bounty {what} is not valid")));
        Ok(BountyRecord {
            seq: self.seq,
            review: Review::parse(&self.review).ok_or_else(|| bad("review"))?,
            status: BountyStatus::parse(&self.status).ok_or_else(|| bad("status"))?,
            bounty_id: self.id,
            buyer_id: self.buyer_id,
            title: self.title,
            description: self.description,
            criteria: self.criteria,
            reward_cents: self.reward_cents,
            deadline_ms: self.deadline,
            max_submissions: u32::try_from(self.max_submissions).unwrap_or(0),
            terms: self.terms,
            submissions: u32::try_from(self.submissions).unwrap_or(0),
            created_at_ms: self.created_at,
            settled_at_ms: self.settled_at,
        })
    }
}

pub(super) async fn read_bounty(tx: &mut Tx<'_>, id: &str) -> R<Option<BountyRecord>> {
    let db = tx.db;
    match tx.one(&db.bounties, doc! { "_id": id }).await? {
        Some(d) => Ok(Some(d.record()?)),
        None => Ok(None),
    }
}

pub(super) async fn post_bounty(tx: &mut Tx<'_>, b: &NewBounty) -> R<BountyRecord> {
    if let Some(first) = tx.replay(b.idem.as_ref()).await? {
        return Ok(first);
    }
    let db = tx.db;
    let Some(available) = tx.available(&b.buyer_id).await? else {
        return Err(Fail::Engine(EngineError::NotFound("no such buyer".into())));
    };
    if available < b.reward_cents {
        return Err(Fail::Engine(EngineError::InsufficientBalance {
            needed_cents: b.reward_cents,
            available_cents: available,
        }));
    }
    let seq = db.next_seq("bounties").await?;
    let d = BountyDoc {
        id: b.bounty_id.clone(),
        seq,
        buyer_id: b.buyer_id.clone(),
        title: b.title.clone(),
        description: b.description.clone(),
        criteria: b.criteria.clone(),
        reward_cents: b.reward_cents,
        deadline: b.deadline_ms,
        max_submissions: i64::from(b.max_submissions),
        review: b.review.as_str().to_string(),
        terms: b.terms,
        status: BountyStatus::Open.as_str().to_string(),
        submissions: 0,
        created_at: b.now_ms,
        settled_at: None,
    };
    tx.insert(&db.bounties, &d).await?;
    tx.apply(
        &bounty::escrow_entry(&b.bounty_id, &b.buyer_id, b.reward_cents),
        b.now_ms,
    )
    .await?;
    let record = d.record()?;
    tx.remember(b.idem.as_ref(), &record, b.now_ms).await?;
    Ok(record)
}

pub(super) async fn bounties(tx: &mut Tx<'_>, f: &BountyFilter) -> R<Vec<BountyRecord>> {
    let db = tx.db;
    let mut filter = doc! {};
    if let Some(b) = &f.buyer_id {
        filter.insert("buyer_id", b);
    }
    if let Some(w) = &f.worker_id {
        // A worker submits once per bounty: its submissions name its bounties.
        let ids: Vec<String> = tx
            .many(
                &db.submissions,
                doc! { "worker_id": w },
                doc! { "_id": 1 },
                None,
            )
            .await?
            .into_iter()
            .map(|s| s.bounty_id)
            .collect();
        filter.insert("_id", doc! { "$in": ids });
    }
    let status = f.status.map(|s| s.as_str());
    let found = tx
        .newest(&db.bounties, filter, status, f.before_seq, f.limit)
        .await?;
    found.into_iter().map(BountyDoc::record).collect()
}

pub(super) async fn cancel_bounty(
    tx: &mut Tx<'_>,
    bounty_id: &str,
    buyer_id: &str,
    now_ms: i64,
) -> R<BountyRecord> {
    let db = tx.db;
    let Some(b) = read_bounty(tx, bounty_id)
        .await?
        .filter(|b| b.buyer_id == buyer_id)
    else {
        return Err(Fail::Engine(EngineError::NotFound(format!(
            "no bounty {bounty_id}"
        ))));
    };
    bounty::check_cancel(b.status, b.submissions)?;
    let changed = tx
        .update(
            &db.bounties,
            doc! { "_id": bounty_id, "status": "open", "submissions": 0_i64 },
            doc! { "$set": { "status": BountyStatus::Cancelled.as_str(), "settled_at": now_ms } },
        )
        .await?;
    if !changed {
        return Err(Fail::Engine(EngineError::Conflict(
            "this bounty changed; read it again".into(),
        )));
    }
    tx.apply(
        &bounty::refund_entry(bounty_id, buyer_id, b.reward_cents),
        now_ms,
    )
    .await?;
    let after = read_bounty(tx, bounty_id)
        .await?
        .ok_or_else(|| Fail::Engine(EngineError::internal("bounty not found")))?;
    tx.tell(notice::cancelled(&after), now_ms).await?;
    Ok(after)
}

fn corrupt(what: &str) -> Fail {
    Fail::Engine(EngineError::internal(format!("{what} is not valid")))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SubmissionDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub bounty_id: String,
    pub worker_id: String,
    pub position: i64,
    /// The content as JSON text (kept exactly as sent).
    pub content: String,
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    pub submitted_at: i64,
    #[serde(default)]
    pub reviewed_at: Option<i64>,
    #[serde(default)]
    pub auto_approved: bool,
    /// The Supervisor's due times (see the SQLite schema); null once done with.
    #[serde(default)]
    pub warning_due: Option<i64>,
    #[serde(default)]
    pub review_due: Option<i64>,
    #[serde(default)]
    pub dispute_due: Option<i64>,
    #[serde(default)]
    pub paid_cents: i64,
    /// Consensus review: the votes so far (every vote moves one, so two votes at once collide
    /// here and one runs again), and when the next validators are asked.
    #[serde(default)]
    pub approvals: i64,
    #[serde(default)]
    pub rejections: i64,
    #[serde(default)]
    pub invite_due: Option<i64>,
}

/// A validator asked to vote on a submission, and its vote (see the SQLite schema).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct VoteDoc {
    /// `{submission_id}/{validator_id}`.
    #[serde(rename = "_id")]
    pub id: String,
    pub submission_id: String,
    pub validator_id: String,
    pub bounty_id: String,
    #[serde(default)]
    pub asked_at: Option<i64>,
    #[serde(default)]
    pub approve: Option<bool>,
    #[serde(default)]
    pub voted_at: Option<i64>,
    #[serde(default)]
    pub with_majority: Option<bool>,
}

fn vote_id(submission_id: &str, validator_id: &str) -> String {
    format!("{submission_id}/{validator_id}")
}

impl SubmissionDoc {
    fn record(self) -> R<SubmissionRecord> {
        Ok(SubmissionRecord {
            content: serde_json::from_str(&self.content)
                .map_err(|_| corrupt("submission content"))?,
            status: SubmissionStatus::parse(&self.status)
                .ok_or_else(|| corrupt("submission status"))?,
            position: u32::try_from(self.position).unwrap_or(0),
            submission_id: self.id,
            bounty_id: self.bounty_id,
            worker_id: self.worker_id,
            reason: self.reason,
            submitted_at_ms: self.submitted_at,
            reviewed_at_ms: self.reviewed_at,
            auto_approved: self.auto_approved,
            review_due_ms: self.review_due,
            dispute_due_ms: self.dispute_due,
            paid_cents: self.paid_cents,
            approvals: u32::try_from(self.approvals).unwrap_or(0),
            rejections: u32::try_from(self.rejections).unwrap_or(0),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct DisputeDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub seq: i64,
    pub bounty_id: String,
    pub submission_id: String,
    pub worker_id: String,
    pub buyer_id: String,
    pub reason: String,
    pub rejection_reason: String,
    pub status: String,
    pub opened_at: i64,
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub worker_pct: Option<i64>,
    #[serde(default)]
    pub worker_cents: i64,
    #[serde(default)]
    pub refund_cents: i64,
    #[serde(default)]
    pub resolved_at: Option<i64>,
    #[serde(default)]
    pub resolved_by: Option<String>,
}

impl DisputeDoc {
    fn record(self) -> R<DisputeRecord> {
        Ok(DisputeRecord {
            status: DisputeStatus::parse(&self.status).ok_or_else(|| corrupt("dispute status"))?,
            outcome: match self.outcome.as_deref() {
                None => None,
                Some(o) => Some(Outcome::parse(o).ok_or_else(|| corrupt("dispute outcome"))?),
            },
            worker_pct: self.worker_pct.and_then(|p| u32::try_from(p).ok()),
            seq: self.seq,
            dispute_id: self.id,
            bounty_id: self.bounty_id,
            submission_id: self.submission_id,
            worker_id: self.worker_id,
            buyer_id: self.buyer_id,
            reason: self.reason,
            rejection_reason: self.rejection_reason,
            opened_at_ms: self.opened_at,
            worker_cents: self.worker_cents,
            refund_cents: self.refund_cents,
            resolved_at_ms: self.resolved_at,
            resolved_by: self.resolved_by,
        })
    }
}

pub(super) async fn read_submission(tx: &mut Tx<'_>, id: &str) -> R<Option<SubmissionRecord>> {
    let db = tx.db;
    match tx.one(&db.submissions, doc! { "_id": id }).await? {
        Some(d) => Ok(Some(d.record()?)),
        None => Ok(None),
    }
}

pub(super) async fn submissions(tx: &mut Tx<'_>, f: &SubmissionFilter) -> R<Vec<SubmissionRecord>> {
    let db = tx.db;
    let mut filter = doc! {
        "bounty_id": &f.bounty_id,
        "position": { "$gt": i64::from(f.after_position.unwrap_or(0)) },
    };
    if let Some(w) = &f.worker_id {
        filter.insert("worker_id", w);
    }
    let found = tx
        .many(
            &db.submissions,
            filter,
            doc! { "position": 1 },
            Some(i64::from(f.limit)),
        )
        .await?;
    found.into_iter().map(SubmissionDoc::record).collect()
}

pub(super) async fn submit(tx: &mut Tx<'_>, s: &NewSubmission) -> R<SubmissionRecord> {
    let db = tx.db;
    let Some(b) = read_bounty(tx, &s.bounty_id).await? else {
        return Err(Fail::Engine(EngineError::NotFound(format!(
            "no bounty {}",
            s.bounty_id
        ))));
    };
    let already_submitted = tx
        .exists(
            &db.submissions,
            doc! { "bounty_id": &s.bounty_id, "worker_id": &s.worker_id },
        )
        .await?;
    bounty::check_submit(
        &bounty::SubmitFacts {
            status: b.status,
            deadline_ms: b.deadline_ms,
            max_submissions: b.max_submissions,
            submissions: b.submissions,
            already_submitted,
            is_owner: b.buyer_id == s.worker_id,
        },
        s.now_ms,
    )?;
    // Guarded on the count read: a submission that raced this one makes the command run again.
    let counted = tx
        .update(
            &db.bounties,
            doc! { "_id": &s.bounty_id, "status": "open", "submissions": i64::from(b.submissions) },
            doc! { "$inc": { "submissions": 1_i64 } },
        )
        .await?;
    if !counted {
        return Err(Fail::Retry);
    }
    let d = SubmissionDoc {
        id: s.submission_id.clone(),
        bounty_id: s.bounty_id.clone(),
        worker_id: s.worker_id.clone(),
        position: i64::from(b.submissions) + 1,
        content: serde_json::to_string(&s.content)
            .map_err(|e| Fail::Engine(EngineError::internal(e)))?,
        status: SubmissionStatus::Pending.as_str().to_string(),
        reason: None,
        submitted_at: s.now_ms,
        reviewed_at: None,
        auto_approved: false,
        warning_due: (b.review == Review::Manual)
            .then(|| bounty::warning_due_ms(s.now_ms, &b.terms)),
        review_due: Some(bounty::review_due_ms(s.now_ms, &b.terms)),
        dispute_due: None,
        paid_cents: 0,
        approvals: 0,
        rejections: 0,
        invite_due: None,
    };
    tx.insert(&db.submissions, &d).await?;
    let sub = d.record()?;
    let after = read_bounty(tx, &s.bounty_id)
        .await?
        .ok_or_else(|| Fail::Engine(EngineError::internal("bounty not found")))?;
    tx.tell(notice::submitted(&after, &sub), s.now_ms).await?;
    if after.review == Review::Consensus {
        let want = after.terms.validators;
        invite(tx, &after, &sub, &s.validator_tiers, want, s.now_ms).await?;
    }
    Ok(sub)
}

/// The (worker, submission) pairs a bounty's end closes: every submission but `except` still
/// pending, rejected or disputed.
async fn closing(tx: &mut Tx<'_>, bounty_id: &str, except: &str) -> R<Vec<(String, String)>> {
    let db = tx.db;
    let found = tx
        .many(
            &db.submissions,
            doc! {
                "bounty_id": bounty_id,
                "_id": { "$ne": except },
                "status": { "$in": ["pending", "rejected", "disputed"] },
            },
            doc! { "position": 1 },
            None,
        )
        .await?;
    Ok(found.into_iter().map(|s| (s.worker_id, s.id)).collect())
}

async fn open_disputes(tx: &mut Tx<'_>, bounty_id: &str) -> R<u32> {
    let db = tx.db;
    let n = tx
        .count(
            &db.disputes,
            doc! { "bounty_id": bounty_id, "status": "open" },
        )
        .await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Pays `won_cents` of a bounty's escrow to a submission's worker and the rest back to its
/// buyer, ends the bounty as `status`, closes its other submissions and disputes (as the SQLite
/// store's `settle`). Returns the worker's lot.
async fn settle(
    tx: &mut Tx<'_>,
    b: &BountyRecord,
    sub: &SubmissionRecord,
    won_cents: i64,
    status: BountyStatus,
    validators: &[String],
    now_ms: i64,
) -> R<i64> {
    let db = tx.db;
    let payout = Payout {
        bounty_id: &b.bounty_id,
        buyer_id: &b.buyer_id,
        worker_id: &sub.worker_id,
        won_cents,
        refund_cents: b.reward_cents - won_cents,
        fee_bp: b.terms.fee_bp,
        validators,
        validator_fee_cents: b.terms.validator_fee_cents,
    };
    let f = payout.figures();
    let ended = tx
        .update(
            &db.bounties,
            doc! { "_id": &b.bounty_id, "status": "open" },
            doc! { "$set": { "status": status.as_str(), "settled_at": now_ms } },
        )
        .await?;
    if !ended {
        return Err(Fail::Retry);
    }
    if won_cents > 0 {
        // Lot ids are drawn from the task sequence (a task's lot has its task's seq).
        let lot = LotDoc {
            id: db.next_seq("tasks").await?,
            worker_id: sub.worker_id.clone(),
            task_id: sub.submission_id.clone(),
            amount_cents: f.worker_cents,
            commission_cents: f.revenue_cents,
            created_at: now_ms,
            release_at: bounty::dispute_due_ms(now_ms, &b.terms),
            status: "frozen".into(),
            deducted_cents: 0,
        };
        tx.insert(&db.lots, &lot).await?;
    }
    let closed = closing(tx, &b.bounty_id, &sub.submission_id).await?;
    tx.update_many(
        &db.submissions,
        doc! {
            "bounty_id": &b.bounty_id,
            "_id": { "$ne": &sub.submission_id },
            "status": { "$in": ["pending", "rejected", "disputed"] },
        },
        doc! { "$set": {
            "status": SubmissionStatus::Closed.as_str(),
            "warning_due": Bson::Null, "review_due": Bson::Null, "dispute_due": Bson::Null,
            "invite_due": Bson::Null,
        } },
    )
    .await?;
    // Votes nobody will cast any more.
    tx.delete(
        &db.votes,
        doc! { "bounty_id": &b.bounty_id, "approve": Bson::Null },
    )
    .await?;
    tx.update_many(
        &db.disputes,
        doc! {
            "bounty_id": &b.bounty_id,
            "submission_id": { "$ne": &sub.submission_id },
            "status": "open",
        },
        doc! { "$set": { "status": DisputeStatus::Closed.as_str(), "resolved_at": now_ms } },
    )
    .await?;
    tx.apply(&payout.entry(), now_ms).await?;
    for (worker_id, submission_id) in closed {
        tx.notify(notice::closed(b, &worker_id, &submission_id), now_ms)
            .await?;
    }
    Ok(if won_cents > 0 { f.worker_cents } else { 0 })
}

pub(super) async fn review(tx: &mut Tx<'_>, r: &ReviewAsk) -> R<Reviewed> {
    if let Some(first) = tx.replay(r.idem.as_ref()).await? {
        return Ok(first);
    }
    let db = tx.db;
    let not_found = || {
        Fail::Engine(EngineError::NotFound(format!(
            "no submission {} to bounty {}",
            r.submission_id, r.bounty_id
        )))
    };
    let b = read_bounty(tx, &r.bounty_id)
        .await?
        .filter(|b| r.buyer_id.as_ref().is_none_or(|id| *id == b.buyer_id))
        .ok_or_else(not_found)?;
    let sub = read_submission(tx, &r.submission_id)
        .await?
        .filter(|s| s.bounty_id == b.bounty_id)
        .ok_or_else(not_found)?;
    if r.buyer_id.is_some() && b.review == Review::Consensus {
        return Err(Fail::Engine(EngineError::Conflict(
            "this bounty is reviewed by consensus: validators decide".into(),
        )));
    }
    let approve = r.verdict == Verdict::Approve;
    let open_disputes = open_disputes(tx, &b.bounty_id).await?;
    bounty::check_review(
        &bounty::ReviewFacts {
            bounty: b.status,
            submission: sub.status,
            open_disputes,
        },
        approve,
    )?;
    let update = match &r.verdict {
        Verdict::Approve => {
            let paid = settle(
                tx,
                &b,
                &sub,
                b.reward_cents,
                BountyStatus::Completed,
                &[],
                r.now_ms,
            )
            .await?;
            doc! { "$set": {
                "status": SubmissionStatus::Approved.as_str(), "reviewed_at": r.now_ms,
                "auto_approved": r.buyer_id.is_none(), "paid_cents": paid,
                "warning_due": Bson::Null, "review_due": Bson::Null,
            } }
        }
        Verdict::Reject { reason } => doc! { "$set": {
            "status": SubmissionStatus::Rejected.as_str(), "reason": reason,
            "reviewed_at": r.now_ms, "warning_due": Bson::Null, "review_due": Bson::Null,
            "dispute_due": bounty::dispute_due_ms(r.now_ms, &b.terms),
        } },
    };
    let reviewed = tx
        .update(
            &db.submissions,
            doc! { "_id": &sub.submission_id, "status": "pending" },
            update,
        )
        .await?;
    if !reviewed {
        return Err(Fail::Retry);
    }
    let out = Reviewed {
        bounty: read_bounty(tx, &b.bounty_id).await?.ok_or_else(not_found)?,
        submission: read_submission(tx, &sub.submission_id)
            .await?
            .ok_or_else(not_found)?,
    };
    tx.tell(notice::reviewed(&out.bounty, &out.submission), r.now_ms)
        .await?;
    tx.remember(r.idem.as_ref(), &out, r.now_ms).await?;
    Ok(out)
}

pub(super) async fn read_dispute(tx: &mut Tx<'_>, id: &str) -> R<Option<DisputeRecord>> {
    let db = tx.db;
    match tx.one(&db.disputes, doc! { "_id": id }).await? {
        Some(d) => Ok(Some(d.record()?)),
        None => Ok(None),
    }
}

pub(super) async fn disputes(tx: &mut Tx<'_>, f: &DisputeFilter) -> R<Vec<DisputeRecord>> {
    let db = tx.db;
    let status = f.status.map(|s| s.as_str());
    let found = tx
        .newest(&db.disputes, doc! {}, status, f.before_seq, f.limit)
        .await?;
    found.into_iter().map(DisputeDoc::record).collect()
}

pub(super) async fn open_dispute(tx: &mut Tx<'_>, d: &NewDispute) -> R<DisputeRecord> {
    let db = tx.db;
    let not_found = || {
        Fail::Engine(EngineError::NotFound(format!(
            "no submission {} of yours to bounty {}",
            d.submission_id, d.bounty_id
        )))
    };
    let sub = read_submission(tx, &d.submission_id)
        .await?
        .filter(|s| s.bounty_id == d.bounty_id && s.worker_id == d.worker_id)
        .ok_or_else(not_found)?;
    let b = read_bounty(tx, &d.bounty_id).await?.ok_or_else(not_found)?;
    bounty::check_dispute(
        &bounty::DisputeFacts {
            bounty: b.status,
            submission: sub.status,
            dispute_due_ms: sub.dispute_due_ms,
        },
        d.now_ms,
    )?;
    let marked = tx
        .update(
            &db.submissions,
            doc! { "_id": &d.submission_id, "status": "rejected" },
            doc! { "$set": { "status": SubmissionStatus::Disputed.as_str(), "dispute_due": Bson::Null } },
        )
        .await?;
    if !marked {
        return Err(Fail::Retry);
    }
    let doc = DisputeDoc {
        id: d.dispute_id.clone(),
        seq: db.next_seq("disputes").await?,
        bounty_id: d.bounty_id.clone(),
        submission_id: d.submission_id.clone(),
        worker_id: d.worker_id.clone(),
        buyer_id: b.buyer_id.clone(),
        reason: d.reason.clone(),
        rejection_reason: sub.reason.clone().unwrap_or_default(),
        status: DisputeStatus::Open.as_str().to_string(),
        opened_at: d.now_ms,
        outcome: None,
        worker_pct: None,
        worker_cents: 0,
        refund_cents: 0,
        resolved_at: None,
        resolved_by: None,
    };
    tx.insert(&db.disputes, &doc).await?;
    let opened = doc.record()?;
    tx.tell(notice::dispute_opened(&b, &opened), d.now_ms)
        .await?;
    Ok(opened)
}

pub(super) async fn resolve_dispute(tx: &mut Tx<'_>, r: &Resolution) -> R<Resolved> {
    if let Some(first) = tx.replay(r.idem.as_ref()).await? {
        return Ok(first);
    }
    let db = tx.db;
    let not_found = || {
        Fail::Engine(EngineError::NotFound(format!(
            "no dispute {}",
            r.dispute_id
        )))
    };
    let d = read_dispute(tx, &r.dispute_id)
        .await?
        .ok_or_else(not_found)?;
    bounty::check_resolve(d.status)?;
    let b = read_bounty(tx, &d.bounty_id).await?.ok_or_else(not_found)?;
    let sub = read_submission(tx, &d.submission_id)
        .await?
        .ok_or_else(not_found)?;
    let (won, refund) = bounty::resolution_parts(b.reward_cents, r.worker_pct);
    let paid = settle(tx, &b, &sub, won, BountyStatus::Resolved, &[], r.now_ms).await?;
    let resolved = tx
        .update(
            &db.disputes,
            doc! { "_id": &d.dispute_id, "status": "open" },
            doc! { "$set": {
                "status": DisputeStatus::Resolved.as_str(), "outcome": r.outcome.as_str(),
                "worker_pct": i64::from(r.worker_pct), "worker_cents": paid,
                "refund_cents": refund, "resolved_at": r.now_ms, "resolved_by": &r.by.id,
            } },
        )
        .await?;
    if !resolved {
        return Err(Fail::Retry);
    }
    tx.update(
        &db.submissions,
        doc! { "_id": &sub.submission_id },
        doc! { "$set": { "status": SubmissionStatus::Resolved.as_str(), "paid_cents": paid } },
    )
    .await?;
    tx.audit(
        &r.by,
        "dispute.resolve",
        &serde_json::json!({
            "dispute_id": d.dispute_id,
            "bounty_id": d.bounty_id,
            "submission_id": d.submission_id,
            "outcome": r.outcome.as_str(),
            "worker_pct": r.worker_pct,
            "worker_cents": paid,
            "refund_cents": refund,
        }),
        r.now_ms,
    )
    .await?;
    let out = Resolved {
        dispute: read_dispute(tx, &d.dispute_id)
            .await?
            .ok_or_else(not_found)?,
        bounty: read_bounty(tx, &b.bounty_id).await?.ok_or_else(not_found)?,
    };
    tx.tell(
        notice::dispute_resolved(&out.bounty, &out.dispute),
        r.now_ms,
    )
    .await?;
    tx.remember(r.idem.as_ref(), &out, r.now_ms).await?;
    Ok(out)
}

pub(super) async fn sweep(
    tx: &mut Tx<'_>,
    now_ms: i64,
    limit: u32,
    validator_tiers: &[String],
) -> R<BountySweep> {
    let db = tx.db;
    let mut out = BountySweep {
        invited: next_vote_rounds(tx, now_ms, limit, validator_tiers).await?,
        ..BountySweep::default()
    };
    let limit = i64::from(limit);
    let warn = tx
        .many(
            &db.submissions,
            doc! { "warning_due": { "$lte": now_ms }, "status": "pending" },
            doc! { "warning_due": 1 },
            Some(limit),
        )
        .await?;
    for s in warn {
        let Some(b) = read_bounty(tx, &s.bounty_id).await? else {
            continue;
        };
        let cleared = tx
            .update(
                &db.submissions,
                doc! { "_id": &s.id, "status": "pending", "warning_due": { "$ne": Bson::Null } },
                doc! { "$set": { "warning_due": Bson::Null } },
            )
            .await?;
        if cleared {
            let at = s.review_due.unwrap_or(now_ms);
            tx.notify(
                notice::auto_release_warning(&b.buyer_id, &s.bounty_id, &s.id, at),
                now_ms,
            )
            .await?;
            out.warned.push(Warned {
                bounty_id: s.bounty_id,
                buyer_id: b.buyer_id,
                submission_id: s.id,
                auto_release_at_ms: s.review_due.unwrap_or(now_ms),
            });
        }
    }

    let due = tx
        .many(
            &db.submissions,
            doc! { "review_due": { "$lte": now_ms }, "status": "pending" },
            doc! { "review_due": 1, "position": 1 },
            Some(limit),
        )
        .await?;
    for s in due {
        if open_disputes(tx, &s.bounty_id).await? > 0 {
            continue;
        }
        // An earlier approval in this pass may have closed it (one winner per bounty).
        if read_submission(tx, &s.id)
            .await?
            .is_none_or(|now| now.status != SubmissionStatus::Pending)
        {
            continue;
        }
        let ask = ReviewAsk {
            bounty_id: s.bounty_id,
            submission_id: s.id,
            buyer_id: None,
            verdict: Verdict::Approve,
            now_ms,
            idem: None,
        };
        out.approved.push(review(tx, &ask).await?);
    }

    // Oldest deadline first, page by page: bounties that cannot expire yet (waiting on a review
    // or a dispute) are passed over, up to EXPIRY_SCAN_PAGES pages a pass.
    let mut after: Option<(i64, String)> = None;
    for _ in 0..EXPIRY_SCAN_PAGES {
        let mut filter = doc! { "status": "open", "deadline": { "$lte": now_ms } };
        if let Some((deadline, id)) = &after {
            filter.insert(
                "$or",
                vec![
                    doc! { "deadline": { "$gt": deadline } },
                    doc! { "deadline": deadline, "_id": { "$gt": id } },
                ],
            );
        }
        let page = tx
            .many(
                &db.bounties,
                filter,
                doc! { "deadline": 1, "_id": 1 },
                Some(limit),
            )
            .await?;
        let Some(last) = page.last() else { break };
        after = Some((last.deadline, last.id.clone()));
        let full = page.len() as i64 == limit;
        for d in page {
            if let Some(expired) = expire(tx, d.record()?, now_ms).await? {
                out.expired.push(expired);
            }
        }
        if !full || out.expired.len() as i64 >= limit {
            break;
        }
    }
    Ok(out)
}

/// Pages of open bounties past their deadline one sweep reads at most (see `sweep`).
const EXPIRY_SCAN_PAGES: usize = 10;

/// Expires `b` and refunds it if nothing can still happen to it (`rules::bounty::expires`).
async fn expire(tx: &mut Tx<'_>, b: BountyRecord, now_ms: i64) -> R<Option<BountyRecord>> {
    let db = tx.db;
    let pending = tx
        .count(
            &db.submissions,
            doc! { "bounty_id": &b.bounty_id, "status": "pending" },
        )
        .await?;
    let last_rejection = tx
        .many(
            &db.submissions,
            doc! { "bounty_id": &b.bounty_id, "status": "rejected" },
            doc! { "dispute_due": -1 },
            Some(1),
        )
        .await?;
    let facts = bounty::ExpiryFacts {
        deadline_ms: b.deadline_ms,
        pending: u32::try_from(pending).unwrap_or(u32::MAX),
        open_disputes: open_disputes(tx, &b.bounty_id).await?,
        last_dispute_due_ms: last_rejection.first().and_then(|s| s.dispute_due),
    };
    if !bounty::expires(&facts, now_ms) {
        return Ok(None);
    }
    let expired = tx
        .update(
            &db.bounties,
            doc! { "_id": &b.bounty_id, "status": "open" },
            doc! { "$set": { "status": BountyStatus::Expired.as_str(), "settled_at": now_ms } },
        )
        .await?;
    if !expired {
        return Err(Fail::Retry);
    }
    for (worker_id, submission_id) in closing(tx, &b.bounty_id, "").await? {
        tx.notify(notice::closed(&b, &worker_id, &submission_id), now_ms)
            .await?;
    }
    tx.update_many(
        &db.submissions,
        doc! { "bounty_id": &b.bounty_id, "status": "rejected" },
        doc! { "$set": { "status": SubmissionStatus::Closed.as_str(), "dispute_due": Bson::Null } },
    )
    .await?;
    tx.delete(
        &db.votes,
        doc! { "bounty_id": &b.bounty_id, "approve": Bson::Null },
    )
    .await?;
    tx.apply(
        &bounty::refund_entry(&b.bounty_id, &b.buyer_id, b.reward_cents),
        now_ms,
    )
    .await?;
    let after = read_bounty(tx, &b.bounty_id)
        .await?
        .ok_or_else(|| Fail::Engine(EngineError::internal("bounty not found")))?;
    tx.tell(notice::expired(&after), now_ms).await?;
    Ok(Some(after))
}

/// Asks up to `want` validators not asked before to vote on `sub` (as the SQLite store's
/// `invite`), and sets when the next round is due. Returns how many were asked.
async fn invite(
    tx: &mut Tx<'_>,
    b: &BountyRecord,
    sub: &SubmissionRecord,
    tiers: &[String],
    want: u32,
    now_ms: i64,
) -> R<u32> {
    let db = tx.db;
    let mut excluded: Vec<String> = vec![b.buyer_id.clone()];
    let rivals = tx
        .many(
            &db.submissions,
            doc! { "bounty_id": &b.bounty_id },
            doc! { "position": 1 },
            None,
        )
        .await?;
    excluded.extend(rivals.into_iter().map(|s| s.worker_id));
    let asked = tx
        .many(
            &db.votes,
            doc! { "submission_id": &sub.submission_id },
            doc! { "_id": 1 },
            None,
        )
        .await?;
    excluded.extend(asked.into_iter().map(|v| v.validator_id));
    let chosen = if want == 0 {
        Vec::new()
    } else {
        tx.many(
            &db.workers,
            doc! {
                "_id": { "$nin": &excluded },
                "tier": { "$in": tiers },
                "banned_at": Bson::Null,
                "$or": [
                    { "suspended_until": Bson::Null },
                    { "suspended_until": { "$lte": now_ms } },
                ],
            },
            doc! { "last_seen": -1, "_id": 1 },
            Some(i64::from(want)),
        )
        .await?
    };
    for w in &chosen {
        let v = VoteDoc {
            id: vote_id(&sub.submission_id, &w.id),
            submission_id: sub.submission_id.clone(),
            validator_id: w.id.clone(),
            bounty_id: b.bounty_id.clone(),
            asked_at: Some(now_ms),
            approve: None,
            voted_at: None,
            with_majority: None,
        };
        tx.insert(&db.votes, &v).await?;
        tx.notify(notice::vote_requested(b, sub, &w.id), now_ms)
            .await?;
    }
    tx.update(
        &db.submissions,
        doc! { "_id": &sub.submission_id },
        doc! { "$set": { "invite_due": bounty::invite_due_ms(now_ms, &b.terms) } },
    )
    .await?;
    Ok(chosen.len() as u32)
}

/// The vote rounds due by `now_ms` (as the SQLite store's `next_vote_rounds`).
async fn next_vote_rounds(tx: &mut Tx<'_>, now_ms: i64, limit: u32, tiers: &[String]) -> R<u32> {
    let db = tx.db;
    let due = tx
        .many(
            &db.submissions,
            doc! { "invite_due": { "$lte": now_ms } },
            doc! { "invite_due": 1 },
            Some(i64::from(limit)),
        )
        .await?;
    let mut invited = 0;
    for d in due {
        let sub = d.record()?;
        let b = read_bounty(tx, &sub.bounty_id).await?;
        match b {
            Some(b)
                if sub.status == SubmissionStatus::Pending && b.status == BountyStatus::Open =>
            {
                let want = b
                    .terms
                    .validators
                    .saturating_sub(sub.approvals + sub.rejections);
                invited += invite(tx, &b, &sub, tiers, want, now_ms).await?;
            }
            _ => {
                tx.update(
                    &db.submissions,
                    doc! { "_id": &sub.submission_id },
                    doc! { "$set": { "invite_due": Bson::Null } },
                )
                .await?;
            }
        }
    }
    Ok(invited)
}

pub(super) async fn vote(tx: &mut Tx<'_>, v: &VoteAsk) -> R<Voted> {
    let db = tx.db;
    let not_found = || {
        Fail::Engine(EngineError::NotFound(format!(
            "no submission {} to bounty {}",
            v.submission_id, v.bounty_id
        )))
    };
    let b = read_bounty(tx, &v.bounty_id).await?.ok_or_else(not_found)?;
    let sub = read_submission(tx, &v.submission_id)
        .await?
        .filter(|s| s.bounty_id == b.bounty_id)
        .ok_or_else(not_found)?;
    let worker = tx
        .one(&db.workers, doc! { "_id": &v.validator_id })
        .await?
        .ok_or_else(|| Fail::Engine(EngineError::Unauthorized("unknown worker".into())))?;
    let submitted_to_bounty = tx
        .exists(
            &db.submissions,
            doc! { "bounty_id": &b.bounty_id, "worker_id": &v.validator_id },
        )
        .await?;
    let id = vote_id(&sub.submission_id, &v.validator_id);
    let asked = tx.one(&db.votes, doc! { "_id": &id }).await?;
    let tiers = bounty::validator_tiers(&v.cfg, &v.cfg.bounty.validator_min_tier);
    let open_disputes = open_disputes(tx, &b.bounty_id).await?;
    bounty::check_vote(&bounty::VoteFacts {
        review: b.review,
        bounty: b.status,
        submission: sub.status,
        tier_allowed: tiers.contains(&worker.tier),
        submitted_to_bounty,
        already_voted: asked.as_ref().is_some_and(|a| a.approve.is_some()),
        open_disputes,
    })?;
    match asked {
        Some(_) => {
            let cast = tx
                .update(
                    &db.votes,
                    doc! { "_id": &id, "approve": Bson::Null },
                    doc! { "$set": { "approve": v.approve, "voted_at": v.now_ms } },
                )
                .await?;
            if !cast {
                return Err(Fail::Retry);
            }
        }
        None => {
            let doc = VoteDoc {
                id: id.clone(),
                submission_id: sub.submission_id.clone(),
                validator_id: v.validator_id.clone(),
                bounty_id: b.bounty_id.clone(),
                asked_at: None,
                approve: Some(v.approve),
                voted_at: Some(v.now_ms),
                with_majority: None,
            };
            tx.insert(&db.votes, &doc).await?;
        }
    }
    // Guarded on the tally read: a vote that raced this one makes the command run again.
    let counter = if v.approve { "approvals" } else { "rejections" };
    let counted = tx
        .update(
            &db.submissions,
            doc! {
                "_id": &sub.submission_id, "status": "pending",
                "approvals": i64::from(sub.approvals), "rejections": i64::from(sub.rejections),
            },
            doc! { "$inc": { counter: 1_i64 } },
        )
        .await?;
    if !counted {
        return Err(Fail::Retry);
    }
    let sub = read_submission(tx, &sub.submission_id)
        .await?
        .ok_or_else(not_found)?;
    let Some(approved) = bounty::majority(sub.approvals, sub.rejections, b.terms.validators) else {
        return Ok(Voted {
            submission: sub,
            bounty: b,
            decided: false,
            flagged: Vec::new(),
            banned: Vec::new(),
        });
    };
    let votes = tx
        .many(
            &db.votes,
            doc! { "submission_id": &sub.submission_id, "approve": { "$ne": Bson::Null } },
            doc! { "voted_at": 1, "validator_id": 1 },
            None,
        )
        .await?;
    let (with, against): (Vec<VoteDoc>, Vec<VoteDoc>) =
        votes.into_iter().partition(|d| d.approve == Some(approved));
    let with: Vec<String> = with.into_iter().map(|d| d.validator_id).collect();
    let against: Vec<String> = against.into_iter().map(|d| d.validator_id).collect();
    for (ids, side) in [(&with, true), (&against, false)] {
        if !ids.is_empty() {
            tx.update_many(
                &db.votes,
                doc! { "submission_id": &sub.submission_id, "validator_id": { "$in": ids } },
                doc! { "$set": { "with_majority": side } },
            )
            .await?;
        }
    }
    tx.delete(
        &db.votes,
        doc! { "submission_id": &sub.submission_id, "approve": Bson::Null },
    )
    .await?;
    let per_validator = bounty::validator_pay(b.reward_cents, &b.terms, approved, with.len());
    if approved {
        let paid = settle(
            tx,
            &b,
            &sub,
            b.reward_cents,
            BountyStatus::Completed,
            &with,
            v.now_ms,
        )
        .await?;
        let done = tx
            .update(
                &db.submissions,
                doc! { "_id": &sub.submission_id, "status": "pending" },
                doc! { "$set": {
                    "status": SubmissionStatus::Approved.as_str(), "reviewed_at": v.now_ms,
                    "paid_cents": paid, "warning_due": Bson::Null, "review_due": Bson::Null,
                    "invite_due": Bson::Null,
                } },
            )
            .await?;
        if !done {
            return Err(Fail::Retry);
        }
    } else {
        let done = tx
            .update(
                &db.submissions,
                doc! { "_id": &sub.submission_id, "status": "pending" },
                doc! { "$set": {
                    "status": SubmissionStatus::Rejected.as_str(),
                    "reason": bounty::consensus_reason(sub.approvals, sub.rejections),
                    "reviewed_at": v.now_ms, "warning_due": Bson::Null, "review_due": Bson::Null,
                    "invite_due": Bson::Null,
                    "dispute_due": bounty::dispute_due_ms(v.now_ms, &b.terms),
                } },
            )
            .await?;
        if !done {
            return Err(Fail::Retry);
        }
        let fee = per_validator;
        if let Some(entry) =
            bounty::rejection_fee_entry(&sub.submission_id, &b.bounty_id, &with, fee)
        {
            tx.apply(&entry, v.now_ms).await?;
        }
    }
    let bounty_after = read_bounty(tx, &b.bounty_id).await?.ok_or_else(not_found)?;
    let sub_after = read_submission(tx, &sub.submission_id)
        .await?
        .ok_or_else(not_found)?;
    tx.tell(notice::reviewed(&bounty_after, &sub_after), v.now_ms)
        .await?;
    for id in &with {
        let n = notice::vote_decided(&bounty_after, &sub_after, id, true, per_validator);
        tx.notify(n, v.now_ms).await?;
    }
    let mut flagged = Vec::new();
    let mut banned = Vec::new();
    for id in &against {
        let n = notice::vote_decided(&bounty_after, &sub_after, id, false, 0);
        tx.notify(n, v.now_ms).await?;
        let with_n = tx
            .count(
                &db.votes,
                doc! { "validator_id": id, "with_majority": true },
            )
            .await?;
        let against_n = tx
            .count(
                &db.votes,
                doc! { "validator_id": id, "with_majority": false },
            )
            .await?;
        let n = |c: u64| u32::try_from(c).unwrap_or(u32::MAX);
        if bounty::validator_suspicious(n(with_n), n(against_n)) {
            tx.update(
                &db.workers,
                doc! { "_id": id },
                doc! { "$inc": { "qa_fail": 1_i64 } },
            )
            .await?;
            if tx.penalise(id, v.now_ms, &v.cfg).await? {
                banned.push(id.clone());
            }
            flagged.push(id.clone());
        }
    }
    Ok(Voted {
        submission: sub_after,
        bounty: bounty_after,
        decided: true,
        flagged,
        banned,
    })
}

pub(super) async fn vote_requests(
    tx: &mut Tx<'_>,
    validator_id: &str,
    limit: u32,
) -> R<Vec<VoteRequest>> {
    let db = tx.db;
    let asked = tx
        .many(
            &db.votes,
            doc! {
                "validator_id": validator_id, "approve": Bson::Null,
                "asked_at": { "$ne": Bson::Null },
            },
            doc! { "asked_at": 1, "submission_id": 1 },
            Some(i64::from(limit)),
        )
        .await?;
    let mut out = Vec::with_capacity(asked.len());
    for a in asked {
        let Some(submission) = read_submission(tx, &a.submission_id).await? else {
            continue;
        };
        if submission.status != SubmissionStatus::Pending {
            continue;
        }
        let Some(bounty) = read_bounty(tx, &submission.bounty_id).await? else {
            continue;
        };
        out.push(VoteRequest {
            bounty,
            submission,
            asked_at_ms: a.asked_at.unwrap_or(0),
        });
    }
    Ok(out)
}
