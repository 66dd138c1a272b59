//! The documents of each collection, and reading them into the store's types.
//!
//! Free-form JSON a client sends (a worker's `model_info` and profile, a task's input) and the
//! config documents are kept as JSON text: a client's keys may start with `$` or hold a `.`,
//! which MongoDB does not take as field names, and text round-trips exactly.

use serde::{Deserialize, Serialize};

use super::*;

/// `tasks.funded_by` of QA copies and benchmarks.
pub(super) const FUNDED_BY_PLATFORM: &str = "platform";
pub(super) const FUNDED_BY_BUYER: &str = "buyer";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct UserDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TokenDoc {
    /// The token's SHA-256 hash (tokens themselves are never stored).
    #[serde(rename = "_id")]
    pub hash: String,
    pub user_id: String,
    pub role: String,
    pub created_at: i64,
    #[serde(default)]
    pub label: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct BalanceDoc {
    #[serde(rename = "_id")]
    pub user_id: String,
    pub available_cents: i64,
    pub frozen_cents: i64,
    pub total_deposited_cents: i64,
    pub total_earned_cents: i64,
    pub total_withdrawn_cents: i64,
    pub version: i64,
}

impl BalanceDoc {
    pub fn new(user_id: &str) -> BalanceDoc {
        BalanceDoc {
            user_id: user_id.to_string(),
            available_cents: 0,
            frozen_cents: 0,
            total_deposited_cents: 0,
            total_earned_cents: 0,
            total_withdrawn_cents: 0,
            version: 0,
        }
    }

    pub fn snapshot(self) -> BalanceSnapshot {
        BalanceSnapshot {
            user_id: self.user_id,
            available_cents: self.available_cents,
            frozen_cents: self.frozen_cents,
            total_deposited_cents: self.total_deposited_cents,
            total_earned_cents: self.total_earned_cents,
            total_withdrawn_cents: self.total_withdrawn_cents,
            version: self.version,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct WorkerDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub worker_type: Option<String>,
    /// JSON text.
    pub model_info: String,
    /// JSON text of the [`WorkerProfile`].
    pub profile: String,
    pub tier: String,
    pub tasks_claimed: i64,
    pub tasks_completed: i64,
    pub tasks_expired: i64,
    pub consecutive_expires: i64,
    pub credit_requests: i64,
    pub total_earned_cents: i64,
    pub suspended_until: Option<i64>,
    pub qa_pass: i64,
    pub qa_flag: i64,
    pub qa_fail: i64,
    pub tier_penalty: i64,
    pub banned_at: Option<i64>,
    pub balance_frozen: bool,
    /// Claims made on the UTC day starting at `claims_day` (ms), for `limits.daily_max_tasks`.
    pub claims_day: i64,
    pub claims_today: i64,
    pub created_at: i64,
    pub last_seen: Option<i64>,
}

impl WorkerDoc {
    pub fn stats(&self) -> WorkerStats {
        WorkerStats {
            tasks_claimed: self.tasks_claimed.max(0) as u64,
            tasks_completed: self.tasks_completed.max(0) as u64,
            tasks_expired: self.tasks_expired.max(0) as u64,
            consecutive_expires: self.consecutive_expires.max(0) as u64,
            credit_requests: self.credit_requests.max(0) as u64,
            total_earned_cents: self.total_earned_cents,
        }
    }

    pub fn profile(&self) -> Result<WorkerProfile, EngineError> {
        serde_json::from_str(&self.profile).map_err(json_err)
    }

    pub fn record(self, held: u32) -> Result<WorkerRecord, EngineError> {
        Ok(WorkerRecord {
            stats: self.stats(),
            profile: self.profile()?,
            model_info: serde_json::from_str(&self.model_info).map_err(json_err)?,
            worker_id: self.id,
            worker_type: self.worker_type,
            tier: self.tier,
            suspended_until_ms: self.suspended_until,
            created_at_ms: self.created_at,
            claims_day_ms: self.claims_day,
            claims_today: u32::try_from(self.claims_today).unwrap_or(u32::MAX),
            held,
            banned_at_ms: self.banned_at,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TaskDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub seq: i64,
    pub buyer_id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    /// The buyer's input as JSON text.
    pub input: String,
    pub timeout_seconds: i64,
    pub min_output_length: i64,
    pub price_cents: i64,
    pub status: String,
    pub worker_id: Option<String>,
    pub attempts: i64,
    pub assigned_at: Option<i64>,
    pub deadline: Option<i64>,
    pub output: Option<String>,
    pub earned_cents: Option<i64>,
    pub commission_cents: Option<i64>,
    pub completed_at: Option<i64>,
    pub credited_at: Option<i64>,
    pub funded_by: String,
    pub created_at: i64,
    /// Invisible QA (never shown to workers): the comparison group, the input key no worker gets
    /// twice, and the part the task plays (original, copy, tiebreak, benchmark). Absent outside
    /// QA, so that the partial indexes on them stay small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qa_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qa_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qa_role: Option<String>,
    /// `rules::retention`: when the ended task's content may go (absent while it is live and
    /// once purged, so that the partial index on it holds only what is still to purge), and when
    /// it went (input is "" and output absent since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_after: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged_at: Option<i64>,
    /// A sensitive task's preview (`sealed.rs`): its input and output are sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_preview: Option<String>,
}

impl TaskDoc {
    /// A new pending task.
    #[allow(clippy::too_many_arguments)]
    pub fn pending(
        id: &str,
        seq: i64,
        buyer_id: &str,
        task_type: &str,
        input: &str,
        constraints: Constraints,
        price_cents: i64,
        funded_by: &str,
        now_ms: i64,
    ) -> TaskDoc {
        TaskDoc {
            id: id.to_string(),
            seq,
            buyer_id: buyer_id.to_string(),
            task_type: task_type.to_string(),
            input: input.to_string(),
            timeout_seconds: i64::from(constraints.timeout_seconds),
            min_output_length: i64::from(constraints.min_output_length),
            price_cents,
            status: "pending".into(),
            worker_id: None,
            attempts: 0,
            assigned_at: None,
            deadline: None,
            output: None,
            earned_cents: None,
            commission_cents: None,
            completed_at: None,
            credited_at: None,
            funded_by: funded_by.to_string(),
            created_at: now_ms,
            qa_group: None,
            qa_key: None,
            qa_role: None,
            purge_after: None,
            purged_at: None,
            input_preview: None,
        }
    }

    pub fn constraints(&self) -> Constraints {
        Constraints {
            timeout_seconds: u32::try_from(self.timeout_seconds).unwrap_or(u32::MAX),
            min_output_length: u32::try_from(self.min_output_length).unwrap_or(u32::MAX),
        }
    }

    pub fn attempts(&self) -> u32 {
        u32::try_from(self.attempts).unwrap_or(0)
    }

    pub fn status(&self) -> TaskStatus {
        TaskStatus::parse(&self.status).unwrap_or(TaskStatus::Failed)
    }

    pub fn platform_paid(&self) -> bool {
        self.funded_by == FUNDED_BY_PLATFORM
    }

    pub fn record(&self) -> TaskRecord {
        TaskRecord {
            seq: self.seq,
            task_id: self.id.clone(),
            buyer_id: self.buyer_id.clone(),
            task_type: self.task_type.clone(),
            input: self.input.clone(),
            input_preview: self.input_preview.clone(),
            constraints: self.constraints(),
            price_cents: self.price_cents,
            status: self.status(),
            worker_id: self.worker_id.clone(),
            attempts: self.attempts(),
            deadline_ms: self.deadline,
            output: self.output.clone(),
            earned_cents: self.earned_cents,
            created_at_ms: self.created_at,
            completed_at_ms: self.completed_at,
            purged_at_ms: self.purged_at,
        }
    }

    pub fn live(&self) -> LiveTask {
        let assigned = match (self.status.as_str(), &self.worker_id, self.deadline) {
            ("assigned", Some(worker_id), Some(deadline_ms)) => Some(Assignment {
                worker_id: worker_id.clone(),
                attempt: self.attempts(),
                deadline_ms,
            }),
            _ => None,
        };
        LiveTask {
            seq: self.seq,
            task_id: self.id.clone(),
            task_type: self.task_type.clone(),
            price_cents: self.price_cents,
            created_at_ms: self.created_at,
            buyer_id: self.buyer_id.clone(),
            assigned,
            qa_key: self.qa_key.clone(),
        }
    }
}

/// One claim: who held which task, so a late submit is told `TASK_EXPIRED`, and (with the task's
/// QA key, set when the task joins a group) so that no worker gets the same input twice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ClaimDoc {
    /// `{task_id}/{attempt}`.
    #[serde(rename = "_id")]
    pub id: String,
    pub task_id: String,
    pub worker_id: String,
    pub attempt: i64,
    pub claimed_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qa_key: Option<String>,
}

/// Each earning is its own lot, released when its window ends or reversed by a buyer's credit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct LotDoc {
    /// The task's `seq` (one lot per task).
    #[serde(rename = "_id")]
    pub id: i64,
    pub worker_id: String,
    pub task_id: String,
    pub amount_cents: i64,
    pub commission_cents: i64,
    pub created_at: i64,
    pub release_at: i64,
    /// frozen, released, reversed, or held (a banned worker's: never released).
    pub status: String,
    /// Taken into the QA fund by a penalty.
    pub deducted_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct QaGroupDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub qa_type: String,
    pub task_id: String,
    pub qa_task_id: String,
    pub tiebreak_task_id: Option<String>,
    pub expected_output: Option<String>,
    pub state: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct QaResultDoc {
    #[serde(rename = "_id")]
    pub seq: i64,
    pub group_id: String,
    pub task_id: String,
    pub qa_task_id: String,
    pub qa_type: String,
    pub similarity: f64,
    /// JSON text.
    pub dimensions: String,
    pub verdict: String,
    pub worker_ids: Vec<String>,
    pub blamed_worker_id: Option<String>,
    pub tiebreak_task_id: Option<String>,
    /// JSON text.
    pub tiebreak: Option<String>,
    pub decided_at: i64,
}

impl QaResultDoc {
    pub fn result(self) -> Result<QaResult, EngineError> {
        Ok(QaResult {
            seq: self.seq,
            task_id: self.task_id,
            qa_task_id: self.qa_task_id,
            qa_type: QaType::parse(&self.qa_type)
                .ok_or_else(|| EngineError::internal("bad qa type"))?,
            similarity: self.similarity,
            dimensions: serde_json::from_str(&self.dimensions).map_err(json_err)?,
            verdict: self.verdict,
            worker_ids: self.worker_ids,
            blamed_worker_id: self.blamed_worker_id,
            tiebreak_task_id: self.tiebreak_task_id,
            tiebreak: self
                .tiebreak
                .map(|t| serde_json::from_str(&t))
                .transpose()
                .map_err(json_err)?,
            decided_at: crate::clock::rfc3339(self.decided_at),
        })
    }
}

/// Each worker's verdict in a decided comparison, with its tier then.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct QaOutcomeDoc {
    /// `{worker_id}/{result_seq}`.
    #[serde(rename = "_id")]
    pub id: String,
    pub worker_id: String,
    pub result_seq: i64,
    pub tier: String,
    pub qa_type: String,
    pub verdict: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct NoticeDoc {
    #[serde(rename = "_id")]
    pub id: mongodb::bson::oid::ObjectId,
    pub worker_id: String,
    pub kind: String,
    pub message: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ConfigDoc {
    #[serde(rename = "_id")]
    pub key: String,
    /// JSON text.
    pub doc: String,
    pub version: i64,
    pub updated_at: i64,
    pub updated_by: Option<String>,
}

impl ConfigDoc {
    pub fn stored(self) -> Result<(String, StoredConfig), EngineError> {
        Ok((
            self.key,
            StoredConfig {
                doc: serde_json::from_str(&self.doc).map_err(json_err)?,
                version: self.version,
                updated_at_ms: self.updated_at,
                updated_by: self.updated_by,
            },
        ))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct IdemDoc {
    /// `{scope}\n{key}`.
    #[serde(rename = "_id")]
    pub id: String,
    pub body_hash: String,
    /// JSON text of the first answer.
    pub response: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Posting {
    pub account: String,
    pub amount_cents: i64,
}

/// A journal entry with its postings (which sum to zero).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct EntryDoc {
    #[serde(rename = "_id")]
    pub id: mongodb::bson::oid::ObjectId,
    pub kind: String,
    pub ref_id: String,
    #[serde(default)]
    pub task_id: Option<String>,
    pub created_at: i64,
    pub postings: Vec<Posting>,
}

/// One shard of a platform account's balance (see `journal.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct AccountShardDoc {
    /// `{account}#{shard}`.
    #[serde(rename = "_id")]
    pub id: String,
    pub account: String,
    pub balance_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct AuditLogDoc {
    #[serde(rename = "_id")]
    pub id: mongodb::bson::oid::ObjectId,
    /// The entry's number in the hash chain (None: written before the chain, not yet chained).
    #[serde(default)]
    pub seq: Option<i64>,
    pub actor_id: String,
    pub action: String,
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub user_agent: String,
    /// JSON text, hashed as stored.
    pub details: String,
    pub created_at: i64,
    #[serde(default)]
    pub prev_hash: Option<String>,
    #[serde(default)]
    pub hash: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct DepositDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub seq: i64,
    pub buyer_id: String,
    pub amount_cents: i64,
    pub bonus_cents: i64,
    pub status: String,
    pub session_id: String,
    pub checkout_url: String,
    #[serde(default)]
    pub paid_cents: Option<i64>,
    pub created_at: i64,
    #[serde(default)]
    pub settled_at: Option<i64>,
}

impl DepositDoc {
    pub fn record(self) -> DepositRecord {
        DepositRecord {
            seq: self.seq,
            deposit_id: self.id,
            buyer_id: self.buyer_id,
            amount_cents: self.amount_cents,
            bonus_cents: self.bonus_cents,
            status: crate::rules::deposit::DepositStatus::parse(&self.status)
                .unwrap_or(crate::rules::deposit::DepositStatus::Pending),
            session_id: self.session_id,
            checkout_url: self.checkout_url,
            paid_cents: self.paid_cents,
            created_at_ms: self.created_at,
            settled_at_ms: self.settled_at,
        }
    }
}

/// A provider event acted on (its `_id` is the provider's event id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ProviderEventDoc {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub session_id: Option<String>,
    pub outcome: String,
    pub created_at: i64,
}

/// A worker's last email code (`_id` is the worker).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct EmailCodeDoc {
    #[serde(rename = "_id")]
    pub worker_id: String,
    pub email: String,
    pub code_hash: String,
    pub created_at: i64,
    pub wrong: i64,
}

/// A worker's verified email and payout address (`_id` is the worker).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PayoutDoc {
    #[serde(rename = "_id")]
    pub worker_id: String,
    pub email: String,
    pub email_verified_at: i64,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub bound_at: Option<i64>,
}

impl PayoutDoc {
    pub fn binding(self) -> PayoutBinding {
        PayoutBinding {
            worker_id: self.worker_id,
            email: self.email,
            email_verified_at_ms: self.email_verified_at,
            method: self
                .method
                .as_deref()
                .and_then(crate::rules::payout::PayoutMethod::parse),
            address: self.address,
            bound_at_ms: self.bound_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct OutboxDoc {
    #[serde(rename = "_id")]
    pub seq: i64,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct WithdrawalDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub seq: i64,
    pub worker_id: String,
    pub amount_cents: i64,
    pub status: String,
    pub method: String,
    pub address: String,
    pub available_after_cents: i64,
    #[serde(default)]
    pub external_ref: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    pub created_at: i64,
    #[serde(default)]
    pub settled_at: Option<i64>,
    #[serde(default)]
    pub settled_by: Option<String>,
}

impl WithdrawalDoc {
    pub fn record(self) -> WithdrawalRecord {
        WithdrawalRecord {
            seq: self.seq,
            withdrawal_id: self.id,
            worker_id: self.worker_id,
            amount_cents: self.amount_cents,
            status: WithdrawalStatus::parse(&self.status).unwrap_or(WithdrawalStatus::Pending),
            method: self.method,
            address: self.address,
            available_after_cents: self.available_after_cents,
            external_ref: self.external_ref,
            reason: self.reason,
            created_at_ms: self.created_at,
            settled_at_ms: self.settled_at,
            settled_by: self.settled_by,
        }
    }
}

/// A user's referral code (`_id` is the code).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ReferralCodeDoc {
    #[serde(rename = "_id")]
    pub code: String,
    pub user_id: String,
    pub created_at: i64,
}

/// Who referred a user (`_id`), on what terms, and what it has paid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ReferralDoc {
    #[serde(rename = "_id")]
    pub user_id: String,
    pub referrer_id: String,
    pub role: String,
    pub share_bp: i64,
    pub tasks_paid: i64,
    pub earned_cents: i64,
    pub created_at: i64,
}
