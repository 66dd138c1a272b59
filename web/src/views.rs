//! What clients see. Worker-facing views are their own types with exactly the contract's fields,
//! so nothing internal can reach a worker by accident.

use clawjobs_actors::clock::rfc3339;
use clawjobs_actors::store::{
    ClaimedTask, Constraints, Settlement, TaskRecord, WorkerRecord, WorkerStats,
};
use serde::Serialize;
use serde_json::value::RawValue;

/// Stored JSON text passed through without re-parsing.
fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_string())
        .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default())
}

/// A buyer's task.
#[derive(Serialize)]
pub struct TaskView {
    pub task_id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub status: &'static str,
    pub price_cents: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Box<RawValue>>,
    pub constraints: Constraints,
    pub attempts: u32,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
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
        }
    }
}

/// A task as a worker receives it: exactly these fields.
#[derive(Serialize)]
pub struct WorkView {
    pub task_id: String,
    #[serde(rename = "type")]
    pub task_type: String,
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

#[derive(Serialize)]
pub struct SubmitView {
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

#[derive(Serialize)]
pub struct ProfileView<'a> {
    pub worker_id: &'a str,
    pub worker_type: Option<&'a str>,
    pub model_info: &'a serde_json::Value,
    pub preferences: &'a clawjobs_actors::store::Preferences,
    pub schedule: &'a serde_json::Value,
    pub limits: &'a clawjobs_actors::store::Limits,
}

impl<'a> From<&'a WorkerRecord> for ProfileView<'a> {
    fn from(w: &'a WorkerRecord) -> Self {
        ProfileView {
            worker_id: &w.worker_id,
            worker_type: w.worker_type.as_deref(),
            model_info: &w.model_info,
            preferences: &w.profile.preferences,
            schedule: &w.profile.schedule,
            limits: &w.profile.limits,
        }
    }
}
