//! Buyer webhooks: endpoints, and deliveries written with the events they carry, claimed under a
//! lease by a sender (on any node) and settled by its attempts.

use serde::{Deserialize, Serialize};

use super::*;
use crate::store::webhook::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct WebhookDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub buyer_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub created_at: i64,
}

impl WebhookDoc {
    fn record(self) -> WebhookRecord {
        WebhookRecord {
            webhook_id: self.id,
            buyer_id: self.buyer_id,
            url: self.url,
            events: self.events,
            secret: self.secret,
            created_at_ms: self.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct DeliveryDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub seq: i64,
    pub webhook_id: String,
    pub buyer_id: String,
    pub event_id: String,
    pub event_type: String,
    pub body: String,
    pub status: String,
    pub attempts: i64,
    #[serde(default)]
    pub next_at: Option<i64>,
    #[serde(default)]
    pub lease: Option<String>,
    #[serde(default)]
    pub last_attempt_at: Option<i64>,
    #[serde(default)]
    pub last_status: Option<i64>,
    #[serde(default)]
    pub last_error: Option<String>,
    pub created_at: i64,
    #[serde(default)]
    pub delivered_at: Option<i64>,
}

impl DeliveryDoc {
    fn record(self) -> R<DeliveryRecord> {
        Ok(DeliveryRecord {
            status: DeliveryStatus::parse(&self.status).ok_or_else(|| {
                Fail::Engine(EngineError::internal("a delivery with an unknown status"))
            })?,
            seq: self.seq,
            delivery_id: self.id,
            webhook_id: self.webhook_id,
            buyer_id: self.buyer_id,
            event_id: self.event_id,
            event_type: self.event_type,
            body: self.body,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            next_at_ms: self.next_at,
            last_attempt_at_ms: self.last_attempt_at,
            last_status: self.last_status.and_then(|s| u16::try_from(s).ok()),
            last_error: self.last_error,
            created_at_ms: self.created_at,
            delivered_at_ms: self.delivered_at,
        })
    }
}

/// How many due deliveries one claim looks at before capping them per endpoint.
const CLAIM_SCAN: i64 = 1_000;

impl Tx<'_> {
    /// Queues `ev` for each of its buyer's endpoints that subscribed to it, in this transaction.
    pub async fn hook(&mut self, ev: HookEvent, now_ms: i64) -> R<()> {
        let db = self.db;
        let hooks = self
            .many(
                &db.webhooks,
                doc! { "buyer_id": &ev.buyer_id, "events": ev.kind },
                doc! { "_id": 1 },
                None,
            )
            .await?;
        if hooks.is_empty() {
            return Ok(());
        }
        let event_id = crate::domain::new_id("evt");
        let body = ev.body(&event_id, now_ms);
        for hook in hooks {
            let d = DeliveryDoc {
                id: crate::domain::new_id("dlv"),
                seq: db.next_seq("webhook_deliveries").await?,
                webhook_id: hook.id,
                buyer_id: ev.buyer_id.clone(),
                event_id: event_id.clone(),
                event_type: ev.kind.to_string(),
                body: body.clone(),
                status: DeliveryStatus::Pending.as_str().into(),
                attempts: 0,
                next_at: Some(now_ms),
                lease: None,
                last_attempt_at: None,
                last_status: None,
                last_error: None,
                created_at: now_ms,
                delivered_at: None,
            };
            self.insert(&db.deliveries, &d).await?;
        }
        Ok(())
    }
}

pub(super) async fn create(tx: &mut Tx<'_>, w: &NewWebhook) -> R<WebhookRecord> {
    let db = tx.db;
    let count = tx
        .count(&db.webhooks, doc! { "buyer_id": &w.buyer_id })
        .await?;
    if count >= u64::from(w.max_per_buyer) {
        return Err(Fail::Engine(EngineError::Conflict(format!(
            "a buyer may register at most {} webhooks; delete one first",
            w.max_per_buyer
        ))));
    }
    let d = WebhookDoc {
        id: w.webhook_id.clone(),
        buyer_id: w.buyer_id.clone(),
        url: w.url.clone(),
        events: w.events.clone(),
        secret: w.secret.clone(),
        created_at: w.now_ms,
    };
    tx.insert(&db.webhooks, &d).await?;
    Ok(d.record())
}

pub(super) async fn list(tx: &mut Tx<'_>, buyer_id: &str) -> R<Vec<WebhookRecord>> {
    let db = tx.db;
    let found = tx
        .many(
            &db.webhooks,
            doc! { "buyer_id": buyer_id },
            doc! { "created_at": 1, "_id": 1 },
            None,
        )
        .await?;
    Ok(found.into_iter().map(WebhookDoc::record).collect())
}

pub(super) async fn read(tx: &mut Tx<'_>, id: &str) -> R<Option<WebhookRecord>> {
    let db = tx.db;
    Ok(tx
        .one(&db.webhooks, doc! { "_id": id })
        .await?
        .map(WebhookDoc::record))
}

pub(super) async fn delete(tx: &mut Tx<'_>, buyer_id: &str, id: &str) -> R<bool> {
    let db = tx.db;
    let n = tx
        .delete(&db.webhooks, doc! { "_id": id, "buyer_id": buyer_id })
        .await?;
    if n == 0 {
        return Ok(false);
    }
    tx.update_many(
        &db.deliveries,
        doc! { "webhook_id": id, "status": "pending" },
        doc! { "$set": { "status": "cancelled", "next_at": Bson::Null, "lease": Bson::Null } },
    )
    .await?;
    Ok(true)
}

pub(super) async fn deliveries(tx: &mut Tx<'_>, f: &DeliveryFilter) -> R<Vec<DeliveryRecord>> {
    let db = tx.db;
    let found = tx
        .newest(
            &db.deliveries,
            doc! { "webhook_id": &f.webhook_id, "buyer_id": &f.buyer_id },
            f.status.map(|s| s.as_str()),
            f.before_seq,
            f.limit,
        )
        .await?;
    found.into_iter().map(DeliveryDoc::record).collect()
}

pub(super) async fn retry(
    tx: &mut Tx<'_>,
    buyer_id: &str,
    webhook_id: &str,
    delivery_id: &str,
    now_ms: i64,
) -> R<DeliveryRecord> {
    let db = tx.db;
    let d = tx
        .one(
            &db.deliveries,
            doc! { "_id": delivery_id, "buyer_id": buyer_id, "webhook_id": webhook_id },
        )
        .await?
        .ok_or_else(|| Fail::Engine(EngineError::NotFound("no such delivery".into())))?;
    match DeliveryStatus::parse(&d.status) {
        Some(DeliveryStatus::Dead | DeliveryStatus::Delivered) => {}
        Some(DeliveryStatus::Cancelled) => {
            return Err(Fail::Engine(EngineError::Conflict(
                "its webhook was deleted; register it again".into(),
            )));
        }
        _ => return d.record(),
    }
    let updated = tx
        .take(
            &db.deliveries,
            doc! { "_id": delivery_id, "status": &d.status },
            doc! { "$set": { "status": "pending", "attempts": 0_i64, "next_at": now_ms, "lease": Bson::Null } },
        )
        .await?
        // Changed under us: the transaction is retried.
        .ok_or(Fail::Retry)?;
    updated.record()
}

pub(super) async fn claim(
    tx: &mut Tx<'_>,
    now_ms: i64,
    lease_ms: i64,
    per_webhook: u32,
    limit: u32,
) -> R<Vec<Claimed>> {
    let db = tx.db;
    // Endpoints with sends under way wait for them to end.
    let busy: Vec<String> = tx
        .many(
            &db.deliveries,
            doc! { "status": "pending", "lease": { "$ne": Bson::Null }, "next_at": { "$gt": now_ms } },
            doc! { "next_at": 1 },
            Some(CLAIM_SCAN),
        )
        .await?
        .into_iter()
        .map(|d| d.webhook_id)
        .collect();
    let due = tx
        .many(
            &db.deliveries,
            doc! { "status": "pending", "next_at": { "$lte": now_ms }, "webhook_id": { "$nin": &busy } },
            doc! { "next_at": 1, "seq": 1 },
            Some(CLAIM_SCAN),
        )
        .await?;
    let mut per: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for d in due {
        if out.len() >= limit as usize {
            break;
        }
        let n = per.entry(d.webhook_id.clone()).or_default();
        if *n >= per_webhook {
            continue;
        }
        *n += 1;
        let lease = crate::domain::new_id("lse");
        let taken = tx
            .take(
                &db.deliveries,
                doc! { "_id": &d.id, "status": "pending", "next_at": d.next_at },
                doc! { "$set": { "lease": &lease, "next_at": now_ms.saturating_add(lease_ms) } },
            )
            .await?;
        // Taken by another sender meanwhile.
        let Some(taken) = taken else { continue };
        let Some(hook) = tx
            .one(&db.webhooks, doc! { "_id": &taken.webhook_id })
            .await?
        else {
            continue;
        };
        out.push(Claimed {
            delivery: taken.record()?,
            url: hook.url,
            secret: hook.secret,
            lease,
        });
    }
    Ok(out)
}

pub(super) async fn attempted(tx: &mut Tx<'_>, a: &Attempt) -> R<bool> {
    let db = tx.db;
    let (status, next_at, delivered_at) = a.outcome();
    tx.update(
        &db.deliveries,
        doc! { "_id": &a.delivery_id, "lease": &a.lease, "status": "pending" },
        doc! {
            "$set": {
                "status": status.as_str(), "next_at": next_at, "lease": Bson::Null,
                "last_attempt_at": a.now_ms, "last_status": a.status.map(i64::from),
                "last_error": &a.error, "delivered_at": delivered_at,
            },
            "$inc": { "attempts": 1_i64 },
        },
    )
    .await
}

pub(super) async fn purge(tx: &mut Tx<'_>, before_ms: i64) -> R<u64> {
    let db = tx.db;
    tx.delete(
        &db.deliveries,
        doc! {
            "created_at": { "$lt": before_ms },
            "status": { "$in": ["delivered", "dead", "cancelled"] },
        },
    )
    .await
}
