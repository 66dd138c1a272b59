//! What the store keeps of buyer webhooks: the endpoints, and one delivery per event and
//! endpoint, written in the same transaction as the event itself (so an event is never lost, and
//! never sent for something that rolled back) and worked off by the Supervisor's `webhooks` job.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::rules::webhook::DeliveryStatus;

/// An endpoint to register.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub webhook_id: String,
    pub buyer_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub now_ms: i64,
    /// `config:webhooks.max_per_buyer`: a registration past it is refused.
    pub max_per_buyer: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRecord {
    pub webhook_id: String,
    pub buyer_id: String,
    pub url: String,
    pub events: Vec<String>,
    /// The signing secret. Only the registration's answer shows it.
    pub secret: String,
    pub created_at_ms: i64,
}

/// One event bound for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub seq: i64,
    pub delivery_id: String,
    pub webhook_id: String,
    pub buyer_id: String,
    pub event_id: String,
    pub event_type: String,
    /// The exact body POSTed (what the signature covers).
    pub body: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// While pending: when it is tried next.
    pub next_at_ms: Option<i64>,
    pub last_attempt_at_ms: Option<i64>,
    /// The endpoint's HTTP status on the last attempt, if it answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed (timeout, refused, the start of a non-2xx answer).
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
}

/// Which of an endpoint's deliveries to list, newest first.
#[derive(Debug, Clone)]
pub struct DeliveryFilter {
    pub buyer_id: String,
    pub webhook_id: String,
    pub status: Option<DeliveryStatus>,
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// A delivery handed to a sender: leased until `lease_until_ms` (another sender, or this one after
/// a restart, takes it again after that), with what sending needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery: DeliveryRecord,
    pub url: String,
    pub secret: String,
    /// Proves the lease when the attempt is recorded.
    pub lease: String,
}

/// What an attempt came to.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub delivery_id: String,
    pub lease: String,
    pub now_ms: i64,
    /// 2xx: delivered.
    pub delivered: bool,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// When failed: the next attempt's time, or `None` to dead-letter it.
    pub retry_at_ms: Option<i64>,
}

impl Attempt {
    /// What the delivery becomes: its status, its next attempt's time, when it was delivered.
    pub fn outcome(&self) -> (DeliveryStatus, Option<i64>, Option<i64>) {
        if self.delivered {
            (DeliveryStatus::Delivered, None, Some(self.now_ms))
        } else if let Some(at) = self.retry_at_ms {
            (DeliveryStatus::Pending, Some(at), None)
        } else {
            (DeliveryStatus::Dead, None, None)
        }
    }
}

/// An event for a buyer's webhooks, raised inside the transaction of what it tells.
#[derive(Debug, Clone, PartialEq)]
pub struct HookEvent {
    pub buyer_id: String,
    /// One of `rules::webhook::EVENTS`.
    pub kind: &'static str,
    /// The object, with its ids.
    pub data: Value,
}

impl HookEvent {
    pub fn new(buyer_id: &str, kind: &'static str, data: Value) -> HookEvent {
        HookEvent {
            buyer_id: buyer_id.to_string(),
            kind,
            data,
        }
    }

    /// The body every endpoint of the event receives.
    pub fn body(&self, event_id: &str, now_ms: i64) -> String {
        serde_json::json!({
            "id": event_id,
            "type": self.kind,
            "created_at": crate::clock::rfc3339(now_ms),
            "data": self.data,
        })
        .to_string()
    }
}

/// The events of tasks and deposits, the same from every store. They carry ids and amounts,
/// never a task's input or output: a receiver reads those with the buyer's token.
pub mod events {
    use serde_json::json;

    use super::HookEvent;

    pub fn task_completed(
        buyer_id: &str,
        task_id: &str,
        task_type: &str,
        price_cents: i64,
    ) -> HookEvent {
        HookEvent::new(
            buyer_id,
            "task.completed",
            json!({ "task_id": task_id, "type": task_type, "status": "completed", "price_cents": price_cents }),
        )
    }

    pub fn task_failed(buyer_id: &str, task_id: &str, refunded_cents: i64) -> HookEvent {
        HookEvent::new(
            buyer_id,
            "task.failed",
            json!({ "task_id": task_id, "status": "failed", "refunded_cents": refunded_cents }),
        )
    }

    /// `by`: `buyer` (a credit the buyer asked for) or `qa` (QA found the answer bad).
    pub fn task_credited(buyer_id: &str, task_id: &str, cents: i64, by: &str) -> HookEvent {
        HookEvent::new(
            buyer_id,
            "task.credited",
            json!({ "task_id": task_id, "status": "credited", "credited_cents": cents, "by": by }),
        )
    }

    pub fn deposit_completed(d: &crate::store::DepositRecord) -> HookEvent {
        HookEvent::new(
            &d.buyer_id,
            "deposit.completed",
            json!({
                "deposit_id": d.deposit_id, "status": "completed", "amount_cents": d.amount_cents,
                "bonus_cents": d.bonus_cents,
            }),
        )
    }
}
