//! What clients see. Worker-facing views are their own types with exactly the contract's fields,
//! so nothing internal can reach a worker by accident.

use clawjobs_actors::clock::rfc3339;
use clawjobs_actors::store::{
    BalanceSnapshot, ClaimedTask, Constraints, Limits, Preferences, Settlement, TaskRecord,
    WorkerRecord, WorkerStats,
};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// Stored JSON text passed through without re-parsing.
fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_string())
        .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default())
}

/// One page of a list, newest first; `cursor` fetches the next page while `has_more`.
#[derive(Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub data: Vec<T>,
    pub cursor: Option<String>,
    pub has_more: bool,
}

impl<T: ToSchema> Page<T> {
    /// A page of `rows` (already cut to the limit), each shown by `view`; the cursor is the last
    /// row's `seq` while there is more.
    pub fn of<R>(
        rows: &[R],
        has_more: bool,
        seq: impl Fn(&R) -> i64,
        view: impl Fn(&R) -> T,
    ) -> Self {
        Page {
            data: rows.iter().map(view).collect(),
            cursor: has_more
                .then(|| rows.last().map(|r| seq(r).to_string()))
                .flatten(),
            has_more,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BalanceView {
    pub available_cents: i64,
    pub frozen_cents: i64,
    pub total_deposited_cents: i64,
    pub total_earned_cents: i64,
    pub total_withdrawn_cents: i64,
}

impl From<&BalanceSnapshot> for BalanceView {
    fn from(b: &BalanceSnapshot) -> Self {
        BalanceView {
            available_cents: b.available_cents,
            frozen_cents: b.frozen_cents,
            total_deposited_cents: b.total_deposited_cents,
            total_earned_cents: b.total_earned_cents,
            total_withdrawn_cents: b.total_withdrawn_cents,
        }
    }
}

/// A buyer's task.
#[derive(Serialize, ToSchema)]
pub struct TaskView {
    pub task_id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    #[schema(pattern = "^(pending|assigned|completed|failed|credited)$")]
    pub status: &'static str,
    pub price_cents: i64,
    /// The worker's output, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<Box<RawValue>>,
    pub constraints: Constraints,
    pub attempts: u32,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// The input and output are gone: purged after the refund window and
    /// `retention.grace_seconds` (status, price and times stay).
    pub purged: bool,
    /// Sealed at rest; lists show only `input_preview` (and no output).
    pub sensitive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_preview: Option<String>,
}

impl From<&TaskRecord> for TaskView {
    fn from(t: &TaskRecord) -> Self {
        TaskView {
            task_id: t.task_id.clone(),
            task_type: t.task_type.clone(),
            status: t.status.as_str(),
            price_cents: t.price_cents,
            output: t.output.as_deref().map(raw),
            constraints: t.constraints,
            attempts: t.attempts,
            created_at: rfc3339(t.created_at_ms),
            completed_at: t.completed_at_ms.map(rfc3339),
            purged: t.purged_at_ms.is_some(),
            sensitive: t.input_preview.is_some(),
            input_preview: t.input_preview.clone(),
        }
    }
}

/// A task as a worker receives it: exactly these fields.
#[derive(Serialize, ToSchema)]
pub struct WorkView {
    pub task_id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    #[schema(value_type = Object)]
    pub input: Box<RawValue>,
    pub constraints: Constraints,
    pub price_cents: i64,
    pub deadline: String,
}

impl From<&ClaimedTask> for WorkView {
    fn from(t: &ClaimedTask) -> Self {
        WorkView {
            task_id: t.task_id.clone(),
            task_type: t.task_type.clone(),
            input: raw(&t.input),
            constraints: t.constraints,
            price_cents: t.price_cents,
            deadline: rfc3339(t.deadline_ms),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SubmitView {
    #[schema(pattern = "^accepted$")]
    pub status: &'static str,
    pub task_id: String,
    pub earned_cents: i64,
    pub stats: WorkerStats,
    pub tier: String,
}

impl From<&Settlement> for SubmitView {
    fn from(s: &Settlement) -> Self {
        SubmitView {
            status: "accepted",
            task_id: s.task_id.clone(),
            earned_cents: s.earned_cents,
            stats: s.stats,
            tier: s.tier.clone(),
        }
    }
}

/// A worker's whole profile.
#[derive(Serialize, ToSchema)]
pub struct ProfileView {
    pub worker_id: String,
    pub worker_type: Option<String>,
    #[schema(value_type = Object)]
    pub model_info: Value,
    pub preferences: Preferences,
    pub schedule: Value,
    pub limits: Limits,
}

impl From<&WorkerRecord> for ProfileView {
    fn from(w: &WorkerRecord) -> Self {
        ProfileView {
            worker_id: w.worker_id.clone(),
            worker_type: w.worker_type.clone(),
            model_info: w.model_info.clone(),
            preferences: w.profile.preferences.clone(),
            schedule: w.profile.schedule.clone(),
            limits: w.profile.limits.clone(),
        }
    }
}
