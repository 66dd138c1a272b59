//! The store: one trait of domain commands, so that each backend does each command natively and
//! atomically. Every command that moves money writes its journal entry in the same transaction as
//! the entity change it pays for.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::PlatformConfig;
use crate::domain::{Principal, TaskId, UserId, WorkerId};
use crate::error::EngineError;
use crate::ledger::AuditReport;

pub mod audit_log;
pub mod bounty;
pub mod money;
#[cfg(feature = "mongodb")]
pub mod mongo;
pub mod notification;
pub mod sqlite;
pub mod timeline;
pub mod webhook;

pub use audit_log::{AuditEntry, AuditFilter, ChainReport, Pruned, Who};
pub use bounty::*;

/// The longest a store command runs, its retries of lost races and write conflicts included:
/// after this it gives up with `Unavailable` (nothing committed).
pub const COMMAND_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);
pub use money::*;
pub use notification::*;
pub use webhook::*;

/// Where the store lives: the embedded SQLite store in a data directory (the default), or a
/// MongoDB database that several nodes may share. Its `Debug` hides a URI's password.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    Embedded(std::path::PathBuf),
    MongoDb(String),
}

impl Location {
    /// `--store`: `mongodb://…` or `mongodb+srv://…` for MongoDB; absent, empty or `embedded` for
    /// the embedded store in `data_dir`.
    pub fn parse(store: Option<&str>, data_dir: &std::path::Path) -> Result<Location, String> {
        match store.map(str::trim) {
            None | Some("") | Some("embedded") | Some("sqlite") => {
                Ok(Location::Embedded(data_dir.to_path_buf()))
            }
            Some(uri) if uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://") => {
                Ok(Location::MongoDb(uri.to_string()))
            }
            Some(other) => Err(format!(
                "unknown store {other:?}: give a mongodb:// URI, or leave it out for the embedded \
                 store in the data directory"
            )),
        }
    }

    /// For logs and messages: a MongoDB URI without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::Embedded(dir) => format!("embedded store in {}", dir.display()),
            Location::MongoDb(uri) => format!("MongoDB {}", redact(uri)),
        }
    }

    /// Opens the store (the embedded one is created and migrated; MongoDB is reached, checked
    /// and given its indexes).
    pub async fn open(
        &self,
        observer: Box<dyn BalanceObserver>,
    ) -> Result<std::sync::Arc<dyn Store>, EngineError> {
        match self {
            Location::Embedded(dir) => Ok(std::sync::Arc::new(sqlite::SqliteStore::open(
                dir, observer,
            )?)),
            #[cfg(feature = "mongodb")]
            Location::MongoDb(uri) => Ok(std::sync::Arc::new(
                mongo::MongoStore::open(uri, observer).await?,
            )),
            #[cfg(not(feature = "mongodb"))]
            Location::MongoDb(_) => Err(EngineError::internal(
                "this binary was built without the `mongodb` feature",
            )),
        }
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Embedded(dir) => f.debug_tuple("Embedded").field(dir).finish(),
            Location::MongoDb(uri) => f.debug_tuple("MongoDb").field(&redact(uri)).finish(),
        }
    }
}

/// `mongodb://user:secret@host/db` shown as `mongodb://user:***@host/db`.
pub fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &uri[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &uri[..scheme + 3], &uri[at..]),
                None => uri.to_string(),
            }
        }
        _ => uri.to_string(),
    }
}

/// The owner of QA copies: a ledger-less pseudo buyer. QA copies are paid from the QA fund, no
/// one can credit them, and no buyer stream carries their events.
pub const QA_BUYER: &str = "platform:qa";

#[cfg(test)]
mod conformance;

pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, EngineError>> + Send + 'static>>;

/// Told after every commit about the user balances that commit changed and the notifications it
/// stored.
pub trait BalanceObserver: Send + Sync + 'static {
    /// Whether anyone caches this user's balance; only those are read back after a commit.
    /// Asked after the commit, so a cache created later loads the committed state itself.
    fn watches(&self, user_id: &str) -> bool;
    fn observe(&self, snapshots: &[BalanceSnapshot]);
    /// The notifications a commit stored, in order, once it is committed.
    fn notified(&self, _: &[NotificationRecord]) {}
    /// The bounty events a commit caused, in order, once it is committed.
    fn bounty_events(&self, _: &[BountyEvent]) {}
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

/// The label of the admin token `CLAWJOBS_ADMIN_TOKEN` set.
pub const ENV_TOKEN_LABEL: &str = "env";

/// An admin token as an operator sees it: never the token, only the start of its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminToken {
    pub id: String,
    pub label: Option<String>,
    pub created_at_ms: i64,
}

/// For tools that open a store without balance actors (the `admin` command, tests).
pub struct NoObserver;

impl BalanceObserver for NoObserver {
    fn watches(&self, _: &str) -> bool {
        false
    }
    fn observe(&self, _: &[BalanceSnapshot]) {}
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
    /// Who referred this buyer, and on what terms.
    pub referral: Option<NewReferral>,
}

/// At most 64 names of 1 to 64 characters, as `engine::check_profile` allows.
fn name_list() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(64)),
        )
        .max_items(Some(64))
        .build()
}

/// What a worker takes. The bounds are the engine's (`engine::check_profile`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// Task types to take (all when empty).
    #[serde(default)]
    #[schema(schema_with = name_list)]
    pub accept: Vec<String>,
    /// Task types never to take.
    #[serde(default)]
    #[schema(schema_with = name_list)]
    pub reject: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = name_list)]
    pub languages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 4294967295_u64)]
    pub max_tokens: Option<u32>,
    /// The lowest price to take, in cents.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub min_price: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Claims per UTC day.
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub daily_max_tasks: u32,
    /// Tasks held at once.
    #[schema(minimum = 1, maximum = 100)]
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerProfile {
    #[serde(default)]
    pub preferences: Preferences,
    /// Free-form (at most 8 KB as JSON).
    #[serde(default)]
    pub schedule: Value,
    #[serde(default)]
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Who referred this worker, and on what terms.
    pub referral: Option<NewReferral>,
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
    /// When the QA penalty ladder banned the worker.
    pub banned_at_ms: Option<i64>,
}

impl WorkerRecord {
    /// When the worker's suspension ends, if it is suspended at `now_ms`.
    pub fn suspended_until(&self, now_ms: i64) -> Option<i64> {
        self.suspended_until_ms.filter(|u| *u > now_ms)
    }

    /// `BANNED` for a banned worker, `SUSPENDED` while the worker is suspended.
    pub fn check_not_suspended(&self, now_ms: i64) -> Result<(), EngineError> {
        if self.banned_at_ms.is_some() {
            return Err(EngineError::Banned);
        }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Constraints {
    pub timeout_seconds: u32,
    pub min_output_length: u32,
}

#[derive(Debug, Clone)]
pub struct NewTask {
    pub task_id: String,
    pub buyer_id: String,
    pub task_type: String,
    /// The buyer's input as JSON text, sealed for a sensitive task ([`crate::sealed`]).
    pub input: String,
    /// A sensitive task's [`crate::sealed::input_preview`]; None for any other. A task with one
    /// has its output sealed too, copies included.
    pub input_preview: Option<String>,
    pub constraints: Constraints,
    pub price_cents: i64,
    pub now_ms: i64,
    pub idempotency: Option<IdemKey>,
    /// Whether a shadow twin, paid from the QA fund, enters the queue beside this task.
    pub shadow: bool,
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
    /// The shadow twin created with the task, for the Dispatcher (never part of any answer).
    #[serde(skip)]
    pub shadow: Option<QaCopy>,
}

/// A worker's output on its way into the store, with the keys that seal it there when its task
/// turns out to be sensitive (only the store reads the task at that point).
#[derive(Clone)]
pub struct Output {
    pub text: String,
    /// None on a node without a data key, where a sensitive task's submit fails.
    pub keys: Option<std::sync::Arc<crate::sealed::DataKeys>>,
}

impl From<String> for Output {
    fn from(text: String) -> Self {
        Output { text, keys: None }
    }
}

impl From<&str> for Output {
    fn from(text: &str) -> Self {
        Output::from(text.to_string())
    }
}

impl Output {
    /// The text as stored: sealed when the task is sensitive.
    pub(crate) fn stored(self, sensitive: bool) -> Result<String, EngineError> {
        if !sensitive {
            return Ok(self.text);
        }
        self.keys
            .as_deref()
            .ok_or(EngineError::SensitiveDisabled)?
            .seal(crate::sealed::Field::Output, &self.text)
    }
}

/// What one pass of [`Store::purge_task_data`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgedTasks {
    pub purged: u64,
    /// More tasks were due than `limit`.
    pub more: bool,
}

#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub seq: i64,
    pub task_id: String,
    pub buyer_id: String,
    pub task_type: String,
    /// Sealed for a sensitive task (see `input_preview`).
    pub input: String,
    /// Set for a sensitive task: all that lists show of its input.
    pub input_preview: Option<String>,
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
    /// When its input and output were purged ([`Store::purge_task_data`]): both read empty.
    pub purged_at_ms: Option<i64>,
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
    /// Tasks with the same key carry the same input for QA: a worker gets at most one of them.
    pub qa_key: Option<String>,
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
    /// The worker may not claim now (banned, suspended, busy, or at its daily cap).
    Refused(crate::rules::claim::Refusal),
    /// The worker already had a task with this QA key (the same input): it must not get this one.
    NotForWorker {
        qa_key: String,
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
    /// The QA group this task belongs to: the comparator looks at it once the task is in.
    pub qa_group: Option<String>,
    /// The spot-check copy this submit started, for the Dispatcher.
    pub spot_check: Option<QaCopy>,
    /// A sensitive task: its output was sealed, and no event may carry it.
    pub sensitive: bool,
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

/// Why a QA task exists. Internal: no worker-facing type carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QaType {
    /// A copy of a completed task, made with the worker's tier's spot-check rate.
    SpotCheck,
    /// A twin made when the buyer posted.
    Shadow,
    /// A task with a known answer.
    Benchmark,
}

impl QaType {
    pub fn as_str(self) -> &'static str {
        match self {
            QaType::SpotCheck => "spot_check",
            QaType::Shadow => "shadow",
            QaType::Benchmark => "benchmark",
        }
    }

    pub fn parse(s: &str) -> Option<QaType> {
        match s {
            "spot_check" => Some(QaType::SpotCheck),
            "shadow" => Some(QaType::Shadow),
            "benchmark" => Some(QaType::Benchmark),
            _ => None,
        }
    }
}

/// A QA copy the store created, for the Dispatcher to offer to anyone but `barred`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaCopy {
    pub task: LiveTask,
    pub barred: Vec<String>,
}

/// The part a task plays in its QA group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QaRole {
    /// The buyer's task.
    Original,
    /// The spot-check or shadow copy.
    Copy,
    /// The third copy asked for when the first two disagree.
    Tiebreak,
    /// A benchmark task (judged against its expected output).
    Benchmark,
}

impl QaRole {
    pub fn as_str(self) -> &'static str {
        match self {
            QaRole::Original => "original",
            QaRole::Copy => "copy",
            QaRole::Tiebreak => "tiebreak",
            QaRole::Benchmark => "benchmark",
        }
    }

    pub fn parse(s: &str) -> Option<QaRole> {
        match s {
            "original" => Some(QaRole::Original),
            "copy" => Some(QaRole::Copy),
            "tiebreak" => Some(QaRole::Tiebreak),
            "benchmark" => Some(QaRole::Benchmark),
            _ => None,
        }
    }
}

/// Where a QA group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QaState {
    /// Waiting for the original and its copy (or the benchmark) to be done.
    Open,
    /// The pair disagreed; waiting for the third copy.
    Tiebreak,
    Decided,
    /// A member failed (out of attempts, or never claimed): nothing to compare.
    Void,
}

impl QaState {
    pub fn as_str(self) -> &'static str {
        match self {
            QaState::Open => "open",
            QaState::Tiebreak => "tiebreak",
            QaState::Decided => "decided",
            QaState::Void => "void",
        }
    }

    pub fn parse(s: &str) -> Option<QaState> {
        match s {
            "open" => Some(QaState::Open),
            "tiebreak" => Some(QaState::Tiebreak),
            "decided" => Some(QaState::Decided),
            "void" => Some(QaState::Void),
            _ => None,
        }
    }
}

/// One task of a QA group as the comparator sees it.
#[derive(Debug, Clone)]
pub struct QaMember {
    pub task_id: String,
    pub role: QaRole,
    pub status: crate::domain::TaskStatus,
    pub worker_id: Option<String>,
    pub output: Option<String>,
}

/// A QA group: a buyer's task with its copies, or one benchmark task.
#[derive(Debug, Clone)]
pub struct QaGroup {
    pub id: String,
    pub qa_type: QaType,
    pub state: QaState,
    pub expected_output: Option<String>,
    pub members: Vec<QaMember>,
}

/// What the comparator concluded about a group.
#[derive(Debug, Clone, PartialEq)]
pub enum QaDecision {
    /// The pair did not pass: ask a third worker before blaming anyone.
    Tiebreak { score: crate::qa::similarity::Score },
    /// Final: the group's verdict, each worker's verdict and who (if anyone) takes the fail.
    Decide {
        score: crate::qa::similarity::Score,
        verdict: crate::qa::similarity::Verdict,
        outcomes: Vec<(String, crate::qa::similarity::Verdict)>,
        blamed: Option<String>,
        tiebreak: Option<TiebreakScores>,
    },
}

/// How the third copy compared with the original and with the first copy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TiebreakScores {
    pub with_task: f64,
    pub with_qa_task: f64,
}

/// What applying a decision changed, for the actors to hear about.
#[derive(Debug, Clone, Default)]
pub struct QaApplied {
    /// The third copy to offer.
    pub tiebreak: Option<QaCopy>,
    /// The buyer credited because the original failed: (buyer, task, cents).
    pub auto_credit: Option<(String, String, i64)>,
    /// Workers banned by this decision.
    pub banned: Vec<String>,
    /// False when the group had moved on (another decision got there first): nothing changed.
    pub applied: bool,
    /// A final decision was recorded (not a tie-breaker request); `failed` when it blamed someone.
    pub decided: bool,
    pub failed: bool,
}

/// A benchmark an admin or the schedule injects.
#[derive(Debug, Clone)]
pub struct NewBenchmark {
    pub task_id: String,
    pub task_type: String,
    pub input: String,
    pub expected_output: String,
    pub constraints: Constraints,
    pub price_cents: i64,
    pub now_ms: i64,
}

/// A decided QA comparison, for `GET /api/admin/qa/results`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QaResult {
    #[serde(skip)]
    pub seq: i64,
    pub task_id: String,
    pub qa_task_id: String,
    pub qa_type: QaType,
    pub similarity: f64,
    #[schema(value_type = Object)]
    pub dimensions: Value,
    #[schema(value_type = String, pattern = "^(pass|flag|fail)$")]
    pub verdict: String,
    pub worker_ids: Vec<String>,
    pub blamed_worker_id: Option<String>,
    pub tiebreak_task_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub tiebreak: Option<Value>,
    pub decided_at: String,
}

/// Counts of per-worker verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VerdictCounts {
    pub pass: u64,
    pub flag: u64,
    pub fail: u64,
}

/// `GET /api/admin/qa/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QaStats {
    pub overall: VerdictCounts,
    pub by_tier: BTreeMap<String, VerdictCounts>,
    pub by_type: BTreeMap<String, VerdictCounts>,
    /// Workers with a flagged result waiting for review, most flags first (at most 100).
    pub flagged_workers: Vec<Value>,
    pub banned_workers: Vec<Value>,
    /// Groups still waiting for a side (or the tie-breaker) to come in.
    pub waiting: u64,
    pub void: u64,
    /// The QA fund's balance: negative is what QA has cost so far, net of deductions.
    pub qa_fund_cents: i64,
}

/// Something the worker is told in `GET /api/worker/me` (a QA warning, deduction or ban).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkerNotice {
    pub kind: String,
    pub message: String,
    pub at: String,
}

/// One of a worker's earnings (a lot), for `GET /api/worker/earnings`.
#[derive(Debug, Clone)]
pub struct Earning {
    /// The page cursor: newest first, strictly decreasing.
    pub seq: i64,
    pub task_id: String,
    pub task_type: String,
    pub earned_cents: i64,
    pub commission_cents: i64,
    /// Taken into the QA fund by a penalty.
    pub deducted_cents: i64,
    pub created_ms: i64,
    pub release_ms: i64,
    /// frozen, released, reversed, or held (a banned worker's: never released).
    pub status: String,
}

/// A page of a worker's earnings and when its frozen money next frees up.
#[derive(Debug, Clone, Default)]
pub struct Earnings {
    pub lots: Vec<Earning>,
    /// The earliest release time of the worker's frozen lots, and how much frees then.
    pub next_release: Option<(i64, i64)>,
}

/// A task that failed in a sweep and was refunded.
#[derive(Debug, Clone)]
pub struct FailedTask {
    pub task_id: String,
    pub buyer_id: String,
}

/// What was committed to a shared store, by this node or another, as the actors need to hear
/// it. Only a store several nodes share has them (the embedded store is one node's).
#[derive(Debug, Clone)]
pub enum Change {
    /// A task is pending (posted, requeued, released, given back): offer it.
    Pending(LiveTask),
    /// A task was assigned: stop offering it.
    Assigned { task_id: String },
    /// A task is final (completed, failed, credited): wake whoever waits on it.
    Final { task_id: String },
    /// A platform config document changed.
    Config { key: String, stored: StoredConfig },
    /// The QA penalty ladder banned a worker.
    Banned { worker_id: String },
    /// A token stopped being valid (revoked or replaced).
    TokenRevoked { token_hash: String },
    /// The stream lost its place (the database was away longer than it keeps history): here is
    /// every live task again.
    Resync(Vec<LiveTask>),
    /// A feed event some node appended to the [`EventLog`], with the id every node gives it (ids
    /// grow in the log's one order).
    Event {
        id: u64,
        buyer: Option<String>,
        event: String,
        data: Value,
    },
}

/// Where a shared store keeps the feed's events, so that the streams of every node show what
/// happened on every node, under the same ids (a client resumes on any node).
pub trait EventLog: Send + Sync + 'static {
    /// Appends an event for `buyer`'s stream (the public feed when None). Appends from one node
    /// keep their order; every node hears each event back as [`Change::Event`].
    fn append(&self, buyer: Option<&str>, event: &str, data: &Value);
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
    /// Adds an admin token under `label` (or relabels it if it exists). The label
    /// [`ENV_TOKEN_LABEL`] is the environment's: adding one revokes the one it set before.
    fn add_admin_token(
        &self,
        token_hash: String,
        label: String,
        now_ms: i64,
    ) -> StoreFuture<AdminToken>;
    fn admin_tokens(&self) -> StoreFuture<Vec<AdminToken>>;
    /// Revokes the one admin token whose id starts with `id`.
    fn revoke_admin_token(&self, id: String) -> StoreFuture<AdminToken>;
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
    fn claim(&self, task_id: TaskId, worker_id: WorkerId, now_ms: i64)
    -> StoreFuture<ClaimOutcome>;
    /// Undoes a claim whose worker went away before it was told (no expiry counted).
    fn unclaim(
        &self,
        task_id: TaskId,
        worker_id: WorkerId,
        attempt: u32,
    ) -> StoreFuture<Option<LiveTask>>;
    /// A worker gives a task back before its deadline: it is pending again, no expiry counted.
    fn release(&self, task_id: TaskId, worker_id: WorkerId) -> StoreFuture<Option<LiveTask>>;
    fn submit(
        &self,
        task_id: TaskId,
        worker_id: WorkerId,
        output: Output,
        now_ms: i64,
        cfg: std::sync::Arc<PlatformConfig>,
        // A uniform draw in [0, 10000): a spot-check copy is made when it falls under the rate.
        spot_roll_bp: u32,
    ) -> StoreFuture<Settlement>;
    fn expire(
        &self,
        task_id: TaskId,
        worker_id: WorkerId,
        attempt: u32,
        now_ms: i64,
        cfg: std::sync::Arc<PlatformConfig>,
    ) -> StoreFuture<ExpireOutcome>;
    /// A buyer's credit request (`buyer.id` is the buyer; its address goes into the audit log).
    fn credit(
        &self,
        task_id: TaskId,
        buyer: Who,
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

    // Invisible QA.
    fn qa_group(&self, group_id: String) -> StoreFuture<Option<QaGroup>>;
    /// Groups not yet decided (looked at again after a restart).
    fn qa_undecided(&self) -> StoreFuture<Vec<String>>;
    /// Applies the comparator's decision if the group is still in `from` (else `applied: false`):
    /// results, worker records, penalties, the automatic buyer credit and the tie-breaker copy, in
    /// one transaction.
    fn qa_apply(
        &self,
        group_id: String,
        from: QaState,
        decision: QaDecision,
        now_ms: i64,
        cfg: std::sync::Arc<PlatformConfig>,
    ) -> StoreFuture<QaApplied>;
    /// Creates a benchmark task paid from the QA fund.
    fn inject_benchmark(&self, b: NewBenchmark) -> StoreFuture<QaCopy>;
    /// Decided comparisons, newest first, before `before_seq`.
    fn qa_results(
        &self,
        worker_id: Option<String>,
        verdict: Option<String>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreFuture<Vec<QaResult>>;
    fn qa_stats(&self) -> StoreFuture<QaStats>;
    fn worker_notices(&self, worker_id: String) -> StoreFuture<Vec<WorkerNotice>>;
    /// What a task's timeline is made of (None: no such task).
    fn task_timeline(&self, task_id: String) -> StoreFuture<Option<timeline::TimelineParts>>;
    /// A worker's earnings, newest first, before `before_seq`.
    fn earnings(
        &self,
        worker_id: String,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreFuture<Earnings>;
    fn banned_workers(&self) -> StoreFuture<Vec<String>>;

    // Admin.
    fn admin_credit(
        &self,
        user_id: UserId,
        amount_cents: i64,
        reason: String,
        by: Who,
        now_ms: i64,
        idem: Option<IdemKey>,
    ) -> StoreFuture<AdminCredited>;
    // Money in.
    /// Stores a deposit whose Checkout Session was made (a repeated idempotency key replays the
    /// first answer).
    fn create_deposit(&self, d: NewDeposit) -> StoreFuture<DepositRecord>;
    /// Acts on a verified provider event exactly once: by its id, and by the deposit's state
    /// (credited once, with the first deposit's bonus, in the same transaction).
    fn deposit_event(&self, e: ProviderEvent) -> StoreFuture<EventOutcome>;
    /// An admin credits a `mismatch` deposit with what was actually paid (once: it is then
    /// `completed`; anything else is `Conflict`).
    fn resolve_deposit(
        &self,
        deposit_id: String,
        by: Who,
        note: String,
        now_ms: i64,
    ) -> StoreFuture<DepositRecord>;
    /// Deposits, newest first.
    fn deposits(&self, filter: DepositFilter) -> StoreFuture<Vec<DepositRecord>>;
    // Money out.
    /// Stores a new email code for a worker (replacing its last one), and the message in the
    /// outbox when it is not sent. A new code within a minute of the last is refused.
    fn email_code(&self, c: NewEmailCode) -> StoreFuture<()>;
    /// Forgets a code that could not be sent (if it is still the worker's last one).
    fn forget_email_code(&self, worker_id: String, code_hash: String) -> StoreFuture<()>;
    /// Tries a code (its hash): a wrong one counts (committed even though the answer is no).
    fn verify_email(
        &self,
        worker_id: String,
        email: String,
        code_hash: String,
        now_ms: i64,
    ) -> StoreFuture<VerifyOutcome>;
    /// Binds a payout address; needs a verified email (`EmailNotVerified`).
    fn bind_payout(
        &self,
        worker_id: String,
        method: crate::rules::payout::PayoutMethod,
        address: String,
        now_ms: i64,
    ) -> StoreFuture<PayoutBinding>;
    fn payout_binding(&self, worker_id: String) -> StoreFuture<Option<PayoutBinding>>;
    /// The outbox, newest first.
    fn outbox(&self, before_seq: Option<i64>, limit: u32) -> StoreFuture<Vec<OutboxMessage>>;
    /// Takes a withdrawal out of the worker's available balance into payouts pending, if the
    /// rules allow it now (`rules::withdrawal`), in one transaction.
    fn withdraw(&self, w: NewWithdrawal) -> StoreFuture<WithdrawalRecord>;
    fn withdrawals(&self, filter: WithdrawalFilter) -> StoreFuture<Vec<WithdrawalRecord>>;
    /// Completes or rejects a pending withdrawal, once (a second attempt is `Conflict`).
    fn settle_withdrawal(
        &self,
        withdrawal_id: String,
        settle: Settle,
        by: Who,
        now_ms: i64,
        idem: Option<IdemKey>,
    ) -> StoreFuture<WithdrawalRecord>;
    // Referrals.
    /// A user's referral code (made now, as `candidate`, if it has none) and what it brought.
    fn referral(
        &self,
        user_id: String,
        candidate: String,
        now_ms: i64,
    ) -> StoreFuture<ReferralStats>;
    // Bounties.
    /// Posts a bounty, its reward moved from the buyer's available balance into escrow
    /// (`InsufficientBalance` when it can't be), in one transaction.
    fn post_bounty(&self, b: NewBounty) -> StoreFuture<BountyRecord>;
    fn bounty(&self, bounty_id: String) -> StoreFuture<Option<BountyRecord>>;
    fn bounties(&self, filter: BountyFilter) -> StoreFuture<Vec<BountyRecord>>;
    /// Cancels an open bounty nobody has submitted to, refunding its escrow; only its buyer may
    /// (`NotFound` for anyone else), and only once (`Conflict` after).
    fn cancel_bounty(
        &self,
        bounty_id: String,
        buyer_id: String,
        now_ms: i64,
    ) -> StoreFuture<BountyRecord>;
    /// A worker's submission, given the next position, if the bounty still takes it
    /// (`rules::bounty::check_submit`; `NotFound` for no such bounty).
    fn submit_bounty(&self, s: NewSubmission) -> StoreFuture<SubmissionRecord>;
    fn submission(&self, submission_id: String) -> StoreFuture<Option<SubmissionRecord>>;
    fn submissions(&self, filter: SubmissionFilter) -> StoreFuture<Vec<SubmissionRecord>>;
    /// Approves or rejects a pending submission (`rules::bounty::check_review`), once. An
    /// approval pays the reward out of escrow (the worker's part a frozen lot released after the
    /// dispute window, the fee to revenue), completes the bounty and closes its other
    /// submissions, in one transaction. `NotFound` unless `buyer_id` owns the bounty (None: the
    /// Supervisor's automatic approval).
    fn review_submission(&self, r: ReviewAsk) -> StoreFuture<Reviewed>;
    /// Opens a dispute over a rejection (`rules::bounty::check_dispute`); `NotFound` unless the
    /// submission is `worker_id`'s.
    fn open_dispute(&self, d: NewDispute) -> StoreFuture<DisputeRecord>;
    fn dispute(&self, dispute_id: String) -> StoreFuture<Option<DisputeRecord>>;
    fn disputes(&self, filter: DisputeFilter) -> StoreFuture<Vec<DisputeRecord>>;
    /// Resolves an open dispute, once: the whole escrow is settled (the worker's part paid as on
    /// approval, the rest refunded), the bounty `resolved`, its other submissions and disputes
    /// closed, and the resolution audit-logged, in one transaction.
    fn resolve_dispute(&self, r: Resolution) -> StoreFuture<Resolved>;
    /// The bounty timers due by `now_ms`, at most `limit` of each kind, in one transaction:
    /// warns buyers a day before an automatic approval, approves submissions left unreviewed
    /// past their due time (not while a dispute is open on the bounty), and expires bounties past
    /// their deadline with nothing left to review or dispute, refunding them
    /// (`rules::bounty::expires`). Every change is guarded on the state it read, so a sweep that
    /// runs again, after a restart or on another node, does nothing twice.
    ///
    /// It also asks more validators to vote on consensus submissions whose vote is undecided at
    /// its round's due time (workers of `validator_tiers`, `rules::bounty::invite_due_ms`).
    fn bounty_sweep(
        &self,
        now_ms: i64,
        limit: u32,
        validator_tiers: Vec<String>,
    ) -> StoreFuture<BountySweep>;
    /// A validator's vote on a pending submission of a consensus bounty, once
    /// (`rules::bounty::check_vote`; `NotFound` for no such submission of that bounty). The vote
    /// that makes the majority certain (`rules::bounty::majority` of the bounty's
    /// `terms.validators`) decides in the same transaction: an approval pays as the buyer's
    /// would, each validator who voted for it paid `validator_fee_cents` out of the fee; a
    /// rejection opens the dispute window, and the validators who voted for it are paid by the
    /// QA fund. Validators who voted against a decision are recorded, and flagged to QA as for a
    /// failed comparison when they keep doing so (`rules::bounty::validator_suspicious`).
    fn vote_submission(&self, v: VoteAsk) -> StoreFuture<Voted>;
    /// The votes `validator_id` was asked for and has not cast, on submissions still pending,
    /// oldest first.
    fn vote_requests(&self, validator_id: String, limit: u32) -> StoreFuture<Vec<VoteRequest>>;
    /// A user's notifications, newest first.
    fn notifications(&self, filter: NotificationFilter) -> StoreFuture<Vec<NotificationRecord>>;
    /// Marks `ids` of `user_id`'s notifications read (others' and unknown ids are left alone);
    /// returns how many were unread.
    fn mark_read(&self, user_id: String, ids: Vec<String>, now_ms: i64) -> StoreFuture<u64>;
    /// Registers a buyer's webhook endpoint (409 past `max_per_buyer`).
    fn create_webhook(&self, w: NewWebhook) -> StoreFuture<WebhookRecord>;
    /// A buyer's endpoints, oldest first.
    fn webhooks(&self, buyer_id: String) -> StoreFuture<Vec<WebhookRecord>>;
    fn webhook(&self, webhook_id: String) -> StoreFuture<Option<WebhookRecord>>;
    /// Deletes a buyer's endpoint and cancels its undelivered deliveries; false when it is not
    /// theirs.
    fn delete_webhook(&self, buyer_id: String, webhook_id: String) -> StoreFuture<bool>;
    /// An endpoint's deliveries, newest first.
    fn deliveries(&self, filter: DeliveryFilter) -> StoreFuture<Vec<DeliveryRecord>>;
    /// Puts a dead (or delivered) delivery back in the queue, due now, its attempts counted
    /// anew; a pending one is answered as it is.
    fn retry_delivery(
        &self,
        buyer_id: String,
        webhook_id: String,
        delivery_id: String,
        now_ms: i64,
    ) -> StoreFuture<DeliveryRecord>;
    /// Leases up to `limit` deliveries due by `now_ms` to the caller until `now_ms + lease_ms`:
    /// at most `per_webhook` of one endpoint, and none of an endpoint with a lease running. A
    /// lease that ends unrecorded (its sender died) leaves the delivery due again.
    fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        per_webhook: u32,
        limit: u32,
    ) -> StoreFuture<Vec<Claimed>>;
    /// Records an attempt under its lease (delivered, due again, or dead); false, recording
    /// nothing, when the lease is no longer the caller's.
    fn delivery_attempted(&self, a: Attempt) -> StoreFuture<bool>;
    /// Forgets deliveries that are settled (delivered, dead or cancelled) and were created
    /// before `before_ms`; returns how many.
    fn purge_deliveries(&self, before_ms: i64) -> StoreFuture<u64>;
    /// Forgets idempotency keys stored before `before_ms`; returns how many.
    fn purge_idempotency(&self, before_ms: i64) -> StoreFuture<u64>;
    /// Purges the input and output of at most `limit` tasks due at `now_ms` with `grace_ms`
    /// ([`crate::rules::retention::due_by`]), oldest first; each keeps its status, price, times
    /// and entries, and reads as `purged` from then on. The bytes are gone from the store's files
    /// when it returns (see each backend).
    fn purge_task_data(&self, now_ms: i64, grace_ms: i64, limit: u32) -> StoreFuture<PurgedTasks>;
    /// One audit-log entry for an admin action that changes nothing else in the store (a
    /// Supervisor job run by hand).
    fn record_audit(&self, by: Who, action: String, details: Value, now_ms: i64)
    -> StoreFuture<()>;
    /// Audit-log entries, newest first.
    fn audit_log(&self, filter: AuditFilter) -> StoreFuture<Vec<AuditEntry>>;
    /// Walks the audit log's hash chain from its anchor to its head.
    fn verify_audit_log(&self) -> StoreFuture<ChainReport>;
    /// Removes the audit entries written before `before_ms`, the last of them kept as the
    /// chain's anchor; refuses (`Conflict`) while the chain is broken.
    fn prune_audit_log(&self, before_ms: i64) -> StoreFuture<Pruned>;

    fn load_config(&self) -> StoreFuture<BTreeMap<String, StoredConfig>>;
    /// Stores the documents that are missing (first start); returns how many were added.
    fn seed_config(&self, docs: BTreeMap<String, Value>, now_ms: i64) -> StoreFuture<u32>;
    fn put_config(
        &self,
        key: String,
        doc: Value,
        expected_version: Option<i64>,
        by: Who,
        now_ms: i64,
    ) -> StoreFuture<StoredConfig>;
    /// A config document's stored versions, newest first (at most `limit`).
    fn config_history(&self, key: String, limit: u32) -> StoreFuture<Vec<StoredConfig>>;
    fn audit(&self) -> StoreFuture<AuditReport>;
    /// Resolves once everything queued before it has been committed.
    fn flush(&self) -> StoreFuture<()>;
    /// The shared event log of a store several nodes use (None: events stay in this node).
    fn event_log(&self) -> Option<std::sync::Arc<dyn EventLog>> {
        None
    }
    /// What every node commits, from now on (None for a store only this node uses). Asked once,
    /// at start, before the live tasks are read, so that nothing falls between the two.
    fn changes(&self) -> StoreFuture<Option<tokio::sync::mpsc::Receiver<Change>>> {
        Box::pin(async { Ok(None) })
    }
}
