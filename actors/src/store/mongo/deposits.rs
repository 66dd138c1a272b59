//! Deposits and the provider events that credit them. An event's id is the `_id` of its record,
//! so two deliveries at once cannot both act: the second one's insert conflicts, it runs again
//! and finds the event done. The deposit's own status is the guard of its write as well.

use super::*;
use crate::rules::deposit::{self, DepositStatus, Step};

async fn find_deposit(
    tx: &mut Tx<'_>,
    session_id: &str,
    deposit_id: Option<&str>,
) -> R<Option<DepositDoc>> {
    let db = tx.db;
    if let Some(found) = tx
        .one(&db.deposits, doc! { "session_id": session_id })
        .await?
    {
        return Ok(Some(found));
    }
    match deposit_id {
        Some(id) => tx.one(&db.deposits, doc! { "_id": id }).await,
        None => Ok(None),
    }
}

pub(super) async fn create_deposit(tx: &mut Tx<'_>, d: &NewDeposit) -> R<DepositRecord> {
    if let Some(first) = tx.replay(d.idem.as_ref()).await? {
        return Ok(first);
    }
    let db = tx.db;
    let seq = db.next_seq("deposits").await?;
    let doc = DepositDoc {
        id: d.deposit_id.clone(),
        seq,
        buyer_id: d.buyer_id.clone(),
        amount_cents: d.amount_cents,
        bonus_cents: d.bonus_cents,
        status: DepositStatus::Pending.as_str().to_string(),
        session_id: d.session_id.clone(),
        checkout_url: d.checkout_url.clone(),
        paid_cents: None,
        created_at: d.now_ms,
        settled_at: None,
    };
    match tx.insert(&db.deposits, &doc).await {
        Err(Fail::Db(e)) if is_duplicate(&e) => {
            return Err(Fail::Engine(EngineError::Conflict(
                "this deposit or Checkout Session is already stored".into(),
            )));
        }
        other => other?,
    }
    let record = doc.record();
    tx.remember(d.idem.as_ref(), &record, d.now_ms).await?;
    Ok(record)
}

pub(super) async fn deposit_event(tx: &mut Tx<'_>, e: &ProviderEvent) -> R<EventOutcome> {
    let db = tx.db;
    if tx
        .exists(&db.provider_events, doc! { "_id": &e.event_id })
        .await?
    {
        return Ok(EventOutcome::Duplicate);
    }
    let outcome = match &e.session {
        None => EventOutcome::Nothing,
        Some((session_id, deposit_id, event)) => {
            match find_deposit(tx, session_id, deposit_id.as_deref()).await? {
                None => EventOutcome::Unmatched,
                Some(found) => settle(tx, found, event, e).await?,
            }
        }
    };
    let record = ProviderEventDoc {
        id: e.event_id.clone(),
        event_type: e.event_type.clone(),
        session_id: e.session.as_ref().map(|s| s.0.clone()),
        outcome: outcome.label().to_string(),
        created_at: e.now_ms,
    };
    match tx.insert(&db.provider_events, &record).await {
        // The same event, delivered twice at once: the other delivery acted; look again.
        Err(Fail::Db(err)) if is_duplicate(&err) => Err(Fail::Retry),
        other => other.map(|()| outcome),
    }
}

async fn settle(
    tx: &mut Tx<'_>,
    d: DepositDoc,
    event: &deposit::SessionEvent,
    e: &ProviderEvent,
) -> R<EventOutcome> {
    let db = tx.db;
    let status = DepositStatus::parse(&d.status).unwrap_or(DepositStatus::Pending);
    let step = deposit::step(status, d.amount_cents, event);
    let (next, bonus) = match step {
        Step::Nothing => return Ok(EventOutcome::Nothing),
        Step::Expire => (DepositStatus::Expired, 0),
        Step::Hold => (DepositStatus::Mismatch, 0),
        Step::Credit => {
            let earlier = tx
                .exists(
                    &db.deposits,
                    doc! { "buyer_id": &d.buyer_id, "status": DepositStatus::Completed.as_str() },
                )
                .await?;
            let bonus = if earlier {
                0
            } else {
                deposit::bonus_cents(d.amount_cents, e.bonus_pct)
            };
            (DepositStatus::Completed, bonus)
        }
    };
    let mut set = doc! { "status": next.as_str(), "bonus_cents": bonus, "settled_at": e.now_ms };
    if let deposit::SessionEvent::Paid { amount_cents, .. } = event {
        set.insert("paid_cents", *amount_cents);
    }
    let Some(after) = tx
        .take(
            &db.deposits,
            doc! { "_id": &d.id, "status": &d.status },
            doc! { "$set": set },
        )
        .await?
    else {
        // Another event settled it between our read and our write.
        return Err(Fail::Retry);
    };
    if step == Step::Credit {
        tx.apply(
            &rules::money::deposit(&d.id, &d.buyer_id, d.amount_cents),
            e.now_ms,
        )
        .await?;
        if let Some(entry) = rules::money::deposit_bonus(&d.id, &d.buyer_id, bonus) {
            tx.apply(&entry, e.now_ms).await?;
        }
        tx.update(
            &db.balances,
            doc! { "_id": &d.buyer_id },
            doc! { "$inc": { "total_deposited_cents": d.amount_cents, "version": 1_i64 } },
        )
        .await?;
    }
    let after = after.record();
    if let Some((action, details)) = deposit_audit(step, &after, &e.event_id) {
        tx.audit(&Who::system("stripe"), action, &details, e.now_ms)
            .await?;
    }
    if step == Step::Credit {
        let ev = crate::store::webhook::events::deposit_completed(&after);
        tx.hook(ev, e.now_ms).await?;
    }
    Ok(match step {
        Step::Credit => EventOutcome::Credited(after),
        Step::Hold => EventOutcome::Held(after),
        _ => EventOutcome::Expired(after),
    })
}

pub(super) async fn deposits(tx: &mut Tx<'_>, f: &DepositFilter) -> R<Vec<DepositRecord>> {
    let db = tx.db;
    let mut filter = doc! {};
    if let Some(b) = &f.buyer_id {
        filter.insert("buyer_id", b);
    }
    let status = f.status.map(|s| s.as_str());
    let found = tx
        .newest(&db.deposits, filter, status, f.before_seq, f.limit)
        .await?;
    Ok(found.into_iter().map(DepositDoc::record).collect())
}

pub(super) async fn purge_idempotency(tx: &mut Tx<'_>, before_ms: i64) -> R<u64> {
    let db = tx.db;
    tx.delete(&db.idempotency, doc! { "created_at": { "$lt": before_ms } })
        .await
}

pub(super) async fn resolve_deposit(
    tx: &mut Tx<'_>,
    deposit_id: &str,
    by: &Who,
    note: &str,
    now_ms: i64,
) -> R<DepositRecord> {
    let db = tx.db;
    let Some(d) = tx.one(&db.deposits, doc! { "_id": deposit_id }).await? else {
        return Err(Fail::Engine(EngineError::NotFound(format!(
            "no deposit {deposit_id}"
        ))));
    };
    let paid = match (d.status.as_str(), d.paid_cents) {
        ("mismatch", Some(paid)) if paid > 0 => paid,
        ("mismatch", _) => {
            return Err(Fail::Engine(EngineError::Conflict(
                "this deposit was paid nothing to credit".into(),
            )));
        }
        (other, _) => {
            return Err(Fail::Engine(EngineError::Conflict(format!(
                "only a mismatch deposit is resolved; this one is {other}"
            ))));
        }
    };
    let Some(after) = tx
        .take(
            &db.deposits,
            doc! { "_id": deposit_id, "status": "mismatch" },
            doc! { "$set": { "status": DepositStatus::Completed.as_str(), "settled_at": now_ms } },
        )
        .await?
    else {
        return Err(Fail::Retry);
    };
    tx.apply(&rules::money::deposit(&d.id, &d.buyer_id, paid), now_ms)
        .await?;
    tx.update(
        &db.balances,
        doc! { "_id": &d.buyer_id },
        doc! { "$inc": { "total_deposited_cents": paid, "version": 1_i64 } },
    )
    .await?;
    tx.audit(
        by,
        "deposit.resolve",
        &serde_json::json!({ "deposit_id": d.id, "buyer_id": d.buyer_id, "credited_cents": paid,
            "amount_cents": d.amount_cents, "note": note }),
        now_ms,
    )
    .await?;
    Ok(after.record())
}
