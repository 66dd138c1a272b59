//! The store: one trait of domain commands, so that each backend does each command natively and
//! atomically. Every command that moves money writes its journal entry in the same transaction as
//! the entity change it pays for.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::PlatformConfig;
use crate::domain::Principal;
use crate::error::EngineError;
use crate::ledger::AuditReport;

pub mod sqlite;

#[cfg(test)]
mod conformance;

pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, EngineError>> + Send + 'static>>;

/// Told after every commit about the user balances that commit changed.
pub trait BalanceObserver: Send + Sync + 'static {
    /// Whether anyone caches this user's balance; only those are read back after a commit.
    /// Asked after the commit, so a cache created later loads the committed state itself.
    fn watches(&self, user_id: &str) -> bool;
    fn observe(&self, snapshots: &[BalanceSnapshot]);
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceSnapshot {
    pub user_id: String,
    pub available_cents: i64,
    pub frozen_cents: i64,
    pub total_deposited_cents: i64,
    pub total_earned_cents: i64,
    pub total_withdrawn_cents: i64,
    /// Grows with every change of this user's balances; a cache keeps the highest it has seen.
    pub version: i64,
}

/// A client's `Idempotency-Key`, scoped to the caller and the endpoint.
#[derive(Debug, Clone)]
pub struct IdemKey {
    pub scope: String,
    pub key: String,
    pub body_hash: String,
}

#[derive(Debug, Clone)]
pub struct NewBuyer {
    pub user_id: String,
    pub email: String,
    pub password_hash: String,
    pub token_hash: String,
    pub signup_credit_cents: i64,
    pub now_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    #[serde(default)]
    pub accept: Vec<String>,
    #[serde(default)]
    pub reject: Vec<String>,
    #[serde(default)]
    pub languages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub min_price: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub daily_max_tasks: u32,
    pub concurrent: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            daily_max_tasks: 200,
            concurrent: 1,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerProfile {
    #[serde(default)]
    pub preferences: Preferences,
    #[serde(default)]
    pub schedule: Value,
    #[serde(default)]
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub tasks_claimed: u64,
    pub tasks_completed: u64,
    pub tasks_expired: u64,
    pub consecutive_expires: u64,
    pub credit_requests: u64,
    pub total_earned_cents: i64,
}

impl WorkerStats {
    pub fn tier_stats(&self) -> crate::economics::TierStats {
        crate::economics::TierStats {
            claimed: self.tasks_claimed,
            completed: self.tasks_completed,
            credit_requests: self.credit_requests,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewWorker {
    pub worker_id: String,
    pub token_hash: String,
    pub worker_type: Option<String>,
    pub model_info: Value,
    pub profile: WorkerProfile,
    pub tier: String,
    pub now_ms: i64,
}

#[derive(Debug, Clone)]
pub struct WorkerRecord {
    pub worker_id: String,
    pub worker_type: Option<String>,
    pub model_info: Value,
    pub profile: WorkerProfile,
    pub tier: String,
    pub stats: WorkerStats,
    pub suspended_until_ms: Option<i64>,
    pub created_at_ms: i64,
    /// Claims made on the UTC day that starts at `claims_day_ms`.
    pub claims_day_ms: i64,
    pub claims_today: u32,
    /// Tasks the worker holds now.
    pub held: u32,
}

impl WorkerRecord {
    /// When the worker's suspension ends, if it is suspended at `now_ms`.
    pub fn suspended_until(&self, now_ms: i64) -> Option<i64> {
        self.suspended_until_ms.filter(|u| *u > now_ms)
    }

    /// `SUSPENDED` while the worker is suspended.
    pub fn check_not_suspended(&self, now_ms: i64) -> Result<(), EngineError> {
        match self.suspended_until(now_ms) {
            Some(until) => Err(EngineError::Suspended {
                until: crate::clock::rfc3339(until),
            }),
            None => Ok(()),
        }
    }

    /// Claims made on the UTC day that contains `now_ms`.
    pub fn claims_on(&self, now_ms: i64) -> u32 {
        if self.claims_day_ms == crate::clock::day_start_ms(now_ms) {
            self.claims_today
        } else {
            0
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraints {
    pub timeout_seconds: u32,
    pub min_output_length: u32,
}

#[derive(Debug, Clone)]
pub struct NewTask {
    pub task_id: String,
    pub buyer_id: String,
    pub task_type: String,
    /// The buyer's input as JSON text.
    pub input: String,
    pub constraints: Constraints,
    pub price_cents: i64,
    pub now_ms: i64,
    pub idempotency: Option<IdemKey>,
}

/// The answer to a post, replayed as it was for a repeated `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPosted {
    pub task_id: String,
    pub price_cents: i64,
    pub balance_after_cents: i64,
    pub created_at_ms: i64,
    pub seq: i64,
    /// Whether this is the replay of an earlier post (nothing was charged this time).
    #[serde(default)]
    pub replayed: bool,
}

#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub seq: i64,
    pub task_id: String,
    pub buyer_id: String,
    pub task_type: String,
    pub input: String,
    pub constraints: Constraints,
    pub price_cents: i64,
    pub status: crate::domain::TaskStatus,
    pub worker_id: Option<String>,
    pub attempts: u32,
    pub deadline_ms: Option<i64>,
    pub output: Option<String>,
    pub earned_cents: Option<i64>,
    pub created_at_ms: i64,
    pub completed_at_ms: Option<i64>,
}

/// A task the Dispatcher tracks: pending ones are offered, assigned ones have a deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTask {
    pub seq: i64,
    pub task_id: String,
    pub task_type: String,
    pub price_cents: i64,
    pub created_at_ms: i64,
    pub buyer_id: String,
    pub assigned: Option<Assignment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub worker_id: String,
    pub attempt: u32,
    pub deadline_ms: i64,
}

/// Exactly what a worker is shown of a task.
#[derive(Debug, Clone)]
pub struct ClaimedTask {
    pub task_id: String,
    pub task_type: String,
    pub input: String,
    pub constraints: Constraints,
    pub price_cents: i64,
    pub deadline_ms: i64,
    pub attempt: u32,
}

#[derive(Debug, Clone)]
pub enum ClaimOutcome {
    Claimed(ClaimedTask),
    /// The task is no longer pending (failed, or claimed elsewhere); try another.
    TaskGone,
    /// The worker already holds as many tasks as its `limits.concurrent` allows.
    WorkerBusy,
    /// The worker has made `limits.daily_max_tasks` claims today.
    DailyCapReached,
    WorkerSuspended {
        until_ms: i64,
    },
    UnknownWorker,
}

#[derive(Debug, Clone)]
pub struct Settlement {
    pub task_id: String,
    pub task_type: String,
    pub buyer_id: String,
    pub earned_cents: i64,
    pub commission_cents: i64,
    pub stats: WorkerStats,
    pub tier: String,
    /// A repeat of an accepted submit: nothing was paid this time.
    pub repeated: bool,
}

#[derive(Debug, Clone)]
pub enum ExpireOutcome {
    /// Back in the queue.
    Requeued {
        task: LiveTask,
        suspended_until_ms: Option<i64>,
    },
    /// Out of attempts: failed and refunded to the buyer.
    Failed {
        buyer_id: String,
        suspended_until_ms: Option<i64>,
    },
    /// The task had moved on (submitted, or already expired): nothing to do.
    Stale,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credited {
    pub task_id: String,
    pub credited_cents: i64,
    pub balance_after_cents: i64,
    pub worker_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminCredited {
    pub user_id: String,
    pub amount_cents: i64,
    pub balance_after_cents: i64,
}

#[derive(Debug, Clone)]
pub struct StoredConfig {
    pub doc: Value,
    pub version: i64,
    pub updated_at_ms: i64,
    pub updated_by: Option<String>,
}

/// A task that failed in a sweep and was refunded.
#[derive(Debug, Clone)]
pub struct FailedTask {
    pub task_id: String,
    pub buyer_id: String,
}

pub trait Store: Send + Sync + 'static {
    // Accounts and tokens.
    fn create_buyer(&self, b: NewBuyer) -> StoreFuture<BalanceSnapshot>;
    fn find_login(&self, email: String) -> StoreFuture<Option<(String, String)>>;
    fn add_token(
        &self,
        token_hash: String,
        user_id: String,
        role: crate::domain::Role,
        now_ms: i64,
    ) -> StoreFuture<()>;
    fn resolve_token(&self, token_hash: String) -> StoreFuture<Option<Principal>>;
    fn create_worker(&self, w: NewWorker) -> StoreFuture<WorkerRecord>;
    fn worker(&self, worker_id: String) -> StoreFuture<Option<WorkerRecord>>;
    fn update_worker_profile(
        &self,
        worker_id: String,
        profile: WorkerProfile,
    ) -> StoreFuture<WorkerRecord>;
    fn worker_earned_since(&self, worker_id: String, since_ms: i64) -> StoreFuture<i64>;
    fn balance(&self, user_id: String) -> StoreFuture<Option<BalanceSnapshot>>;

    // The task lifecycle.
    fn post_task(&self, t: NewTask) -> StoreFuture<TaskPosted>;
    fn task(&self, task_id: String) -> StoreFuture<Option<TaskRecord>>;
    fn list_tasks(
        &self,
        buyer_id: String,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreFuture<Vec<TaskRecord>>;
    fn claim(&self, task_id: String, worker_id: String, now_ms: i64) -> StoreFuture<ClaimOutcome>;
    /// Undoes a claim whose worker went away before it was told (no expiry counted).
    fn unclaim(
        &self,
        task_id: String,
        worker_id: String,
        attempt: u32,
    ) -> StoreFuture<Option<LiveTask>>;
    /// A worker gives a task back before its deadline: it is pending again, no expiry counted.
    fn release(&self, task_id: String, worker_id: String) -> StoreFuture<Option<LiveTask>>;
    fn submit(
        &self,
        task_id: String,
        worker_id: String,
        output: String,
        now_ms: i64,
        cfg: std::sync::Arc<PlatformConfig>,
    ) -> StoreFuture<Settlement>;
    fn expire(
        &self,
        task_id: String,
        worker_id: String,
        attempt: u32,
        now_ms: i64,
        cfg: std::sync::Arc<PlatformConfig>,
    ) -> StoreFuture<ExpireOutcome>;
    fn credit(
        &self,
        task_id: String,
        buyer_id: String,
        reason: Option<String>,
        now_ms: i64,
        idem: Option<IdemKey>,
        cfg: std::sync::Arc<PlatformConfig>,
    ) -> StoreFuture<Credited>;
    fn live_tasks(&self) -> StoreFuture<Vec<LiveTask>>;
    /// Assigned tasks whose deadline is before `now_ms`.
    fn overdue(&self, now_ms: i64, limit: u32) -> StoreFuture<Vec<LiveTask>>;
    /// Fails and refunds pending tasks created before `created_before_ms`.
    fn fail_stale(&self, created_before_ms: i64, limit: u32) -> StoreFuture<Vec<FailedTask>>;
    /// Releases frozen lots whose window has ended; returns how many.
    fn unfreeze_due(&self, now_ms: i64, limit: u32) -> StoreFuture<u64>;
    /// When the next frozen lot is due, if any.
    fn next_unfreeze_ms(&self) -> StoreFuture<Option<i64>>;

    // Admin.
    fn admin_credit(
        &self,
        user_id: String,
        amount_cents: i64,
        reason: String,
        admin_id: String,
        now_ms: i64,
        idem: Option<IdemKey>,
    ) -> StoreFuture<AdminCredited>;
    fn load_config(&self) -> StoreFuture<BTreeMap<String, StoredConfig>>;
    /// Stores the documents that are missing (first start); returns how many were added.
    fn seed_config(&self, docs: BTreeMap<String, Value>, now_ms: i64) -> StoreFuture<u32>;
    fn put_config(
        &self,
        key: String,
        doc: Value,
        expected_version: Option<i64>,
        admin_id: String,
        now_ms: i64,
    ) -> StoreFuture<StoredConfig>;
    fn audit(&self) -> StoreFuture<AuditReport>;
    /// Resolves once everything queued before it has been committed.
    fn flush(&self) -> StoreFuture<()>;
}
