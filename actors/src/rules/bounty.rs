//! Bounties: larger work with the reward held in escrow, several workers submitting, the buyer
//! reviewing, disputes an admin resolves and consensus votes. The rules here decide; a store reads
//! the facts inside its transaction, asks, and writes the answer with its journal entry.
//!
//! The life of a bounty:
//! - `open`: the reward is in escrow; workers submit (first come, first served) until the deadline
//!   or `max_submissions`. The buyer approves one submission or rejects submissions (with a
//!   reason); a rejected worker may dispute within the dispute window.
//! - `completed`: a submission was approved (by the buyer, automatically after the review window,
//!   or by consensus): the winner's pay is a frozen lot, the fee went to revenue.
//! - `resolved`: an admin resolved a dispute: the worker's part paid as on approval, the rest
//!   back to the buyer.
//! - `expired`: past the deadline with nothing approved, nothing left to review and no dispute
//!   open or still possible: the escrow went back to the buyer.
//! - `cancelled`: the buyer cancelled before anyone submitted: refunded.
//!
//! While a dispute is open the escrow is the admin's to move: the buyer cannot approve another
//! submission, and neither the automatic approval nor the expiry touch the bounty.

use serde::{Deserialize, Serialize};

use crate::config::{BountyDoc, RateBp, rate_bp};
use crate::error::EngineError;
use crate::ledger::{self, Entry, EntryKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Review {
    /// The buyer approves or rejects.
    Manual,
    /// Validators vote on each submission; the majority decides.
    Consensus,
}

impl Review {
    pub fn as_str(self) -> &'static str {
        match self {
            Review::Manual => "manual",
            Review::Consensus => "consensus",
        }
    }

    pub fn parse(s: &str) -> Option<Review> {
        match s {
            "manual" => Some(Review::Manual),
            "consensus" => Some(Review::Consensus),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BountyStatus {
    Open,
    Completed,
    Resolved,
    Expired,
    Cancelled,
}

impl BountyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BountyStatus::Open => "open",
            BountyStatus::Completed => "completed",
            BountyStatus::Resolved => "resolved",
            BountyStatus::Expired => "expired",
            BountyStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<BountyStatus> {
        [
            BountyStatus::Open,
            BountyStatus::Completed,
            BountyStatus::Resolved,
            BountyStatus::Expired,
            BountyStatus::Cancelled,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
    }

    /// Whether the reward is still in escrow.
    pub fn holds_escrow(self) -> bool {
        self == BountyStatus::Open
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionStatus {
    /// Waiting for the buyer's review (or the validators' votes).
    Pending,
    Approved,
    Rejected,
    /// Rejected, and its worker disputes that.
    Disputed,
    /// Its dispute was resolved by an admin (the dispute says how).
    Resolved,
    /// The bounty ended another way (another submission won, a dispute settled it, it expired).
    Closed,
}

impl SubmissionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionStatus::Pending => "pending",
            SubmissionStatus::Approved => "approved",
            SubmissionStatus::Rejected => "rejected",
            SubmissionStatus::Disputed => "disputed",
            SubmissionStatus::Resolved => "resolved",
            SubmissionStatus::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<SubmissionStatus> {
        [
            SubmissionStatus::Pending,
            SubmissionStatus::Approved,
            SubmissionStatus::Rejected,
            SubmissionStatus::Disputed,
            SubmissionStatus::Resolved,
            SubmissionStatus::Closed,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
    }
}

/// The terms a bounty is posted under, from `config:bounty` at that moment, kept with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    pub fee_bp: RateBp,
    pub dispute_window_ms: i64,
    pub auto_release_ms: i64,
    pub warning_ms: i64,
    /// Validators per submission (consensus review only).
    pub validators: u32,
    pub validator_fee_cents: i64,
    /// How long the validators asked have before more are asked (bounties posted before this
    /// term existed get the default).
    #[serde(default = "default_vote_window_ms")]
    pub vote_window_ms: i64,
}

fn default_vote_window_ms() -> i64 {
    crate::config::DEFAULT_VOTE_WINDOW_SECONDS as i64 * 1000
}

impl Terms {
    pub fn from_config(doc: &BountyDoc) -> Terms {
        let ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        Terms {
            // Validated when the document was stored.
            fee_bp: rate_bp("bounty.fee_pct", doc.fee_pct).unwrap_or(0),
            dispute_window_ms: ms(doc.dispute_window_seconds),
            auto_release_ms: ms(doc.auto_release_seconds),
            warning_ms: ms(doc.auto_release_warning_seconds),
            validators: doc.validators,
            validator_fee_cents: doc.validator_fee_cents,
            vote_window_ms: ms(doc.vote_window_seconds),
        }
    }
}

/// What a buyer asks for, checked against the config before anything is stored.
#[derive(Debug, Clone)]
pub struct Posting {
    pub reward_cents: i64,
    pub deadline_ms: i64,
    pub max_submissions: Option<u32>,
    pub review: Review,
}

/// Checks a new bounty's numbers; returns the `max_submissions` it will have.
pub fn check_post(p: &Posting, doc: &BountyDoc, now_ms: i64) -> Result<u32, EngineError> {
    if !(doc.min_reward_cents..=doc.max_reward_cents).contains(&p.reward_cents) {
        return Err(EngineError::validation_field(
            "reward_cents",
            format!(
                "reward_cents must be between {} and {}",
                doc.min_reward_cents, doc.max_reward_cents
            ),
        ));
    }
    let latest = now_ms.saturating_add(i64::try_from(doc.max_deadline_seconds).unwrap_or(0) * 1000);
    if p.deadline_ms <= now_ms || p.deadline_ms > latest {
        return Err(EngineError::validation_field(
            "deadline",
            format!(
                "deadline must be in the future and at most {} days ahead",
                doc.max_deadline_seconds / 86_400
            ),
        ));
    }
    let max = p.max_submissions.unwrap_or(doc.max_submissions);
    if !(1..=doc.max_submissions).contains(&max) {
        return Err(EngineError::validation_field(
            "max_submissions",
            format!(
                "max_submissions must be between 1 and {}",
                doc.max_submissions
            ),
        ));
    }
    if p.review == Review::Consensus {
        let (_, fee) = pay(p.reward_cents, Terms::from_config(doc).fee_bp);
        let validators_cost = i64::from(doc.validators) * doc.validator_fee_cents;
        if validators_cost > fee {
            return Err(EngineError::validation_field(
                "review",
                format!(
                    "a consensus review pays {} validators {} cents each out of the fee; this \
                     reward's fee is only {fee} cents",
                    doc.validators, doc.validator_fee_cents
                ),
            ));
        }
    }
    Ok(max)
}

/// Whether its buyer may cancel a bounty now: only an open one nobody has submitted to.
pub fn check_cancel(status: BountyStatus, submissions: u32) -> Result<(), EngineError> {
    if status != BountyStatus::Open {
        return Err(EngineError::Conflict(format!(
            "this bounty is already {}",
            status.as_str()
        )));
    }
    if submissions > 0 {
        return Err(EngineError::Conflict(
            "a bounty can be cancelled only before anyone submits to it".into(),
        ));
    }
    Ok(())
}

/// What the store knows of a bounty when a worker submits.
#[derive(Debug, Clone, Copy)]
pub struct SubmitFacts {
    pub status: BountyStatus,
    pub deadline_ms: i64,
    pub max_submissions: u32,
    pub submissions: u32,
    pub already_submitted: bool,
    pub is_owner: bool,
}

/// Whether a worker may submit now. Every refusal is a 409 with its reason.
pub fn check_submit(f: &SubmitFacts, now_ms: i64) -> Result<(), EngineError> {
    let conflict = |m: &str| Err(EngineError::Conflict(m.into()));
    if f.status != BountyStatus::Open {
        return Err(EngineError::Conflict(format!(
            "this bounty is {}: it takes no more submissions",
            f.status.as_str()
        )));
    }
    if now_ms >= f.deadline_ms {
        return conflict("this bounty's deadline has passed");
    }
    if f.is_owner {
        return conflict("a bounty's owner cannot submit to it");
    }
    if f.already_submitted {
        return conflict("you have already submitted to this bounty (one submission per worker)");
    }
    if f.submissions >= f.max_submissions {
        return conflict("this bounty has all the submissions it takes");
    }
    Ok(())
}

/// What the store knows when the buyer (or the Supervisor, for an automatic approval) reviews a
/// submission.
#[derive(Debug, Clone, Copy)]
pub struct ReviewFacts {
    pub bounty: BountyStatus,
    pub submission: SubmissionStatus,
    /// Disputes open on the bounty: while one is, its escrow is the admin's to move.
    pub open_disputes: u32,
}

/// Whether a submission may be approved (`approve`) or rejected now. Each happens once: a
/// submission already reviewed, or a bounty already settled, is a 409.
pub fn check_review(f: &ReviewFacts, approve: bool) -> Result<(), EngineError> {
    if f.bounty != BountyStatus::Open {
        return Err(EngineError::Conflict(format!(
            "this bounty is already {}",
            f.bounty.as_str()
        )));
    }
    if f.submission != SubmissionStatus::Pending {
        return Err(EngineError::Conflict(format!(
            "this submission is already {}",
            f.submission.as_str()
        )));
    }
    if approve && f.open_disputes > 0 {
        return Err(EngineError::Conflict(
            "a dispute over this bounty is open: its escrow waits for an admin's resolution".into(),
        ));
    }
    Ok(())
}

/// What the store knows when a worker disputes the rejection of its submission.
#[derive(Debug, Clone, Copy)]
pub struct DisputeFacts {
    pub bounty: BountyStatus,
    pub submission: SubmissionStatus,
    /// When the rejection's dispute window closes.
    pub dispute_due_ms: Option<i64>,
}

/// Whether a worker may dispute now: only a rejected submission, once, within the dispute window,
/// and while the reward is still in escrow.
pub fn check_dispute(f: &DisputeFacts, now_ms: i64) -> Result<(), EngineError> {
    match f.submission {
        SubmissionStatus::Rejected => {}
        SubmissionStatus::Disputed | SubmissionStatus::Resolved => {
            return Err(EngineError::Conflict(
                "this submission has already been disputed".into(),
            ));
        }
        s => {
            return Err(EngineError::Conflict(format!(
                "only a rejected submission can be disputed; this one is {}",
                s.as_str()
            )));
        }
    }
    if f.bounty != BountyStatus::Open {
        return Err(EngineError::Conflict(format!(
            "this bounty is already {}: nothing is left in escrow to dispute",
            f.bounty.as_str()
        )));
    }
    if f.dispute_due_ms.is_none_or(|due| now_ms >= due) {
        return Err(EngineError::Conflict(
            "the dispute window for this rejection has closed".into(),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    /// Waiting for an admin.
    Open,
    Resolved,
    /// Another dispute's resolution settled the bounty first.
    Closed,
}

impl DisputeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DisputeStatus::Open => "open",
            DisputeStatus::Resolved => "resolved",
            DisputeStatus::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<DisputeStatus> {
        [
            DisputeStatus::Open,
            DisputeStatus::Resolved,
            DisputeStatus::Closed,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// Whether an admin may resolve a dispute now: once, and only while it is open.
pub fn check_resolve(status: DisputeStatus) -> Result<(), EngineError> {
    if status != DisputeStatus::Open {
        return Err(EngineError::Conflict(format!(
            "this dispute is already {}",
            status.as_str()
        )));
    }
    Ok(())
}

/// Splits what a bounty pays its winner into (worker, fee): the fee is `fee_bp` of the amount,
/// rounded down, so any fraction of a cent stays with the worker.
pub fn pay(amount_cents: i64, fee_bp: RateBp) -> (i64, i64) {
    let fee = (i128::from(amount_cents) * i128::from(fee_bp.min(10_000)) / 10_000) as i64;
    (amount_cents - fee, fee)
}

/// A dispute's resolution: the worker's part (`worker_pct` of the escrow, rounded down) paid as
/// on approval, the rest back to the buyer. Returns (worker's part, buyer's part).
pub fn resolution_parts(escrow_cents: i64, worker_pct: u32) -> (i64, i64) {
    let pct = i128::from(worker_pct.min(100));
    let worker = (i128::from(escrow_cents) * pct / 100) as i64;
    (worker, escrow_cents - worker)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Worker,
    Buyer,
    Split,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Worker => "worker",
            Outcome::Buyer => "buyer",
            Outcome::Split => "split",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "worker" => Some(Outcome::Worker),
            "buyer" => Some(Outcome::Buyer),
            "split" => Some(Outcome::Split),
            _ => None,
        }
    }

    /// The worker's percentage: 100, 0, or the split's (1 to 99; required only for a split).
    pub fn worker_pct(self, split_pct: Option<u32>) -> Result<u32, EngineError> {
        match (self, split_pct) {
            (Outcome::Worker, None | Some(100)) => Ok(100),
            (Outcome::Buyer, None | Some(0)) => Ok(0),
            (Outcome::Split, Some(p)) if (1..=99).contains(&p) => Ok(p),
            (Outcome::Split, _) => Err(EngineError::validation_field(
                "worker_pct",
                "a split needs worker_pct between 1 and 99",
            )),
            (_, Some(_)) => Err(EngineError::validation_field(
                "worker_pct",
                "worker_pct goes only with the outcome \"split\"",
            )),
        }
    }
}

/// The majority of `votes` (approvals, rejections) once it is certain with `needed` voters in
/// all: Some(true) to approve, Some(false) to reject, None while it could still go either way.
pub fn majority(approvals: u32, rejections: u32, needed: u32) -> Option<bool> {
    let half = needed / 2;
    if approvals > half {
        Some(true)
    } else if rejections > half {
        Some(false)
    } else {
        None
    }
}

/// The tiers whose workers may validate: `min_tier` and every tier above it, from the config's
/// tier levels (lowest first). An unknown `min_tier` (the config refuses one) allows none.
pub fn validator_tiers(cfg: &crate::config::PlatformConfig, min_tier: &str) -> Vec<String> {
    cfg.tier_levels
        .iter()
        .skip_while(|t| t.name != min_tier)
        .map(|t| t.name.clone())
        .collect()
}

/// What the store knows when a worker votes on a submission.
#[derive(Debug, Clone, Copy)]
pub struct VoteFacts {
    pub review: Review,
    pub bounty: BountyStatus,
    pub submission: SubmissionStatus,
    /// The voter's tier is one of the validator tiers.
    pub tier_allowed: bool,
    /// The voter submitted to this bounty (its own work or a rival's: either way, not impartial).
    pub submitted_to_bounty: bool,
    pub already_voted: bool,
    pub open_disputes: u32,
}

/// Whether a worker may vote now. A worker who may never vote on it is a 403, asked first so
/// that it learns nothing of the submission's state; a vote that comes too late or twice, or on a
/// bounty its buyer reviews, is a 409.
pub fn check_vote(f: &VoteFacts) -> Result<(), EngineError> {
    if !f.tier_allowed {
        return Err(EngineError::Forbidden(
            "only workers of the validator tiers (config:bounty.validator_min_tier and above) vote"
                .into(),
        ));
    }
    if f.submitted_to_bounty {
        return Err(EngineError::Forbidden(
            "a worker who submitted to a bounty does not vote on its submissions".into(),
        ));
    }
    if f.review != Review::Consensus {
        return Err(EngineError::Conflict(
            "this bounty is reviewed by its buyer, not by validators".into(),
        ));
    }
    if f.already_voted {
        return Err(EngineError::Conflict(
            "you have already voted on this submission".into(),
        ));
    }
    if f.bounty != BountyStatus::Open {
        return Err(EngineError::Conflict(format!(
            "this bounty is already {}",
            f.bounty.as_str()
        )));
    }
    if f.submission != SubmissionStatus::Pending {
        return Err(EngineError::Conflict(format!(
            "this submission is already {}: its vote is over",
            f.submission.as_str()
        )));
    }
    if f.open_disputes > 0 {
        return Err(EngineError::Conflict(
            "a dispute over this bounty is open: its escrow waits for an admin's resolution".into(),
        ));
    }
    Ok(())
}

/// The reason a submission rejected by the validators carries (the worker may dispute it).
pub fn consensus_reason(approvals: u32, rejections: u32) -> String {
    format!(
        "rejected by consensus: {rejections} of {} validators voted against it",
        approvals + rejections
    )
}

/// What a validator's vote record says after a decided vote: flagged to QA when, over at least
/// `MIN_VOTES_TO_JUDGE` decided votes, it sided against the majority more often than not.
pub const MIN_VOTES_TO_JUDGE: u32 = 3;

pub fn validator_suspicious(with_majority: u32, against_majority: u32) -> bool {
    with_majority + against_majority >= MIN_VOTES_TO_JUDGE && against_majority > with_majority
}

/// The bounty's reward goes into escrow.
pub fn escrow_entry(bounty_id: &str, buyer_id: &str, reward_cents: i64) -> Entry {
    Entry::new(EntryKind::BountyEscrow, bounty_id)
        .for_task(bounty_id)
        .transfer(
            ledger::available(buyer_id),
            ledger::BOUNTY_ESCROW,
            reward_cents,
        )
}

/// Pays out of a bounty's escrow: the worker's part (less the fee on it) to the worker's frozen
/// balance, each rewarded validator's fee from the platform's fee, the rest of the fee to revenue,
/// and `refund_cents` back to the buyer. `validators` are paid only if the fee covers them
/// (`check_post` made sure it does for the full reward).
pub struct Payout<'a> {
    pub bounty_id: &'a str,
    pub buyer_id: &'a str,
    pub worker_id: &'a str,
    /// The part of the escrow the worker wins (before the fee).
    pub won_cents: i64,
    pub refund_cents: i64,
    pub fee_bp: RateBp,
    pub validators: &'a [String],
    pub validator_fee_cents: i64,
}

/// Each of `n` validators' pay out of a payout's `fee`: their fee when the fee covers them all,
/// else nothing (`check_post` made sure it does for a whole reward).
fn out_of_fee(fee: i64, n: usize, validator_fee_cents: i64) -> i64 {
    if n > 0 && n as i64 * validator_fee_cents <= fee {
        validator_fee_cents
    } else {
        0
    }
}

/// What each of the `n` validators who voted with a consensus decision is paid: out of the
/// bounty's fee when they approved (the winner takes the whole reward), the same fee from the QA
/// fund when they rejected ([`rejection_fee_entry`]).
pub fn validator_pay(reward_cents: i64, t: &Terms, approved: bool, n: usize) -> i64 {
    if approved {
        out_of_fee(pay(reward_cents, t.fee_bp).1, n, t.validator_fee_cents)
    } else {
        t.validator_fee_cents.max(0)
    }
}

/// What a [`Payout`] moves, in figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayoutFigures {
    /// The worker's frozen lot.
    pub worker_cents: i64,
    /// What revenue keeps.
    pub revenue_cents: i64,
    /// Paid to each validator.
    pub per_validator_cents: i64,
}

impl Payout<'_> {
    pub fn figures(&self) -> PayoutFigures {
        let (worker_cents, fee) = pay(self.won_cents, self.fee_bp);
        let n = self.validators.len();
        let per_validator_cents = out_of_fee(fee, n, self.validator_fee_cents);
        PayoutFigures {
            worker_cents,
            revenue_cents: fee - n as i64 * per_validator_cents,
            per_validator_cents,
        }
    }

    pub fn entry(&self) -> Entry {
        let f = self.figures();
        let mut e = Entry::new(EntryKind::BountyPay, self.bounty_id)
            .for_task(self.bounty_id)
            .post(ledger::BOUNTY_ESCROW, -(self.won_cents + self.refund_cents))
            .post(ledger::frozen(self.worker_id), f.worker_cents)
            .post(ledger::REVENUE, f.revenue_cents)
            .post(ledger::available(self.buyer_id), self.refund_cents);
        for v in self.validators {
            e = e.post(ledger::available(v), f.per_validator_cents);
        }
        e
    }
}

/// Pays the validators who voted with the majority to reject a submission, from the QA fund.
/// None when there is nothing to pay.
pub fn rejection_fee_entry(
    submission_id: &str,
    bounty_id: &str,
    validators: &[String],
    fee_cents: i64,
) -> Option<Entry> {
    if validators.is_empty() || fee_cents <= 0 {
        return None;
    }
    let total = fee_cents * validators.len() as i64;
    let mut e = Entry::new(EntryKind::ValidatorFee, submission_id)
        .for_task(bounty_id)
        .post(ledger::QA_FUND, -total);
    for v in validators {
        e = e.post(ledger::available(v), fee_cents);
    }
    Some(e)
}

/// The whole escrow back to the buyer (expired, cancelled, or a dispute resolved for the buyer).
pub fn refund_entry(bounty_id: &str, buyer_id: &str, cents: i64) -> Entry {
    Entry::new(EntryKind::BountyRefund, bounty_id)
        .for_task(bounty_id)
        .transfer(ledger::BOUNTY_ESCROW, ledger::available(buyer_id), cents)
}

/// When the Supervisor next has something to do for a submission (all due times are stored):
/// the buyer's warning, the automatic approval, or the end of a rejection's dispute window.
pub fn review_due_ms(submitted_ms: i64, t: &Terms) -> i64 {
    submitted_ms.saturating_add(t.auto_release_ms)
}

pub fn warning_due_ms(submitted_ms: i64, t: &Terms) -> i64 {
    review_due_ms(submitted_ms, t).saturating_sub(t.warning_ms)
}

/// When more validators are asked to vote on a submission whose vote is not decided yet.
pub fn invite_due_ms(asked_ms: i64, t: &Terms) -> i64 {
    asked_ms.saturating_add(t.vote_window_ms.max(1000))
}

pub fn dispute_due_ms(rejected_ms: i64, t: &Terms) -> i64 {
    rejected_ms.saturating_add(t.dispute_window_ms)
}

/// What the store knows of an open bounty when the expiry sweep looks at it.
#[derive(Debug, Clone, Copy)]
pub struct ExpiryFacts {
    pub deadline_ms: i64,
    /// Submissions still waiting for a review (they are approved automatically in time).
    pub pending: u32,
    pub open_disputes: u32,
    /// The latest end of a rejection's dispute window, if any.
    pub last_dispute_due_ms: Option<i64>,
}

/// Whether an open bounty expires now and is refunded.
pub fn expires(f: &ExpiryFacts, now_ms: i64) -> bool {
    now_ms >= f.deadline_ms
        && f.pending == 0
        && f.open_disputes == 0
        && f.last_dispute_due_ms.is_none_or(|due| now_ms >= due)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PlatformConfig;
    use proptest::prelude::*;

    fn doc() -> BountyDoc {
        PlatformConfig::builtin().bounty
    }

    fn sum(e: &Entry) -> i64 {
        e.postings.iter().map(|p| p.amount_cents).sum()
    }

    fn get(e: &Entry, account: &str) -> i64 {
        e.postings
            .iter()
            .filter(|p| p.account == account)
            .map(|p| p.amount_cents)
            .sum()
    }

    #[test]
    fn validators_are_paid_out_of_the_fee_for_an_approval_and_by_qa_for_a_rejection() {
        let t = Terms::from_config(&doc());
        // 10 % of 1 000 is 100: three validators at 25 fit, five would not.
        assert_eq!(validator_pay(1_000, &t, true, 3), 25);
        assert_eq!(validator_pay(1_000, &t, true, 5), 0);
        assert_eq!(validator_pay(1_000, &t, false, 5), 25);
        let entry = rejection_fee_entry("s", "b", &["v1".into(), "v2".into()], 25).unwrap();
        assert_eq!(sum(&entry), 0);
        assert_eq!(get(&entry, ledger::QA_FUND), -50);
        assert!(rejection_fee_entry("s", "b", &[], 25).is_none());
    }

    #[test]
    fn a_vote_is_refused_for_each_reason() {
        let ok = VoteFacts {
            review: Review::Consensus,
            bounty: BountyStatus::Open,
            submission: SubmissionStatus::Pending,
            tier_allowed: true,
            submitted_to_bounty: false,
            already_voted: false,
            open_disputes: 0,
        };
        assert!(check_vote(&ok).is_ok());
        let forbidden = |f: VoteFacts| matches!(check_vote(&f), Err(EngineError::Forbidden(_)));
        let conflict = |f: VoteFacts| matches!(check_vote(&f), Err(EngineError::Conflict(_)));
        assert!(forbidden(VoteFacts {
            tier_allowed: false,
            ..ok
        }));
        assert!(forbidden(VoteFacts {
            submitted_to_bounty: true,
            ..ok
        }));
        assert!(conflict(VoteFacts {
            review: Review::Manual,
            ..ok
        }));
        assert!(conflict(VoteFacts {
            already_voted: true,
            ..ok
        }));
        assert!(conflict(VoteFacts {
            bounty: BountyStatus::Completed,
            ..ok
        }));
        assert!(conflict(VoteFacts {
            submission: SubmissionStatus::Rejected,
            ..ok
        }));
        assert!(conflict(VoteFacts {
            open_disputes: 1,
            ..ok
        }));
        // Who may never vote hears so before anything about the bounty's state or kind.
        assert!(forbidden(VoteFacts {
            tier_allowed: false,
            review: Review::Manual,
            submission: SubmissionStatus::Rejected,
            ..ok
        }));
        let cfg = PlatformConfig::builtin();
        assert_eq!(validator_tiers(&cfg, "trusted"), ["trusted", "elite"]);
        assert!(validator_tiers(&cfg, "nobody").is_empty());
    }

    #[test]
    fn a_post_is_checked_against_the_config() {
        let d = doc();
        let now = 1_000_000;
        let ok = Posting {
            reward_cents: 5000,
            deadline_ms: now + 3_600_000,
            max_submissions: None,
            review: Review::Manual,
        };
        assert_eq!(check_post(&ok, &d, now).unwrap(), d.max_submissions);
        let field = |p: Posting| match check_post(&p, &d, now) {
            Err(EngineError::Validation { details, .. }) => details["field"].clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(Posting {
                reward_cents: d.min_reward_cents - 1,
                ..ok.clone()
            }),
            "reward_cents"
        );
        assert_eq!(
            field(Posting {
                deadline_ms: now,
                ..ok.clone()
            }),
            "deadline"
        );
        assert_eq!(
            field(Posting {
                deadline_ms: now + d.max_deadline_seconds as i64 * 1000 + 1,
                ..ok.clone()
            }),
            "deadline"
        );
        assert_eq!(
            field(Posting {
                max_submissions: Some(0),
                ..ok.clone()
            }),
            "max_submissions"
        );
        // A consensus review must be able to pay its validators out of the fee: 3 × 25 cents
        // needs a fee of 75, so a reward of 7.50 at 10 %.
        assert!(
            check_post(
                &Posting {
                    reward_cents: 750,
                    review: Review::Consensus,
                    ..ok.clone()
                },
                &d,
                now
            )
            .is_ok()
        );
        assert_eq!(
            field(Posting {
                reward_cents: 749,
                review: Review::Consensus,
                ..ok
            }),
            "review"
        );
    }

    #[test]
    fn submissions_are_refused_for_each_reason() {
        let open = SubmitFacts {
            status: BountyStatus::Open,
            deadline_ms: 100,
            max_submissions: 2,
            submissions: 1,
            already_submitted: false,
            is_owner: false,
        };
        assert!(check_submit(&open, 99).is_ok());
        let refused = |f: SubmitFacts, now: i64| match check_submit(&f, now) {
            Err(EngineError::Conflict(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(refused(open, 100).contains("deadline"));
        assert!(
            refused(
                SubmitFacts {
                    submissions: 2,
                    ..open
                },
                1
            )
            .contains("all the submissions")
        );
        assert!(
            refused(
                SubmitFacts {
                    already_submitted: true,
                    ..open
                },
                1
            )
            .contains("one submission per worker")
        );
        assert!(
            refused(
                SubmitFacts {
                    status: BountyStatus::Completed,
                    ..open
                },
                1
            )
            .contains("completed")
        );
    }

    #[test]
    fn the_winner_is_paid_the_reward_less_the_fee_and_validators_come_out_of_the_fee() {
        let validators = ["v1".to_string(), "v2".to_string(), "v3".to_string()];
        let p = Payout {
            bounty_id: "b",
            buyer_id: "buyer",
            worker_id: "w",
            won_cents: 10_000,
            refund_cents: 0,
            fee_bp: 1000,
            validators: &validators,
            validator_fee_cents: 25,
        };
        let e = p.entry();
        assert!(e.check().is_ok());
        assert_eq!(get(&e, ledger::BOUNTY_ESCROW), -10_000);
        assert_eq!(get(&e, &ledger::frozen("w")), 9_000);
        assert_eq!(get(&e, ledger::REVENUE), 925);
        assert_eq!(get(&e, &ledger::available("v2")), 25);
        // A split: 30 % of 10,000 to the worker (less 10 %), the rest back to the buyer.
        let (won, back) = resolution_parts(10_000, 30);
        assert_eq!((won, back), (3_000, 7_000));
        let split = Payout {
            won_cents: won,
            refund_cents: back,
            validators: &[],
            ..p
        };
        let e = split.entry();
        assert_eq!(get(&e, &ledger::frozen("w")), 2_700);
        assert_eq!(get(&e, ledger::REVENUE), 300);
        assert_eq!(get(&e, &ledger::available("buyer")), 7_000);
        assert_eq!(sum(&e), 0);
    }

    #[test]
    fn outcomes_and_their_percentages() {
        assert_eq!(Outcome::Worker.worker_pct(None).unwrap(), 100);
        assert_eq!(Outcome::Buyer.worker_pct(None).unwrap(), 0);
        assert_eq!(Outcome::Split.worker_pct(Some(40)).unwrap(), 40);
        assert!(Outcome::Split.worker_pct(None).is_err());
        assert!(Outcome::Split.worker_pct(Some(100)).is_err());
        assert!(Outcome::Worker.worker_pct(Some(50)).is_err());
    }

    #[test]
    fn the_majority_decides_as_soon_as_it_is_certain() {
        assert_eq!(majority(2, 0, 3), Some(true));
        assert_eq!(majority(1, 1, 3), None);
        assert_eq!(majority(0, 2, 3), Some(false));
        assert_eq!(majority(1, 0, 1), Some(true));
        assert_eq!(majority(2, 2, 5), None);
        assert!(!validator_suspicious(0, 2));
        assert!(validator_suspicious(1, 2));
        assert!(!validator_suspicious(2, 2));
    }

    #[test]
    fn a_bounty_expires_only_when_nothing_can_still_happen() {
        let f = ExpiryFacts {
            deadline_ms: 100,
            pending: 0,
            open_disputes: 0,
            last_dispute_due_ms: None,
        };
        assert!(!expires(&f, 99));
        assert!(expires(&f, 100));
        assert!(!expires(&ExpiryFacts { pending: 1, ..f }, 200));
        assert!(!expires(
            &ExpiryFacts {
                open_disputes: 1,
                ..f
            },
            200
        ));
        let window = ExpiryFacts {
            last_dispute_due_ms: Some(150),
            ..f
        };
        assert!(!expires(&window, 149));
        assert!(expires(&window, 150));
    }

    #[test]
    fn the_shipped_terms_are_a_day_and_three_days() {
        let t = Terms::from_config(&doc());
        assert_eq!(t.dispute_window_ms, 86_400_000);
        assert_eq!(review_due_ms(0, &t), 259_200_000);
        assert_eq!(warning_due_ms(0, &t), 172_800_000);
        assert_eq!(dispute_due_ms(5, &t), 86_400_005);
        assert_eq!(t.fee_bp, 1000);
    }

    #[test]
    fn a_review_happens_once_and_waits_for_an_open_dispute() {
        let f = |bounty, submission, open_disputes| ReviewFacts {
            bounty,
            submission,
            open_disputes,
        };
        use BountyStatus as B;
        use SubmissionStatus as S;
        assert!(check_review(&f(B::Open, S::Pending, 0), true).is_ok());
        assert!(check_review(&f(B::Open, S::Pending, 1), false).is_ok());
        for (facts, approve) in [
            (f(B::Open, S::Pending, 1), true),
            (f(B::Open, S::Approved, 0), true),
            (f(B::Open, S::Rejected, 0), false),
            (f(B::Completed, S::Pending, 0), true),
            (f(B::Expired, S::Pending, 0), false),
        ] {
            assert!(matches!(
                check_review(&facts, approve),
                Err(EngineError::Conflict(_))
            ));
        }
    }

    #[test]
    fn a_dispute_is_of_a_rejection_within_its_window_once() {
        let f = |bounty, submission, due| DisputeFacts {
            bounty,
            submission,
            dispute_due_ms: due,
        };
        use BountyStatus as B;
        use SubmissionStatus as S;
        assert!(check_dispute(&f(B::Open, S::Rejected, Some(100)), 99).is_ok());
        for (facts, now) in [
            (f(B::Open, S::Rejected, Some(100)), 100),
            (f(B::Open, S::Pending, None), 0),
            (f(B::Open, S::Disputed, Some(100)), 0),
            (f(B::Completed, S::Rejected, Some(100)), 0),
        ] {
            assert!(matches!(
                check_dispute(&facts, now),
                Err(EngineError::Conflict(_))
            ));
        }
        assert!(check_resolve(DisputeStatus::Open).is_ok());
        assert!(check_resolve(DisputeStatus::Resolved).is_err());
    }

    proptest! {
        #[test]
        fn every_payout_balances_and_empties_the_escrow(
            escrow in 1i64..10_000_000,
            pct in 0u32..=100,
            fee_bp in 0u32..=10_000,
            n in 0usize..5,
            vfee in 0i64..1000,
        ) {
            let validators: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
            let (won, back) = resolution_parts(escrow, pct);
            let p = Payout {
                bounty_id: "b", buyer_id: "buyer", worker_id: "w",
                won_cents: won, refund_cents: back, fee_bp,
                validators: &validators, validator_fee_cents: vfee,
            };
            let e = p.entry();
            prop_assert_eq!(sum(&e), 0);
            prop_assert_eq!(get(&e, ledger::BOUNTY_ESCROW), -escrow);
            let f = p.figures();
            prop_assert!(f.worker_cents >= 0 && f.revenue_cents >= 0 && f.per_validator_cents >= 0);
            prop_assert!(e.postings.iter().all(|p| p.amount_cents != 0));
        }
    }
}
