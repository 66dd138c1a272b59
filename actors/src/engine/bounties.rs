//! Bounties: larger work with the reward in escrow (`rules::bounty` decides, the store moves).

use super::*;
use crate::rules::bounty::{self, BountyStatus, DisputeStatus, Outcome, Review, Terms};

/// What a buyer sends to post a bounty.
#[derive(Debug, Clone)]
pub struct BountyAsk {
    pub title: String,
    pub description: String,
    pub criteria: Option<String>,
    pub reward_cents: i64,
    /// RFC 3339.
    pub deadline: String,
    pub max_submissions: Option<u32>,
    pub review: Review,
}

/// Trims `text` and checks it has 1 to `max` characters (0 to `max` when it may be empty).
fn check_text(field: &str, text: &str, max: usize, required: bool) -> Result<String, EngineError> {
    let t = text.trim();
    let n = t.chars().count();
    if (required && n == 0) || n > max {
        let least = if required { 1 } else { 0 };
        return Err(EngineError::validation_field(
            field,
            format!("{field} must have {least} to {max} characters"),
        ));
    }
    Ok(t.to_string())
}

fn parse_time(field: &str, raw: &str) -> Result<i64, EngineError> {
    chrono::DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            EngineError::validation_field(
                field,
                format!("{field} must be an RFC 3339 time, e.g. 2026-12-31T18:00:00Z"),
            )
        })
}

impl Engine {
    pub async fn post_bounty(
        &self,
        buyer_id: &UserId,
        ask: BountyAsk,
        idem: Option<IdemKey>,
    ) -> Result<BountyRecord, EngineError> {
        let title = check_text("title", &ask.title, MAX_BOUNTY_TITLE_CHARS, true)?;
        let description = check_text("description", &ask.description, MAX_BOUNTY_TEXT_CHARS, true)?;
        let criteria = match ask.criteria.as_deref() {
            None => None,
            Some(c) => Some(check_text("criteria", c, MAX_BOUNTY_TEXT_CHARS, false)?)
                .filter(|c| !c.is_empty()),
        };
        let deadline_ms = parse_time("deadline", &ask.deadline)?;
        let now = now_ms();
        let cfg = self.cfg();
        let posting = bounty::Posting {
            reward_cents: ask.reward_cents,
            deadline_ms,
            max_submissions: ask.max_submissions,
            review: ask.review,
        };
        let max_submissions = bounty::check_post(&posting, &cfg.bounty, now)?;
        self.store
            .post_bounty(NewBounty {
                bounty_id: domain::new_id("bty"),
                buyer_id: buyer_id.as_str().to_string(),
                title,
                description,
                criteria,
                reward_cents: ask.reward_cents,
                deadline_ms,
                max_submissions,
                review: ask.review,
                terms: Terms::from_config(&cfg.bounty),
                now_ms: now,
                idem,
            })
            .await
    }

    pub async fn bounty(&self, bounty_id: &str) -> Result<BountyRecord, EngineError> {
        let id = check_id("bounty_id", bounty_id)?;
        self.store
            .bounty(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("no bounty {bounty_id}")))
    }

    /// Bounties, newest first (one more than `limit` is asked for, to say whether there are more).
    /// Bounties, newest first; `mine` narrows them to the caller's own (a buyer's posts, the
    /// ones a worker submitted to).
    pub async fn bounties(
        &self,
        status: Option<&str>,
        mine: Option<&Principal>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<BountyRecord>, bool), EngineError> {
        let status = match status {
            None => None,
            Some(s) => Some(BountyStatus::parse(s).ok_or_else(|| {
                EngineError::validation_field(
                    "status",
                    "status is one of open, completed, resolved, expired, cancelled",
                )
            })?),
        };
        let rows = self
            .store
            .bounties(BountyFilter {
                status,
                buyer_id: mine
                    .filter(|p| p.role != Role::Worker)
                    .map(|p| p.id.clone()),
                worker_id: mine
                    .filter(|p| p.role == Role::Worker)
                    .map(|p| p.id.clone()),
                before_seq: cursor,
                limit: limit + 1,
            })
            .await?;
        Ok(page(rows, limit))
    }

    pub async fn cancel_bounty(
        &self,
        buyer_id: &UserId,
        bounty_id: &str,
    ) -> Result<BountyRecord, EngineError> {
        let id = check_id("bounty_id", bounty_id)?;
        self.store
            .cancel_bounty(id, buyer_id.as_str().to_string(), now_ms())
            .await
    }
}

/// A dispute with what an admin needs to judge it: the bounty (its description and criteria)
/// and the submission (its content and the buyer's reason for rejecting it).
#[derive(Debug, Clone)]
pub struct DisputeCase {
    pub dispute: DisputeRecord,
    pub bounty: Option<BountyRecord>,
    pub submission: Option<SubmissionRecord>,
}

impl Engine {
    /// A worker's submission: first come, first served, one per worker, before the deadline and
    /// while there is room (409 otherwise).
    pub async fn submit_bounty(
        &self,
        worker_id: &WorkerId,
        bounty_id: &str,
        content: Value,
    ) -> Result<SubmissionRecord, EngineError> {
        let bounty_id = check_id("bounty_id", bounty_id)?;
        self.check_not_banned(worker_id.as_str())?;
        if !content.is_object() {
            return Err(EngineError::validation_field(
                "content",
                "content must be a JSON object",
            ));
        }
        let size = serde_json::to_string(&content)
            .map_err(EngineError::internal)?
            .len();
        if size > MAX_OUTPUT_BYTES {
            return Err(EngineError::PayloadTooLarge(format!(
                "content is larger than {} KB",
                MAX_OUTPUT_BYTES / 1024
            )));
        }
        let cfg = self.cfg();
        self.store
            .submit_bounty(NewSubmission {
                submission_id: domain::new_id("sub"),
                bounty_id,
                worker_id: worker_id.as_str().to_string(),
                content,
                validator_tiers: bounty::validator_tiers(&cfg, &cfg.bounty.validator_min_tier),
                now_ms: now_ms(),
            })
            .await
    }

    /// A bounty's submissions by position: all of them for its buyer and admins, only the
    /// caller's own for a worker; another buyer sees none (403).
    pub async fn submissions(
        &self,
        viewer: &Principal,
        bounty_id: &str,
        after_position: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<SubmissionRecord>, bool), EngineError> {
        let b = self.bounty(bounty_id).await?;
        let worker_id = match viewer.role {
            Role::Admin => None,
            Role::Buyer if viewer.id == b.buyer_id => None,
            Role::Buyer => {
                return Err(EngineError::Forbidden(
                    "only the bounty's buyer sees its submissions".into(),
                ));
            }
            Role::Worker => Some(viewer.id.clone()),
        };
        let rows = self
            .store
            .submissions(SubmissionFilter {
                bounty_id: b.bounty_id,
                worker_id,
                after_position: after_position.map(|p| u32::try_from(p).unwrap_or(u32::MAX)),
                limit: limit + 1,
            })
            .await?;
        Ok(page(rows, limit))
    }

    /// Whether `viewer` may watch a bounty's stream: its buyer, admins, and the workers who have
    /// submitted to it (403 for anyone else, 404 for no such bounty).
    pub async fn may_watch_bounty(
        &self,
        viewer: &Principal,
        bounty_id: &str,
    ) -> Result<(), EngineError> {
        let b = self.bounty(bounty_id).await?;
        let allowed = match viewer.role {
            Role::Admin => true,
            Role::Buyer => viewer.id == b.buyer_id,
            Role::Worker => !self
                .store
                .submissions(SubmissionFilter {
                    bounty_id: b.bounty_id,
                    worker_id: Some(viewer.id.clone()),
                    after_position: None,
                    limit: 1,
                })
                .await?
                .is_empty(),
        };
        if !allowed {
            return Err(EngineError::Forbidden(
                "a bounty's stream is for its buyer and the workers who submitted to it".into(),
            ));
        }
        Ok(())
    }

    /// The bounty's buyer approves a pending submission (paying it) or rejects it with a reason.
    pub async fn review_submission(
        &self,
        buyer_id: &UserId,
        bounty_id: &str,
        submission_id: &str,
        reject_reason: Option<&str>,
        idem: Option<IdemKey>,
    ) -> Result<Reviewed, EngineError> {
        let verdict = match reject_reason {
            None => Verdict::Approve,
            Some(r) => Verdict::Reject {
                reason: check_text("reason", r, MAX_REASON_CHARS, true)?,
            },
        };
        self.store
            .review_submission(ReviewAsk {
                bounty_id: check_id("bounty_id", bounty_id)?,
                submission_id: check_id("submission_id", submission_id)?,
                buyer_id: Some(buyer_id.as_str().to_string()),
                verdict,
                now_ms: now_ms(),
                idem,
            })
            .await
    }

    /// A validator's vote on a pending submission of a consensus bounty; the vote that makes the
    /// majority certain decides it (see [`Store::vote_submission`]). A validator the decision
    /// banned (it kept voting against the majority) is refused from then on.
    pub async fn vote(
        &self,
        worker_id: &WorkerId,
        bounty_id: &str,
        submission_id: &str,
        approve: bool,
    ) -> Result<Voted, EngineError> {
        self.check_not_banned(worker_id.as_str())?;
        let voted = self
            .store
            .vote_submission(VoteAsk {
                bounty_id: check_id("bounty_id", bounty_id)?,
                submission_id: check_id("submission_id", submission_id)?,
                validator_id: worker_id.as_str().to_string(),
                approve,
                cfg: self.cfg(),
                now_ms: now_ms(),
            })
            .await?;
        if !voted.banned.is_empty() {
            self.publisher.publish([crate::effects::Effect::Banned {
                worker_ids: voted.banned.clone(),
            }]);
        }
        Ok(voted)
    }

    /// The votes a validator is asked for and has not cast, oldest first.
    pub async fn vote_requests(
        &self,
        worker_id: &WorkerId,
        limit: u32,
    ) -> Result<Vec<VoteRequest>, EngineError> {
        self.store
            .vote_requests(worker_id.as_str().to_string(), limit)
            .await
    }

    /// A worker disputes the rejection of its submission, within the dispute window.
    pub async fn dispute_submission(
        &self,
        worker_id: &WorkerId,
        bounty_id: &str,
        submission_id: &str,
        reason: &str,
    ) -> Result<DisputeRecord, EngineError> {
        let reason = check_text("reason", reason, MAX_REASON_CHARS, true)?;
        self.store
            .open_dispute(NewDispute {
                dispute_id: domain::new_id("dsp"),
                bounty_id: check_id("bounty_id", bounty_id)?,
                submission_id: check_id("submission_id", submission_id)?,
                worker_id: worker_id.as_str().to_string(),
                reason,
                now_ms: now_ms(),
            })
            .await
    }

    /// Disputes, newest first, each with its bounty and submission.
    pub async fn disputes(
        &self,
        status: Option<&str>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<DisputeCase>, bool), EngineError> {
        let status = match status {
            None => None,
            Some(s) => Some(DisputeStatus::parse(s).ok_or_else(|| {
                EngineError::validation_field("status", "status is one of open, resolved, closed")
            })?),
        };
        let rows = self
            .store
            .disputes(DisputeFilter {
                status,
                before_seq: cursor,
                limit: limit + 1,
            })
            .await?;
        let (rows, more) = page(rows, limit);
        let mut cases = Vec::with_capacity(rows.len());
        for dispute in rows {
            let bounty = self.store.bounty(dispute.bounty_id.clone()).await?;
            let submission = self.store.submission(dispute.submission_id.clone()).await?;
            cases.push(DisputeCase {
                dispute,
                bounty,
                submission,
            });
        }
        Ok((cases, more))
    }

    /// An admin resolves an open dispute: to the worker, the buyer, or a split.
    pub async fn resolve_dispute(
        &self,
        by: &Who,
        dispute_id: &str,
        outcome: Outcome,
        worker_pct: Option<u32>,
        idem: Option<IdemKey>,
    ) -> Result<Resolved, EngineError> {
        let worker_pct = outcome.worker_pct(worker_pct)?;
        self.store
            .resolve_dispute(Resolution {
                dispute_id: check_id("dispute_id", dispute_id)?,
                by: by.clone(),
                outcome,
                worker_pct,
                now_ms: now_ms(),
                idem,
            })
            .await
    }
}

/// Whether `raw` can be an id: 1 to [`MAX_TASK_ID_BYTES`] bytes of letters, digits, `_` and `-`.
pub(super) fn well_formed_id(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= MAX_TASK_ID_BYTES
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An id from a path: one that cannot be an id names nothing (404).
fn check_id(field: &str, raw: &str) -> Result<String, EngineError> {
    if !well_formed_id(raw) {
        return Err(EngineError::NotFound(format!("no {field} {raw:?}")));
    }
    Ok(raw.to_string())
}
