//! Buyer webhooks: endpoints, and deliveries written with the events they carry, claimed under a
//! lease by the sender and settled by its attempts.

use super::*;
use crate::store::webhook::*;

const WEBHOOK_COLS: &str = "id, buyer_id, url, events, secret, created_at";
const DELIVERY_COLS: &str = "seq, id, webhook_id, buyer_id, event_id, event_type, body, status, \
    attempts, next_at, last_attempt_at, last_status, last_error, created_at, delivered_at";

fn webhook_from_row(r: &Row<'_>) -> rusqlite::Result<WebhookRecord> {
    let events: String = r.get(3)?;
    Ok(WebhookRecord {
        webhook_id: r.get(0)?,
        buyer_id: r.get(1)?,
        url: r.get(2)?,
        events: serde_json::from_str(&events).map_err(|_| invalid(3, "webhook events"))?,
        secret: r.get(4)?,
        created_at_ms: r.get(5)?,
    })
}

fn delivery_from_row(r: &Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let status: String = r.get(7)?;
    Ok(DeliveryRecord {
        seq: r.get(0)?,
        delivery_id: r.get(1)?,
        webhook_id: r.get(2)?,
        buyer_id: r.get(3)?,
        event_id: r.get(4)?,
        event_type: r.get(5)?,
        body: r.get(6)?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| invalid(7, "delivery status"))?,
        attempts: r.get(8)?,
        next_at_ms: r.get(9)?,
        last_attempt_at_ms: r.get(10)?,
        last_status: r.get(11)?,
        last_error: r.get(12)?,
        created_at_ms: r.get(13)?,
        delivered_at_ms: r.get(14)?,
    })
}

impl Tx<'_> {
    /// Queues `ev` for each of its buyer's endpoints that subscribed to it, in this transaction.
    /// A buyer without webhooks costs one indexed read.
    pub(super) fn hook(&mut self, ev: HookEvent, now_ms: i64) -> Result<(), EngineError> {
        let hooks = {
            let mut s = self
                .conn
                .prepare_cached("SELECT id, events FROM webhooks WHERE buyer_id = ?1")
                .map_err(db_err)?;
            let rows = s
                .query_map(params![ev.buyer_id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
        };
        let wanted: Vec<String> = hooks
            .into_iter()
            .filter(|(_, events)| {
                serde_json::from_str::<Vec<String>>(events)
                    .is_ok_and(|e| e.iter().any(|k| k == ev.kind))
            })
            .map(|(id, _)| id)
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let event_id = crate::domain::new_id("evt");
        let body = ev.body(&event_id, now_ms);
        for webhook_id in wanted {
            self.conn
                .prepare_cached(
                    "INSERT INTO webhook_deliveries (id, webhook_id, buyer_id, event_id, event_type,
                       body, status, attempts, next_at, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?7)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        crate::domain::new_id("dlv"),
                        webhook_id,
                        ev.buyer_id,
                        event_id,
                        ev.kind,
                        body,
                        now_ms
                    ])
                })
                .map_err(db_err)?;
        }
        Ok(())
    }
}

pub(super) fn create(tx: &mut Tx<'_>, w: NewWebhook) -> Result<WebhookRecord, EngineError> {
    let count: i64 = tx
        .conn
        .prepare_cached("SELECT COUNT(*) FROM webhooks WHERE buyer_id = ?1")
        .and_then(|mut s| s.query_row(params![w.buyer_id], |r| r.get(0)))
        .map_err(db_err)?;
    if count >= i64::from(w.max_per_buyer) {
        return Err(EngineError::Conflict(format!(
            "a buyer may register at most {} webhooks; delete one first",
            w.max_per_buyer
        )));
    }
    let events = serde_json::to_string(&w.events).map_err(json_err)?;
    tx.conn
        .prepare_cached(
            "INSERT INTO webhooks (id, buyer_id, url, events, secret, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                w.webhook_id,
                w.buyer_id,
                w.url,
                events,
                w.secret,
                w.now_ms
            ])
        })
        .map_err(db_err)?;
    Ok(WebhookRecord {
        webhook_id: w.webhook_id,
        buyer_id: w.buyer_id,
        url: w.url,
        events: w.events,
        secret: w.secret,
        created_at_ms: w.now_ms,
    })
}

pub(super) fn list(c: &Connection, buyer_id: &str) -> Result<Vec<WebhookRecord>, EngineError> {
    let sql =
        format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE buyer_id = ?1 ORDER BY created_at, id");
    let mut s = c.prepare_cached(&sql).map_err(db_err)?;
    let rows = s
        .query_map(params![buyer_id], webhook_from_row)
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

pub(super) fn read(c: &Connection, id: &str) -> Result<Option<WebhookRecord>, EngineError> {
    let sql = format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE id = ?1");
    c.prepare_cached(&sql)
        .and_then(|mut s| s.query_row(params![id], webhook_from_row).optional())
        .map_err(db_err)
}

/// Deletes `buyer_id`'s endpoint `id`; its undelivered deliveries are cancelled (kept, for the
/// record). False when it is not theirs or not there.
pub(super) fn delete(tx: &mut Tx<'_>, buyer_id: &str, id: &str) -> Result<bool, EngineError> {
    let n = tx
        .conn
        .prepare_cached("DELETE FROM webhooks WHERE id = ?1 AND buyer_id = ?2")
        .and_then(|mut s| s.execute(params![id, buyer_id]))
        .map_err(db_err)?;
    if n == 0 {
        return Ok(false);
    }
    tx.conn
        .prepare_cached(
            "UPDATE webhook_deliveries SET status = 'cancelled', next_at = NULL, lease = NULL
             WHERE webhook_id = ?1 AND status = 'pending'",
        )
        .and_then(|mut s| s.execute(params![id]))
        .map_err(db_err)?;
    Ok(true)
}

pub(super) fn deliveries(
    c: &Connection,
    f: DeliveryFilter,
) -> Result<Vec<DeliveryRecord>, EngineError> {
    let sql = format!(
        "SELECT {DELIVERY_COLS} FROM webhook_deliveries
         WHERE webhook_id = ?1 AND buyer_id = ?2 AND seq < ?3 AND (?4 IS NULL OR status = ?4)
         ORDER BY seq DESC LIMIT ?5"
    );
    let mut s = c.prepare_cached(&sql).map_err(db_err)?;
    let rows = s
        .query_map(
            params![
                f.webhook_id,
                f.buyer_id,
                f.before_seq.unwrap_or(i64::MAX),
                f.status.map(|s| s.as_str()),
                f.limit
            ],
            delivery_from_row,
        )
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

fn read_delivery(c: &Connection, id: &str) -> Result<Option<DeliveryRecord>, EngineError> {
    let sql = format!("SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE id = ?1");
    c.prepare_cached(&sql)
        .and_then(|mut s| s.query_row(params![id], delivery_from_row).optional())
        .map_err(db_err)
}

/// A dead-lettered delivery (or a delivered one, sent again on request) back in the queue, due
/// now with a fresh count of attempts. A pending one is left as it is (it is being retried).
pub(super) fn retry(
    tx: &mut Tx<'_>,
    buyer_id: &str,
    webhook_id: &str,
    delivery_id: &str,
    now_ms: i64,
) -> Result<DeliveryRecord, EngineError> {
    let d = read_delivery(tx.conn, delivery_id)?
        .filter(|d| d.buyer_id == buyer_id && d.webhook_id == webhook_id)
        .ok_or_else(|| EngineError::NotFound("no such delivery".into()))?;
    match d.status {
        DeliveryStatus::Pending => return Ok(d),
        DeliveryStatus::Cancelled => {
            return Err(EngineError::Conflict(
                "its webhook was deleted; register it again".into(),
            ));
        }
        DeliveryStatus::Dead | DeliveryStatus::Delivered => {}
    }
    tx.conn
        .prepare_cached(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_at = ?2, lease = NULL
             WHERE id = ?1 AND status = ?3",
        )
        .and_then(|mut s| s.execute(params![delivery_id, now_ms, d.status.as_str()]))
        .map_err(db_err)?;
    read_delivery(tx.conn, delivery_id)?
        .ok_or_else(|| EngineError::internal("a delivery vanished while retried"))
}

/// Leases up to `limit` due deliveries, at most `per_webhook` of one endpoint, and none of an
/// endpoint that has deliveries leased still (so a slow endpoint holds at most `per_webhook`
/// sends at once, and everyone else's go ahead). A lease ends at `now + lease_ms`: a sender that
/// died with it leaves the delivery due again then.
pub(super) fn claim(
    tx: &mut Tx<'_>,
    now_ms: i64,
    lease_ms: i64,
    per_webhook: u32,
    limit: u32,
) -> Result<Vec<Claimed>, EngineError> {
    let ids: Vec<String> = {
        let mut s = tx
            .conn
            .prepare_cached(
                "SELECT id FROM (
                   SELECT d.id, d.next_at, d.seq,
                          ROW_NUMBER() OVER (PARTITION BY d.webhook_id ORDER BY d.next_at, d.seq) AS n
                   FROM webhook_deliveries d
                   WHERE d.status = 'pending' AND d.next_at <= ?1
                     AND d.webhook_id NOT IN (
                       SELECT webhook_id FROM webhook_deliveries
                       WHERE status = 'pending' AND lease IS NOT NULL AND next_at > ?1)
                 ) WHERE n <= ?2 ORDER BY next_at, seq LIMIT ?3",
            )
            .map_err(db_err)?;
        let rows = s
            .query_map(params![now_ms, per_webhook, limit], |r| r.get(0))
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let lease = crate::domain::new_id("lse");
        tx.conn
            .prepare_cached("UPDATE webhook_deliveries SET lease = ?2, next_at = ?3 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, lease, now_ms.saturating_add(lease_ms)]))
            .map_err(db_err)?;
        let Some(delivery) = read_delivery(tx.conn, &id)? else {
            continue;
        };
        // An endpoint deleted since is cancelled with its deliveries, so it is there.
        let Some(hook) = read(tx.conn, &delivery.webhook_id)? else {
            continue;
        };
        out.push(Claimed {
            delivery,
            url: hook.url,
            secret: hook.secret,
            lease,
        });
    }
    Ok(out)
}

/// Records an attempt under its lease: delivered, due again at `retry_at_ms`, or dead. An attempt
/// whose lease was taken over (it outlived it) records nothing; false then.
pub(super) fn attempted(tx: &mut Tx<'_>, a: Attempt) -> Result<bool, EngineError> {
    let (status, next_at, delivered_at) = a.outcome();
    let n = tx
        .conn
        .prepare_cached(
            "UPDATE webhook_deliveries SET status = ?3, attempts = attempts + 1, next_at = ?4,
               lease = NULL, last_attempt_at = ?5, last_status = ?6, last_error = ?7,
               delivered_at = ?8
             WHERE id = ?1 AND lease = ?2 AND status = 'pending'",
        )
        .and_then(|mut s| {
            s.execute(params![
                a.delivery_id,
                a.lease,
                status.as_str(),
                next_at,
                a.now_ms,
                a.status,
                a.error,
                delivered_at
            ])
        })
        .map_err(db_err)?;
    Ok(n == 1)
}

pub(super) fn purge(tx: &mut Tx<'_>, before_ms: i64) -> Result<u64, EngineError> {
    let n = tx
        .conn
        .prepare_cached(
            "DELETE FROM webhook_deliveries
             WHERE created_at < ?1 AND status IN ('delivered', 'dead', 'cancelled')",
        )
        .and_then(|mut s| s.execute(params![before_ms]))
        .map_err(db_err)?;
    Ok(n as u64)
}
