//! What the store keeps of bounties.

use serde::{Deserialize, Serialize};

use super::IdemKey;
use crate::rules::bounty::{BountyStatus, DisputeStatus, Outcome, Review, SubmissionStatus, Terms};

/// A bounty to post: its reward moves into escrow in the same transaction.
#[derive(Debug, Clone)]
pub struct NewBounty {
    pub bounty_id: String,
    pub buyer_id: String,
    pub title: String,
    pub description: String,
    pub criteria: Option<String>,
    pub reward_cents: i64,
    pub deadline_ms: i64,
    pub max_submissions: u32,
    pub review: Review,
    pub terms: Terms,
    pub now_ms: i64,
    pub idem: Option<IdemKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BountyRecord {
    pub seq: i64,
    pub bounty_id: String,
    pub buyer_id: String,
    pub title: String,
    pub description: String,
    pub criteria: Option<String>,
    pub reward_cents: i64,
    pub deadline_ms: i64,
    pub max_submissions: u32,
    pub review: Review,
    pub terms: Terms,
    pub status: BountyStatus,
    pub submissions: u32,
    pub created_at_ms: i64,
    /// When it was completed, resolved, expired or cancelled.
    pub settled_at_ms: Option<i64>,
}

impl BountyRecord {
    /// What is in escrow for it now.
    pub fn escrow_cents(&self) -> i64 {
        if self.status.holds_escrow() {
            self.reward_cents
        } else {
            0
        }
    }
}

/// Which bounties to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct BountyFilter {
    pub status: Option<BountyStatus>,
    pub buyer_id: Option<String>,
    /// Only the bounties this worker submitted to.
    pub worker_id: Option<String>,
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// A worker's submission to a bounty; its position is given by the store (first come, first
/// served).
#[derive(Debug, Clone)]
pub struct NewSubmission {
    pub submission_id: String,
    pub bounty_id: String,
    pub worker_id: String,
    /// The submission's content, a JSON object (checked for size by the engine).
    pub content: serde_json::Value,
    /// For a consensus bounty: the tiers whose workers are asked to vote on it.
    pub validator_tiers: Vec<String>,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmissionRecord {
    pub submission_id: String,
    pub bounty_id: String,
    pub worker_id: String,
    /// 1 for the first submission to its bounty, 2 for the next…
    pub position: u32,
    pub content: serde_json::Value,
    pub status: SubmissionStatus,
    /// The buyer's reason for a rejection.
    pub reason: Option<String>,
    pub submitted_at_ms: i64,
    pub reviewed_at_ms: Option<i64>,
    /// Approved by the Supervisor because the buyer did not review it in time.
    pub auto_approved: bool,
    /// While pending: when it is approved automatically.
    pub review_due_ms: Option<i64>,
    /// While rejected: when the worker's dispute window closes.
    pub dispute_due_ms: Option<i64>,
    /// What its worker was paid (the frozen lot), once approved or resolved for the worker.
    pub paid_cents: i64,
    /// Consensus review: the validators' votes so far.
    pub approvals: u32,
    pub rejections: u32,
}

/// Which submissions of a bounty to list, by position.
#[derive(Debug, Clone)]
pub struct SubmissionFilter {
    pub bounty_id: String,
    /// Only this worker's (a worker sees only its own).
    pub worker_id: Option<String>,
    pub after_position: Option<u32>,
    pub limit: u32,
}

/// A review: by the bounty's buyer, or by the Supervisor (`buyer_id` None) approving a
/// submission left unreviewed past its due time.
#[derive(Debug, Clone)]
pub struct ReviewAsk {
    pub bounty_id: String,
    pub submission_id: String,
    pub buyer_id: Option<String>,
    pub verdict: Verdict,
    pub now_ms: i64,
    pub idem: Option<IdemKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Reject { reason: String },
}

/// What a review changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reviewed {
    pub bounty: BountyRecord,
    pub submission: SubmissionRecord,
}

/// A worker disputes the rejection of its submission.
#[derive(Debug, Clone)]
pub struct NewDispute {
    pub dispute_id: String,
    pub bounty_id: String,
    pub submission_id: String,
    pub worker_id: String,
    pub reason: String,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeRecord {
    pub seq: i64,
    pub dispute_id: String,
    pub bounty_id: String,
    pub submission_id: String,
    pub worker_id: String,
    pub buyer_id: String,
    /// The worker's words.
    pub reason: String,
    /// The buyer's words: the reason it gave for the rejection.
    pub rejection_reason: String,
    pub status: DisputeStatus,
    pub opened_at_ms: i64,
    pub outcome: Option<Outcome>,
    pub worker_pct: Option<u32>,
    /// What the resolution paid the worker (its frozen lot) and gave back to the buyer.
    pub worker_cents: i64,
    pub refund_cents: i64,
    pub resolved_at_ms: Option<i64>,
    pub resolved_by: Option<String>,
}

/// Which disputes to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct DisputeFilter {
    pub status: Option<DisputeStatus>,
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// An admin's resolution of a dispute: `worker_pct` of the escrow is paid to the worker as on
/// approval (less the fee on that part), the rest goes back to the buyer.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub dispute_id: String,
    /// The admin, and from where (for the audit log).
    pub by: super::Who,
    pub outcome: Outcome,
    pub worker_pct: u32,
    pub now_ms: i64,
    pub idem: Option<IdemKey>,
}

/// What a resolution changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub dispute: DisputeRecord,
    pub bounty: BountyRecord,
}

/// A buyer told that a submission will be approved automatically unless reviewed first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warned {
    pub bounty_id: String,
    pub buyer_id: String,
    pub submission_id: String,
    pub auto_release_at_ms: i64,
}

/// What one pass of the bounty timers did, each thing once: warnings of the automatic approval,
/// the automatic approvals, and the expiries (refunded).
#[derive(Debug, Clone, Default)]
pub struct BountySweep {
    pub warned: Vec<Warned>,
    pub approved: Vec<Reviewed>,
    pub expired: Vec<BountyRecord>,
    /// Validators asked to vote in a new round (their first ones had not decided in time).
    pub invited: u32,
}

impl BountySweep {
    pub fn is_empty(&self) -> bool {
        self.warned.is_empty()
            && self.approved.is_empty()
            && self.expired.is_empty()
            && self.invited == 0
    }
}

/// A validator's vote on a pending submission of a consensus bounty. The tiers it must be of
/// come from the config of the moment.
#[derive(Debug, Clone)]
pub struct VoteAsk {
    pub bounty_id: String,
    pub submission_id: String,
    pub validator_id: String,
    pub approve: bool,
    /// The config of the moment: the validator tiers, and the penalty ladder for a validator who
    /// keeps voting against the majority.
    pub cfg: std::sync::Arc<crate::config::PlatformConfig>,
    pub now_ms: i64,
}

/// What a vote changed: the tally, and the decision when this vote made the majority certain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voted {
    pub submission: SubmissionRecord,
    /// The bounty after the vote (completed when the vote approved the submission).
    pub bounty: BountyRecord,
    /// Whether this vote decided the submission (approved or rejected it).
    pub decided: bool,
    /// Validators the decision flagged to QA (they keep voting against the majority), and which
    /// of them the penalty ladder banned.
    pub flagged: Vec<String>,
    pub banned: Vec<String>,
}

/// A vote a validator is asked for: the bounty (its description and criteria) and the
/// submission (its content), never its worker or the other votes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteRequest {
    pub bounty: BountyRecord,
    pub submission: SubmissionRecord,
    pub asked_at_ms: i64,
}
