//! Bounties: posting with the reward into escrow, reading, listing, cancelling; submissions,
//! reviews, disputes and their resolution.

use super::*;
use crate::rules::bounty::{
    self, BountyStatus, DisputeStatus, Outcome, Payout, Review, SubmissionStatus, Terms,
};
use crate::store::notification::bounty as notice;

const BOUNTY_COLS: &str = "seq, id, buyer_id, title, description, criteria, reward_cents, deadline, \
    max_submissions, review, terms, status, submissions, created_at, settled_at";

fn bounty_from_row(r: &Row<'_>) -> rusqlite::Result<BountyRecord> {
    let review: String = r.get(9)?;
    let terms: String = r.get(10)?;
    let status: String = r.get(11)?;
    Ok(BountyRecord {
        seq: r.get(0)?,
        bounty_id: r.get(1)?,
        buyer_id: r.get(2)?,
        title: r.get(3)?,
        description: r.get(4)?,
        criteria: r.get(5)?,
        reward_cents: r.get(6)?,
        deadline_ms: r.get(7)?,
        max_submissions: r.get(8)?,
        review: Review::parse(&review).ok_or_else(|| invalid(9, "bounty review"))?,
        terms: serde_json::from_str::<Terms>(&terms).map_err(|_| invalid(10, "bounty terms"))?,
        status: BountyStatus::parse(&status).ok_or_else(|| invalid(11, "bounty status"))?,
        submissions: r.get(12)?,
        created_at_ms: r.get(13)?,
        settled_at_ms: r.get(14)?,
    })
}

pub(super) fn read_bounty(c: &Connection, id: &str) -> Result<Option<BountyRecord>, EngineError> {
    let sql = format!("SELECT {BOUNTY_COLS} FROM bounties WHERE id = ?1");
    c.prepare_cached(&sql)
        .and_then(|mut s| s.query_row(params![id], bounty_from_row).optional())
        .map_err(db_err)
}

pub(super) fn post_bounty(tx: &mut Tx<'_>, b: NewBounty) -> Result<BountyRecord, EngineError> {
    let idem = b.idem.clone();
    tx.idempotent(idem.as_ref(), b.now_ms, |r| r, |tx| {
        let available = tx
            .available(&b.buyer_id)?
            .ok_or_else(|| EngineError::NotFound("no such buyer".into()))?;
        if available < b.reward_cents {
            return Err(EngineError::InsufficientBalance {
                needed_cents: b.reward_cents,
                available_cents: available,
            });
        }
        let terms = serde_json::to_string(&b.terms).map_err(json_err)?;
        tx.conn
            .prepare_cached(
                "INSERT INTO bounties (id, buyer_id, title, description, criteria, reward_cents, deadline,
                   max_submissions, review, terms, status, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'open', ?11)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    b.bounty_id, b.buyer_id, b.title, b.description, b.criteria, b.reward_cents,
                    b.deadline_ms, b.max_submissions, b.review.as_str(), terms, b.now_ms
                ])
            })
            .map_err(db_err)?;
        tx.apply(&bounty::escrow_entry(&b.bounty_id, &b.buyer_id, b.reward_cents), b.now_ms)?;
        read_bounty(tx.conn, &b.bounty_id)?.ok_or_else(|| EngineError::internal("new bounty not found"))
    })
}

pub(super) fn bounties(c: &Connection, f: BountyFilter) -> Result<Vec<BountyRecord>, EngineError> {
    let sql = format!(
        "SELECT {BOUNTY_COLS} FROM bounties
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR buyer_id = ?2) AND (?3 IS NULL OR seq < ?3)
           AND (?5 IS NULL OR id IN (SELECT bounty_id FROM bounty_submissions WHERE worker_id = ?5))
         ORDER BY seq DESC LIMIT ?4"
    );
    let mut s = c.prepare_cached(&sql).map_err(db_err)?;
    let rows = s
        .query_map(
            params![
                f.status.map(|s| s.as_str()),
                f.buyer_id,
                f.before_seq,
                f.limit,
                f.worker_id
            ],
            bounty_from_row,
        )
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

pub(super) fn cancel_bounty(
    tx: &mut Tx<'_>,
    bounty_id: String,
    buyer_id: String,
    now_ms: i64,
) -> Result<BountyRecord, EngineError> {
    let Some(b) = read_bounty(tx.conn, &bounty_id)?.filter(|b| b.buyer_id == buyer_id) else {
        return Err(EngineError::NotFound(format!("no bounty {bounty_id}")));
    };
    bounty::check_cancel(b.status, b.submissions)?;
    let n = tx
        .conn
        .prepare_cached(
            "UPDATE bounties SET status = 'cancelled', settled_at = ?2
             WHERE id = ?1 AND status = 'open' AND submissions = 0",
        )
        .and_then(|mut s| s.execute(params![bounty_id, now_ms]))
        .map_err(db_err)?;
    if n == 0 {
        return Err(EngineError::Conflict(
            "this bounty changed; read it again".into(),
        ));
    }
    tx.apply(
        &bounty::refund_entry(&bounty_id, &buyer_id, b.reward_cents),
        now_ms,
    )?;
    let after = read_bounty(tx.conn, &bounty_id)?
        .ok_or_else(|| EngineError::internal("bounty not found"))?;
    tx.tell(notice::cancelled(&after), now_ms)?;
    Ok(after)
}

const SUBMISSION_COLS: &str = "id, bounty_id, worker_id, position, content, status, reason, \
    submitted_at, reviewed_at, auto_approved, review_due, dispute_due, paid_cents, \
    (SELECT count(*) FROM bounty_votes v WHERE v.submission_id = bounty_submissions.id AND v.approve = 1), \
    (SELECT count(*) FROM bounty_votes v WHERE v.submission_id = bounty_submissions.id AND v.approve = 0)";

fn submission_from_row(r: &Row<'_>) -> rusqlite::Result<SubmissionRecord> {
    let content: String = r.get(4)?;
    let status: String = r.get(5)?;
    Ok(SubmissionRecord {
        submission_id: r.get(0)?,
        bounty_id: r.get(1)?,
        worker_id: r.get(2)?,
        position: r.get(3)?,
        content: serde_json::from_str(&content).map_err(|_| invalid(4, "submission content"))?,
        status: SubmissionStatus::parse(&status).ok_or_else(|| invalid(5, "submission status"))?,
        reason: r.get(6)?,
        submitted_at_ms: r.get(7)?,
        reviewed_at_ms: r.get(8)?,
        auto_approved: r.get(9)?,
        review_due_ms: r.get(10)?,
        dispute_due_ms: r.get(11)?,
        paid_cents: r.get(12)?,
        approvals: r.get(13)?,
        rejections: r.get(14)?,
    })
}

pub(super) fn read_submission(
    c: &Connection,
    id: &str,
) -> Result<Option<SubmissionRecord>, EngineError> {
    let sql = format!("SELECT {SUBMISSION_COLS} FROM bounty_submissions WHERE id = ?1");
    c.prepare_cached(&sql)
        .and_then(|mut s| s.query_row(params![id], submission_from_row).optional())
        .map_err(db_err)
}

pub(super) fn submissions(
    c: &Connection,
    f: SubmissionFilter,
) -> Result<Vec<SubmissionRecord>, EngineError> {
    let sql = format!(
        "SELECT {SUBMISSION_COLS} FROM bounty_submissions
         WHERE bounty_id = ?1 AND (?2 IS NULL OR worker_id = ?2) AND position > ?3
         ORDER BY position LIMIT ?4"
    );
    let mut s = c.prepare_cached(&sql).map_err(db_err)?;
    let rows = s
        .query_map(
            params![
                f.bounty_id,
                f.worker_id,
                f.after_position.unwrap_or(0),
                f.limit
            ],
            submission_from_row,
        )
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

fn changed(n: usize) -> Result<(), EngineError> {
    if n == 0 {
        return Err(EngineError::Conflict(
            "this bounty changed; read it again".into(),
        ));
    }
    Ok(())
}

pub(super) fn submit(tx: &mut Tx<'_>, s: NewSubmission) -> Result<SubmissionRecord, EngineError> {
    let Some(b) = read_bounty(tx.conn, &s.bounty_id)? else {
        return Err(EngineError::NotFound(format!("no bounty {}", s.bounty_id)));
    };
    let already_submitted = tx
        .conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM bounty_submissions WHERE bounty_id = ?1 AND worker_id = ?2)",
        )
        .and_then(|mut q| q.query_row(params![s.bounty_id, s.worker_id], |r| r.get(0)))
        .map_err(db_err)?;
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
    let n = tx
        .conn
        .prepare_cached(
            "UPDATE bounties SET submissions = submissions + 1
             WHERE id = ?1 AND status = 'open' AND submissions = ?2",
        )
        .and_then(|mut q| q.execute(params![s.bounty_id, b.submissions]))
        .map_err(db_err)?;
    changed(n)?;
    let warning_due =
        (b.review == Review::Manual).then(|| bounty::warning_due_ms(s.now_ms, &b.terms));
    let content = serde_json::to_string(&s.content).map_err(json_err)?;
    tx.conn
        .prepare_cached(
            "INSERT INTO bounty_submissions (id, bounty_id, worker_id, position, content, status,
               submitted_at, warning_due, review_due)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8)",
        )
        .and_then(|mut q| {
            q.execute(params![
                s.submission_id,
                s.bounty_id,
                s.worker_id,
                b.submissions + 1,
                content,
                s.now_ms,
                warning_due,
                bounty::review_due_ms(s.now_ms, &b.terms)
            ])
        })
        .map_err(db_err)?;
    let sub = read_submission(tx.conn, &s.submission_id)?
        .ok_or_else(|| EngineError::internal("new submission not found"))?;
    let after = read_bounty(tx.conn, &s.bounty_id)?
        .ok_or_else(|| EngineError::internal("bounty not found"))?;
    tx.tell(notice::submitted(&after, &sub), s.now_ms)?;
    if after.review == Review::Consensus {
        invite(
            tx,
            &after,
            &sub,
            &s.validator_tiers,
            after.terms.validators,
            s.now_ms,
        )?;
    }
    Ok(sub)
}

/// The (worker, submission) pairs a bounty's end closes: every submission but `except` still
/// pending, rejected or disputed.
fn closing(
    c: &Connection,
    bounty_id: &str,
    except: &str,
) -> Result<Vec<(String, String)>, EngineError> {
    let mut q = c
        .prepare_cached(
            "SELECT worker_id, id FROM bounty_submissions
             WHERE bounty_id = ?1 AND id <> ?2 AND status IN ('pending', 'rejected', 'disputed')",
        )
        .map_err(db_err)?;
    let rows = q
        .query_map(params![bounty_id, except], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

fn open_disputes(c: &Connection, bounty_id: &str) -> Result<u32, EngineError> {
    c.prepare_cached("SELECT count(*) FROM disputes WHERE bounty_id = ?1 AND status = 'open'")
        .and_then(|mut q| q.query_row(params![bounty_id], |r| r.get(0)))
        .map_err(db_err)
}

/// Pays `won_cents` of a bounty's escrow to a submission's worker (a frozen lot released after
/// the dispute window, less the fee) and `refund_cents` back to its buyer; ends the bounty as
/// `status` and closes its other submissions and disputes. Returns the worker's lot.
fn settle(
    tx: &mut Tx<'_>,
    b: &BountyRecord,
    sub: &SubmissionRecord,
    won_cents: i64,
    status: BountyStatus,
    validators: &[String],
    now_ms: i64,
) -> Result<i64, EngineError> {
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
    if won_cents > 0 {
        tx.conn
            .prepare_cached(
                "INSERT INTO lots (worker_id, task_id, amount_cents, commission_cents, created_at, release_at, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'frozen')",
            )
            .and_then(|mut q| {
                q.execute(params![
                    sub.worker_id,
                    sub.submission_id,
                    f.worker_cents,
                    f.revenue_cents,
                    now_ms,
                    bounty::dispute_due_ms(now_ms, &b.terms)
                ])
            })
            .map_err(db_err)?;
    }
    let n = tx
        .conn
        .prepare_cached(
            "UPDATE bounties SET status = ?2, settled_at = ?3 WHERE id = ?1 AND status = 'open'",
        )
        .and_then(|mut q| q.execute(params![b.bounty_id, status.as_str(), now_ms]))
        .map_err(db_err)?;
    changed(n)?;
    let closed = closing(tx.conn, &b.bounty_id, &sub.submission_id)?;
    tx.conn
        .prepare_cached(
            "UPDATE bounty_submissions SET status = 'closed', warning_due = NULL, review_due = NULL, dispute_due = NULL
             WHERE bounty_id = ?1 AND id <> ?2 AND status IN ('pending', 'rejected', 'disputed')",
        )
        .and_then(|mut q| q.execute(params![b.bounty_id, sub.submission_id]))
        .map_err(db_err)?;
    tx.conn
        .prepare_cached(
            "UPDATE disputes SET status = 'closed', resolved_at = ?3
             WHERE bounty_id = ?1 AND submission_id <> ?2 AND status = 'open'",
        )
        .and_then(|mut q| q.execute(params![b.bounty_id, sub.submission_id, now_ms]))
        .map_err(db_err)?;
    tx.apply(&payout.entry(), now_ms)?;
    for (worker_id, submission_id) in closed {
        tx.notify(notice::closed(b, &worker_id, &submission_id), now_ms)?;
    }
    Ok(if won_cents > 0 { f.worker_cents } else { 0 })
}

pub(super) fn review(tx: &mut Tx<'_>, r: ReviewAsk) -> Result<Reviewed, EngineError> {
    let idem = r.idem.clone();
    tx.idempotent(idem.as_ref(), r.now_ms, |x| x, |tx| {
        let not_found = || EngineError::NotFound(format!("no submission {} to bounty {}", r.submission_id, r.bounty_id));
        let b = read_bounty(tx.conn, &r.bounty_id)?
            .filter(|b| r.buyer_id.as_ref().is_none_or(|id| *id == b.buyer_id))
            .ok_or_else(not_found)?;
        let sub = read_submission(tx.conn, &r.submission_id)?
            .filter(|s| s.bounty_id == b.bounty_id)
            .ok_or_else(not_found)?;
        if r.buyer_id.is_some() && b.review == Review::Consensus {
            return Err(EngineError::Conflict(
                "this bounty is reviewed by consensus: validators decide".into(),
            ));
        }
        let approve = r.verdict == Verdict::Approve;
        bounty::check_review(
            &bounty::ReviewFacts {
                bounty: b.status,
                submission: sub.status,
                open_disputes: open_disputes(tx.conn, &b.bounty_id)?,
            },
            approve,
        )?;
        let n = match &r.verdict {
            Verdict::Approve => {
                let paid = settle(tx, &b, &sub, b.reward_cents, BountyStatus::Completed, &[], r.now_ms)?;
                tx.conn
                    .prepare_cached(
                        "UPDATE bounty_submissions SET status = 'approved', reviewed_at = ?2, auto_approved = ?3,
                           paid_cents = ?4, warning_due = NULL, review_due = NULL
                         WHERE id = ?1 AND status = 'pending'",
                    )
                    .and_then(|mut q| q.execute(params![sub.submission_id, r.now_ms, r.buyer_id.is_none(), paid]))
                    .map_err(db_err)?
            }
            Verdict::Reject { reason } => tx
                .conn
                .prepare_cached(
                    "UPDATE bounty_submissions SET status = 'rejected', reason = ?3, reviewed_at = ?2,
                       warning_due = NULL, review_due = NULL, dispute_due = ?4
                     WHERE id = ?1 AND status = 'pending'",
                )
                .and_then(|mut q| {
                    q.execute(params![
                        sub.submission_id,
                        r.now_ms,
                        reason,
                        bounty::dispute_due_ms(r.now_ms, &b.terms)
                    ])
                })
                .map_err(db_err)?,
        };
        changed(n)?;
        let out = Reviewed {
            bounty: read_bounty(tx.conn, &b.bounty_id)?.ok_or_else(not_found)?,
            submission: read_submission(tx.conn, &sub.submission_id)?.ok_or_else(not_found)?,
        };
        tx.tell(notice::reviewed(&out.bounty, &out.submission), r.now_ms)?;
        Ok(out)
    })
}

const DISPUTE_COLS: &str = "seq, id, bounty_id, submission_id, worker_id, buyer_id, reason, \
    rejection_reason, status, opened_at, outcome, worker_pct, worker_cents, refund_cents, \
    resolved_at, resolved_by";

fn dispute_from_row(r: &Row<'_>) -> rusqlite::Result<DisputeRecord> {
    let status: String = r.get(8)?;
    let outcome: Option<String> = r.get(10)?;
    Ok(DisputeRecord {
        seq: r.get(0)?,
        dispute_id: r.get(1)?,
        bounty_id: r.get(2)?,
        submission_id: r.get(3)?,
        worker_id: r.get(4)?,
        buyer_id: r.get(5)?,
        reason: r.get(6)?,
        rejection_reason: r.get(7)?,
        status: DisputeStatus::parse(&status).ok_or_else(|| invalid(8, "dispute status"))?,
        opened_at_ms: r.get(9)?,
        outcome: match outcome {
            None => None,
            Some(o) => Some(Outcome::parse(&o).ok_or_else(|| invalid(10, "dispute outcome"))?),
        },
        worker_pct: r.get(11)?,
        worker_cents: r.get(12)?,
        refund_cents: r.get(13)?,
        resolved_at_ms: r.get(14)?,
        resolved_by: r.get(15)?,
    })
}

pub(super) fn read_dispute(c: &Connection, id: &str) -> Result<Option<DisputeRecord>, EngineError> {
    let sql = format!("SELECT {DISPUTE_COLS} FROM disputes WHERE id = ?1");
    c.prepare_cached(&sql)
        .and_then(|mut s| s.query_row(params![id], dispute_from_row).optional())
        .map_err(db_err)
}

pub(super) fn disputes(
    c: &Connection,
    f: DisputeFilter,
) -> Result<Vec<DisputeRecord>, EngineError> {
    let sql = format!(
        "SELECT {DISPUTE_COLS} FROM disputes WHERE (?1 IS NULL OR status = ?1) AND seq < ?2
         ORDER BY seq DESC LIMIT ?3"
    );
    let mut s = c.prepare_cached(&sql).map_err(db_err)?;
    let rows = s
        .query_map(
            params![
                f.status.map(|s| s.as_str()),
                f.before_seq.unwrap_or(i64::MAX),
                f.limit
            ],
            dispute_from_row,
        )
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

pub(super) fn open_dispute(tx: &mut Tx<'_>, d: NewDispute) -> Result<DisputeRecord, EngineError> {
    let not_found = || {
        EngineError::NotFound(format!(
            "no submission {} of yours to bounty {}",
            d.submission_id, d.bounty_id
        ))
    };
    let sub = read_submission(tx.conn, &d.submission_id)?
        .filter(|s| s.bounty_id == d.bounty_id && s.worker_id == d.worker_id)
        .ok_or_else(not_found)?;
    let b = read_bounty(tx.conn, &d.bounty_id)?.ok_or_else(not_found)?;
    bounty::check_dispute(
        &bounty::DisputeFacts {
            bounty: b.status,
            submission: sub.status,
            dispute_due_ms: sub.dispute_due_ms,
        },
        d.now_ms,
    )?;
    let n = tx
        .conn
        .prepare_cached(
            "UPDATE bounty_submissions SET status = 'disputed', dispute_due = NULL
             WHERE id = ?1 AND status = 'rejected'",
        )
        .and_then(|mut q| q.execute(params![sub.submission_id]))
        .map_err(db_err)?;
    changed(n)?;
    tx.conn
        .prepare_cached(
            "INSERT INTO disputes (id, bounty_id, submission_id, worker_id, buyer_id, reason,
               rejection_reason, status, opened_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'open', ?8)",
        )
        .and_then(|mut q| {
            q.execute(params![
                d.dispute_id,
                d.bounty_id,
                d.submission_id,
                d.worker_id,
                b.buyer_id,
                d.reason,
                sub.reason.unwrap_or_default(),
                d.now_ms
            ])
        })
        .map_err(db_err)?;
    let opened = read_dispute(tx.conn, &d.dispute_id)?
        .ok_or_else(|| EngineError::internal("new dispute not found"))?;
    tx.tell(notice::dispute_opened(&b, &opened), d.now_ms)?;
    Ok(opened)
}

pub(super) fn resolve_dispute(tx: &mut Tx<'_>, r: Resolution) -> Result<Resolved, EngineError> {
    let idem = r.idem.clone();
    tx.idempotent(idem.as_ref(), r.now_ms, |x| x, |tx| {
        let not_found = || EngineError::NotFound(format!("no dispute {}", r.dispute_id));
        let d = read_dispute(tx.conn, &r.dispute_id)?.ok_or_else(not_found)?;
        bounty::check_resolve(d.status)?;
        let b = read_bounty(tx.conn, &d.bounty_id)?.ok_or_else(not_found)?;
        let sub = read_submission(tx.conn, &d.submission_id)?.ok_or_else(not_found)?;
        let (won, refund) = bounty::resolution_parts(b.reward_cents, r.worker_pct);
        let paid = settle(tx, &b, &sub, won, BountyStatus::Resolved, &[], r.now_ms)?;
        let n = tx
            .conn
            .prepare_cached(
                "UPDATE disputes SET status = 'resolved', outcome = ?2, worker_pct = ?3, worker_cents = ?4,
                   refund_cents = ?5, resolved_at = ?6, resolved_by = ?7
                 WHERE id = ?1 AND status = 'open'",
            )
            .and_then(|mut q| {
                q.execute(params![
                    d.dispute_id,
                    r.outcome.as_str(),
                    r.worker_pct,
                    paid,
                    refund,
                    r.now_ms,
                    r.by.id
                ])
            })
            .map_err(db_err)?;
        changed(n)?;
        tx.conn
            .prepare_cached("UPDATE bounty_submissions SET status = 'resolved', paid_cents = ?2 WHERE id = ?1")
            .and_then(|mut q| q.execute(params![sub.submission_id, paid]))
            .map_err(db_err)?;
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
        )?;
        let out = Resolved {
            dispute: read_dispute(tx.conn, &d.dispute_id)?.ok_or_else(not_found)?,
            bounty: read_bounty(tx.conn, &b.bounty_id)?.ok_or_else(not_found)?,
        };
        tx.tell(notice::dispute_resolved(&out.bounty, &out.dispute), r.now_ms)?;
        Ok(out)
    })
}

pub(super) fn sweep(
    tx: &mut Tx<'_>,
    now_ms: i64,
    limit: u32,
    validator_tiers: &[String],
) -> Result<BountySweep, EngineError> {
    let mut out = BountySweep {
        invited: next_vote_rounds(tx, now_ms, limit, validator_tiers)?,
        ..BountySweep::default()
    };
    let warn: Vec<Warned> = {
        let mut q = tx
            .conn
            .prepare_cached(
                "SELECT s.bounty_id, b.buyer_id, s.id, s.review_due
                 FROM bounty_submissions s JOIN bounties b ON b.id = s.bounty_id
                 WHERE s.warning_due <= ?1 AND s.status = 'pending'
                 ORDER BY s.warning_due LIMIT ?2",
            )
            .map_err(db_err)?;
        let rows = q
            .query_map(params![now_ms, limit], |r| {
                Ok(Warned {
                    bounty_id: r.get(0)?,
                    buyer_id: r.get(1)?,
                    submission_id: r.get(2)?,
                    auto_release_at_ms: r.get::<_, Option<i64>>(3)?.unwrap_or(now_ms),
                })
            })
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
    };
    for w in warn {
        let n = tx
            .conn
            .prepare_cached(
                "UPDATE bounty_submissions SET warning_due = NULL
                 WHERE id = ?1 AND status = 'pending' AND warning_due IS NOT NULL",
            )
            .and_then(|mut q| q.execute(params![w.submission_id]))
            .map_err(db_err)?;
        if n == 1 {
            tx.notify(
                notice::auto_release_warning(
                    &w.buyer_id,
                    &w.bounty_id,
                    &w.submission_id,
                    w.auto_release_at_ms,
                ),
                now_ms,
            )?;
            out.warned.push(w);
        }
    }

    let due: Vec<(String, String)> = {
        let mut q = tx
            .conn
            .prepare_cached(
                "SELECT s.bounty_id, s.id FROM bounty_submissions s
                 WHERE s.review_due <= ?1 AND s.status = 'pending'
                   AND NOT EXISTS (SELECT 1 FROM disputes d WHERE d.bounty_id = s.bounty_id AND d.status = 'open')
                 ORDER BY s.review_due, s.position LIMIT ?2",
            )
            .map_err(db_err)?;
        let rows = q
            .query_map(params![now_ms, limit], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
    };
    for (bounty_id, submission_id) in due {
        // An earlier approval in this pass may have closed it (one winner per bounty).
        if read_submission(tx.conn, &submission_id)?
            .is_none_or(|s| s.status != SubmissionStatus::Pending)
        {
            continue;
        }
        let approved = review(
            tx,
            ReviewAsk {
                bounty_id,
                submission_id,
                buyer_id: None,
                verdict: Verdict::Approve,
                now_ms,
                idem: None,
            },
        )?;
        out.approved.push(approved);
    }

    let ended: Vec<BountyRecord> = {
        let sql = format!(
            "SELECT {BOUNTY_COLS} FROM bounties b WHERE status = 'open' AND deadline <= ?1
               AND NOT EXISTS (SELECT 1 FROM bounty_submissions s WHERE s.bounty_id = b.id
                               AND (s.status = 'pending' OR (s.status = 'rejected' AND s.dispute_due > ?1)))
               AND NOT EXISTS (SELECT 1 FROM disputes d WHERE d.bounty_id = b.id AND d.status = 'open')
             ORDER BY deadline LIMIT ?2"
        );
        let mut q = tx.conn.prepare_cached(&sql).map_err(db_err)?;
        let rows = q
            .query_map(params![now_ms, limit], bounty_from_row)
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
    };
    for b in ended {
        let (pending, last_dispute_due_ms): (u32, Option<i64>) = tx
            .conn
            .prepare_cached(
                "SELECT count(*) FILTER (WHERE status = 'pending'),
                        max(dispute_due) FILTER (WHERE status = 'rejected')
                 FROM bounty_submissions WHERE bounty_id = ?1",
            )
            .and_then(|mut q| q.query_row(params![b.bounty_id], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(db_err)?;
        let facts = bounty::ExpiryFacts {
            deadline_ms: b.deadline_ms,
            pending,
            open_disputes: open_disputes(tx.conn, &b.bounty_id)?,
            last_dispute_due_ms,
        };
        if !bounty::expires(&facts, now_ms) {
            continue;
        }
        let n = tx
            .conn
            .prepare_cached(
                "UPDATE bounties SET status = 'expired', settled_at = ?2 WHERE id = ?1 AND status = 'open'",
            )
            .and_then(|mut q| q.execute(params![b.bounty_id, now_ms]))
            .map_err(db_err)?;
        if n == 0 {
            continue;
        }
        for (worker_id, submission_id) in closing(tx.conn, &b.bounty_id, "")? {
            tx.notify(notice::closed(&b, &worker_id, &submission_id), now_ms)?;
        }
        tx.conn
            .prepare_cached(
                "UPDATE bounty_submissions SET status = 'closed', dispute_due = NULL
                 WHERE bounty_id = ?1 AND status = 'rejected'",
            )
            .and_then(|mut q| q.execute(params![b.bounty_id]))
            .map_err(db_err)?;
        tx.apply(
            &bounty::refund_entry(&b.bounty_id, &b.buyer_id, b.reward_cents),
            now_ms,
        )?;
        let after = read_bounty(tx.conn, &b.bounty_id)?
            .ok_or_else(|| EngineError::internal("bounty not found"))?;
        tx.tell(notice::expired(&after), now_ms)?;
        out.expired.push(after);
    }
    Ok(out)
}

/// Asks up to `want` validators not asked before (workers of `tiers`, not banned or suspended,
/// neither the buyer nor anyone who submitted to the bounty; the most recently seen first) to
/// vote on `sub`, and sets when the next round is due. Returns how many were asked.
fn invite(
    tx: &mut Tx<'_>,
    b: &BountyRecord,
    sub: &SubmissionRecord,
    tiers: &[String],
    want: u32,
    now_ms: i64,
) -> Result<u32, EngineError> {
    let tiers = serde_json::to_string(tiers).map_err(json_err)?;
    let chosen: Vec<String> = {
        let mut q = tx
            .conn
            .prepare_cached(
                "SELECT w.id FROM workers w
                 WHERE w.tier IN (SELECT value FROM json_each(?1)) AND w.banned_at IS NULL
                   AND (w.suspended_until IS NULL OR w.suspended_until <= ?2) AND w.id <> ?3
                   AND NOT EXISTS (SELECT 1 FROM bounty_submissions s WHERE s.bounty_id = ?4 AND s.worker_id = w.id)
                   AND NOT EXISTS (SELECT 1 FROM bounty_votes v WHERE v.submission_id = ?5 AND v.validator_id = w.id)
                 ORDER BY w.last_seen DESC NULLS LAST, w.id LIMIT ?6",
            )
            .map_err(db_err)?;
        let rows = q
            .query_map(
                params![
                    tiers,
                    now_ms,
                    b.buyer_id,
                    b.bounty_id,
                    sub.submission_id,
                    want
                ],
                |r| r.get(0),
            )
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
    };
    for validator in &chosen {
        tx.conn
            .prepare_cached(
                "INSERT INTO bounty_votes (submission_id, validator_id, bounty_id, asked_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut q| q.execute(params![sub.submission_id, validator, b.bounty_id, now_ms]))
            .map_err(db_err)?;
        tx.notify(notice::vote_requested(b, sub, validator), now_ms)?;
    }
    tx.conn
        .prepare_cached(
            "INSERT INTO vote_rounds (submission_id, due) VALUES (?1, ?2)
             ON CONFLICT (submission_id) DO UPDATE SET due = excluded.due",
        )
        .and_then(|mut q| {
            q.execute(params![
                sub.submission_id,
                bounty::invite_due_ms(now_ms, &b.terms)
            ])
        })
        .map_err(db_err)?;
    Ok(chosen.len() as u32)
}

/// The vote rounds due by `now_ms`: each undecided submission gets as many new validators asked
/// as it still lacks votes; a round whose submission is no longer pending is dropped.
fn next_vote_rounds(
    tx: &mut Tx<'_>,
    now_ms: i64,
    limit: u32,
    tiers: &[String],
) -> Result<u32, EngineError> {
    let due: Vec<String> = {
        let mut q = tx
            .conn
            .prepare_cached(
                "SELECT submission_id FROM vote_rounds WHERE due <= ?1 ORDER BY due LIMIT ?2",
            )
            .map_err(db_err)?;
        let rows = q
            .query_map(params![now_ms, limit], |r| r.get(0))
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
    };
    let mut invited = 0;
    for submission_id in due {
        let sub = read_submission(tx.conn, &submission_id)?;
        let b = match &sub {
            Some(s) => read_bounty(tx.conn, &s.bounty_id)?,
            None => None,
        };
        match (sub, b) {
            (Some(sub), Some(b))
                if sub.status == SubmissionStatus::Pending && b.status == BountyStatus::Open =>
            {
                let want = b
                    .terms
                    .validators
                    .saturating_sub(sub.approvals + sub.rejections);
                invited += invite(tx, &b, &sub, tiers, want, now_ms)?;
            }
            _ => {
                tx.conn
                    .prepare_cached("DELETE FROM vote_rounds WHERE submission_id = ?1")
                    .and_then(|mut q| q.execute(params![submission_id]))
                    .map_err(db_err)?;
            }
        }
    }
    Ok(invited)
}

pub(super) fn vote(tx: &mut Tx<'_>, v: VoteAsk) -> Result<Voted, EngineError> {
    let not_found = || {
        EngineError::NotFound(format!(
            "no submission {} to bounty {}",
            v.submission_id, v.bounty_id
        ))
    };
    let b = read_bounty(tx.conn, &v.bounty_id)?.ok_or_else(not_found)?;
    let sub = read_submission(tx.conn, &v.submission_id)?
        .filter(|s| s.bounty_id == b.bounty_id)
        .ok_or_else(not_found)?;
    let tier: String = tx
        .conn
        .prepare_cached("SELECT tier FROM workers WHERE id = ?1")
        .and_then(|mut q| {
            q.query_row(params![v.validator_id], |r| r.get(0))
                .optional()
        })
        .map_err(db_err)?
        .ok_or_else(|| EngineError::Unauthorized("unknown worker".into()))?;
    let (submitted_to_bounty, already_voted): (bool, bool) = tx
        .conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM bounty_submissions WHERE bounty_id = ?1 AND worker_id = ?2),
                    EXISTS (SELECT 1 FROM bounty_votes WHERE submission_id = ?3 AND validator_id = ?2
                            AND approve IS NOT NULL)",
        )
        .and_then(|mut q| {
            q.query_row(params![b.bounty_id, v.validator_id, sub.submission_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })
        .map_err(db_err)?;
    let tiers = bounty::validator_tiers(&v.cfg, &v.cfg.bounty.validator_min_tier);
    bounty::check_vote(&bounty::VoteFacts {
        review: b.review,
        bounty: b.status,
        submission: sub.status,
        tier_allowed: tiers.contains(&tier),
        submitted_to_bounty,
        already_voted,
        open_disputes: open_disputes(tx.conn, &b.bounty_id)?,
    })?;
    tx.conn
        .prepare_cached(
            "INSERT INTO bounty_votes (submission_id, validator_id, bounty_id, approve, voted_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (submission_id, validator_id) DO UPDATE SET approve = excluded.approve,
               voted_at = excluded.voted_at
             WHERE approve IS NULL",
        )
        .and_then(|mut q| {
            q.execute(params![
                sub.submission_id,
                v.validator_id,
                b.bounty_id,
                v.approve,
                v.now_ms
            ])
        })
        .map_err(db_err)
        .and_then(changed)?;
    let sub = read_submission(tx.conn, &sub.submission_id)?.ok_or_else(not_found)?;
    let Some(approved) = bounty::majority(sub.approvals, sub.rejections, b.terms.validators) else {
        return Ok(Voted {
            submission: sub,
            bounty: b,
            decided: false,
            flagged: Vec::new(),
            banned: Vec::new(),
        });
    };
    // Decided: who sided with it, who against.
    let votes: Vec<(String, bool)> = {
        let mut q = tx
            .conn
            .prepare_cached(
                "SELECT validator_id, approve FROM bounty_votes
                 WHERE submission_id = ?1 AND approve IS NOT NULL ORDER BY voted_at, validator_id",
            )
            .map_err(db_err)?;
        let rows = q
            .query_map(params![sub.submission_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
    };
    let (with, against): (Vec<_>, Vec<_>) = votes.into_iter().partition(|(_, a)| *a == approved);
    let with: Vec<String> = with.into_iter().map(|(id, _)| id).collect();
    let against: Vec<String> = against.into_iter().map(|(id, _)| id).collect();
    tx.conn
        .prepare_cached(
            "UPDATE bounty_votes SET with_majority = (approve = ?2)
             WHERE submission_id = ?1 AND approve IS NOT NULL",
        )
        .and_then(|mut q| q.execute(params![sub.submission_id, approved]))
        .map_err(db_err)?;
    tx.conn
        .prepare_cached("DELETE FROM vote_rounds WHERE submission_id = ?1")
        .and_then(|mut q| q.execute(params![sub.submission_id]))
        .map_err(db_err)?;
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
        )?;
        tx.conn
            .prepare_cached(
                "UPDATE bounty_submissions SET status = 'approved', reviewed_at = ?2, paid_cents = ?3,
                   warning_due = NULL, review_due = NULL
                 WHERE id = ?1 AND status = 'pending'",
            )
            .and_then(|mut q| q.execute(params![sub.submission_id, v.now_ms, paid]))
            .map_err(db_err)
            .and_then(changed)?;
    } else {
        tx.conn
            .prepare_cached(
                "UPDATE bounty_submissions SET status = 'rejected', reason = ?3, reviewed_at = ?2,
                   warning_due = NULL, review_due = NULL, dispute_due = ?4
                 WHERE id = ?1 AND status = 'pending'",
            )
            .and_then(|mut q| {
                q.execute(params![
                    sub.submission_id,
                    v.now_ms,
                    bounty::consensus_reason(sub.approvals, sub.rejections),
                    bounty::dispute_due_ms(v.now_ms, &b.terms)
                ])
            })
            .map_err(db_err)
            .and_then(changed)?;
        let fee = per_validator;
        if let Some(entry) =
            bounty::rejection_fee_entry(&sub.submission_id, &b.bounty_id, &with, fee)
        {
            tx.apply(&entry, v.now_ms)?;
        }
    }
    let after = Reviewed {
        bounty: read_bounty(tx.conn, &b.bounty_id)?.ok_or_else(not_found)?,
        submission: read_submission(tx.conn, &sub.submission_id)?.ok_or_else(not_found)?,
    };
    tx.tell(notice::reviewed(&after.bounty, &after.submission), v.now_ms)?;
    for id in &with {
        tx.notify(
            notice::vote_decided(&after.bounty, &after.submission, id, true, per_validator),
            v.now_ms,
        )?;
    }
    let mut flagged = Vec::new();
    let mut banned = Vec::new();
    for id in &against {
        tx.notify(
            notice::vote_decided(&after.bounty, &after.submission, id, false, 0),
            v.now_ms,
        )?;
        let (with_n, against_n): (u32, u32) = tx
            .conn
            .prepare_cached(
                "SELECT count(*) FILTER (WHERE with_majority = 1), count(*) FILTER (WHERE with_majority = 0)
                 FROM bounty_votes WHERE validator_id = ?1 AND with_majority IS NOT NULL",
            )
            .and_then(|mut q| q.query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(db_err)?;
        if bounty::validator_suspicious(with_n, against_n) {
            tx.conn
                .prepare_cached("UPDATE workers SET qa_fail = qa_fail + 1 WHERE id = ?1")
                .and_then(|mut q| q.execute(params![id]))
                .map_err(db_err)?;
            if tx.penalise(id, v.now_ms, &v.cfg)? {
                banned.push(id.clone());
            }
            flagged.push(id.clone());
        }
    }
    Ok(Voted {
        submission: after.submission,
        bounty: after.bounty,
        decided: true,
        flagged,
        banned,
    })
}

pub(super) fn vote_requests(
    c: &Connection,
    validator_id: &str,
    limit: u32,
) -> Result<Vec<VoteRequest>, EngineError> {
    let asked: Vec<(String, i64)> = {
        let mut q = c
            .prepare_cached(
                "SELECT v.submission_id, v.asked_at FROM bounty_votes v
                 JOIN bounty_submissions s ON s.id = v.submission_id
                 WHERE v.validator_id = ?1 AND v.approve IS NULL AND v.asked_at IS NOT NULL
                   AND s.status = 'pending'
                 ORDER BY v.asked_at, v.submission_id LIMIT ?2",
            )
            .map_err(db_err)?;
        let rows = q
            .query_map(params![validator_id, limit], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
    };
    let mut out = Vec::with_capacity(asked.len());
    for (submission_id, asked_at_ms) in asked {
        let Some(submission) = read_submission(c, &submission_id)? else {
            continue;
        };
        let Some(bounty) = read_bounty(c, &submission.bounty_id)? else {
            continue;
        };
        out.push(VoteRequest {
            bounty,
            submission,
            asked_at_ms,
        });
    }
    Ok(out)
}
