//! What the store keeps of money coming in and going out: deposits and the provider's events.

use serde::{Deserialize, Serialize};

use super::IdemKey;
use crate::rules::deposit::{DepositStatus, SessionEvent};

/// A deposit whose Checkout Session the provider made, to be stored.
#[derive(Debug, Clone)]
pub struct NewDeposit {
    pub deposit_id: String,
    pub buyer_id: String,
    pub amount_cents: i64,
    /// The first deposit's bonus as it would be now (what the buyer is told; the credit
    /// recomputes it).
    pub bonus_cents: i64,
    pub session_id: String,
    pub checkout_url: String,
    pub now_ms: i64,
    pub idem: Option<IdemKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositRecord {
    pub seq: i64,
    pub deposit_id: String,
    pub buyer_id: String,
    pub amount_cents: i64,
    pub bonus_cents: i64,
    pub status: DepositStatus,
    pub session_id: String,
    pub checkout_url: String,
    /// What the provider said was paid, when it said so.
    pub paid_cents: Option<i64>,
    pub created_at_ms: i64,
    /// When it was credited, expired or held.
    pub settled_at_ms: Option<i64>,
}

/// The audit entry of a provider event that moved money or stopped it (a deposit credited, or
/// held because the amount paid is not the amount asked): the action and its details. `d` is
/// the deposit as the event left it.
pub fn deposit_audit(
    step: crate::rules::deposit::Step,
    d: &DepositRecord,
    event_id: &str,
) -> Option<(&'static str, serde_json::Value)> {
    use crate::rules::deposit::Step;
    let action = match step {
        Step::Credit => "deposit.credited",
        Step::Hold => "deposit.held",
        Step::Expire | Step::Nothing => return None,
    };
    Some((
        action,
        serde_json::json!({
            "deposit_id": d.deposit_id, "buyer_id": d.buyer_id, "amount_cents": d.amount_cents,
            "paid_cents": d.paid_cents, "bonus_cents": d.bonus_cents, "event_id": event_id,
        }),
    ))
}

/// The audit entry's details of a worker's withdrawal request.
pub fn withdrawal_requested(w: &WithdrawalRecord) -> serde_json::Value {
    serde_json::json!({
        "withdrawal_id": w.withdrawal_id, "worker_id": w.worker_id,
        "amount_cents": w.amount_cents, "method": w.method,
    })
}

/// A verified provider event, for the store to act on once.
#[derive(Debug, Clone)]
pub struct ProviderEvent {
    pub event_id: String,
    pub event_type: String,
    /// The session the event is about, and what it says (None: an event this server ignores).
    pub session: Option<(String, Option<String>, SessionEvent)>,
    pub now_ms: i64,
    /// `signup.first_deposit_bonus_pct` now.
    pub bonus_pct: f64,
}

/// What an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// The deposit was credited (with its bonus, if it was the buyer's first).
    Credited(DepositRecord),
    /// Paid, but not the deposit's amount: held as `mismatch`.
    Held(DepositRecord),
    Expired(DepositRecord),
    /// This event id was handled before: nothing moved.
    Duplicate,
    /// The event changes nothing (an ignored type, or a deposit already final).
    Nothing,
    /// No deposit has this session: recorded for an admin, nothing moved.
    Unmatched,
}

impl EventOutcome {
    /// How the event is remembered beside its id.
    pub fn label(&self) -> &'static str {
        match self {
            EventOutcome::Credited(_) => "credited",
            EventOutcome::Held(_) => "mismatch",
            EventOutcome::Expired(_) => "expired",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Nothing => "nothing",
            EventOutcome::Unmatched => "unmatched",
        }
    }
}

/// Which deposits to list.
#[derive(Debug, Clone, Default)]
pub struct DepositFilter {
    pub buyer_id: Option<String>,
    pub status: Option<DepositStatus>,
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// An email the server would have sent, kept for an admin when no SMTP server is configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub seq: i64,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub created_at_ms: i64,
}

/// A new email code for a worker (only its hash is kept).
#[derive(Debug, Clone)]
pub struct NewEmailCode {
    pub worker_id: String,
    pub email: String,
    pub code_hash: String,
    pub now_ms: i64,
    /// The message to keep in the outbox (when it is not sent over SMTP): (subject, body).
    pub outbox: Option<(String, String)>,
}

/// What a try at an email code did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    Verified,
    Wrong {
        left: u32,
    },
    Void,
    Expired,
    /// No code was sent to this address.
    NoCode,
}

/// A worker's verified email and payout address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutBinding {
    pub worker_id: String,
    pub email: String,
    pub email_verified_at_ms: i64,
    pub method: Option<crate::rules::payout::PayoutMethod>,
    pub address: Option<String>,
    pub bound_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalStatus {
    /// Out of the worker's balance, waiting for an admin to pay it out or reject it.
    Pending,
    Completed,
    Rejected,
}

impl WithdrawalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WithdrawalStatus::Pending => "pending",
            WithdrawalStatus::Completed => "completed",
            WithdrawalStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<WithdrawalStatus> {
        match s {
            "pending" => Some(WithdrawalStatus::Pending),
            "completed" => Some(WithdrawalStatus::Completed),
            "rejected" => Some(WithdrawalStatus::Rejected),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewWithdrawal {
    pub withdrawal_id: String,
    pub worker_id: String,
    pub amount_cents: i64,
    /// The worker, and from where (for the audit log).
    pub by: super::Who,
    pub now_ms: i64,
    pub limits: crate::config::WithdrawalLimits,
    pub idem: Option<IdemKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalRecord {
    pub seq: i64,
    pub withdrawal_id: String,
    pub worker_id: String,
    pub amount_cents: i64,
    pub status: WithdrawalStatus,
    pub method: String,
    pub address: String,
    /// The worker's available balance right after the request.
    pub available_after_cents: i64,
    pub external_ref: Option<String>,
    pub reason: Option<String>,
    pub created_at_ms: i64,
    pub settled_at_ms: Option<i64>,
    pub settled_by: Option<String>,
}

/// What an admin does with a pending withdrawal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Paid out, with the payment's reference (PayPal transaction id, Solana signature…).
    Complete { external_ref: String },
    /// Refused: the money goes back to the worker.
    Reject { reason: String },
}

#[derive(Debug, Clone, Default)]
pub struct WithdrawalFilter {
    pub worker_id: Option<String>,
    pub status: Option<WithdrawalStatus>,
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// A new account's referral: the code it came with, and the terms then in force.
#[derive(Debug, Clone)]
pub struct NewReferral {
    pub code: String,
    /// A referred buyer's credit (`signup.referral_buyer_credit_cents`; 0 for a worker).
    pub buyer_credit_cents: i64,
    /// The referrer's share of each of a referred worker's first tasks
    /// (`signup.referral_seller_pct`, in basis points).
    pub share_bp: i64,
}

/// `GET /api/referral`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralStats {
    pub code: String,
    pub referred_buyers: u64,
    pub referred_workers: u64,
    /// What the referred workers' tasks have paid this user so far.
    pub earned_cents: i64,
}
